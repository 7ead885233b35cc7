#pragma once
// Audit field names: the one list, shared by the writer, the docs and the tests.
#include <string_view>

namespace egressgate::audit::field {
inline constexpr std::string_view time = "time";                  // RFC 3339 UTC, milliseconds
inline constexpr std::string_view record = "record";              // "final" | "progress" (a long tunnel so far)
inline constexpr std::string_view connection_id = "connection_id";  // "<start unix ms>-<n>", unique across restarts
inline constexpr std::string_view vm = "vm";                      // inventory name, else client IP
inline constexpr std::string_view client_ip = "client_ip";
inline constexpr std::string_view client_port = "client_port";
inline constexpr std::string_view method = "method";              // "CONNECT", "" if none was read
inline constexpr std::string_view host = "host";                  // client text: see escape_client_bytes
inline constexpr std::string_view port = "port";
inline constexpr std::string_view path = "path";                  // forwarded requests: query values REDACTED
inline constexpr std::string_view resolved = "resolved";          // the address dialed (or refused)
inline constexpr std::string_view decision = "decision";          // "allow" | "deny" | "report"
inline constexpr std::string_view reason = "reason";              // fixed reason string
inline constexpr std::string_view rule = "rule";                  // what decided
inline constexpr std::string_view sni = "sni";                    // ClientHello server_name, "" if none seen
inline constexpr std::string_view alpn = "alpn";                  // ClientHello ALPN names, a JSON array
inline constexpr std::string_view status = "status";              // HTTP status sent, 0 if none
inline constexpr std::string_view bytes_up = "bytes_up";          // payload bytes client -> upstream (so far, in progress records)
inline constexpr std::string_view bytes_down = "bytes_down";      // payload bytes upstream -> client
inline constexpr std::string_view connect_ms = "connect_ms";      // resolve + connect, -1 if not dialed
inline constexpr std::string_view duration_ms = "duration_ms";    // accept to close
inline constexpr std::string_view close_reason = "close_reason";  // audit::CloseReason; "" in progress records
}  // namespace egressgate::audit::field
