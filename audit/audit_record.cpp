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

// The most bytes one byte of a value becomes: "\u00XX" for a control byte in a JSON string;
// "\\xHH" (5) for a byte of client text or one that is not UTF-8.
inline constexpr std::size_t kMaxEscapedBytesPerByte = 6;

char* put(char* w, const char* p, std::size_t n) {
    if (n != 0) std::memcpy(w, p, n);  // an empty view may have no data at all
    return w + n;
}
char* put(char* w, std::string_view s) { return put(w, s.data(), s.size()); }

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

// Whether any of 8 bytes is outside kVerbatim: a control byte, 0x7f and up, '"' or '\\'. Exact
// for "any" (a borrow or carry starts only at such a byte), not for which one.
constexpr bool any_escaped(std::uint64_t x) {
    constexpr std::uint64_t kOnes = 0x0101010101010101;
    constexpr std::uint64_t kHighs = 0x8080808080808080;
    const auto any_zero = [](std::uint64_t v) { return (v - kOnes) & ~v & kHighs; };
    const std::uint64_t control = (x - kOnes * 0x20) & ~x & kHighs;
    const std::uint64_t high = ((x + kOnes) | x) & kHighs;
    return (control | high | any_zero(x ^ (kOnes * '"')) | any_zero(x ^ (kOnes * '\\'))) != 0;
}

// How many bytes from p on are verbatim: eight at a time, then one by one.
std::size_t verbatim_run(const char* p, const char* end) {
    const char* q = p;
    for (std::uint64_t x; end - q >= 8; q += 8) {
        std::memcpy(&x, q, 8);
        if (any_escaped(x)) break;
    }
    while (q != end && kVerbatim.contains[static_cast<unsigned char>(*q)]) ++q;
    return static_cast<std::size_t>(q - p);
}

char* put_hex_byte(char* w, unsigned char c, std::string_view prefix) {
    constexpr char kHex[] = "0123456789abcdef";
    w = put(w, prefix);
    *w++ = kHex[c >> 4];
    *w++ = kHex[c & 0xf];
    return w;
}

// JSON string escaping: quotes, backslash and every control byte; well-formed UTF-8 passes, any
// other byte >= 0x80 becomes the text \xHH, so the line is valid UTF-8 whatever it holds. Room:
// kMaxEscapedBytesPerByte per byte and the quotes.
char* put_json_string(char* w, std::string_view s) {
    *w++ = '"';
    const char* p = s.data();
    const char* const end = p + s.size();
    for (;;) {
        const std::size_t run = verbatim_run(p, end);
        w = put(w, p, run);
        p += run;
        if (p == end) break;
        const auto c = static_cast<unsigned char>(*p);
        if (c >= 0x80) {
            if (const std::size_t length = utf8_sequence_length(p, end)) {
                w = put(w, p, length);
                p += length;
                continue;
            }
        }
        ++p;
        switch (c) {
        case '"': w = put(w, "\\\""); break;
        case '\\': w = put(w, "\\\\"); break;
        case '\n': w = put(w, "\\n"); break;
        case '\r': w = put(w, "\\r"); break;
        case '\t': w = put(w, "\\t"); break;
        default: w = c >= 0x80 ? put_hex_byte(w, c, "\\\\x") : put_hex_byte(w, c, "\\u00");
        }
    }
    *w++ = '"';
    return w;
}

char* put_digits(char* w, unsigned value, int width) {
    for (int i = width - 1; i >= 0; --i) {
        w[i] = static_cast<char>('0' + value % 10);
        value /= 10;
    }
    return w + width;
}

// "2026-12-02T13:46:14.123Z": calendar arithmetic only (no gmtime_r, no format string), for
// every line of every connection. kRfc3339Bytes of room.
inline constexpr std::size_t kRfc3339Bytes = 24;
char* put_rfc3339_utc(char* w, std::chrono::system_clock::time_point tp) {
    using namespace std::chrono;
    const auto ms = floor<milliseconds>(tp);
    const auto day = floor<days>(ms);
    const year_month_day date{day};
    const hh_mm_ss time{ms - day};
    w = put_digits(w, static_cast<unsigned>(static_cast<int>(date.year())), 4);
    *w++ = '-';
    w = put_digits(w, static_cast<unsigned>(date.month()), 2);
    *w++ = '-';
    w = put_digits(w, static_cast<unsigned>(date.day()), 2);
    *w++ = 'T';
    w = put_digits(w, static_cast<unsigned>(time.hours().count()), 2);
    *w++ = ':';
    w = put_digits(w, static_cast<unsigned>(time.minutes().count()), 2);
    *w++ = ':';
    w = put_digits(w, static_cast<unsigned>(time.seconds().count()), 2);
    *w++ = '.';
    w = put_digits(w, static_cast<unsigned>(time.subseconds().count()), 3);
    *w++ = 'Z';
    return w;
}

// escape_client_bytes and then JSON escaping, in one pass and with no string in between. Room:
// kMaxEscapedBytesPerByte per byte and the quotes.
char* put_client_json_string(char* w, std::string_view bytes) {
    *w++ = '"';
    const char* p = bytes.data();
    const char* const end = p + bytes.size();
    for (;;) {
        const std::size_t run = verbatim_run(p, end);
        w = put(w, p, run);
        p += run;
        if (p == end) break;
        const auto c = static_cast<unsigned char>(*p++);
        if (c == '\\') w = put(w, "\\\\\\\\");  // "\\" for the client's backslash, JSON-escaped
        else if (c == '"') w = put(w, "\\\"");
        else w = put_hex_byte(w, c, "\\\\x");
    }
    *w++ = '"';
    return w;
}

void append_hex_byte(LineBuffer& out, unsigned char c, std::string_view prefix) {
    char text[8];
    out.append(text, put_hex_byte(text, c, prefix));
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

// Writes one line field by field: line.string<field::vm>(value). Each field asks for the room its
// value can take at most, once, and is written through a pointer.
class LineBuilder {
public:
    template <const std::string_view& Key>
    void string(std::string_view value) {
        char* w = key_<Key>(kMaxEscapedBytesPerByte * value.size() + 2);
        out_.commit(put_json_string(w, value));
    }
    template <const std::string_view& Key>
    void time(std::chrono::system_clock::time_point value) {
        char* w = key_<Key>(kRfc3339Bytes + 2);
        *w++ = '"';
        w = put_rfc3339_utc(w, value);
        *w++ = '"';
        out_.commit(w);
    }
    template <const std::string_view& Key>
    void client_text(std::string_view value) {
        char* w = key_<Key>(kMaxEscapedBytesPerByte * value.size() + 2);
        out_.commit(put_client_json_string(w, value));
    }
    template <const std::string_view& Key>
    void client_texts(const std::vector<std::string>& values) {
        std::size_t room = 2;
        for (const auto& value : values) room += kMaxEscapedBytesPerByte * value.size() + 3;
        char* w = key_<Key>(room);
        *w++ = '[';
        for (std::size_t i = 0; i < values.size(); ++i) {
            if (i > 0) *w++ = ',';
            w = put_client_json_string(w, values[i]);
        }
        *w++ = ']';
        out_.commit(w);
    }
    template <const std::string_view& Key>
    void number(std::int64_t value) {
        const fmt::format_int digits(value);
        char* w = key_<Key>(digits.size());
        out_.commit(put(w, digits.data(), digits.size()));
    }
    template <const std::string_view& Key>
    void count(std::uint64_t value) {
        const fmt::format_int digits(value);
        char* w = key_<Key>(digits.size());
        out_.commit(put(w, digits.data(), digits.size()));
    }
    explicit LineBuilder(LineBuffer& out) : out_(out) {}
    void finish() { append(out_, "}\n"); }

private:
    // The separator and "key": with room for `value_room` bytes behind them.
    template <const std::string_view& Key>
    char* key_(std::size_t value_room) {
        constexpr std::string_view key = kKey<Key>.view();
        const char separator = out_.size() == 0 ? '{' : ',';
        char* w = out_.reserve(1 + key.size() + value_room);
        *w++ = separator;
        return put(w, key);
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
