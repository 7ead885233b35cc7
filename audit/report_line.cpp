#include "audit/report_line.hpp"

#include "audit/utf8.hpp"

#include <bit>
#include <chrono>
#include <cstring>

#include <fmt/format.h>

#include "audit/fields.hpp"

namespace egressgate::audit {
namespace {

using Field = AuditLineParser::Field;

struct KnownField {
    std::string_view name;
    Field field;
};

constexpr KnownField kKnownFields[] = {
    {field::time, Field::time},         {field::record, Field::record},     {field::connection_id, Field::connection_id},
    {field::vm, Field::vm},             {field::host, Field::host},         {field::port, Field::port},
    {field::decision, Field::decision}, {field::reason, Field::reason},     {field::bytes_up, Field::bytes_up},
    {field::bytes_down, Field::bytes_down},
};

// What every line must have: "record" and "connection_id" came with progress records, so lines
// written before them count as final lines (a progress line without its connection_id is bad).
constexpr Field kRequiredFields[] = {Field::time,     Field::vm,     Field::host,     Field::port,
                                     Field::decision, Field::reason, Field::bytes_up, Field::bytes_down};

// An unknown field is named in a message by this much of its key at most.
constexpr std::size_t kKeyInMessageBytes = 64;

constexpr std::uint32_t bit(Field f) { return 1u << static_cast<unsigned>(f); }

std::string_view name_of(Field f) {
    for (const auto& known : kKnownFields) {
        if (known.field == f) return known.name;
    }
    return "?";
}

// The field a key names, if the report reads it: a table indexed by length and a mix of first
// and last letters (no two known names share a slot: checked below), then one comparison.
// Every key of every line comes here.
class KnownFieldIndex {
public:
    constexpr KnownFieldIndex() {
        for (auto& row : slots_) {
            for (auto& slot : row) slot = kNone;
        }
        for (std::size_t i = 0; i < std::size(kKnownFields); ++i) {
            const auto name = kKnownFields[i].name;
            slots_[name.size()][slot(name)] = static_cast<std::uint8_t>(i);
        }
    }
    constexpr std::optional<Field> find(std::string_view key) const {
        if (key.empty() || key.size() >= kLengths) return std::nullopt;
        const std::uint8_t i = slots_[key.size()][slot(key)];
        if (i == kNone || kKnownFields[i].name != key) return std::nullopt;
        return kKnownFields[i].field;
    }

private:
    static constexpr std::size_t kLengths = 16;  // longer than every known name
    static constexpr std::size_t kLetters = 32;
    static constexpr std::uint8_t kNone = 0xff;
    static constexpr std::size_t slot(std::string_view key) {
        return (static_cast<unsigned char>(key.front()) * 3u + static_cast<unsigned char>(key.back())) % kLetters;
    }
    std::uint8_t slots_[kLengths][kLetters]{};
};

constexpr KnownFieldIndex kKnownFieldIndex;

// The index must tell every known name apart: a name that lost its slot to another is not found.
constexpr bool known_fields_distinct() {
    for (const auto& known : kKnownFields) {
        if (kKnownFieldIndex.find(known.name) != known.field) return false;
    }
    return true;
}
static_assert(known_fields_distinct(), "two known field names share a slot of KnownFieldIndex");
static_assert(std::endian::native == std::endian::little, "Cursor::skip_plain_ascii reads words little-endian");

std::optional<Field> known_field(std::string_view key) { return kKnownFieldIndex.find(key); }

int digit(char c) { return c >= '0' && c <= '9' ? c - '0' : -1; }

int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

void append_utf8(std::string& out, std::uint32_t code_point) {
    if (code_point < 0x80) {
        out.push_back(static_cast<char>(code_point));
    } else if (code_point < 0x800) {
        out.push_back(static_cast<char>(0xc0 | (code_point >> 6)));
        out.push_back(static_cast<char>(0x80 | (code_point & 0x3f)));
    } else if (code_point < 0x10000) {
        out.push_back(static_cast<char>(0xe0 | (code_point >> 12)));
        out.push_back(static_cast<char>(0x80 | ((code_point >> 6) & 0x3f)));
        out.push_back(static_cast<char>(0x80 | (code_point & 0x3f)));
    } else {
        out.push_back(static_cast<char>(0xf0 | (code_point >> 18)));
        out.push_back(static_cast<char>(0x80 | ((code_point >> 12) & 0x3f)));
        out.push_back(static_cast<char>(0x80 | ((code_point >> 6) & 0x3f)));
        out.push_back(static_cast<char>(0x80 | (code_point & 0x3f)));
    }
}

// A bounds-checked cursor over one line. Every read checks the end; a failure leaves a fixed
// message in error (the caller adds the field name).
class Cursor {
public:
    explicit Cursor(std::string_view text) : p_(text.data()), end_(text.data() + text.size()) {}

    bool at_end() const { return p_ == end_; }
    char peek() const { return p_ < end_ ? *p_ : '\0'; }
    void skip_whitespace() {
        while (p_ < end_ && (*p_ == ' ' || *p_ == '\t' || *p_ == '\r' || *p_ == '\n')) ++p_;
    }
    bool consume(char c) {
        if (p_ < end_ && *p_ == c) {
            ++p_;
            return true;
        }
        return false;
    }
    bool consume_word(std::string_view word) {
        if (static_cast<std::size_t>(end_ - p_) < word.size() || std::string_view(p_, word.size()) != word) return false;
        p_ += word.size();
        return true;
    }

    // A string at the cursor (which is at its '"'). Without escapes, the view points into the
    // line; with them, the decoded text goes to scratch and the view points there.
    bool string(std::string_view& out, std::string& scratch, const char*& error) {
        ++p_;  // the opening quote
        const char* start = p_;
        while (p_ < end_) {
            skip_plain_ascii();
            if (p_ == end_) break;
            const auto c = static_cast<unsigned char>(*p_);
            if (c == '"') {
                out = std::string_view(start, static_cast<std::size_t>(p_ - start));
                ++p_;
                return true;
            }
            if (c == '\\') {
                scratch.assign(start, p_);
                return escaped_string(out, scratch, error);
            }
            if (!plain_byte(c, error)) return false;
        }
        error = "unterminated string";
        return false;
    }

    // A non-negative integer that fits `max`: no sign, fraction or exponent.
    bool unsigned_integer(std::uint64_t max, std::uint64_t& out, const char*& error) {
        if (digit(peek()) < 0) {
            error = "not a non-negative integer";
            return false;
        }
        if (*p_ == '0' && p_ + 1 < end_ && digit(p_[1]) >= 0) {
            error = "invalid number (leading zero)";
            return false;
        }
        std::uint64_t value = 0;
        while (p_ < end_ && digit(*p_) >= 0) {
            const auto d = static_cast<std::uint64_t>(digit(*p_));
            if (value > (max - d) / 10) {
                error = "number out of range";
                return false;
            }
            value = value * 10 + d;
            ++p_;
        }
        if (p_ < end_ && (*p_ == '.' || *p_ == 'e' || *p_ == 'E')) {
            error = "not a non-negative integer";
            return false;
        }
        out = value;
        return true;
    }

    // Any JSON value, checked and skipped (what the report does not read).
    bool skip_value(int depth, std::string& scratch, const char*& error) {
        if (depth > kMaxSkippedNesting) {
            error = "nested too deeply";
            return false;
        }
        switch (peek()) {
        case '"': {
            std::string_view ignored;
            return string(ignored, scratch, error);
        }
        case '{': return skip_container('}', depth, scratch, error);
        case '[': return skip_container(']', depth, scratch, error);
        case 't': return word("true", error);
        case 'f': return word("false", error);
        case 'n': return word("null", error);
        default: return skip_number(error);
        }
    }

private:
    // Skips string bytes that need no look (printable ASCII but '"' and '\\') eight at a time:
    // most of a line is such bytes, and this is the parser's hot loop. SWAR tests on a word
    // flag a byte below 0x20 or above 0x7f, or equal to '"' or '\\'; the lowest flag is always
    // a true one (a false one only ever sits above a true one), so the skip stops exactly there.
    void skip_plain_ascii() {
        constexpr std::uint64_t kOnes = 0x0101010101010101ULL;
        constexpr std::uint64_t kHighs = 0x8080808080808080ULL;
        const auto zero_byte = [](std::uint64_t v) { return (v - kOnes) & ~v & kHighs; };
        while (end_ - p_ >= 8) {
            std::uint64_t word;
            std::memcpy(&word, p_, sizeof word);
            const std::uint64_t stop = ((word - kOnes * 0x20) & ~word & kHighs)  // below 0x20 (and 0x80+)
                                       | (word & kHighs)                             // 0x80 and above
                                       | zero_byte(word ^ (kOnes * '"')) | zero_byte(word ^ (kOnes * '\\'));
            if (stop != 0) {
                p_ += std::countr_zero(stop) / 8;  // little-endian: the lowest address first
                return;
            }
            p_ += 8;
        }
    }

    // One byte (or UTF-8 sequence) of string content outside an escape.
    bool plain_byte(unsigned char c, const char*& error) {
        if (c < 0x20) {
            error = "control character in a string";
            return false;
        }
        if (c < 0x80) {
            ++p_;
            return true;
        }
        const std::size_t length = utf8_sequence_length(p_, end_);
        if (length == 0) {
            error = "invalid UTF-8 in a string";
            return false;
        }
        p_ += length;
        return true;
    }

    bool escaped_string(std::string_view& out, std::string& scratch, const char*& error) {
        while (p_ < end_) {
            const auto c = static_cast<unsigned char>(*p_);
            if (c == '"') {
                ++p_;
                out = scratch;
                return true;
            }
            if (c != '\\') {
                const char* from = p_;
                if (!plain_byte(c, error)) return false;
                scratch.append(from, p_);
                continue;
            }
            ++p_;
            if (p_ == end_) break;
            const char e = *p_++;
            switch (e) {
            case '"': scratch.push_back('"'); break;
            case '\\': scratch.push_back('\\'); break;
            case '/': scratch.push_back('/'); break;
            case 'b': scratch.push_back('\b'); break;
            case 'f': scratch.push_back('\f'); break;
            case 'n': scratch.push_back('\n'); break;
            case 'r': scratch.push_back('\r'); break;
            case 't': scratch.push_back('\t'); break;
            case 'u': {
                std::uint32_t unit = 0;
                if (!hex4(unit, error)) return false;
                if (unit >= 0xdc00 && unit <= 0xdfff) {
                    error = "lone low surrogate in a string";
                    return false;
                }
                if (unit >= 0xd800 && unit <= 0xdbff) {
                    std::uint32_t low = 0;
                    if (!consume('\\') || !consume('u') || !hex4(low, error) || low < 0xdc00 || low > 0xdfff) {
                        error = "high surrogate without its low surrogate in a string";
                        return false;
                    }
                    unit = 0x10000 + ((unit - 0xd800) << 10) + (low - 0xdc00);
                }
                append_utf8(scratch, unit);
                break;
            }
            default: error = "invalid escape in a string"; return false;
            }
        }
        error = "unterminated string";
        return false;
    }

    bool hex4(std::uint32_t& out, const char*& error) {
        if (end_ - p_ < 4) {
            error = "invalid \\u escape in a string";
            return false;
        }
        std::uint32_t value = 0;
        for (int i = 0; i < 4; ++i) {
            const int h = hex_digit(p_[i]);
            if (h < 0) {
                error = "invalid \\u escape in a string";
                return false;
            }
            value = value * 16 + static_cast<std::uint32_t>(h);
        }
        p_ += 4;
        out = value;
        return true;
    }

    bool word(std::string_view w, const char*& error) {
        if (consume_word(w)) return true;
        error = "invalid value";
        return false;
    }

    // RFC 8259 number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
    bool skip_number(const char*& error) {
        error = "invalid value";
        consume('-');
        if (consume('0')) {
            // no more integer digits after a leading zero
        } else if (digit(peek()) > 0) {
            while (digit(peek()) >= 0) ++p_;
        } else {
            return false;
        }
        if (consume('.')) {
            if (digit(peek()) < 0) return false;
            while (digit(peek()) >= 0) ++p_;
        }
        if (consume('e') || consume('E')) {
            if (!consume('+')) consume('-');
            if (digit(peek()) < 0) return false;
            while (digit(peek()) >= 0) ++p_;
        }
        if (digit(peek()) >= 0) return false;  // "01"
        return true;
    }

    bool skip_container(char close, int depth, std::string& scratch, const char*& error) {
        ++p_;  // '{' or '['
        skip_whitespace();
        if (consume(close)) return true;
        while (true) {
            if (close == '}') {
                std::string_view ignored;
                if (peek() != '"') {
                    error = "expected a field name";
                    return false;
                }
                if (!string(ignored, scratch, error)) return false;
                skip_whitespace();
                if (!consume(':')) {
                    error = "expected ':'";
                    return false;
                }
                skip_whitespace();
            }
            if (!skip_value(depth + 1, scratch, error)) return false;
            skip_whitespace();
            if (consume(close)) return true;
            if (!consume(',')) {
                error = close == '}' ? "expected ',' or '}'" : "expected ',' or ']'";
                return false;
            }
            skip_whitespace();
        }
    }

    const char* p_;
    const char* end_;
};

// Exactly `count` digits at p, as a number.
bool fixed_digits(std::string_view text, std::size_t at, std::size_t count, int& out) {
    if (at + count > text.size()) return false;
    int value = 0;
    for (std::size_t i = at; i < at + count; ++i) {
        const int d = digit(text[i]);
        if (d < 0) return false;
        value = value * 10 + d;
    }
    out = value;
    return true;
}

// "YYYY-MM-DD" at the start of text: days since the epoch.
std::optional<std::int64_t> parse_date(std::string_view text) {
    int y = 0, m = 0, d = 0;
    if (!fixed_digits(text, 0, 4, y) || text.size() < 10 || text[4] != '-' || !fixed_digits(text, 5, 2, m) ||
        text[7] != '-' || !fixed_digits(text, 8, 2, d)) {
        return std::nullopt;
    }
    const std::chrono::year_month_day date{std::chrono::year{y}, std::chrono::month{static_cast<unsigned>(m)},
                                           std::chrono::day{static_cast<unsigned>(d)}};
    if (!date.ok()) return std::nullopt;
    return std::chrono::sys_days(date).time_since_epoch().count();
}

constexpr std::int64_t kMillisPerDay = 86'400'000;

// RFC 3339 section 5.6 date-time.
std::optional<UnixMillis> parse_date_time(std::string_view text) {
    const auto days = parse_date(text);
    if (!days || text.size() < 19) return std::nullopt;
    if (text[10] != 'T' && text[10] != 't' && text[10] != ' ') return std::nullopt;
    int hour = 0, minute = 0, second = 0;
    if (!fixed_digits(text, 11, 2, hour) || text[13] != ':' || !fixed_digits(text, 14, 2, minute) ||
        text[16] != ':' || !fixed_digits(text, 17, 2, second)) {
        return std::nullopt;
    }
    if (hour > 23 || minute > 59 || second > 60) return std::nullopt;  // 60: a leap second
    std::size_t at = 19;
    std::int64_t millis = 0;
    if (at < text.size() && text[at] == '.') {
        ++at;
        std::size_t digits = 0;
        while (at < text.size() && digit(text[at]) >= 0) {
            if (digits < 3) millis = millis * 10 + digit(text[at]);
            ++digits;
            ++at;
        }
        if (digits == 0) return std::nullopt;
        for (std::size_t k = digits; k < 3; ++k) millis *= 10;
    }
    std::int64_t offset_minutes = 0;
    if (at < text.size() && (text[at] == 'Z' || text[at] == 'z')) {
        ++at;
    } else if (at < text.size() && (text[at] == '+' || text[at] == '-')) {
        int offset_hour = 0, offset_minute = 0;
        if (!fixed_digits(text, at + 1, 2, offset_hour) || at + 3 >= text.size() || text[at + 3] != ':' ||
            !fixed_digits(text, at + 4, 2, offset_minute) || offset_hour > 23 || offset_minute > 59) {
            return std::nullopt;
        }
        offset_minutes = (text[at] == '+' ? 1 : -1) * (offset_hour * 60 + offset_minute);
        at += 6;
    } else {
        return std::nullopt;
    }
    if (at != text.size()) return std::nullopt;
    const std::int64_t seconds = hour * 3600 + minute * 60 + second - offset_minutes * 60;
    return *days * kMillisPerDay + seconds * 1000 + millis;
}

}  // namespace

std::optional<UnixMillis> parse_report_time(std::string_view text) {
    if (text.size() == 10) {
        if (const auto days = parse_date(text)) return *days * kMillisPerDay;
        return std::nullopt;
    }
    return parse_date_time(text);
}

std::string format_report_time(UnixMillis time) {
    using namespace std::chrono;
    const sys_time<milliseconds> tp{milliseconds{time}};
    const auto day = floor<days>(tp);
    const year_month_day date{day};
    const hh_mm_ss clock{tp - day};
    return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", static_cast<int>(date.year()),
                       static_cast<unsigned>(date.month()), static_cast<unsigned>(date.day()), clock.hours().count(),
                       clock.minutes().count(), clock.seconds().count(), clock.subseconds().count());
}

std::string_view to_string(Verdict verdict) {
    switch (verdict) {
    case Verdict::allow: return "allow";
    case Verdict::deny: return "deny";
    case Verdict::report: return "report";
    }
    return "deny";
}

bool AuditLineParser::parse(std::string_view line, AuditLine& out) {
    out = AuditLine{};
    Cursor cursor(line);
    const char* error = nullptr;
    std::uint32_t seen = 0;
    const auto fail = [this](std::string_view what, std::string_view detail = {}) {
        error_.assign(what);
        if (!detail.empty()) error_.append(": ").append(detail);
        return false;
    };
    cursor.skip_whitespace();
    if (cursor.at_end()) return fail("empty line");
    if (!cursor.consume('{')) return fail("not a JSON object");
    cursor.skip_whitespace();
    if (!cursor.consume('}')) {
        while (true) {
            std::string_view key;
            if (cursor.peek() != '"') return fail("expected a field name");
            if (!cursor.string(key, key_, error)) return fail(error);
            const auto field = known_field(key);
            cursor.skip_whitespace();
            if (!cursor.consume(':')) return fail("expected ':'");
            cursor.skip_whitespace();
            if (!field) {
                if (!cursor.skip_value(1, skipped_, error)) return fail(key.substr(0, kKeyInMessageBytes), error);
            } else {
                const std::string_view name = name_of(*field);
                if (seen & bit(*field)) return fail(name, "appears twice");
                seen |= bit(*field);
                std::uint64_t number = 0;
                std::string_view text;
                switch (*field) {
                case Field::port:
                    if (!cursor.unsigned_integer(65535, number, error)) return fail(name, error);
                    out.port = static_cast<std::uint16_t>(number);
                    break;
                case Field::bytes_up:
                case Field::bytes_down:
                    if (!cursor.unsigned_integer(UINT64_MAX, number, error)) return fail(name, error);
                    (*field == Field::bytes_up ? out.bytes_up : out.bytes_down) = number;
                    break;
                default:
                    if (cursor.peek() != '"') return fail(name, "not a string");
                    if (!cursor.string(text, decoded_[static_cast<std::size_t>(*field)], error)) return fail(name, error);
                    break;
                }
                switch (*field) {
                case Field::time: {
                    const auto time = parse_date_time(text);
                    if (!time) return fail(name, "not an RFC 3339 date-time");
                    out.time = *time;
                    break;
                }
                case Field::record:
                    if (text == "final") out.kind = RecordKind::final;
                    else if (text == "progress") out.kind = RecordKind::progress;
                    else return fail(name, "not \"final\" or \"progress\"");
                    break;
                case Field::decision:
                    if (text == "allow") out.verdict = Verdict::allow;
                    else if (text == "deny") out.verdict = Verdict::deny;
                    else if (text == "report") out.verdict = Verdict::report;
                    else return fail(name, "not \"allow\", \"deny\" or \"report\"");
                    break;
                case Field::connection_id: out.connection_id = text; break;
                case Field::vm: out.vm = text; break;
                case Field::host: out.host = text; break;
                case Field::reason: out.reason = text; break;
                case Field::port:
                case Field::bytes_up:
                case Field::bytes_down:
                case Field::count: break;
                }
            }
            cursor.skip_whitespace();
            if (cursor.consume('}')) break;
            if (!cursor.consume(',')) return fail("expected ',' or '}'");
            cursor.skip_whitespace();
        }
    }
    cursor.skip_whitespace();
    if (!cursor.at_end()) return fail("text after the object");
    for (const Field required : kRequiredFields) {
        if (!(seen & bit(required))) return fail("missing field", name_of(required));
    }
    if (out.kind == RecordKind::progress && !(seen & bit(Field::connection_id))) {
        return fail("missing field", "connection_id (a progress record needs it)");
    }
    return true;
}

}  // namespace egressgate::audit
