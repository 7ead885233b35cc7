#include "audit/traffic_counters.hpp"

#include <algorithm>
#include <optional>
#include <type_traits>

#include <fmt/format.h>

namespace egressgate::audit {
namespace {

// The counter under `key`, made (at zero) when there is none: the key's strings are built only then.
template <typename Map, typename Key>
std::uint64_t& count_of(Map& counts, const Key& key) {
    if (auto it = counts.find(key); it != counts.end()) return it->second;
    if constexpr (std::is_convertible_v<Key, std::string_view>) {
        return counts.emplace(std::string(key), 0).first->second;
    } else {
        return counts.emplace(std::pair{std::string(key.first), std::string(key.second)}, 0).first->second;
    }
}

// Label values come from VM names an admin wrote and fixed reason strings; escape anyway.
std::string label(std::string_view value) {
    std::string out;
    for (char c : value) {
        if (c == '\\' || c == '"') out += '\\';
        if (c == '\n') {
            out += "\\n";
            continue;
        }
        out += c;
    }
    return out;
}

void header(std::string& out, std::string_view name, std::string_view help, std::string_view type) {
    fmt::format_to(std::back_inserter(out), "# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
}

// Which limit a refusal reason names (the reasons are http::Failure names, kept as text here so
// that audit/ does not depend on http/).
std::optional<Limit> limit_of(std::string_view reason) {
    if (reason == "client_connection_limit") return Limit::client_connections;
    if (reason == "client_rate_limit") return Limit::client_rate;
    if (reason == "proxy_connection_limit") return Limit::proxy_connections;
    return std::nullopt;
}

}  // namespace

std::string_view to_string(Limit limit) {
    switch (limit) {
    case Limit::client_connections: return "client_connections";
    case Limit::client_rate: return "client_rate";
    case Limit::proxy_connections: return "proxy_connections";
    }
    return "unknown";
}

void Histogram::observe(double seconds) {
    const auto bucket = std::lower_bound(bounds_.begin(), bounds_.end(), seconds) - bounds_.begin();
    ++counts_[static_cast<std::size_t>(bucket)];
    sum_ += seconds;
    ++count_;
}

void Histogram::merge(const Histogram& other) {
    for (std::size_t i = 0; i < counts_.size(); ++i) counts_[i] += other.counts_[i];
    sum_ += other.sum_;
    count_ += other.count_;
}

void Histogram::write(std::string& out, std::string_view name, std::string_view help) const {
    header(out, name, help, "histogram");
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i < kBuckets; ++i) {
        cumulative += counts_[i];
        fmt::format_to(std::back_inserter(out), "{}_bucket{{le=\"{}\"}} {}\n", name, bounds_[i], cumulative);
    }
    fmt::format_to(std::back_inserter(out), "{}_bucket{{le=\"+Inf\"}} {}\n{}_sum {}\n{}_count {}\n", name, count_, name,
                   sum_, name, count_);
}

void TrafficCounters::add_bytes(const std::string& series, std::uint64_t up, std::uint64_t down) {
    VmTotals& vm = by_vm_[series];
    vm.bytes_up += up;
    vm.bytes_down += down;
}

void TrafficCounters::add(const Record& r, CountedBytes counted) {
    const bool outsider = r.close_reason == CloseReason::client_denied;
    if (outsider) {
        ++clients_denied_;
    } else {
        VmTotals& vm = by_vm_[r.series.empty() ? r.vm : r.series];
        vm.bytes_up += r.bytes_up - std::min(counted.up, r.bytes_up);
        vm.bytes_down += r.bytes_down - std::min(counted.down, r.bytes_down);
        if (r.kind == RecordKind::progress) return;
        ++vm.connections;
        if (r.decision == "deny") ++vm.denied;
        if (r.connect_ms >= 0) connect_seconds_.observe(static_cast<double>(r.connect_ms) / 1000);
        if (r.status == 200 || r.close_reason == CloseReason::completed) {
            duration_seconds_.observe(static_cast<double>(r.duration_ms) / 1000);
        }
    }
    ++count_of(by_outcome_, std::pair{std::string_view(r.decision), std::string_view(r.reason)});
    if (!r.policy_rule.empty()) ++count_of(by_rule_, std::pair{std::string_view(r.policy_rule), std::string_view(r.decision)});
    ++by_close_reason_[static_cast<std::size_t>(r.close_reason)];
    if (const auto limit = limit_of(r.reason)) ++limit_refusals_[static_cast<std::size_t>(*limit)];
}

void TrafficCounters::merge(const TrafficCounters& other) {
    for (const auto& [name, t] : other.by_vm_) {
        VmTotals& mine = by_vm_[name];
        mine.connections += t.connections;
        mine.denied += t.denied;
        mine.bytes_up += t.bytes_up;
        mine.bytes_down += t.bytes_down;
    }
    for (const auto& [key, n] : other.by_outcome_) by_outcome_[key] += n;
    for (std::size_t i = 0; i < kCloseReasonCount; ++i) by_close_reason_[i] += other.by_close_reason_[i];
    for (const auto& [key, n] : other.by_rule_) by_rule_[key] += n;
    clients_denied_ += other.clients_denied_;
    for (std::size_t i = 0; i < kLimitCount; ++i) limit_refusals_[i] += other.limit_refusals_[i];
    connect_seconds_.merge(other.connect_seconds_);
    duration_seconds_.merge(other.duration_seconds_);
}

std::string TrafficCounters::prometheus_text(const std::vector<Sample>& samples) const {
    std::string out;
    std::string_view previous;
    for (const auto& g : samples) {
        if (g.name != previous) header(out, g.name, g.help, g.type);  // one family, several label sets
        previous = g.name;
        if (g.labels.empty()) fmt::format_to(std::back_inserter(out), "{} {}\n", g.name, g.value);
        else fmt::format_to(std::back_inserter(out), "{}{{{}}} {}\n", g.name, g.labels, g.value);
    }
    header(out, "egressgate_connections_total", "Connections and forwarded requests, by decision and reason", "counter");
    for (const auto& [key, n] : by_outcome_) {
        fmt::format_to(std::back_inserter(out), "egressgate_connections_total{{decision=\"{}\",reason=\"{}\"}} {}\n",
                       label(key.first), label(key.second), n);
    }
    header(out, "egressgate_rule_decisions_total", "Connections and requests by the rule that decided them", "counter");
    for (const auto& [key, n] : by_rule_) {
        fmt::format_to(std::back_inserter(out), "egressgate_rule_decisions_total{{rule=\"{}\",decision=\"{}\"}} {}\n",
                       label(key.first), label(key.second), n);
    }
    header(out, "egressgate_closed_total", "Connections and requests by how they ended", "counter");
    for (std::size_t i = 0; i < kCloseReasonCount; ++i) {
        const std::uint64_t n = by_close_reason_[i];
        if (n == 0) continue;  // as before: the reasons seen
        fmt::format_to(std::back_inserter(out), "egressgate_closed_total{{close_reason=\"{}\"}} {}\n",
                       to_string(static_cast<CloseReason>(i)), n);
    }
    header(out, "egressgate_clients_denied_total", "Connections from outside [clients] allow, closed at accept", "counter");
    fmt::format_to(std::back_inserter(out), "egressgate_clients_denied_total {}\n", clients_denied_);
    header(out, "egressgate_limit_refusals_total", "Connections refused by a connection limit", "counter");
    for (std::size_t i = 0; i < kLimitCount; ++i) {
        fmt::format_to(std::back_inserter(out), "egressgate_limit_refusals_total{{limit=\"{}\"}} {}\n",
                       to_string(static_cast<Limit>(i)), limit_refusals_[i]);
    }
    connect_seconds_.write(out, "egressgate_connect_duration_seconds", "Resolve and connect time of dialed connections");
    duration_seconds_.write(out, "egressgate_connection_duration_seconds",
                            "Lifetime of served connections and requests (tunnels: until both directions ended)");
    header(out, "egressgate_vm_connections_total", "Connections and requests per VM", "counter");
    for (const auto& [vm, t] : by_vm_) {
        fmt::format_to(std::back_inserter(out), "egressgate_vm_connections_total{{vm=\"{}\"}} {}\n", label(vm), t.connections);
    }
    header(out, "egressgate_vm_denied_total", "Denied connections and requests per VM", "counter");
    for (const auto& [vm, t] : by_vm_) {
        fmt::format_to(std::back_inserter(out), "egressgate_vm_denied_total{{vm=\"{}\"}} {}\n", label(vm), t.denied);
    }
    header(out, "egressgate_vm_bytes_total",
           "Payload bytes per VM and direction (up = VM to destination), counted while they move", "counter");
    for (const auto& [vm, t] : by_vm_) {
        fmt::format_to(std::back_inserter(out), "egressgate_vm_bytes_total{{vm=\"{}\",direction=\"up\"}} {}\n", label(vm),
                       t.bytes_up);
        fmt::format_to(std::back_inserter(out), "egressgate_vm_bytes_total{{vm=\"{}\",direction=\"down\"}} {}\n",
                       label(vm), t.bytes_down);
    }
    return out;
}

}  // namespace egressgate::audit
