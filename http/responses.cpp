#include "proxy/responses.hpp"

#include <fmt/format.h>

namespace egressgate::http {
namespace {

std::string_view status_text(int status) {
    switch (status) {
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 431: return "Request Header Fields Too Large";
    case 502: return "Bad Gateway";
    case 504: return "Gateway Timeout";
    default: return "Error";
    }
}

// Reasons and details can carry client bytes (a parser message quotes nothing, but a rule may
// echo a host): keep the response well-formed whatever they hold.
std::string printable(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (char c : s) out.push_back(c >= 0x20 && c < 0x7f ? c : '?');
    return out;
}

}  // namespace

int status_for(Failure failure) {
    switch (failure) {
    case Failure::malformed_request:
    case Failure::invalid_target: return 400;
    case Failure::head_too_large: return 431;
    case Failure::denied: return 403;
    case Failure::resolve_failed:
    case Failure::connect_failed: return 502;
    case Failure::resolve_timeout:
    case Failure::connect_timeout: return 504;
    }
    return 500;
}

std::string_view default_reason(Failure failure) {
    switch (failure) {
    case Failure::malformed_request: return reason::malformed_request;
    case Failure::head_too_large: return reason::request_head_too_large;
    case Failure::resolve_failed: return reason::resolve_failed;
    case Failure::connect_failed: return reason::connect_failed;
    case Failure::resolve_timeout: return reason::resolve_timeout;
    case Failure::connect_timeout: return reason::connect_timeout;
    case Failure::invalid_target:
    case Failure::denied: break;
    }
    return {};
}

std::string render_rejection(Failure failure, std::string_view reason, std::string_view detail) {
    const int status = status_for(failure);
    const std::string safe_reason = printable(reason);
    std::string body = fmt::format("egressgate: {} {}: {}", status, status_text(status), safe_reason);
    if (!detail.empty()) body += fmt::format(" ({})", printable(detail));
    body += '\n';
    return fmt::format(
        "HTTP/1.1 {} {}\r\n{}: {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n"
        "Connection: close\r\n\r\n{}",
        status, status_text(status), kReasonHeader, safe_reason, body.size(), body);
}

}  // namespace egressgate::http
