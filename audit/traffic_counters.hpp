#pragma once
// Counters of egress per VM and per outcome, built from the same records as the audit trail, so
// that every way a connection or request can end is counted under its fixed reason. Pure: the
// proxy keeps one instance per worker and merges them when /metrics is read.
//
// Series stay bounded by what the admin configured: VMs are the clients inside [clients] allow
// (a virtual network's CIDRs), and refused outsiders are counted in one series, never one per
// address, so that a scan of the proxy cannot grow /metrics.
#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "audit/audit_record.hpp"

namespace egressgate::audit {

// The connection limits whose refusals /metrics counts (egressgate_limit_refusals_total).
enum class Limit : std::uint8_t { client_connections, client_rate, proxy_connections };
inline constexpr std::size_t kLimitCount = 3;
std::string_view to_string(Limit limit);

// A Prometheus histogram with fixed bucket bounds (seconds). Cumulative counts are computed when
// the text is written; observe() only bumps one bucket.
class Histogram {
public:
    static constexpr std::size_t kBuckets = 12;
    using Bounds = std::array<double, kBuckets>;
    explicit Histogram(const Bounds& bounds) : bounds_(bounds) {}
    void observe(double seconds);
    void merge(const Histogram& other);
    void write(std::string& out, std::string_view name, std::string_view help) const;
    std::uint64_t count() const { return count_; }

private:
    Bounds bounds_;
    std::array<std::uint64_t, kBuckets + 1> counts_{};  // the last one is +Inf
    double sum_ = 0;
    std::uint64_t count_ = 0;
};

// Bucket bounds: a connect takes milliseconds to seconds; a connection lasts from milliseconds (an
// agent's CONNECT) to hours (a backup).
inline constexpr Histogram::Bounds kConnectSecondsBounds = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                            0.1,   0.25,   0.5,   1,    2.5,   10};
inline constexpr Histogram::Bounds kDurationSecondsBounds = {0.01, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 14400};

// Bytes of a connection that earlier progress records already counted.
struct CountedBytes {
    std::uint64_t up = 0;
    std::uint64_t down = 0;
};

class TrafficCounters {
public:
    // A final record counts the connection, its outcome and its bytes; a progress record only the
    // bytes moved since `counted`. Per-VM series are keyed by record.series (the VM's name when
    // it is empty, as in tests).
    void add(const Record& record, CountedBytes counted = {});
    // Bytes an open connection moved since it was last counted: /metrics moves while a long
    // tunnel runs, not only when it ends.
    void add_bytes(const std::string& series, std::uint64_t up, std::uint64_t down);
    void merge(const TrafficCounters& other);

    // Prometheus text exposition of every counter, with the proxy's own samples (gauges, and
    // counters kept outside the audit records) first.
    struct Sample {
        std::string_view name;
        std::string_view help;
        double value;
        std::string_view type = "gauge";  // or "counter"
        std::string_view labels = "";     // e.g. version="0.2.0", without the braces
    };
    std::string prometheus_text(const std::vector<Sample>& samples = {}) const;

    struct VmTotals {
        std::uint64_t connections = 0;  // audit lines: connections and forwarded requests
        std::uint64_t denied = 0;
        std::uint64_t bytes_up = 0;
        std::uint64_t bytes_down = 0;
    };
    const std::map<std::string, VmTotals>& by_vm() const { return by_vm_; }
    // (decision, reason) -> count, e.g. ("deny", "host_not_allowed")
    // Keyed by text, looked up by string_view: counting a record builds no string.
    struct TextPairLess {
        using is_transparent = void;
        template <typename A, typename B>
        bool operator()(const A& a, const B& b) const {
            const std::string_view a1 = a.first, b1 = b.first;
            return a1 != b1 ? a1 < b1 : std::string_view(a.second) < std::string_view(b.second);
        }
    };
    using PairCounts = std::map<std::pair<std::string, std::string>, std::uint64_t, TextPairLess>;
    using Counts = std::map<std::string, std::uint64_t, std::less<>>;
    const PairCounts& by_outcome() const { return by_outcome_; }
    std::uint64_t closed(CloseReason reason) const { return by_close_reason_[static_cast<std::size_t>(reason)]; }
    const PairCounts& by_rule() const { return by_rule_; }
    std::uint64_t clients_denied() const { return clients_denied_; }
    std::uint64_t limit_refusals(Limit limit) const { return limit_refusals_[static_cast<std::size_t>(limit)]; }

private:
    std::map<std::string, VmTotals> by_vm_;
    PairCounts by_outcome_;
    std::array<std::uint64_t, kCloseReasonCount> by_close_reason_ = {};
    // (rule that decided, decision) -> count: rules are the config's, a bounded set.
    PairCounts by_rule_;
    std::uint64_t clients_denied_ = 0;  // connections from outside [clients] allow, all addresses
    std::uint64_t limit_refusals_[kLimitCount] = {};
    Histogram connect_seconds_{kConnectSecondsBounds};
    Histogram duration_seconds_{kDurationSecondsBounds};
};

}  // namespace egressgate::audit
