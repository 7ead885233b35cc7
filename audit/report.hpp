#pragma once
// `egressgate report`, the pure part: audit lines in (one at a time, already parsed), a Report
// out. No I/O here: report_input reads the files, report_format prints the result.
//
// What counts (docs/report.md says it for admins):
// - A record is counted once: a final line, or, for a connection that has progress lines and no
//   final line in the input (the proxy crashed, or the tunnel is still open), its last progress
//   line. Bytes in a record are cumulative, so a progress line is superseded by the next one of
//   its connection and by its final line. A forwarding connection's requests are separate final
//   lines with one connection_id, each counted.
// - A record falls in the period [since, until) by its own time: a final line's time is the end
//   of its connection, whose bytes all count then.
// - --vm keeps only the lines of those VMs, before anything else (first-seen included).
// - A destination is host:port of a record that was not denied. It is first seen at the time of
//   the earliest line naming it (progress lines included), and first seen in the period when
//   that time is in the period: no line of the input before `since` names it (without `since`,
//   every destination first seen before `until` is).
// - Storage accounts: the first label of a host under one of kStorageEndpoints.
//
// Memory is bounded by the data's cardinality (VMs, destinations, accounts, denial kinds), plus
// one pending record per connection that has had a progress line and no final line yet.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "audit/report_line.hpp"

namespace egressgate::audit {

// Top destinations shown per VM unless --top says otherwise.
inline constexpr std::size_t kDefaultTopDestinations = 10;

// Azure Storage endpoint suffixes (DESIGN.md): the label in front of one names a storage account.
struct StorageEndpoint {
    std::string_view suffix;   // with its leading dot
    std::string_view cloud;    // "public", "usgov", "china"
};
inline constexpr StorageEndpoint kStorageEndpoints[] = {
    {".blob.core.windows.net", "public"},        {".queue.core.windows.net", "public"},
    {".table.core.windows.net", "public"},       {".file.core.windows.net", "public"},
    {".dfs.core.windows.net", "public"},         {".blob.storage.azure.net", "public"},
    {".blob.core.usgovcloudapi.net", "usgov"},   {".queue.core.usgovcloudapi.net", "usgov"},
    {".table.core.usgovcloudapi.net", "usgov"},  {".file.core.usgovcloudapi.net", "usgov"},
    {".blob.core.chinacloudapi.cn", "china"},    {".queue.core.chinacloudapi.cn", "china"},
    {".table.core.chinacloudapi.cn", "china"},   {".file.core.chinacloudapi.cn", "china"},
};

struct StorageAccountName {
    std::string_view account;            // the host's first label
    const StorageEndpoint* endpoint;     // the suffix it was found under
};

// The storage account a host names (case-insensitive suffix match), if it does.
std::optional<StorageAccountName> storage_account_of(std::string_view host);

struct ReportFilter {
    std::optional<UnixMillis> since;  // inclusive
    std::optional<UnixMillis> until;  // exclusive
    std::vector<std::string> vms;     // empty: every VM

    bool in_period(UnixMillis time) const { return (!since || time >= *since) && (!until || time < *until); }
};

struct Traffic {
    std::uint64_t connections = 0;
    std::uint64_t bytes_up = 0;
    std::uint64_t bytes_down = 0;

    std::uint64_t bytes() const { return bytes_up + bytes_down; }
    void add(std::uint64_t up, std::uint64_t down) {
        ++connections;
        bytes_up += up;
        bytes_down += down;
    }
    void add(const Traffic& other) {
        connections += other.connections;
        bytes_up += other.bytes_up;
        bytes_down += other.bytes_down;
    }
};

struct DestinationTraffic {
    std::string host;
    std::uint16_t port = 0;
    Traffic traffic;
};

struct StorageAccountTraffic {
    std::string account;
    std::string_view cloud;
    std::uint32_t endpoints = 0;  // bit i: kStorageEndpoints[i] was reached
    Traffic traffic;

    // The suffixes reached, without their dot, in table order ("blob.core.windows.net").
    std::vector<std::string_view> endpoint_names() const;
};

struct ReasonCount {
    std::string reason;
    std::uint64_t count = 0;
};

struct VmReport {
    std::string vm;
    Traffic traffic;                               // every record of the VM in the period
    std::uint64_t denied = 0;                      // decision "deny"
    std::uint64_t reported = 0;                    // decision "report": would be denied in enforce mode
    std::vector<ReasonCount> denials_by_reason;    // count descending, then reason
    std::size_t destinations = 0;                  // distinct destinations reached
    std::vector<DestinationTraffic> top_destinations;  // bytes, then connections, descending
    std::vector<StorageAccountTraffic> storage_accounts;  // bytes descending, then name
};

struct NewDestination {
    std::string host;
    std::uint16_t port = 0;
    UnixMillis first_seen = 0;
    std::string first_vm;  // the VM of the earliest record
    Traffic traffic;       // in the period, every VM
};

struct Denial {
    std::string vm;
    Verdict verdict = Verdict::deny;  // deny, or report (mode = "report": let through, logged)
    std::string reason;
    std::string host;
    std::uint16_t port = 0;
    std::uint64_t count = 0;
    UnixMillis first = 0;
    UnixMillis last = 0;
};

struct ReportCounts {
    std::uint64_t lines = 0;            // lines read (bad ones included)
    std::uint64_t bad_lines = 0;
    std::uint64_t records = 0;          // records counted in the period
    std::uint64_t progress_lines = 0;   // progress lines read (each superseded, or counted if last)
    std::uint64_t unfinished = 0;       // connections counted at their last progress line
    std::uint64_t outside_period = 0;   // records of the chosen VMs outside [since, until)
    std::uint64_t other_vms = 0;        // lines of VMs not asked for
};

struct Report {
    ReportFilter filter;
    std::size_t top_limit = kDefaultTopDestinations;  // 0: every destination
    std::vector<std::string> files;                   // in the order they were read
    ReportCounts counts;
    std::optional<UnixMillis> first_record;           // earliest and latest record counted
    std::optional<UnixMillis> last_record;
    std::vector<VmReport> vms;                        // by name
    std::vector<NewDestination> new_destinations;     // by first seen, then host:port
    std::vector<Denial> denials;                      // by VM, count descending, reason, destination
};

// Feeds on parsed lines in the order they were written (files oldest first), then makes the
// Report. Lines that could not be parsed are only counted (count_bad_line).
class Aggregator {
public:
    explicit Aggregator(ReportFilter filter, std::size_t top_limit = kDefaultTopDestinations);
    ~Aggregator();
    Aggregator(const Aggregator&) = delete;
    Aggregator& operator=(const Aggregator&) = delete;

    void add(const AuditLine& line);
    void count_bad_line();

    // Counts what is still pending (connections whose last line was a progress line) and
    // returns the report. The aggregator is spent afterwards.
    Report finish(std::vector<std::string> files = {});

    // Connections waiting for their final line: what bounds memory beyond cardinality.
    std::size_t pending_connections() const;

private:
    struct State;
    std::unique_ptr<State> state_;
};

}  // namespace egressgate::audit
