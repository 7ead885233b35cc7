// The report's aggregation: which records count, and what they add up to. Lines are given as
// parsed (test_report_line covers the parsing), in the order a writer would have written them.
#include <catch.hpp>

#include <string>
#include <vector>

#include "audit/report.hpp"

namespace audit = egressgate::audit;
using audit::RecordKind;
using audit::Verdict;

namespace {

constexpr audit::UnixMillis kT0 = 1796119200000;  // 2026-12-01T10:00:00Z

// One audit line, compactly: seconds after kT0 and what the report reads.
struct L {
    int at_s = 0;
    RecordKind kind = RecordKind::final;
    std::string id;
    std::string vm = "vm-a";
    std::string host = "acct1.blob.core.windows.net";
    std::uint16_t port = 443;
    Verdict verdict = Verdict::allow;
    std::string reason = "host_allowed";
    std::uint64_t up = 0;
    std::uint64_t down = 0;
};

L final_line(int at_s, std::string id, std::uint64_t up, std::uint64_t down, std::string vm = "vm-a",
             std::string host = "acct1.blob.core.windows.net") {
    return L{at_s, RecordKind::final, std::move(id), std::move(vm), std::move(host), 443, Verdict::allow, "host_allowed", up, down};
}

L progress_line(int at_s, std::string id, std::uint64_t up, std::uint64_t down, std::string vm = "vm-a") {
    L l = final_line(at_s, std::move(id), up, down, std::move(vm));
    l.kind = RecordKind::progress;
    return l;
}

L denied_line(int at_s, std::string vm, std::string host, std::uint16_t port, std::string reason,
              Verdict verdict = Verdict::deny) {
    return L{at_s, RecordKind::final, std::string("d-") + std::to_string(at_s), std::move(vm), std::move(host), port, verdict,
             std::move(reason), 0, 0};
}

audit::Report run(const std::vector<L>& lines, audit::ReportFilter filter = {},
                  std::size_t top = audit::kDefaultTopDestinations) {
    audit::Aggregator aggregator(std::move(filter), top);
    for (const auto& l : lines) {
        audit::AuditLine line;
        line.time = kT0 + l.at_s * 1000;
        line.kind = l.kind;
        line.connection_id = l.id;
        line.vm = l.vm;
        line.host = l.host;
        line.port = l.port;
        line.verdict = l.verdict;
        line.reason = l.reason;
        line.bytes_up = l.up;
        line.bytes_down = l.down;
        aggregator.add(line);
    }
    return aggregator.finish({"audit.jsonl"});
}

std::string fmt_id(int i) {
    std::string id = "c";
    id += std::to_string(i);
    return id;
}

const audit::VmReport* vm_of(const audit::Report& report, const std::string& name) {
    for (const auto& vm : report.vms) {
        if (vm.vm == name) return &vm;
    }
    return nullptr;
}

audit::ReportFilter period(std::optional<int> since_s, std::optional<int> until_s) {
    audit::ReportFilter filter;
    if (since_s) filter.since = kT0 + *since_s * 1000;
    if (until_s) filter.until = kT0 + *until_s * 1000;
    return filter;
}

}  // namespace

TEST_CASE("records count once: final lines, else a connection's last progress line", "[report]") {
    struct Case {
        const char* name;
        std::vector<L> lines;
        std::uint64_t connections, up, down, unfinished;
    };
    const Case cases[] = {
        {"final lines add up", {final_line(1, "c1", 10, 20), final_line(2, "c2", 1, 2)}, 2, 11, 22, 0},
        {"progress lines are superseded by their final line",
         {progress_line(1, "c1", 100, 1000), progress_line(2, "c1", 200, 2000), final_line(3, "c1", 300, 3000)}, 1, 300, 3000, 0},
        {"without a final line, the last progress line counts",
         {progress_line(1, "c1", 100, 1000), progress_line(2, "c1", 200, 2000)}, 1, 200, 2000, 1},
        {"the latest progress line wins, in whatever order",
         {progress_line(2, "c1", 200, 2000), progress_line(1, "c1", 100, 1000)}, 1, 200, 2000, 1},
        {"one connection's final line leaves another's progress pending",
         {progress_line(1, "c1", 100, 1000), progress_line(1, "c2", 5, 5), final_line(2, "c1", 150, 1500)}, 2, 155, 1505, 1},
        {"forwarded requests on one connection are separate records",
         {final_line(1, "c1", 10, 100), final_line(2, "c1", 20, 200), final_line(3, "c1", 30, 300)}, 3, 60, 600, 0},
        {"lines from before connection ids are final lines",
         {final_line(1, "", 10, 100), final_line(2, "", 20, 200)}, 2, 30, 300, 0},
    };
    for (const auto& c : cases) {
        DYNAMIC_SECTION(c.name) {
            const auto report = run(c.lines);
            REQUIRE(report.vms.size() == 1);
            CHECK(report.vms[0].traffic.connections == c.connections);
            CHECK(report.vms[0].traffic.bytes_up == c.up);
            CHECK(report.vms[0].traffic.bytes_down == c.down);
            CHECK(report.counts.unfinished == c.unfinished);
            CHECK(report.counts.records == c.connections);
            CHECK(report.counts.lines == c.lines.size());
        }
    }
}

TEST_CASE("pending connections are dropped when their final line arrives", "[report]") {
    audit::Aggregator aggregator({});
    audit::AuditLine line;
    line.vm = "vm-a";
    line.host = "h";
    std::vector<std::string> ids;
    for (int i = 0; i < 1000; ++i) ids.push_back(fmt_id(i));
    for (const auto& id : ids) {
        line.kind = RecordKind::progress;
        line.connection_id = id;
        aggregator.add(line);
        aggregator.add(line);
    }
    CHECK(aggregator.pending_connections() == 1000);
    for (const auto& id : ids) {
        line.kind = RecordKind::final;
        line.connection_id = id;
        aggregator.add(line);
    }
    CHECK(aggregator.pending_connections() == 0);
    const auto report = aggregator.finish();
    CHECK(report.counts.records == 1000);
    CHECK(report.counts.progress_lines == 2000);
    CHECK(report.counts.unfinished == 0);
}

TEST_CASE("the period is [since, until) by each record's time", "[report]") {
    const std::vector<L> lines = {
        final_line(0, "a", 1, 0), final_line(10, "b", 10, 0), final_line(19, "c", 100, 0), final_line(20, "d", 1000, 0),
        // a tunnel open across --until: its final line is after it, so it is not in the period
        progress_line(15, "e", 5, 5), final_line(25, "e", 10000, 0)};
    struct Case {
        const char* name;
        std::optional<int> since, until;
        std::uint64_t up, records, outside;
    };
    const Case cases[] = {
        {"no period", std::nullopt, std::nullopt, 11111, 5, 0},
        {"since is inclusive", 10, std::nullopt, 11110, 4, 1},
        {"until is exclusive", std::nullopt, 20, 111, 3, 2},
        {"both", 10, 20, 110, 2, 3},
        {"an empty stretch", 1, 9, 0, 0, 5},
    };
    for (const auto& c : cases) {
        DYNAMIC_SECTION(c.name) {
            const auto report = run(lines, period(c.since, c.until));
            std::uint64_t up = 0;
            for (const auto& vm : report.vms) up += vm.traffic.bytes_up;
            CHECK(up == c.up);
            CHECK(report.counts.records == c.records);
            CHECK(report.counts.outside_period == c.outside);
        }
    }
}

TEST_CASE("--vm keeps only those VMs' lines", "[report]") {
    const std::vector<L> lines = {final_line(1, "a", 1, 0, "vm-a"), final_line(2, "b", 10, 0, "vm-b"),
                                  final_line(3, "c", 100, 0, "vm-c"), progress_line(4, "d", 7, 0, "vm-b")};
    audit::ReportFilter filter;
    filter.vms = {"vm-b", "vm-c"};
    const auto report = run(lines, filter);
    REQUIRE(report.vms.size() == 2);
    CHECK(report.vms[0].vm == "vm-b");
    CHECK(report.vms[0].traffic.bytes_up == 17);
    CHECK(report.vms[1].vm == "vm-c");
    CHECK(report.counts.other_vms == 1);
    CHECK(vm_of(report, "vm-a") == nullptr);
}

TEST_CASE("destinations first seen in the period", "[report]") {
    const std::vector<L> lines = {
        final_line(1, "1", 1, 1, "vm-a", "old.blob.core.windows.net"),
        denied_line(2, "vm-a", "denied-before.example", 443, "host_not_allowed"),
        final_line(11, "2", 1, 1, "vm-b", "old.blob.core.windows.net"),
        final_line(12, "3", 2, 3, "vm-b", "new.blob.core.windows.net"),
        final_line(13, "4", 4, 5, "vm-a", "new.blob.core.windows.net"),
        // reached for the first time in the period, having been denied before it
        L{14, RecordKind::final, "5", "vm-a", "denied-before.example", 443, Verdict::report, "host_not_allowed", 6, 7},
        final_line(30, "6", 1, 1, "vm-a", "after.blob.core.windows.net"),
        // a tunnel opened before the period and closed in it: seen before the period
        L{5, RecordKind::progress, "t", "vm-a", "tunnel.blob.core.windows.net", 443, Verdict::allow, "host_allowed", 1, 1},
        final_line(15, "t", 2, 2, "vm-a", "tunnel.blob.core.windows.net"),
    };
    SECTION("with --since: what was not seen before it") {
        const auto report = run(lines, period(10, 20));
        REQUIRE(report.new_destinations.size() == 2);
        CHECK(report.new_destinations[0].host == "new.blob.core.windows.net");
        CHECK(report.new_destinations[0].first_seen == kT0 + 12000);
        CHECK(report.new_destinations[0].first_vm == "vm-b");
        CHECK(report.new_destinations[0].traffic.connections == 2);
        CHECK(report.new_destinations[0].traffic.bytes_up == 6);
        CHECK(report.new_destinations[0].traffic.bytes_down == 8);
        CHECK(report.new_destinations[1].host == "denied-before.example");
    }
    SECTION("without --since: every destination of the period") {
        const auto report = run(lines, period(std::nullopt, 20));
        REQUIRE(report.new_destinations.size() == 4);
        CHECK(report.new_destinations[0].host == "old.blob.core.windows.net");
        CHECK(report.new_destinations[0].first_vm == "vm-a");
        CHECK(report.new_destinations[1].host == "tunnel.blob.core.windows.net");
        CHECK(report.new_destinations[1].first_seen == kT0 + 5000);
        CHECK(report.new_destinations[1].traffic.bytes_up == 2);
    }
}

TEST_CASE("storage accounts are the first label under a storage suffix", "[report]") {
    struct Case {
        const char* host;
        const char* account;  // nullptr: not a storage account
        const char* cloud;
    };
    const Case cases[] = {
        {"acct1.blob.core.windows.net", "acct1", "public"},
        {"acct1.queue.core.windows.net", "acct1", "public"},
        {"acct1.table.core.windows.net", "acct1", "public"},
        {"acct1.file.core.windows.net", "acct1", "public"},
        {"acct1.dfs.core.windows.net", "acct1", "public"},
        {"md-hdd-x1.z12.blob.storage.azure.net", "md-hdd-x1", "public"},
        {"ACCT1.Blob.Core.Windows.NET", "ACCT1", "public"},
        {"gov1.blob.core.usgovcloudapi.net", "gov1", "usgov"},
        {"gov1.queue.core.usgovcloudapi.net", "gov1", "usgov"},
        {"cn1.blob.core.chinacloudapi.cn", "cn1", "china"},
        {"cn1.queue.core.chinacloudapi.cn", "cn1", "china"},
        {"a.b.blob.core.windows.net", "a", "public"},
        {"blob.core.windows.net", nullptr, nullptr},
        {".blob.core.windows.net", nullptr, nullptr},
        {"xblob.core.windows.net", nullptr, nullptr},
        {"acct1.blob.core.windows.net.evil.example", nullptr, nullptr},
        {"acct1.web.core.windows.net", nullptr, nullptr},
        {"login.microsoftonline.com", nullptr, nullptr},
        {"", nullptr, nullptr},
    };
    for (const auto& c : cases) {
        DYNAMIC_SECTION(c.host) {
            const auto name = audit::storage_account_of(c.host);
            if (c.account == nullptr) {
                CHECK_FALSE(name);
            } else {
                REQUIRE(name);
                CHECK(name->account == c.account);
                CHECK(name->endpoint->cloud == c.cloud);
            }
        }
    }
}

TEST_CASE("storage accounts per VM: one row per account and cloud, with its endpoints", "[report]") {
    const auto report = run({
        final_line(1, "1", 10, 100, "vm-a", "acct1.blob.core.windows.net"),
        final_line(2, "2", 1, 1, "vm-a", "ACCT1.queue.core.windows.net"),
        final_line(3, "3", 5, 5, "vm-a", "acct1.blob.core.usgovcloudapi.net"),
        final_line(4, "4", 1000, 1000, "vm-a", "other.blob.core.windows.net"),
        final_line(5, "5", 1, 1, "vm-a", "login.microsoftonline.com"),
        denied_line(6, "vm-a", "denied.blob.core.windows.net", 443, "port_not_allowed"),
    });
    const auto* vm = vm_of(report, "vm-a");
    REQUIRE(vm);
    REQUIRE(vm->storage_accounts.size() == 3);
    CHECK(vm->storage_accounts[0].account == "other");
    CHECK(vm->storage_accounts[1].account == "acct1");
    CHECK(vm->storage_accounts[1].cloud == "public");
    CHECK(vm->storage_accounts[1].endpoint_names() == std::vector<std::string_view>{"blob.core.windows.net", "queue.core.windows.net"});
    CHECK(vm->storage_accounts[1].traffic.connections == 2);
    CHECK(vm->storage_accounts[1].traffic.bytes_up == 11);
    CHECK(vm->storage_accounts[2].account == "acct1");
    CHECK(vm->storage_accounts[2].cloud == "usgov");
}

TEST_CASE("denials: per VM by reason, and by VM, reason and destination", "[report]") {
    const auto report = run({
        denied_line(1, "vm-a", "example.com", 443, "host_not_allowed"),
        denied_line(2, "vm-a", "example.com", 443, "host_not_allowed"),
        denied_line(3, "vm-a", "acct1.blob.core.windows.net", 22, "port_not_allowed"),
        denied_line(4, "vm-b", "", 0, "client_denied"),
        denied_line(5, "vm-b", "example.com", 443, "host_not_allowed", Verdict::report),
        final_line(6, "x", 1, 1, "vm-b"),
    });
    const auto* a = vm_of(report, "vm-a");
    REQUIRE(a);
    CHECK(a->denied == 3);
    CHECK(a->traffic.connections == 3);
    REQUIRE(a->denials_by_reason.size() == 2);
    CHECK(a->denials_by_reason[0].reason == "host_not_allowed");
    CHECK(a->denials_by_reason[0].count == 2);
    CHECK(a->denials_by_reason[1].reason == "port_not_allowed");
    CHECK(a->destinations == 0);  // denied destinations were not reached
    const auto* b = vm_of(report, "vm-b");
    REQUIRE(b);
    CHECK(b->denied == 1);
    CHECK(b->reported == 1);
    CHECK(b->destinations == 2);  // the report-mode one was let through

    REQUIRE(report.denials.size() == 4);
    CHECK(report.denials[0].vm == "vm-a");
    CHECK(report.denials[0].host == "example.com");
    CHECK(report.denials[0].count == 2);
    CHECK(report.denials[0].first == kT0 + 1000);
    CHECK(report.denials[0].last == kT0 + 2000);
    CHECK(report.denials[1].reason == "port_not_allowed");
    CHECK(report.denials[1].port == 22);
    CHECK(report.denials[2].vm == "vm-b");
    CHECK(report.denials[2].verdict == Verdict::deny);
    CHECK(report.denials[2].host.empty());
    CHECK(report.denials[3].verdict == Verdict::report);
}

TEST_CASE("top destinations: the largest by bytes, up to the limit", "[report]") {
    std::vector<L> lines;
    for (int i = 0; i < 15; ++i) {
        lines.push_back(final_line(i, std::to_string(i), static_cast<std::uint64_t>(i) * 10, 0, "vm-a",
                                   std::string("h") + std::to_string(i) + ".blob.core.windows.net"));
    }
    lines.push_back(final_line(20, "x", 0, 0, "vm-a", "h0.blob.core.windows.net"));  // h0: 2 connections, 0 bytes
    SECTION("the default limit") {
        const auto report = run(lines);
        const auto& vm = report.vms.at(0);
        CHECK(vm.destinations == 15);
        REQUIRE(vm.top_destinations.size() == audit::kDefaultTopDestinations);
        CHECK(vm.top_destinations[0].host == "h14.blob.core.windows.net");
        CHECK(vm.top_destinations[0].traffic.bytes_up == 140);
        CHECK(vm.top_destinations[9].host == "h5.blob.core.windows.net");
    }
    SECTION("0: every destination, ties by connections") {
        const auto report = run(lines, {}, 0);
        const auto& top = report.vms.at(0).top_destinations;
        REQUIRE(top.size() == 15);
        CHECK(top[14].host == "h0.blob.core.windows.net");
        CHECK(top[14].traffic.connections == 2);
    }
}

TEST_CASE("bad lines are counted with the lines", "[report]") {
    audit::Aggregator aggregator({});
    aggregator.count_bad_line();
    aggregator.count_bad_line();
    const auto report = aggregator.finish();
    CHECK(report.counts.lines == 2);
    CHECK(report.counts.bad_lines == 2);
    CHECK(report.vms.empty());
}
