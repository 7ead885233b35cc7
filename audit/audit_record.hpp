#pragma once
// One audit record per connection (or forwarded request), and its canonical JSON-lines form.
// No I/O here.
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "audit/line_buffer.hpp"

namespace egressgate::audit {

// Why a connection ended. Fixed strings (to_string): operators grep for them.
enum class CloseReason : std::uint8_t {
    open,                  // not ended yet: progress records, and records still being built
    completed,             // both directions reached EOF, or the exchange finished
    client_reset,
    upstream_reset,
    idle_timeout,
    header_timeout,
    client_closed,         // EOF (or gone) before a full request, or during the connect
    malformed_request,     // a request body broke its framing after its head was forwarded
    rejected,              // we answered with an error status
    client_denied,         // not in [clients] allow: closed at accept
    overloaded,            // over a connection limit by far: closed at accept, no answer
    shutdown,              // the proxy stopped
    tls_handshake_failed,  // TLS listener only
    resource_exhausted,    // descriptors or memory ran out mid-connection: both sides aborted
    internal_error,        // a bug: logged with the connection id; stays last (kCloseReasonCount)
};

inline constexpr std::size_t kCloseReasonCount = static_cast<std::size_t>(CloseReason::internal_error) + 1;

std::string_view to_string(CloseReason reason);  // "" for open

// A record is the final line of its connection, or a progress line of a long tunnel that says
// how far it got (bytes so far), so that a crash loses at most one progress interval.
enum class RecordKind : std::uint8_t { final, progress };

std::string_view to_string(RecordKind kind);  // "final", "progress"

struct Record {
    std::chrono::system_clock::time_point time;
    RecordKind kind = RecordKind::final;
    std::string connection_id;  // "<process start, unix ms>-<sequence>": unique across restarts
    std::string vm;
    std::string client_ip;
    std::uint16_t client_port = 0;
    std::string method;
    std::string host;       // as the client wrote it when it was not a valid host
    std::uint16_t port = 0;
    std::string path;       // forwarded requests: the path, query values redacted (http::audit_path)
    std::string resolved;
    std::string_view decision;
    std::string_view reason;
    std::string rule;
    std::string sni;                // server_name of the tunnel's ClientHello, where inspected
    std::vector<std::string> alpn;  // its ALPN protocol names
    int status = 0;                 // the status sent to the client, 0 if none was
    std::uint64_t bytes_up = 0;
    std::uint64_t bytes_down = 0;
    std::int64_t connect_ms = -1;
    std::int64_t duration_ms = 0;
    CloseReason close_reason = CloseReason::open;
    // Not written to the line: the /metrics series this record counts under (the VM's inventory
    // name, else its address while [admin] max_client_series allows, else "other").
    std::string series;
    // Not written to the line either: the name of the rule that decided (policy::Decision's
    // rule_name, a bounded set), for /metrics. Its text is the session's config's, or fixed.
    std::string_view policy_rule;
};

// One JSON object and a trailing '\n', always valid UTF-8. Fields a client controls (host, path,
// sni, alpn) go through escape_client_bytes; every other string is escaped for JSON, and a byte that
// is not part of valid UTF-8 is written as "\xHH" too.
std::string format_line(const Record& record);

// The same line, built where it is declared: a typical line costs no allocation, which is what
// the proxy writes for every connection.
class FormattedLine {
public:
    explicit FormattedLine(const Record& record);
    std::string_view view() const { return line_.view(); }

private:
    LineBuffer line_;
};

// Client bytes as printable ASCII: 0x20..0x7e pass except the backslash, which becomes "\\";
// every other byte becomes "\xHH". Reversible, and safe in any log or terminal.
std::string escape_client_bytes(std::string_view bytes);

}  // namespace egressgate::audit
