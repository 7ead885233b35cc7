#pragma once
// /status: one self-contained HTML page for a person at the proxy VM (no external scripts, fonts
// or styles: the appliance has no internet), refreshing itself. Pure: a snapshot in, HTML out.
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace egressgate::audit {

// Named limits of what the page shows (and the workers keep for it).
inline constexpr std::size_t kStatusLargestTransfers = 20;
inline constexpr std::size_t kStatusRecentDenials = 50;
inline constexpr std::size_t kStatusHistorySamples = 60;   // one every kStatusSampleInterval: 10 minutes
inline constexpr std::chrono::seconds kStatusSampleInterval{10};
inline constexpr std::chrono::seconds kStatusRefresh{5};
inline constexpr std::size_t kStatusChartedVms = 8;        // the VMs that moved the most in the window

struct OpenTransfer {
    std::string vm;
    std::string destination;  // "host:port"
    std::uint64_t bytes_up = 0;
    std::uint64_t bytes_down = 0;
    std::int64_t age_ms = 0;
};

struct OpenByVm {
    std::uint64_t connections = 0;
    std::uint64_t bytes_up = 0;    // of the open connections, so far
    std::uint64_t bytes_down = 0;
    std::int64_t oldest_ms = 0;
};

struct DenialNote {
    std::chrono::system_clock::time_point time;
    std::string vm;
    std::string destination;
    std::string reason;
};

// Per-VM bytes (up, down) counted so far, at one moment: the chart shows the differences.
struct TrafficSample {
    std::chrono::system_clock::time_point time;
    std::map<std::string, std::pair<std::uint64_t, std::uint64_t>> bytes_by_vm;
};

struct ProxyHealth {
    std::string version;
    std::int64_t uptime_s = 0;
    unsigned workers = 0;
    std::vector<std::string> stalled_workers;
    bool accepting = true;
    std::uint64_t open_connections = 0;
    std::uint64_t descriptors_open = 0;
    std::uint64_t descriptor_limit = 0;
    std::uint64_t reloads_applied = 0;
    std::uint64_t reloads_rejected = 0;
    std::uint64_t audit_lines_written = 0;
    std::uint64_t audit_lines_dropped = 0;
    std::optional<std::string> audit_failing;  // why the audit file cannot be written, while it cannot
};

struct StatusSnapshot {
    ProxyHealth health;
    std::map<std::string, OpenByVm> open_by_vm;
    std::vector<OpenTransfer> largest_open;   // most bytes first
    std::vector<DenialNote> recent_denials;   // newest first
    std::vector<TrafficSample> history;       // oldest first
};

std::string render_status_page(const StatusSnapshot& snapshot, std::chrono::system_clock::time_point now);

}  // namespace egressgate::audit
