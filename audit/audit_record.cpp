#include "audit/audit_record.hpp"

#include <ctime>

#include <fmt/format.h>

#include "audit/fields.hpp"

namespace egressgate::audit {
namespace {

bool needs_escape(unsigned char c) { return c < 0x20 || c == '"' || c == '\\' || c == 0x7f; }

// JSON string escaping: quotes, backslash and every control byte. Bytes >= 0x80 pass through:
// hosts are ASCII by the time they get here, and nothing else is client text. Runs of plain
// bytes are appended at once: this runs for every field of every connection.
void append_json_string(std::string& out, std::string_view s) {
    out.push_back('"');
    std::size_t run = 0;
    for (std::size_t i = 0; i < s.size(); ++i) {
        const auto c = static_cast<unsigned char>(s[i]);
        if (!needs_escape(c)) continue;
        out.append(s.substr(run, i - run));
        run = i + 1;
        switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        default: fmt::format_to(std::back_inserter(out), "\\u{:04x}", c);
        }
    }
    out.append(s.substr(run));
    out.push_back('"');
}

std::string rfc3339_utc(std::chrono::system_clock::time_point tp) {
    using namespace std::chrono;
    const auto ms = duration_cast<milliseconds>(tp.time_since_epoch()).count();
    const std::time_t seconds = static_cast<std::time_t>(ms / 1000);
    std::tm tm{};
    gmtime_r(&seconds, &tm);
    return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900, tm.tm_mon + 1,
                       tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms % 1000);
}

// Room for a typical line, so that building one allocates once.
constexpr std::size_t kTypicalLineBytes = 512;

class LineBuilder {
public:
    LineBuilder() { out_.reserve(kTypicalLineBytes); }
    void string(std::string_view key, std::string_view value) {
        key_(key);
        append_json_string(out_, value);
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
        append_json_string(out_, key);
        out_.push_back(':');
    }
    std::string out_;
};

}  // namespace

std::string format_line(const Record& r) {
    LineBuilder line;
    line.string(field::time, rfc3339_utc(r.time));
    line.number(field::connection_id, static_cast<std::int64_t>(r.connection_id));
    line.string(field::vm, r.vm);
    line.string(field::client_ip, r.client_ip);
    line.number(field::client_port, r.client_port);
    line.string(field::method, r.method);
    line.string(field::host, r.host);
    line.number(field::port, r.port);
    line.string(field::resolved, r.resolved);
    line.string(field::decision, r.decision);
    line.string(field::reason, r.reason);
    line.string(field::rule, r.rule);
    line.string(field::sni, r.sni);
    line.string(field::alpn, r.alpn);
    line.number(field::status, r.status);
    line.number(field::bytes_up, static_cast<std::int64_t>(r.bytes_up));
    line.number(field::bytes_down, static_cast<std::int64_t>(r.bytes_down));
    line.number(field::connect_ms, r.connect_ms);
    line.number(field::duration_ms, r.duration_ms);
    line.string(field::close_reason, r.close_reason);
    return std::move(line).finish();
}

}  // namespace egressgate::audit
