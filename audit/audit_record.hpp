#pragma once
// One audit record per connection, and its canonical JSON-lines form. No I/O here.
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace egressgate::audit {

// Why a connection ended. Fixed strings: operators grep for them.
namespace close_reason {
inline constexpr std::string_view completed = "completed";            // both directions reached EOF
inline constexpr std::string_view client_reset = "client_reset";
inline constexpr std::string_view upstream_reset = "upstream_reset";
inline constexpr std::string_view idle_timeout = "idle_timeout";
inline constexpr std::string_view header_timeout = "header_timeout";
inline constexpr std::string_view client_closed = "client_closed";    // EOF before a full request
inline constexpr std::string_view rejected = "rejected";              // we answered with an error status
inline constexpr std::string_view client_denied = "client_denied";    // closed at accept
inline constexpr std::string_view shutdown = "shutdown";              // the proxy stopped
inline constexpr std::string_view tls_handshake_failed = "tls_handshake_failed";  // TLS listener only
inline constexpr std::string_view internal_error = "internal_error";  // a bug: logged with the connection id
}  // namespace close_reason

struct Record {
    std::chrono::system_clock::time_point time;
    std::uint64_t connection_id = 0;
    std::string vm;
    std::string client_ip;
    std::uint16_t client_port = 0;
    std::string method;
    std::string host;
    std::uint16_t port = 0;
    std::string resolved;
    std::string_view decision;
    std::string_view reason;
    std::string rule;
    std::string sni;   // server_name of the tunnel's ClientHello, where inspected
    std::string alpn;  // its ALPN protocols, comma-separated
    int status = 0;
    std::uint64_t bytes_up = 0;
    std::uint64_t bytes_down = 0;
    std::int64_t connect_ms = -1;
    std::int64_t duration_ms = 0;
    std::string_view close_reason;
};

// One JSON object and a trailing '\n'. Strings are escaped so that no client-controlled byte can
// break the line or forge a field.
std::string format_line(const Record& record);

}  // namespace egressgate::audit
