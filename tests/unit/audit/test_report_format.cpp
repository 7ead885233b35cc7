// The report's four forms: what a terminal, a spreadsheet, a script and a browser get, and that
// text from the audit trail cannot break out of any of them.
#include <catch.hpp>

#include <fstream>
#include <regex>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "audit/report_format.hpp"

namespace audit = egressgate::audit;

namespace {

constexpr audit::UnixMillis kT0 = 1796119200000;  // 2026-12-01T10:00:00Z

audit::AuditLine line(int at_s, std::string_view vm, std::string_view host, std::uint64_t up, std::uint64_t down,
                      audit::Verdict verdict = audit::Verdict::allow, std::string_view reason = "host_allowed",
                      std::uint16_t port = 443) {
    audit::AuditLine l;
    l.time = kT0 + at_s * 1000;
    l.vm = vm;
    l.host = host;
    l.port = port;
    l.verdict = verdict;
    l.reason = reason;
    l.bytes_up = up;
    l.bytes_down = down;
    return l;
}

// Two VMs, storage accounts, a denial, a report-mode pass: every section has rows.
audit::Report sample(std::string_view vm_b = "vm-b", std::string_view odd_host = "acct2.queue.core.windows.net") {
    audit::ReportFilter filter;
    filter.since = kT0;
    audit::Aggregator aggregator(filter, 2);
    aggregator.add(line(-10, "vm-a", "acct1.blob.core.windows.net", 1, 1));
    aggregator.add(line(1, "vm-a", "acct1.blob.core.windows.net", 1536, 3221225472));
    aggregator.add(line(2, "vm-a", "login.microsoftonline.com", 100, 200));
    aggregator.add(line(3, "vm-a", "zz.blob.core.windows.net", 1, 1));
    aggregator.add(line(4, vm_b, odd_host, 5, 6));
    aggregator.add(line(5, vm_b, "example.com", 0, 0, audit::Verdict::deny, "host_not_allowed"));
    aggregator.add(line(6, vm_b, "example.org", 7, 8, audit::Verdict::report, "host_not_allowed"));
    return aggregator.finish({"audit.jsonl"});
}

std::string render(const audit::Report& report, audit::ReportFormat format) {
    std::ostringstream out;
    audit::write_report(report, format, out);
    return out.str();
}

std::string read_fixture(const std::string& name) {
    std::ifstream in(std::string(EGRESSGATE_FIXTURES) + "/report/" + name, std::ios::binary);
    REQUIRE(in);
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
}

}  // namespace

TEST_CASE("human units", "[report]") {
    struct Case {
        std::uint64_t bytes;
        const char* text;
    };
    const Case cases[] = {
        {0, "0 B"},
        {1023, "1023 B"},
        {1024, "1.0 KiB"},
        {1536, "1.5 KiB"},
        {1048575, "1.0 MiB"},  // 1023.999 KiB would read 1024.0 KiB
        {1048576, "1.0 MiB"},
        {3221225472, "3.0 GiB"},
        {5000000000000, "4.5 TiB"},
        {18446744073709551615ULL, "16.0 EiB"},
    };
    for (const auto& c : cases) {
        DYNAMIC_SECTION(c.bytes) { CHECK(audit::human_bytes(c.bytes) == c.text); }
    }
}

TEST_CASE("destinations and terminal-safe text", "[report]") {
    CHECK(audit::destination_text("acct1.blob.core.windows.net", 443) == "acct1.blob.core.windows.net:443");
    CHECK(audit::destination_text("2001:db8::1", 443) == "[2001:db8::1]:443");
    CHECK(audit::destination_text("", 0) == "-");

    struct Case {
        const char* name;
        std::string text;
        std::string safe;
    };
    const Case cases[] = {
        {"plain", "web-01", "web-01"},
        {"UTF-8 passes", "w\xc3\xa9" "b", "w\xc3\xa9" "b"},
        {"an escape sequence", "\x1b[2J", "\\x1b[2J"},
        {"newline and tab", "a\nb\tc", "a\\x0ab\\x09c"},
        {"DEL", "a\x7f", "a\\x7f"},
        {"a C1 control (CSI)", "a\xc2\x9b" "2J", "a\\xc2\\x9b2J"},
        {"not UTF-8", "a\xff\xc3", "a\\xff\\xc3"},
    };
    for (const auto& c : cases) {
        DYNAMIC_SECTION(c.name) { CHECK(audit::terminal_safe(c.text) == c.safe); }
    }
    CHECK(audit::display_width("w\xc3\xa9" "b") == 3);
}

TEST_CASE("table: aligned columns for a terminal", "[report]") {
    CHECK(render(sample(), audit::ReportFormat::table) == read_fixture("expected_table.txt"));
}

TEST_CASE("table: a VM name cannot move the cursor", "[report]") {
    const std::string table = render(sample("vm-\x1b[2J"), audit::ReportFormat::table);
    CHECK(table.find('\x1b') == std::string::npos);
    CHECK(table.find("vm-\\x1b[2J") != std::string::npos);
}

TEST_CASE("csv: a section per table, each row naming its section", "[report]") {
    const std::string csv = render(sample(), audit::ReportFormat::csv);
    CHECK(csv == read_fixture("expected.csv"));
    // Every row of a section has as many cells as its header.
    std::istringstream rows(csv);
    std::string row;
    std::size_t columns = 0;
    while (std::getline(rows, row)) {
        if (row.empty()) {
            columns = 0;
            continue;
        }
        const auto cells = static_cast<std::size_t>(std::count(row.begin(), row.end(), ',')) + 1;
        if (columns == 0) columns = cells;
        CHECK(cells == columns);
    }
}

TEST_CASE("csv: quoting, and no formulas for a spreadsheet to run", "[report]") {
    const std::string csv = render(sample("=HYPERLINK(\"http://x\")", "-x,\"y\".blob.core.windows.net"), audit::ReportFormat::csv);
    CHECK(csv.find("vm_totals,\"'=HYPERLINK(\"\"http://x\"\")\",") != std::string::npos);
    CHECK(csv.find(",\"'-x,\"\"y\"\".blob.core.windows.net\",443,") != std::string::npos);
}

TEST_CASE("json: one object with every section", "[report]") {
    const auto j = nlohmann::json::parse(render(sample(), audit::ReportFormat::json));
    CHECK(j["period"]["since"] == "2026-12-01T10:00:00.000Z");
    CHECK(j["period"]["until"].is_null());
    CHECK(j["input"]["lines"] == 7);
    CHECK(j["input"]["records"] == 6);
    CHECK(j["input"]["outside_period"] == 1);
    REQUIRE(j["vms"].size() == 2);
    const auto& a = j["vms"][0];
    CHECK(a["vm"] == "vm-a");
    CHECK(a["connections"] == 3);
    CHECK(a["bytes_up"] == 1637);
    CHECK(a["bytes_down"] == 3221225673ULL);
    CHECK(a["destinations"] == 3);
    CHECK(a["top_destinations"].size() == 2);
    CHECK(a["top_destinations"][0] == nlohmann::json{{"host", "acct1.blob.core.windows.net"}, {"port", 443},
                                                     {"connections", 1}, {"bytes_up", 1536}, {"bytes_down", 3221225472}});
    CHECK(a["storage_accounts"][0]["account"] == "acct1");
    CHECK(a["storage_accounts"][1]["account"] == "zz");
    const auto& b = j["vms"][1];
    CHECK(b["denials_by_reason"] == nlohmann::json{{"host_not_allowed", 1}});
    CHECK(b["reported"] == 1);
    CHECK(j["new_destinations"].size() == 4);  // all but acct1, seen before --since
    CHECK(j["denials"].size() == 2);
    CHECK(j["new_destinations"][0]["first_seen"] == "2026-12-01T10:00:02.000Z");
    CHECK(j["denials"][0]["decision"] == "deny");
    CHECK(j["denials"][0]["first"] == "2026-12-01T10:00:05.000Z");
    CHECK(j["denials"][0]["last"] == "2026-12-01T10:00:05.000Z");
    CHECK(j["denials"][1]["decision"] == "report");
}

TEST_CASE("html: one self-contained page with a chart, and escaped text", "[report]") {
    const std::string page = render(sample("<script>alert(1)</script>"), audit::ReportFormat::html);
    CHECK(page.rfind("<!DOCTYPE html>", 0) == 0);
    CHECK(page.find("</html>\n") == page.size() - 8);
    CHECK(page.find("Content-Security-Policy\" content=\"default-src 'none'") != std::string::npos);
    // Nothing to fetch: no scripts, no links, no external references of any kind.
    for (const char* forbidden : {"<script", "src=", "href=", "http://", "https://", "url(", "@import"}) {
        INFO(forbidden);
        CHECK(page.find(forbidden) == std::string::npos);
    }
    CHECK(page.find("&lt;script&gt;alert(1)&lt;/script&gt;") != std::string::npos);
    // The bytes-per-VM chart: a bar per VM, exact bytes in the tables' data-value.
    CHECK(page.find("<svg id=\"bytes-chart\"") != std::string::npos);
    CHECK(page.find("<g data-vm=\"vm-a\">") != std::string::npos);
    CHECK(page.find("<svg id=\"denials-chart\"") != std::string::npos);
    CHECK(page.find("<tr data-vm=\"vm-a\"><td>vm-a</td><td class=\"n\" data-value=\"3\">3</td>") != std::string::npos);
    CHECK(page.find("data-value=\"3221225673\"") != std::string::npos);
    for (const char* id : {"vm-totals", "denials-by-reason", "top-destinations", "storage-accounts", "new-destinations", "denials"}) {
        INFO(id);
        CHECK(page.find(std::string("<table id=\"") + id + "\">") != std::string::npos);
    }
}

TEST_CASE("every form of an empty report", "[report]") {
    audit::Aggregator aggregator({});
    const auto report = aggregator.finish({});
    const std::string table = render(report, audit::ReportFormat::table);
    CHECK(table.find("Totals per VM\n(none)\n") != std::string::npos);
    CHECK(nlohmann::json::parse(render(report, audit::ReportFormat::json))["vms"].empty());
    CHECK(render(report, audit::ReportFormat::csv).find("section,vm,connections") != std::string::npos);
    CHECK(render(report, audit::ReportFormat::html).find("<p class=\"none\">none</p>") != std::string::npos);
}
