#include "audit/audit_record.hpp"

#include <chrono>

#include <fmt/format.h>

#include "audit/fields.hpp"
#include "audit/utf8.hpp"

namespace egressgate::audit {
namespace {

bool needs_escape(unsigned char c) { return c < 0x20 || c == '"' || c == '\\' || c == 0x7f || c >= 0x80; }

void append_hex_byte(std::string& out, unsigned char c, std::string_view prefix) {
    constexpr char kHex[] = "0123456789abcdef";
    out += prefix;
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 0xf]);
}

// JSON string escaping: quotes, backslash and every control byte; well-formed UTF-8 passes, any
// other byte >= 0x80 becomes the text \xHH, so the line is valid UTF-8 whatever it holds. Runs
// of plain bytes are appended at once: this runs for every field of every connection.
void append_json_string(std::string& out, std::string_view s) {
    out.push_back('"');
    std::size_t run = 0;
    for (std::size_t i = 0; i < s.size(); ++i) {
        const auto c = static_cast<unsigned char>(s[i]);
        if (!needs_escape(c)) continue;
        if (c >= 0x80) {
            if (const std::size_t length = utf8_sequence_length(s.data() + i, s.data() + s.size())) {
                i += length - 1;
                continue;
            }
        }
        out.append(s.substr(run, i - run));
        run = i + 1;
        switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        default:
            if (c >= 0x80) append_hex_byte(out, c, "\\\\x");
            else append_hex_byte(out, c, "\\u00");
        }
    }
    out.append(s.substr(run));
    out.push_back('"');
}

void append_digits(std::string& out, unsigned value, int width) {
    char digits[10];
    for (int i = width - 1; i >= 0; --i) {
        digits[i] = static_cast<char>('0' + value % 10);
        value /= 10;
    }
    out.append(digits, static_cast<std::size_t>(width));
}

// "2026-12-02T13:46:14.123Z": calendar arithmetic only (no gmtime_r, no format string), for
// every line of every connection.
void append_rfc3339_utc(std::string& out, std::chrono::system_clock::time_point tp) {
    using namespace std::chrono;
    const auto ms = floor<milliseconds>(tp);
    const auto day = floor<days>(ms);
    const year_month_day date{day};
    const hh_mm_ss time{ms - day};
    append_digits(out, static_cast<unsigned>(static_cast<int>(date.year())), 4);
    out.push_back('-');
    append_digits(out, static_cast<unsigned>(date.month()), 2);
    out.push_back('-');
    append_digits(out, static_cast<unsigned>(date.day()), 2);
    out.push_back('T');
    append_digits(out, static_cast<unsigned>(time.hours().count()), 2);
    out.push_back(':');
    append_digits(out, static_cast<unsigned>(time.minutes().count()), 2);
    out.push_back(':');
    append_digits(out, static_cast<unsigned>(time.seconds().count()), 2);
    out.push_back('.');
    append_digits(out, static_cast<unsigned>(time.subseconds().count()), 3);
    out.push_back('Z');
}

// escape_client_bytes and then JSON escaping, in one pass and with no string in between.
void append_client_json_string(std::string& out, std::string_view bytes) {
    out.push_back('"');
    std::size_t run = 0;
    for (std::size_t i = 0; i < bytes.size(); ++i) {
        const auto c = static_cast<unsigned char>(bytes[i]);
        if (c >= 0x20 && c < 0x7f && c != '\\' && c != '"') continue;
        out.append(bytes.substr(run, i - run));
        run = i + 1;
        if (c == '\\') out += "\\\\\\\\";  // "\\" for the client's backslash, JSON-escaped
        else if (c == '"') out += "\\\"";
        else append_hex_byte(out, c, "\\\\x");
    }
    out.append(bytes.substr(run));
    out.push_back('"');
}

// Room for a typical line, so that building one allocates once.
constexpr std::size_t kTypicalLineBytes = 512;

// Field names are plain ASCII (audit/fields.hpp): they are written as they are.
class LineBuilder {
public:
    LineBuilder() { out_.reserve(kTypicalLineBytes); }
    void string(std::string_view key, std::string_view value) {
        key_(key);
        append_json_string(out_, value);
    }
    void time(std::string_view key, std::chrono::system_clock::time_point value) {
        key_(key);
        out_.push_back('"');
        append_rfc3339_utc(out_, value);
        out_.push_back('"');
    }
    void client_text(std::string_view key, std::string_view value) {
        key_(key);
        append_client_json_string(out_, value);
    }
    void client_texts(std::string_view key, const std::vector<std::string>& values) {
        key_(key);
        out_.push_back('[');
        for (std::size_t i = 0; i < values.size(); ++i) {
            if (i > 0) out_.push_back(',');
            append_client_json_string(out_, values[i]);
        }
        out_.push_back(']');
    }
    void count(std::string_view key, std::uint64_t value) {
        key_(key);
        const fmt::format_int digits(value);
        out_.append(digits.data(), digits.size());
    }
    void number(std::string_view key, std::int64_t value) {
        key_(key);
        const fmt::format_int digits(value);
        out_.append(digits.data(), digits.size());
    }
    std::string finish() && {
        out_ += "}\n";
        return std::move(out_);
    }

private:
    void key_(std::string_view key) {
        out_.push_back(out_.empty() ? '{' : ',');
        out_.push_back('"');
        out_.append(key);
        out_ += "\":";
    }
    std::string out_;
};

}  // namespace

std::string_view to_string(CloseReason reason) {
    switch (reason) {
    case CloseReason::open: return "";
    case CloseReason::completed: return "completed";
    case CloseReason::client_reset: return "client_reset";
    case CloseReason::upstream_reset: return "upstream_reset";
    case CloseReason::idle_timeout: return "idle_timeout";
    case CloseReason::header_timeout: return "header_timeout";
    case CloseReason::client_closed: return "client_closed";
    case CloseReason::malformed_request: return "malformed_request";
    case CloseReason::rejected: return "rejected";
    case CloseReason::client_denied: return "client_denied";
    case CloseReason::overloaded: return "overloaded";
    case CloseReason::shutdown: return "shutdown";
    case CloseReason::tls_handshake_failed: return "tls_handshake_failed";
    case CloseReason::resource_exhausted: return "resource_exhausted";
    case CloseReason::internal_error: return "internal_error";
    }
    return "internal_error";
}

std::string_view to_string(RecordKind kind) { return kind == RecordKind::progress ? "progress" : "final"; }

std::string escape_client_bytes(std::string_view bytes) {
    std::string out;
    out.reserve(bytes.size());
    for (const char ch : bytes) {
        const auto c = static_cast<unsigned char>(ch);
        if (c == '\\') out += "\\\\";
        else if (c >= 0x20 && c < 0x7f) out.push_back(ch);
        else append_hex_byte(out, c, "\\x");
    }
    return out;
}

std::string format_line(const Record& r) {
    LineBuilder line;
    line.time(field::time, r.time);
    line.string(field::record, to_string(r.kind));
    line.string(field::connection_id, r.connection_id);
    line.string(field::vm, r.vm);
    line.string(field::client_ip, r.client_ip);
    line.number(field::client_port, r.client_port);
    line.string(field::method, r.method);
    line.client_text(field::host, r.host);
    line.number(field::port, r.port);
    line.client_text(field::path, r.path);
    line.string(field::resolved, r.resolved);
    line.string(field::decision, r.decision);
    line.string(field::reason, r.reason);
    line.string(field::rule, r.rule);
    line.client_text(field::sni, r.sni);
    line.client_texts(field::alpn, r.alpn);
    line.number(field::status, r.status);
    line.count(field::bytes_up, r.bytes_up);
    line.count(field::bytes_down, r.bytes_down);
    line.number(field::connect_ms, r.connect_ms);
    line.number(field::duration_ms, r.duration_ms);
    line.string(field::close_reason, to_string(r.close_reason));
    return std::move(line).finish();
}

}  // namespace egressgate::audit
