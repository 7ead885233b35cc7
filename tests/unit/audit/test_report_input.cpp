// Audit files read back: plain and gzip alike, rotated files in any order, bad lines named by
// file and line, long lines without holding them.
#include <catch.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "audit/report_command.hpp"
#include "audit/report_input.hpp"

namespace audit = egressgate::audit;

namespace {

std::string fixture(const std::string& name) { return std::string(EGRESSGATE_FIXTURES) + "/report/" + name; }

std::vector<std::string> lines_of(const std::string& path, std::string* error = nullptr) {
    audit::AuditFileReader reader(path);
    std::vector<std::string> lines;
    audit::AuditFileReader::Line line;
    while (reader.next(line)) lines.push_back(line.too_long ? "<too long>" : std::string(line.text));
    if (error) *error = reader.error();
    return lines;
}

// A file in a fresh temporary directory, removed at the end of the test.
class TempFile {
public:
    explicit TempFile(const std::string& content) {
        path_ = std::filesystem::temp_directory_path() /
                ("egressgate-report-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter_++));
        std::ofstream(path_, std::ios::binary) << content;
    }
    ~TempFile() { std::filesystem::remove(path_); }
    std::string path() const { return path_.string(); }

private:
    static inline int counter_ = 0;
    std::filesystem::path path_;
};

struct Run {
    int status;
    std::string out;
    std::string err;
};

Run run_report(audit::ReportRequest request) {
    std::ostringstream out, err;
    const int status = audit::run_report(request, out, err);
    return {status, out.str(), err.str()};
}

nlohmann::json json_report(std::vector<std::string> files, audit::ReportFilter filter = {}) {
    audit::ReportRequest request;
    request.files = std::move(files);
    request.filter = std::move(filter);
    request.format = audit::ReportFormat::json;
    const auto run = run_report(request);
    INFO(run.err);
    REQUIRE(run.status == 0);
    return nlohmann::json::parse(run.out);
}

const nlohmann::json& vm_json(const nlohmann::json& report, const std::string& name) {
    for (const auto& vm : report["vms"]) {
        if (vm["vm"] == name) return vm;
    }
    FAIL("no VM " << name << " in " << report.dump());
    throw;
}

}  // namespace

TEST_CASE("plain and gzip files give the same lines", "[report]") {
    const auto plain = lines_of(fixture("rotated/audit.jsonl.1"));
    REQUIRE(plain.size() == 3);
    std::string error;
    const auto two_members = lines_of(fixture("two_members.jsonl.gz"), &error);
    CHECK(error.empty());
    REQUIRE(two_members.size() == 6);  // both gzip members, one after the other
    CHECK(std::vector<std::string>(two_members.begin() + 3, two_members.end()) == plain);
    CHECK(lines_of(fixture("rotated/audit.jsonl.2.gz")).size() == 3);
}

TEST_CASE("gzip cut short gives its whole lines, then says so", "[report]") {
    audit::AuditFileReader reader(fixture("cut_short.jsonl.gz"));
    CHECK(reader.gzip());
    audit::AuditFileReader::Line line;
    std::uint64_t lines = 0;
    while (reader.next(line)) {
        ++lines;
        CHECK(line.text.back() == '}');  // never a piece of a line
    }
    CHECK(lines > 100);
    CHECK(reader.error() == "gzip data cut short");
    CHECK(reader.data_error());
}

TEST_CASE("line splitting: no final newline, empty lines, long lines", "[report]") {
    struct Case {
        const char* name;
        std::string content;
        std::vector<std::string> lines;
    };
    const std::string long_line(audit::kMaxAuditLineBytes + 1, 'x');
    const std::string longest(audit::kMaxAuditLineBytes, 'y');
    const Case cases[] = {
        {"empty file", "", {}},
        {"one line", "a\n", {"a"}},
        {"no newline at the end", "a\nb", {"a", "b"}},
        {"empty lines", "\n\na\n", {"", "", "a"}},
        {"a line over the limit, then one more", long_line + "\nnext\n", {"<too long>", "next"}},
        {"the longest line there may be", longest + "\n", {longest}},
        {"a line over the limit at the end", "a\n" + long_line, {"a", "<too long>"}},
        {"a line far over the limit", std::string(3 * audit::kMaxAuditLineBytes + 17, 'z') + "\nnext", {"<too long>", "next"}},
        {"one byte", "{", {"{"}},
        {"gzip's first byte alone", "\x1f", {"\x1f"}},
    };
    for (const auto& c : cases) {
        DYNAMIC_SECTION(c.name) {
            TempFile file(c.content);
            std::string error;
            CHECK(lines_of(file.path(), &error) == c.lines);
            CHECK(error.empty());
        }
    }
}

TEST_CASE("a file that cannot be read is an error", "[report]") {
    audit::AuditFileReader missing("/nonexistent/audit.jsonl");
    audit::AuditFileReader::Line line;
    CHECK_FALSE(missing.next(line));
    CHECK(missing.error() == "No such file or directory");
    audit::AuditFileReader directory(EGRESSGATE_FIXTURES);
    CHECK_FALSE(directory.next(line));
    CHECK(directory.error() == "Is a directory");
    CHECK_FALSE(directory.data_error());

    audit::ReportRequest request;
    request.files = {fixture("rotated/audit.jsonl"), "/nonexistent/audit.jsonl"};
    const auto run = run_report(request);
    CHECK(run.status == 1);
    CHECK(run.out.empty());
    CHECK(run.err == "egressgate report: /nonexistent/audit.jsonl: No such file or directory\n");
}

TEST_CASE("rotated files are read oldest first, whatever order they are given in", "[report]") {
    const std::vector<std::string> newest_first = {fixture("rotated/audit.jsonl"), fixture("rotated/audit.jsonl.1"),
                                                   fixture("rotated/audit.jsonl.2.gz")};
    const auto report = json_report(newest_first);
    CHECK(report["input"]["files"] == nlohmann::json::array({newest_first[2], newest_first[1], newest_first[0]}));
    CHECK(report["input"]["lines"] == 8);
    CHECK(report["input"]["bad_lines"] == 0);
    CHECK(report["input"]["unfinished_connections"] == 1);  // vm-a's tunnel, still open
    const auto& a = vm_json(report, "vm-a");
    CHECK(a["connections"] == 4);
    CHECK(a["bytes_up"] == 1108);
    CHECK(a["bytes_down"] == 3010);
    const auto& b = vm_json(report, "vm-b");
    CHECK(b["connections"] == 2);  // its tunnel across the rotation counts once, at its final line
    CHECK(b["bytes_up"] == 50);
    CHECK(b["bytes_down"] == 60);
    CHECK(b["denied"] == 1);
    CHECK(b["denials_by_reason"] == nlohmann::json{{"host_not_allowed", 1}});
    CHECK(b["storage_accounts"][0]["account"] == "acct2");
    CHECK(b["storage_accounts"][0]["endpoints"] == nlohmann::json::array({"queue.core.windows.net"}));
}

TEST_CASE("the period and --vm over rotated files", "[report]") {
    const std::vector<std::string> files = {fixture("rotated/audit.jsonl.2.gz"), fixture("rotated/audit.jsonl.1"),
                                            fixture("rotated/audit.jsonl")};
    SECTION("since a date") {
        audit::ReportFilter filter;
        filter.since = audit::parse_report_time("2026-12-02");
        const auto report = json_report(files, filter);
        CHECK(vm_json(report, "vm-a")["bytes_up"] == 1008);
        CHECK(vm_json(report, "vm-b")["bytes_up"] == 50);
        CHECK(vm_json(report, "vm-b")["denied"] == 0);
        // acct2's tunnel was open before the period (a progress line): not new
        REQUIRE(report["new_destinations"].size() == 1);
        CHECK(report["new_destinations"][0]["host"] == "new.blob.core.windows.net");
        CHECK(report["new_destinations"][0]["first_seen"] == "2026-12-03T01:00:00.000Z");
    }
    SECTION("until a time") {
        audit::ReportFilter filter;
        filter.until = audit::parse_report_time("2026-12-02T00:00:00Z");
        const auto report = json_report(files, filter);
        CHECK(vm_json(report, "vm-a")["bytes_up"] == 100);
        CHECK(vm_json(report, "vm-b")["connections"] == 1);
        CHECK(vm_json(report, "vm-b")["bytes_up"] == 0);
        CHECK(report["denials"].size() == 1);
    }
    SECTION("one VM") {
        audit::ReportFilter filter;
        filter.vms = {"vm-b"};
        const auto report = json_report(files, filter);
        REQUIRE(report["vms"].size() == 1);
        CHECK(report["vms"][0]["vm"] == "vm-b");
        CHECK(report["input"]["other_vms"] == 4);
    }
}

TEST_CASE("bad lines are named by file and line, and skipped or fatal", "[report]") {
    const std::string path = fixture("bad_lines.jsonl");
    const std::string expected_warnings = path + ":2: unterminated string\n" + path +
                                          ":3: port: not a non-negative integer\n" + path +
                                          ":4: missing field: bytes_up\n"
                                          "egressgate report: 3 bad lines skipped\n";
    audit::ReportRequest request;
    request.files = {path};
    request.format = audit::ReportFormat::json;
    SECTION("skipped by default, counted") {
        const auto run = run_report(request);
        CHECK(run.status == 0);
        CHECK(run.err == expected_warnings);
        const auto report = nlohmann::json::parse(run.out);
        CHECK(report["input"]["bad_lines"] == 3);
        CHECK(report["input"]["lines"] == 5);
        CHECK(report["vms"][0]["bytes_up"] == 3);
    }
    SECTION("fatal with --on-bad-line fail: the first one, and no report") {
        request.on_bad_line = audit::BadLinePolicy::fail;
        const auto run = run_report(request);
        CHECK(run.status == 1);
        CHECK(run.err == path + ":2: unterminated string\n");
        CHECK(run.out.empty());
    }
    SECTION("gzip cut short is a bad line at the line where it broke") {
        request.files = {fixture("cut_short.jsonl.gz")};
        const auto run = run_report(request);
        CHECK(run.status == 0);
        CHECK(run.err.find(fixture("cut_short.jsonl.gz") + ":") == 0);
        CHECK(run.err.find(": gzip data cut short\n") != std::string::npos);
        CHECK(nlohmann::json::parse(run.out)["input"]["bad_lines"] == 1);
    }
    SECTION("only the first ones are named") {
        std::string many;
        for (int i = 0; i < 25; ++i) many += "oops\n";
        TempFile file(many);
        request.files = {file.path()};
        const auto run = run_report(request);
        CHECK(run.status == 0);
        CHECK(run.err.find(file.path() + ":10: not a JSON object\n") != std::string::npos);
        CHECK(run.err.find(file.path() + ":11:") == std::string::npos);
        CHECK(run.err.find("egressgate report: 25 bad lines skipped (the first 10 named above)\n") != std::string::npos);
    }
    SECTION("control characters in a message never reach the terminal") {
        TempFile file("{\"\\u001b[31m\":x}\n");  // an escape sequence, decoded from \u001b
        request.files = {file.path()};
        const auto run = run_report(request);
        CHECK(run.err.find('\x1b') == std::string::npos);
        CHECK(run.err.find(file.path() + ":1: \\x1b[31m: invalid value\n") == 0);
    }
}
