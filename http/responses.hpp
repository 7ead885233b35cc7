#pragma once
// The one mapping from a failure to what the client is told: status, reason header, body.
#include <string>
#include <string_view>

namespace egressgate::http {

enum class Failure {
    malformed_request,   // 400 (the reason says what was wrong)
    invalid_target,      // 400: the CONNECT authority is not host:port
    head_too_large,      // 431
    denied,              // 403: policy said no (reason and rule come from the Decision)
    resolve_failed,      // 502
    connect_failed,      // 502: refused, reset, unreachable
    resolve_timeout,     // 504
    connect_timeout,     // 504
};

// Fixed reason strings for failures that are not policy decisions (those use policy::reason).
namespace reason {
inline constexpr std::string_view malformed_request = "malformed_request";
inline constexpr std::string_view request_head_too_large = "request_head_too_large";
inline constexpr std::string_view resolve_failed = "resolve_failed";
inline constexpr std::string_view connect_failed = "connect_failed";
inline constexpr std::string_view resolve_timeout = "resolve_timeout";
inline constexpr std::string_view connect_timeout = "connect_timeout";
inline constexpr std::string_view upstream_failed = "upstream_failed";  // broke off mid-response
// Requests this proxy will not forward (400).
inline constexpr std::string_view origin_form_target = "origin_form_target";
inline constexpr std::string_view use_connect_for_https = "use_connect_for_https";
inline constexpr std::string_view unsupported_scheme = "unsupported_scheme";
inline constexpr std::string_view content_length_with_transfer_encoding = "content_length_with_transfer_encoding";
inline constexpr std::string_view conflicting_content_length = "conflicting_content_length";
inline constexpr std::string_view invalid_content_length = "invalid_content_length";
inline constexpr std::string_view unsupported_transfer_encoding = "unsupported_transfer_encoding";
inline constexpr std::string_view obsolete_line_folding = "obsolete_line_folding";
inline constexpr std::string_view invalid_header_value = "invalid_header_value";
inline constexpr std::string_view invalid_header_name = "invalid_header_name";
}  // namespace reason

// The response header that carries the reason, for clients and for admins reading client logs.
inline constexpr std::string_view kReasonHeader = "X-Egressgate-Reason";

int status_for(Failure failure);

// The fixed reason of a failure that has one of its own; denied and invalid_target take theirs
// from the policy decision.
std::string_view default_reason(Failure failure);

// A complete HTTP/1.1 response that closes the connection. detail (a rule, a parser message) goes
// into the body only, after the reason; it is sanitised to printable ASCII.
std::string render_rejection(Failure failure, std::string_view reason, std::string_view detail);

// What a successful CONNECT is answered with; WALinuxAgent wants status 200 exactly.
inline constexpr std::string_view kConnectEstablished = "HTTP/1.1 200 Connection established\r\n\r\n";

}  // namespace egressgate::http
