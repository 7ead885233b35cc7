#include "http/responses.hpp"

#include <fmt/format.h>

namespace egressgate::http {
namespace {

std::string_view status_text(int status) {
    switch (status) {
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Error";
    }
}

// Reasons and details can carry client bytes (a rule may echo a host): keep the response
// well-formed whatever they hold.
std::string printable(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (char c : s) out.push_back(c >= 0x20 && c < 0x7f ? c : '?');
    return out;
}

}  // namespace

int status_of(Failure failure) {
    switch (failure) {
#define EGRESSGATE_FAILURE_STATUS(name, status) \
    case Failure::name: return status;
        EGRESSGATE_HTTP_FAILURES(EGRESSGATE_FAILURE_STATUS)
#undef EGRESSGATE_FAILURE_STATUS
    }
    return 500;
}

std::string_view reason_of(Failure failure) {
    switch (failure) {
#define EGRESSGATE_FAILURE_REASON(name, status) \
    case Failure::name: return #name;
        EGRESSGATE_HTTP_FAILURES(EGRESSGATE_FAILURE_REASON)
#undef EGRESSGATE_FAILURE_REASON
    }
    return "internal_error";
}

Refusal::Refusal(Failure failure, std::string detail) : Refusal(failure, reason_of(failure), std::move(detail)) {}

Refusal::Refusal(Failure failure, std::string_view reason, std::string detail)
    : failure_(failure), reason_(reason), detail_(std::move(detail)) {}

Refusal Refusal::denied(const policy::Decision& decision) {
    return Refusal(Failure::denied, decision.reason, std::string(decision.rule.view()));
}

std::string render(const Refusal& refusal) {
    const int status = refusal.status();
    const std::string reason = printable(refusal.reason());
    std::string body = fmt::format("egressgate: {} {}: {}", status, status_text(status), reason);
    if (!refusal.detail().empty()) body += fmt::format(" ({})", printable(refusal.detail()));
    body += '\n';
    return fmt::format(
        "HTTP/1.1 {} {}\r\n{}: {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n"
        "Connection: close\r\n\r\n{}",
        status, status_text(status), kReasonHeader, reason, body.size(), body);
}

}  // namespace egressgate::http
