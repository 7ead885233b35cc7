#pragma once
// Audit lines read back, for `egressgate report`: a strict parser of the flat JSON object that
// format_line writes, and the RFC 3339 times in it and on the command line. No I/O here.
//
// Strict: a line is one JSON object (RFC 8259) and nothing else but whitespace; strings are valid
// UTF-8 with valid escapes (no lone surrogates); the fields the report reads have their types
// (the numbers non-negative integers in range); a field the report reads appears once. Other
// fields (what newer writers add, such as "path") are checked for JSON syntax and skipped. Nesting
// inside skipped values is limited (kMaxSkippedNesting), so no input can exhaust the stack.
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "audit/audit_record.hpp"

#include "audit/utf8.hpp"  // utf8_sequence_length, shared with the line writer

namespace egressgate::audit {

// Milliseconds since the Unix epoch, UTC.
using UnixMillis = std::int64_t;

// An RFC 3339 date-time ("2026-12-01T10:00:00Z", "2026-12-01T10:00:00.123+01:00"; 'T' or 't' or a
// space, 'Z' or 'z' or an offset; fractions beyond milliseconds are truncated) or a full date
// ("2026-12-01", its midnight UTC). Years 0000..9999. nullopt when the text is neither.
std::optional<UnixMillis> parse_report_time(std::string_view text);

// "2026-12-01T10:00:00.123Z", as the audit writer formats times.
std::string format_report_time(UnixMillis time);


enum class Verdict : std::uint8_t { allow, deny, report };  // the audit "decision" field

std::string_view to_string(Verdict verdict);

// What the report needs of one line. The views point into the line or into the parser's buffers
// (where a string had escapes): valid until the parser's next parse() or the line's end of life.
struct AuditLine {
    UnixMillis time = 0;
    RecordKind kind = RecordKind::final;  // lines without "record" (before progress records) are final
    std::string_view connection_id;       // required in progress records
    std::string_view vm;
    std::string_view host;
    std::uint16_t port = 0;
    Verdict verdict = Verdict::allow;
    std::string_view reason;
    std::uint64_t bytes_up = 0;
    std::uint64_t bytes_down = 0;
};

// How deep a skipped value may nest arrays and objects ("alpn" is one level).
inline constexpr int kMaxSkippedNesting = 32;

class AuditLineParser {
public:
    // Parses one line (its '\n' already taken off; a trailing '\r' is whitespace). True on
    // success; false with error() saying what was wrong ("bytes_up: not a non-negative integer").
    bool parse(std::string_view line, AuditLine& out);
    const std::string& error() const { return error_; }

    // The fields the report reads, in the order of this list (see fields.hpp).
    enum class Field : std::uint8_t {
        time, record, connection_id, vm, host, port, decision, reason, bytes_up, bytes_down, count
    };

private:
    static constexpr std::size_t kFields = static_cast<std::size_t>(Field::count);
    std::array<std::string, kFields> decoded_;  // strings with escapes, per field: reused
    std::string key_;                           // a key with escapes
    std::string skipped_;                       // a skipped string with escapes
    std::string error_;
};

}  // namespace egressgate::audit
