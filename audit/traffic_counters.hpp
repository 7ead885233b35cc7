#pragma once
// Counters of egress per VM and per outcome, built from the same records as the audit trail, so
// that every way a connection or request can end is counted under its fixed reason. Pure: the
// proxy keeps one instance per worker and merges them when /metrics is read.
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "audit/audit_record.hpp"

namespace egressgate::audit {

class TrafficCounters {
public:
    void add(const Record& record);
    void merge(const TrafficCounters& other);

    // Prometheus text exposition of every counter, with `gauges` (name, help, value) first.
    struct Gauge {
        std::string_view name;
        std::string_view help;
        double value;
    };
    std::string prometheus_text(std::initializer_list<Gauge> gauges = {}) const;

    struct VmTotals {
        std::uint64_t connections = 0;  // audit lines: connections and forwarded requests
        std::uint64_t denied = 0;
        std::uint64_t bytes_up = 0;
        std::uint64_t bytes_down = 0;
    };
    const std::map<std::string, VmTotals>& by_vm() const { return by_vm_; }
    // (decision, reason) -> count, e.g. ("deny", "host_not_allowed")
    const std::map<std::pair<std::string, std::string>, std::uint64_t>& by_outcome() const { return by_outcome_; }
    const std::map<std::string, std::uint64_t>& by_close_reason() const { return by_close_reason_; }

private:
    std::map<std::string, VmTotals> by_vm_;
    std::map<std::pair<std::string, std::string>, std::uint64_t> by_outcome_;
    std::map<std::string, std::uint64_t> by_close_reason_;
};

}  // namespace egressgate::audit
