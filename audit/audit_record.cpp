#include "audit/audit_record.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>

#include <fmt/format.h>

#include "audit/fields.hpp"
#include "audit/utf8.hpp"

namespace egressgate::audit {
namespace {

void append(LineBuffer& out, std::string_view s) { out.append(s.data(), s.size()); }

// Which bytes each escaping copies as they are, as tables: these run for every byte of every
// field of every connection's line.
struct ByteSet {
    bool contains[256] = {};
};

// Printable ASCII but the quote and the backslash: what a JSON string holds as it is, and what
// passes both escape_client_bytes and JSON escaping unchanged. Bytes >= 0x80 are looked at apart.
constexpr ByteSet kVerbatim = [] {
    ByteSet set;
    for (int c = 0x20; c < 0x7f; ++c) set.contains[c] = c != '"' && c != '\\';
    return set;
}();

// Appends the longest run of verbatim bytes from `p`; returns where it stopped.
const char* append_run(LineBuffer& out, const char* p, const char* end) {
    const char* run = p;
    while (p != end && kVerbatim.contains[static_cast<unsigned char>(*p)]) ++p;
    out.append(run, p);
    return p;
}

void append_hex_byte(LineBuffer& out, unsigned char c, std::string_view prefix) {
    constexpr char kHex[] = "0123456789abcdef";
    append(out, prefix);
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 0xf]);
}

// JSON string escaping: quotes, backslash and every control byte; well-formed UTF-8 passes, any
// other byte >= 0x80 becomes the text \xHH, so the line is valid UTF-8 whatever it holds.
void append_json_string(LineBuffer& out, std::string_view s) {
    out.push_back('"');
    const char* const end = s.data() + s.size();
    for (const char* p = append_run(out, s.data(), end); p != end;
         p = append_run(out, p, end)) {
        const auto c = static_cast<unsigned char>(*p);
        if (c >= 0x80) {
            if (const std::size_t length = utf8_sequence_length(p, end)) {
                out.append(p, p + length);
                p += length;
                continue;
            }
        }
        ++p;
        switch (c) {
        case '"': append(out, "\\\""); break;
        case '\\': append(out, "\\\\"); break;
        case '\n': append(out, "\\n"); break;
        case '\r': append(out, "\\r"); break;
        case '\t': append(out, "\\t"); break;
        default:
            if (c >= 0x80) append_hex_byte(out, c, "\\\\x");
            else append_hex_byte(out, c, "\\u00");
        }
    }
    out.push_back('"');
}

void append_digits(LineBuffer& out, unsigned value, int width) {
    char digits[10];
    for (int i = width - 1; i >= 0; --i) {
        digits[i] = static_cast<char>('0' + value % 10);
        value /= 10;
    }
    out.append(digits, static_cast<std::size_t>(width));
}

// "2026-12-02T13:46:14.123Z": calendar arithmetic only (no gmtime_r, no format string), for
// every line of every connection.
void append_rfc3339_utc(LineBuffer& out, std::chrono::system_clock::time_point tp) {
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
void append_client_json_string(LineBuffer& out, std::string_view bytes) {
    out.push_back('"');
    const char* const end = bytes.data() + bytes.size();
    for (const char* p = append_run(out, bytes.data(), end); p != end;
         p = append_run(out, p, end)) {
        const auto c = static_cast<unsigned char>(*p++);
        if (c == '\\') append(out, "\\\\\\\\");  // "\\" for the client's backslash, JSON-escaped
        else if (c == '"') append(out, "\\\"");
        else append_hex_byte(out, c, "\\\\x");
    }
    out.push_back('"');
}

// A field's name as the line writes it, "name": (quotes and colon), made at compile time. Field
// names are plain ASCII (audit/fields.hpp): they need no escaping.
template <std::size_t N>
struct FieldKey {
    constexpr explicit FieldKey(std::string_view name) {
        text[0] = '"';
        for (std::size_t i = 0; i < N; ++i) text[i + 1] = name[i];
        text[N + 1] = '"';
        text[N + 2] = ':';
    }
    constexpr std::string_view view() const { return {text, N + 3}; }
    char text[N + 3] = {};
};

template <const std::string_view& Name>
inline constexpr FieldKey<Name.size()> kKey{Name};

// Writes one line field by field: line.string<field::vm>(value).
class LineBuilder {
public:
    template <const std::string_view& Key>
    void string(std::string_view value) {
        key_(kKey<Key>.view());
        append_json_string(out_, value);
    }
    template <const std::string_view& Key>
    void time(std::chrono::system_clock::time_point value) {
        key_(kKey<Key>.view());
        out_.push_back('"');
        append_rfc3339_utc(out_, value);
        out_.push_back('"');
    }
    template <const std::string_view& Key>
    void client_text(std::string_view value) {
        key_(kKey<Key>.view());
        append_client_json_string(out_, value);
    }
    template <const std::string_view& Key>
    void client_texts(const std::vector<std::string>& values) {
        key_(kKey<Key>.view());
        out_.push_back('[');
        for (std::size_t i = 0; i < values.size(); ++i) {
            if (i > 0) out_.push_back(',');
            append_client_json_string(out_, values[i]);
        }
        out_.push_back(']');
    }
    template <const std::string_view& Key>
    void count(std::uint64_t value) {
        key_(kKey<Key>.view());
        const fmt::format_int digits(value);
        out_.append(digits.data(), digits.size());
    }
    template <const std::string_view& Key>
    void number(std::int64_t value) {
        key_(kKey<Key>.view());
        const fmt::format_int digits(value);
        out_.append(digits.data(), digits.size());
    }
    explicit LineBuilder(LineBuffer& out) : out_(out) {}
    void finish() { append(out_, "}\n"); }

private:
    void key_(std::string_view key) {
        out_.push_back(out_.size() == 0 ? '{' : ',');
        append(out_, key);
    }
    LineBuffer& out_;
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
    LineBuffer out;
    for (const char ch : bytes) {
        const auto c = static_cast<unsigned char>(ch);
        if (c == '\\') append(out, "\\\\");
        else if (c >= 0x20 && c < 0x7f) out.push_back(ch);
        else append_hex_byte(out, c, "\\x");
    }
    return out.str();
}

namespace {

void write_fields(LineBuilder& line, const Record& r) {
    line.time<field::time>(r.time);
    line.string<field::record>(to_string(r.kind));
    line.string<field::connection_id>(r.connection_id);
    line.string<field::vm>(r.vm);
    line.string<field::client_ip>(r.client_ip);
    line.number<field::client_port>(r.client_port);
    line.string<field::method>(r.method);
    line.client_text<field::host>(r.host);
    line.number<field::port>(r.port);
    line.client_text<field::path>(r.path);
    line.string<field::resolved>(r.resolved);
    line.string<field::decision>(r.decision);
    line.string<field::reason>(r.reason);
    line.string<field::rule>(r.rule);
    line.client_text<field::sni>(r.sni);
    line.client_texts<field::alpn>(r.alpn);
    line.number<field::status>(r.status);
    line.count<field::bytes_up>(r.bytes_up);
    line.count<field::bytes_down>(r.bytes_down);
    line.number<field::connect_ms>(r.connect_ms);
    line.number<field::duration_ms>(r.duration_ms);
    line.string<field::close_reason>(to_string(r.close_reason));
}

}  // namespace

FormattedLine::FormattedLine(const Record& record) {
    LineBuilder line(line_);
    write_fields(line, record);
    line.finish();
}

std::string format_line(const Record& record) { return std::string(FormattedLine(record).view()); }

}  // namespace egressgate::audit
