#include "proxy/worker_context.hpp"

#include <algorithm>

#include "proxy/audit_writer.hpp"

namespace egressgate::proxy {

namespace {

bool fewer_bytes(const audit::OpenTransfer& a, const audit::OpenTransfer& b) {
    return a.bytes_up + a.bytes_down > b.bytes_up + b.bytes_down;  // the heap's top: the smallest
}

}  // namespace

void LiveCollector::open(const std::string& series, const std::string& host, std::uint16_t port, std::uint64_t up,
                         std::uint64_t down, std::int64_t age_ms) {
    auto& vm = open_by_vm_[series];
    ++vm.connections;
    vm.bytes_up += up;
    vm.bytes_down += down;
    vm.oldest_ms = std::max(vm.oldest_ms, age_ms);
    // Only a transfer that enters the top gets its strings built.
    if (largest_.size() == audit::kStatusLargestTransfers) {
        const auto& smallest = largest_.front();
        if (up + down <= smallest.bytes_up + smallest.bytes_down) return;
        std::pop_heap(largest_.begin(), largest_.end(), fewer_bytes);
        largest_.pop_back();
    }
    largest_.push_back({series, host + ":" + std::to_string(port), up, down, age_ms});
    std::push_heap(largest_.begin(), largest_.end(), fewer_bytes);
}

void LiveCollector::apply(audit::TrafficCounters& counters, std::map<std::string, audit::OpenByVm>& open_by_vm,
                          std::vector<audit::OpenTransfer>& largest_open) {
    for (const auto& m : moved_) counters.add_bytes(m.series, m.up, m.down);
    open_by_vm.swap(open_by_vm_);
    std::sort_heap(largest_.begin(), largest_.end(), fewer_bytes);  // most bytes first
    largest_open.swap(largest_);
}

void WorkerContext::conclude(const audit::Record& record, audit::CountedBytes counted) {
    audit.write(audit::FormattedLine(record).view());
    std::lock_guard lock(counters_mutex);
    counters.add(record, counted);
    if (record.kind == audit::RecordKind::final && record.decision == "deny") {
        const std::string destination =
            record.host.empty() ? "" : audit::escape_client_bytes(record.host) + ":" + std::to_string(record.port);
        recent_denials.push_back({record.time, record.vm, destination, std::string(record.reason)});
        if (recent_denials.size() > audit::kStatusRecentDenials) recent_denials.pop_front();
    }
}

}  // namespace egressgate::proxy
