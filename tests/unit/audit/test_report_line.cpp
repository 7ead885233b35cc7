// Audit lines read back for `egressgate report`: what the writer writes parses to what it
// meant, and anything else is refused with a message that says what was wrong.
#include <catch.hpp>

#include <string>

#include "audit/audit_record.hpp"
#include "audit/report_line.hpp"

namespace audit = egressgate::audit;

namespace {

constexpr audit::UnixMillis k20261201 = 1796083200000;      // 2026-12-01T00:00:00Z
constexpr audit::UnixMillis k20261201T10 = 1796119200000;   // 2026-12-01T10:00:00Z

// A line as the writer makes it, with `replace` put in place of `"vm":"web-01"` (the text
// between the braces is otherwise the writer's).
std::string line_with(const std::string& find, const std::string& replace) {
    std::string line =
        R"({"time":"2026-12-01T10:00:00.123Z","record":"final","connection_id":"1796119200000-7","vm":"web-01",)"
        R"("client_ip":"10.0.1.4","client_port":50123,"method":"CONNECT","host":"acct1.blob.core.windows.net",)"
        R"("port":443,"resolved":"20.60.1.1","decision":"allow","reason":"host_allowed","rule":"catalog:azure-backup",)"
        R"("sni":"acct1.blob.core.windows.net","alpn":["h2","http/1.1"],"status":200,"bytes_up":5000000000,)"
        R"("bytes_down":7,"connect_ms":12,"duration_ms":3456,"close_reason":"completed"})";
    if (find.empty()) return line;
    const auto at = line.find(find);
    REQUIRE(at != std::string::npos);
    return line.replace(at, find.size(), replace);
}

}  // namespace

TEST_CASE("a line the writer wrote parses to its fields", "[report]") {
    audit::Record r;
    r.time = std::chrono::system_clock::time_point(std::chrono::milliseconds(k20261201T10 + 123));
    r.kind = audit::RecordKind::progress;
    r.connection_id = "1796119200000-42";
    r.vm = "web-\xc3\xa9";  // UTF-8 passes
    r.client_ip = "10.0.1.4";
    r.method = "CONNECT";
    r.host = "a\\b\"c\n";  // client text: escaped by the writer, read back as written
    r.port = 8443;
    r.decision = "report";
    r.reason = "host_not_allowed";
    r.alpn = {"h2"};
    r.bytes_up = 9223372036854775807ULL;  // the writer's largest (it writes int64)
    r.bytes_down = 0;
    const std::string line = audit::format_line(r);

    audit::AuditLineParser parser;
    audit::AuditLine out;
    REQUIRE(parser.parse(std::string_view(line).substr(0, line.size() - 1), out));
    CHECK(out.time == k20261201T10 + 123);
    CHECK(out.kind == audit::RecordKind::progress);
    CHECK(out.connection_id == "1796119200000-42");
    CHECK(out.vm == "web-\xc3\xa9");
    CHECK(out.host == audit::escape_client_bytes(r.host));
    CHECK(out.port == 8443);
    CHECK(out.verdict == audit::Verdict::report);
    CHECK(out.reason == "host_not_allowed");
    CHECK(out.bytes_up == 9223372036854775807ULL);
    CHECK(out.bytes_down == 0);
}

TEST_CASE("good lines: JSON the writer might not write, but JSON", "[report]") {
    struct Case {
        const char* name;
        std::string line;
        std::string vm;
        std::string host;
        audit::RecordKind kind;
    };
    const Case cases[] = {
        {"as written", line_with("", ""), "web-01", "acct1.blob.core.windows.net", audit::RecordKind::final},
        {"unknown fields of every kind", line_with(R"("vm":"web-01")",
                                                   R"("path":"/x?sig=REDACTED","n":null,"t":true,"f":false,)"
                                                   R"("e":-1.5e+3,"o":{"a":[1,{"b":[]}],"c":{}},"vm":"web-01")"),
         "web-01", "acct1.blob.core.windows.net", audit::RecordKind::final},
        {"whitespace and a CR", " \t" + line_with(R"(,"vm":"web-01",)", " , \"vm\" : \"web-01\" , ") + " \r", "web-01",
         "acct1.blob.core.windows.net", audit::RecordKind::final},
        {"escapes decoded", line_with(R"("vm":"web-01")", R"("vm":"w\u00e9b\ud83d\ude00\"\\\/\b\f\n\r\t")"),
         "w\xc3\xa9" "b\xf0\x9f\x98\x80\"\\/\b\f\n\r\t", "acct1.blob.core.windows.net", audit::RecordKind::final},
        {"a key with escapes", line_with(R"("vm":"web-01")", R"("\u0076m":"web-01")"), "web-01",
         "acct1.blob.core.windows.net", audit::RecordKind::final},
        {"a line from before progress records", line_with(R"("record":"final","connection_id":"1796119200000-7",)", ""),
         "web-01", "acct1.blob.core.windows.net", audit::RecordKind::final},
        {"a progress record", line_with(R"("record":"final")", R"("record":"progress")"), "web-01",
         "acct1.blob.core.windows.net", audit::RecordKind::progress},
        {"an escaped host", line_with(R"("host":"acct1.blob.core.windows.net")", R"("host":"a\\x00b")"), "web-01",
         "a\\x00b", audit::RecordKind::final},
    };
    audit::AuditLineParser parser;
    for (const auto& c : cases) {
        DYNAMIC_SECTION(c.name) {
            audit::AuditLine out;
            INFO(c.line);
            REQUIRE(parser.parse(c.line, out));
            INFO(parser.error());
            CHECK(out.vm == c.vm);
            CHECK(out.host == c.host);
            CHECK(out.kind == c.kind);
            CHECK(out.time == k20261201T10 + 123);
            CHECK(out.bytes_up == 5000000000ULL);
        }
    }
}

TEST_CASE("bad lines are refused, saying what is wrong", "[report]") {
    struct Case {
        const char* name;
        std::string line;
        std::string error;
    };
    const std::string good = line_with("", "");
    const Case cases[] = {
        {"empty", "", "empty line"},
        {"blank", " \r", "empty line"},
        {"an array", "[]", "not a JSON object"},
        {"plain text", "hello", "not a JSON object"},
        {"cut short by a crash", good.substr(0, 200), "unterminated string"},
        {"cut short after a value", good.substr(0, good.find(",\"port\"")), "expected ',' or '}'"},
        {"text after the object", good + "x", "text after the object"},
        {"two lines run together", good + good, "text after the object"},
        {"an empty object", "{}", "missing field: time"},
        {"no vm", line_with(R"("vm":"web-01",)", ""), "missing field: vm"},
        {"no bytes_down", line_with(R"(,"bytes_down":7)", ""), "missing field: bytes_down"},
        {"a progress record without connection_id",
         line_with(R"("record":"final","connection_id":"1796119200000-7")", R"("record":"progress")"),
         "missing field: connection_id"},
        {"port as a string", line_with(R"("port":443)", R"("port":"443")"), "port: not a non-negative integer"},
        {"port over 65535", line_with(R"("port":443)", R"("port":65536)"), "port: number out of range"},
        {"negative bytes", line_with(R"("bytes_down":7)", R"("bytes_down":-7)"), "bytes_down: not a non-negative integer"},
        {"fractional bytes", line_with(R"("bytes_down":7)", R"("bytes_down":7.5)"), "bytes_down: not a non-negative integer"},
        {"bytes with an exponent", line_with(R"("bytes_down":7)", R"("bytes_down":7e3)"), "bytes_down: not a non-negative integer"},
        {"the largest 64-bit count is fine, one more is not", line_with(R"("bytes_down":7)", R"("bytes_down":18446744073709551616)"), "bytes_down: number out of range"},
        {"a leading zero", line_with(R"("bytes_down":7)", R"("bytes_down":07)"), "bytes_down: invalid number (leading zero)"},
        {"vm twice", line_with(R"("vm":"web-01")", R"("vm":"web-01","vm":"web-02")"), "vm: appears twice"},
        {"vm null", line_with(R"("vm":"web-01")", R"("vm":null)"), "vm: not a string"},
        {"an unknown decision", line_with(R"("decision":"allow")", R"("decision":"permit")"), "decision: not \"allow\", \"deny\" or \"report\""},
        {"an unknown record kind", line_with(R"("record":"final")", R"("record":"partial")"), "record: not \"final\" or \"progress\""},
        {"a time that is no date", line_with("2026-12-01T10", "2026-13-01T10"), "time: not an RFC 3339 date-time"},
        {"a date for a time", line_with("2026-12-01T10:00:00.123Z", "2026-12-01"), "time: not an RFC 3339 date-time"},
        {"a control byte in a string", line_with("web-01", "web\x01"), "vm: control character in a string"},
        {"bytes that are not UTF-8", line_with("web-01", "web\xff"), "vm: invalid UTF-8 in a string"},
        {"an overlong UTF-8 form", line_with("web-01", "web\xc0\xaf"), "vm: invalid UTF-8 in a string"},
        {"an encoded surrogate", line_with("web-01", "web\xed\xa0\x80"), "vm: invalid UTF-8 in a string"},
        {"a lone high surrogate", line_with("web-01", "web\\ud800"), "vm: high surrogate without its low surrogate"},
        {"a lone low surrogate", line_with("web-01", "web\\udc00"), "vm: lone low surrogate"},
        {"a bad escape", line_with("web-01", "web\\q"), "vm: invalid escape in a string"},
        {"a short \\u escape", line_with("web-01", "web\\u12"), "vm: invalid \\u escape"},
        {"an unknown field with a bad value", line_with(R"("vm":"web-01")", R"("x":tru,"vm":"web-01")"), "x: invalid value"},
        {"an unknown field with a bad number", line_with(R"("vm":"web-01")", R"("x":1.,"vm":"web-01")"), "x: invalid value"},
        {"an unknown field nested too deeply",
         line_with(R"("vm":"web-01")", "\"x\":" + std::string(40, '[') + std::string(40, ']') + ",\"vm\":\"web-01\""),
         "x: nested too deeply"},
        {"an unclosed array", line_with(R"("alpn":["h2","http/1.1"])", R"("alpn":["h2" "http/1.1"])"), "alpn: expected ',' or ']'"},
        {"a key without a value", line_with(R"("vm":"web-01")", R"("vm")"), "expected ':'"},
        {"a bare key", line_with(R"("vm":"web-01")", R"(vm:"web-01")"), "expected a field name"},
        {"a trailing comma", good.substr(0, good.size() - 1) + ",}", "expected a field name"},
    };
    audit::AuditLineParser parser;
    for (const auto& c : cases) {
        DYNAMIC_SECTION(c.name) {
            audit::AuditLine out;
            INFO(c.line);
            CHECK_FALSE(parser.parse(c.line, out));
            CHECK(parser.error().substr(0, c.error.size()) == c.error);
        }
    }
}

TEST_CASE("report times: RFC 3339 and dates", "[report]") {
    struct Case {
        const char* text;
        std::optional<audit::UnixMillis> expected;
    };
    const Case cases[] = {
        {"2026-12-01T10:00:00Z", k20261201T10},
        {"2026-12-01", k20261201},
        {"2026-12-01T10:00:00.123Z", k20261201T10 + 123},
        {"2026-12-01T10:00:00.1Z", k20261201T10 + 100},
        {"2026-12-01T10:00:00.123999Z", k20261201T10 + 123},
        {"2026-12-01t10:00:00z", k20261201T10},
        {"2026-12-01 10:00:00Z", k20261201T10},
        {"2026-12-01T11:00:00+01:00", k20261201T10},
        {"2026-12-01T09:30:00-00:30", k20261201T10},
        {"1970-01-01T00:00:00Z", 0},
        {"2024-02-29", 1709164800000},
        {"2026-02-29", std::nullopt},
        {"2026-04-31", std::nullopt},
        {"2026-12-01T24:00:00Z", std::nullopt},
        {"2026-12-01T10:60:00Z", std::nullopt},
        {"2026-12-01T10:00:00", std::nullopt},
        {"2026-12-01T10:00Z", std::nullopt},
        {"2026-12-01T10:00:00.Z", std::nullopt},
        {"2026-12-01T10:00:00+0100", std::nullopt},
        {"2026-12-01T10:00:00+24:00", std::nullopt},
        {"2026-12-01T10:00:00Zjunk", std::nullopt},
        {"2026-1-01", std::nullopt},
        {"2026-12-1", std::nullopt},
        {"+2026-12-01", std::nullopt},
        {"yesterday", std::nullopt},
        {"", std::nullopt},
    };
    for (const auto& c : cases) {
        DYNAMIC_SECTION(c.text) { CHECK(audit::parse_report_time(c.text) == c.expected); }
    }
}

TEST_CASE("report times print as the writer prints them", "[report]") {
    CHECK(audit::format_report_time(0) == "1970-01-01T00:00:00.000Z");
    CHECK(audit::format_report_time(k20261201T10 + 123) == "2026-12-01T10:00:00.123Z");
    CHECK(audit::format_report_time(-1) == "1969-12-31T23:59:59.999Z");
    CHECK(audit::parse_report_time(audit::format_report_time(k20261201T10 + 5)) == k20261201T10 + 5);
}

TEST_CASE("byte counts go up to 2^64 - 1", "[report]") {
    audit::AuditLineParser parser;
    audit::AuditLine out;
    REQUIRE(parser.parse(line_with(R"("bytes_down":7)", R"("bytes_down":18446744073709551615)"), out));
    CHECK(out.bytes_down == 18446744073709551615ULL);
    REQUIRE(parser.parse(line_with(R"("bytes_down":7)", R"("bytes_down":0)"), out));
    CHECK(out.bytes_down == 0);
}
