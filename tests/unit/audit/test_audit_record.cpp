// The canonical audit line: every field present, under its constant name, and unforgeable.
#include <catch.hpp>

#include <nlohmann/json.hpp>

#include "audit/audit_record.hpp"
#include "audit/fields.hpp"

using egressgate::audit::Record;
namespace field = egressgate::audit::field;

namespace {
Record sample() {
    Record r;
    r.time = std::chrono::system_clock::time_point(std::chrono::milliseconds(1700000000123));
    r.connection_id = "1796158688123-42";
    r.vm = "web-01";
    r.client_ip = "10.0.1.4";
    r.client_port = 50123;
    r.method = "CONNECT";
    r.host = "x.blob.core.windows.net";
    r.port = 443;
    r.resolved = "20.60.1.1";
    r.decision = "allow";
    r.reason = "host_allowed";
    r.rule = "catalog:azure-backup *.blob.core.windows.net";
    r.sni = "x.blob.core.windows.net";
    r.alpn = {"h2", "http/1.1"};
    r.status = 200;
    r.bytes_up = 5000000000ULL;
    r.bytes_down = 7;
    r.connect_ms = 12;
    r.duration_ms = 3456;
    r.close_reason = egressgate::audit::CloseReason::completed;
    return r;
}
}  // namespace

TEST_CASE("an audit line is one JSON object with every field", "[audit]") {
    const std::string line = egressgate::audit::format_line(sample());
    REQUIRE(line.back() == '\n');
    CHECK(line.find('\n') == line.size() - 1);
    const auto j = nlohmann::json::parse(line);
    CHECK(j[std::string(field::time)] == "2023-11-14T22:13:20.123Z");
    CHECK(j[std::string(field::record)] == "final");
    CHECK(j[std::string(field::connection_id)] == "1796158688123-42");
    CHECK(j[std::string(field::vm)] == "web-01");
    CHECK(j[std::string(field::client_ip)] == "10.0.1.4");
    CHECK(j[std::string(field::client_port)] == 50123);
    CHECK(j[std::string(field::method)] == "CONNECT");
    CHECK(j[std::string(field::host)] == "x.blob.core.windows.net");
    CHECK(j[std::string(field::port)] == 443);
    CHECK(j[std::string(field::resolved)] == "20.60.1.1");
    CHECK(j[std::string(field::decision)] == "allow");
    CHECK(j[std::string(field::reason)] == "host_allowed");
    CHECK(j[std::string(field::rule)] == "catalog:azure-backup *.blob.core.windows.net");
    CHECK(j[std::string(field::sni)] == "x.blob.core.windows.net");
    CHECK(j[std::string(field::alpn)] == nlohmann::json::array({"h2", "http/1.1"}));
    CHECK(j[std::string(field::status)] == 200);
    CHECK(j[std::string(field::bytes_up)] == 5000000000ULL);
    CHECK(j[std::string(field::bytes_down)] == 7);
    CHECK(j[std::string(field::connect_ms)] == 12);
    CHECK(j[std::string(field::duration_ms)] == 3456);
    CHECK(j[std::string(field::close_reason)] == "completed");
    CHECK(j.size() == 22);
}


TEST_CASE("times are RFC 3339 UTC with milliseconds across calendar edges", "[audit]") {
    using std::chrono::milliseconds;
    using std::chrono::system_clock;
    const std::pair<std::int64_t, const char*> cases[] = {
        {0, "1970-01-01T00:00:00.000Z"},
        {951782400000 - 1, "2000-02-28T23:59:59.999Z"},
        {951782400000, "2000-02-29T00:00:00.000Z"},  // the leap day of a year divisible by 400
        {4107542399999, "2100-02-28T23:59:59.999Z"},              // 2100 is no leap year
        {4107542400000, "2100-03-01T00:00:00.000Z"},
        {1798761599007, "2026-12-31T23:59:59.007Z"},
    };
    for (const auto& [ms, expected] : cases) {
        Record r = sample();
        r.time = system_clock::time_point(milliseconds(ms));
        const auto j = nlohmann::json::parse(egressgate::audit::format_line(r));
        CHECK(j[std::string(field::time)] == expected);
    }
}

TEST_CASE("client-controlled text cannot break or forge an audit line", "[audit]") {
    struct Case {
        const char* name;
        std::string host;
    };
    const Case cases[] = {
        {"newline", "a\nb"},
        {"forged field", "x\",\"decision\":\"allow"},
        {"control bytes", std::string("a\0b\x01\x1f\x7f", 6)},
        {"backslash", "a\\\"b"},
        {"every byte", [] {
             std::string all;
             for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
             return all + all;  // twice: runs of plain bytes between escapes, both ways round
         }()},
    };
    for (const auto& c : cases) {
        DYNAMIC_SECTION(c.name) {
            Record r = sample();
            r.decision = "deny";
            r.host = c.host;
            const std::string line = egressgate::audit::format_line(r);
            CHECK(line.find('\n') == line.size() - 1);
            const auto j = nlohmann::json::parse(line);
            CHECK(j["host"] == egressgate::audit::escape_client_bytes(c.host));
            CHECK(j["decision"] == "deny");
        }
    }
}

TEST_CASE("client bytes are written as reversible printable ASCII", "[audit]") {
    using egressgate::audit::escape_client_bytes;
    struct Case {
        const char* name;
        std::string raw;
        std::string escaped;
    };
    const Case cases[] = {
        {"plain", "x.blob.core.windows.net", "x.blob.core.windows.net"},
        {"byte >= 0x80", "h\xff" "2", "h\\xff2"},
        {"UTF-8 is bytes too", "\xc3\xa9", "\\xc3\\xa9"},
        {"backslash", "a\\b", "a\\\\b"},
        {"NUL and controls", std::string("a\0b\n", 4), "a\\x00b\\x0a"},
        {"DEL", "\x7f", "\\x7f"},
        {"quote and comma stay", "h2\",x", "h2\",x"},
    };
    for (const auto& c : cases) {
        DYNAMIC_SECTION(c.name) { CHECK(escape_client_bytes(c.raw) == c.escaped); }
    }
}

TEST_CASE("hostile ALPN names stay one array entry each, in valid UTF-8", "[audit]") {
    Record r = sample();
    r.alpn = {"h2,http/1.1", std::string("\xff\xfe\0\"\\", 5), ""};
    const std::string line = egressgate::audit::format_line(r);
    const auto j = nlohmann::json::parse(line);  // throws on invalid UTF-8
    REQUIRE(j["alpn"].size() == 3);
    CHECK(j["alpn"][0] == "h2,http/1.1");
    CHECK(j["alpn"][1] == "\\xff\\xfe\\x00\"\\\\");
    CHECK(j["alpn"][2] == "");
}

TEST_CASE("non-client text that is not UTF-8 still makes a valid line", "[audit]") {
    struct Case {
        const char* name;
        std::string vm;
        bool passes_as_is;
    };
    const Case cases[] = {
        {"valid two-byte", "vm-\xc3\xa9", true},
        {"valid four-byte", "vm-\xf0\x9f\x98\x80", true},
        {"lone continuation byte", "vm-\x80", false},
        {"truncated sequence", "vm-\xe2\x82", false},
        {"overlong slash", "vm-\xc0\xaf", false},
        {"surrogate", "vm-\xed\xa0\x80", false},
        {"above U+10FFFF", "vm-\xf4\x90\x80\x80", false},
    };
    for (const auto& c : cases) {
        DYNAMIC_SECTION(c.name) {
            Record r = sample();
            r.vm = c.vm;
            const auto j = nlohmann::json::parse(egressgate::audit::format_line(r));
            if (c.passes_as_is) CHECK(j["vm"] == c.vm);
            else CHECK(j["vm"].get<std::string>().find("\\x") != std::string::npos);
        }
    }
}

TEST_CASE("a progress record says so and has no close reason yet", "[audit]") {
    Record r = sample();
    r.kind = egressgate::audit::RecordKind::progress;
    r.close_reason = egressgate::audit::CloseReason::open;
    const auto j = nlohmann::json::parse(egressgate::audit::format_line(r));
    CHECK(j["record"] == "progress");
    CHECK(j["close_reason"] == "");
}

// A connection that ends before any decision (a header timeout) has empty views with no data
// behind them; the line must still carry them, as empty strings.
TEST_CASE("a record closed before any decision has empty decision and reason", "[audit]") {
    Record r;
    r.client_ip = "10.0.1.4";
    r.close_reason = egressgate::audit::CloseReason::client_closed;
    REQUIRE(r.decision.data() == nullptr);
    const auto j = nlohmann::json::parse(egressgate::audit::format_line(r));
    CHECK(j[std::string(field::decision)] == "");
    CHECK(j[std::string(field::reason)] == "");
    CHECK(j[std::string(field::close_reason)] == "client_closed");
}

// Runs of plain bytes are copied whole: a byte that needs escaping is found wherever it lies in
// the field, first, last or inside a run, for every byte value.
TEST_CASE("every byte is escaped wherever it lies in a field", "[audit]") {
    const auto escaped = [](unsigned char c) -> std::string {
        constexpr char kHex[] = "0123456789abcdef";
        if (c == '"') return "\\\"";
        if (c == '\\') return "\\\\";
        if (c == '\n') return "\\n";
        if (c == '\r') return "\\r";
        if (c == '\t') return "\\t";
        if (c >= 0x20 && c < 0x7f) return std::string(1, static_cast<char>(c));
        std::string text = c >= 0x80 ? "\\\\x" : "\\u00";  // a lone byte >= 0x80 is not UTF-8
        text += kHex[c >> 4];
        text += kHex[c & 0xf];
        return text;
    };
    for (const std::size_t length : {1u, 2u, 3u, 4u, 5u, 6u, 7u, 8u, 9u, 15u, 16u, 17u, 24u}) {
        for (std::size_t at = 0; at < length; ++at) {
            for (int c = 0; c < 256; ++c) {
                std::string vm(length, 'a');
                vm[at] = static_cast<char>(c);
                Record r = sample();
                r.vm = vm;
                std::string expected = "\"";
                expected.append(field::vm).append("\":\"").append(at, 'a');
                expected.append(escaped(static_cast<unsigned char>(c))).append(length - at - 1, 'a').append("\"");
                const std::string line = egressgate::audit::format_line(r);
                INFO("length " << length << ", byte " << c << " at " << at);
                REQUIRE(line.find(expected) != std::string::npos);
            }
        }
    }
}

// The same for a field the client controls: its bytes go through escape_client_bytes first.
TEST_CASE("every byte of client text is escaped wherever it lies", "[audit]") {
    for (const std::size_t length : {1u, 2u, 3u, 4u, 5u, 6u, 7u, 8u, 9u, 15u, 16u, 17u, 24u}) {
        for (std::size_t at = 0; at < length; ++at) {
            for (int c = 0; c < 256; ++c) {
                std::string host(length, 'a');
                host[at] = static_cast<char>(c);
                Record r = sample();
                r.host = host;
                const auto j = nlohmann::json::parse(egressgate::audit::format_line(r));
                INFO("length " << length << ", byte " << c << " at " << at);
                REQUIRE(j[std::string(field::host)].get<std::string>() == egressgate::audit::escape_client_bytes(host));
            }
        }
    }
}

// Each field asks for room for its worst case: a line far past the inline room, every byte of it
// escaped, is still whole.
TEST_CASE("a line of fields at their longest and worst is whole", "[audit]") {
    Record r = sample();
    const std::string controls(600, '\x01');
    r.vm = controls;
    r.host = controls;
    r.path = controls;
    r.sni = controls;
    r.rule = std::string(600, '\xff');
    r.alpn = {controls, controls};
    const std::string line = egressgate::audit::format_line(r);
    REQUIRE(line.back() == '\n');
    const auto j = nlohmann::json::parse(line);
    CHECK(j[std::string(field::vm)].get<std::string>() == controls);
    std::string not_utf8;
    for (int i = 0; i < 600; ++i) not_utf8 += "\\xff";
    CHECK(j[std::string(field::rule)].get<std::string>() == not_utf8);
    CHECK(j[std::string(field::host)].get<std::string>() == egressgate::audit::escape_client_bytes(controls));
    CHECK(j[std::string(field::alpn)].size() == 2);
    CHECK(j[std::string(field::close_reason)].get<std::string>() == "completed");
}
