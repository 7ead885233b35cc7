#include "audit/traffic_counters.hpp"

#include <fmt/format.h>

namespace egressgate::audit {
namespace {

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

}  // namespace

void TrafficCounters::add(const Record& r) {
    VmTotals& vm = by_vm_[r.vm];
    ++vm.connections;
    if (r.decision == "deny") ++vm.denied;
    vm.bytes_up += r.bytes_up;
    vm.bytes_down += r.bytes_down;
    ++by_outcome_[{std::string(r.decision), std::string(r.reason)}];
    ++by_close_reason_[std::string(r.close_reason)];
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
    for (const auto& [key, n] : other.by_close_reason_) by_close_reason_[key] += n;
}

std::string TrafficCounters::prometheus_text(std::initializer_list<Gauge> gauges) const {
    std::string out;
    for (const auto& g : gauges) {
        header(out, g.name, g.help, "gauge");
        fmt::format_to(std::back_inserter(out), "{} {}\n", g.name, g.value);
    }
    header(out, "egressgate_connections_total", "Connections and forwarded requests, by decision and reason", "counter");
    for (const auto& [key, n] : by_outcome_) {
        fmt::format_to(std::back_inserter(out), "egressgate_connections_total{{decision=\"{}\",reason=\"{}\"}} {}\n",
                       label(key.first), label(key.second), n);
    }
    header(out, "egressgate_closed_total", "Connections and requests by how they ended", "counter");
    for (const auto& [reason, n] : by_close_reason_) {
        fmt::format_to(std::back_inserter(out), "egressgate_closed_total{{close_reason=\"{}\"}} {}\n", label(reason), n);
    }
    header(out, "egressgate_vm_connections_total", "Connections and requests per VM", "counter");
    for (const auto& [vm, t] : by_vm_) {
        fmt::format_to(std::back_inserter(out), "egressgate_vm_connections_total{{vm=\"{}\"}} {}\n", label(vm), t.connections);
    }
    header(out, "egressgate_vm_denied_total", "Denied connections and requests per VM", "counter");
    for (const auto& [vm, t] : by_vm_) {
        fmt::format_to(std::back_inserter(out), "egressgate_vm_denied_total{{vm=\"{}\"}} {}\n", label(vm), t.denied);
    }
    header(out, "egressgate_vm_bytes_total", "Payload bytes per VM and direction (up = VM to destination)", "counter");
    for (const auto& [vm, t] : by_vm_) {
        fmt::format_to(std::back_inserter(out), "egressgate_vm_bytes_total{{vm=\"{}\",direction=\"up\"}} {}\n", label(vm),
                       t.bytes_up);
        fmt::format_to(std::back_inserter(out), "egressgate_vm_bytes_total{{vm=\"{}\",direction=\"down\"}} {}\n",
                       label(vm), t.bytes_down);
    }
    return out;
}

}  // namespace egressgate::audit
