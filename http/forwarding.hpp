#pragma once
// The rules of forwarding an absolute-form HTTP request and its response: which targets are
// accepted, what the upstream and the client get to see. Pure: heads in, bytes out.
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "http/message.hpp"
#include "http/responses.hpp"
#include "policy/host.hpp"

namespace egressgate::http {

// What a request-target says about where the request should go.
enum class TargetForm {
    absolute_http,   // "http://host[:port]/path?query": forwarded
    absolute_https,  // "https://...": the client must use CONNECT
    other_scheme,    // "ftp://...", "ws://..."
    origin,          // "/path" or "*": a request for this proxy itself
    authority,       // "host:port": only with CONNECT
    invalid,
};

struct AbsoluteTarget {
    policy::Target target;    // port 80 unless the URI says otherwise
    std::string origin_form;  // "/path?query" for the upstream's request line
};

struct ClassifiedTarget {
    TargetForm form = TargetForm::invalid;
    std::optional<AbsoluteTarget> absolute;  // when form is absolute_http
};

ClassifiedTarget classify_target(std::string_view request_target);

// Bytes of a request path kept for the audit line; longer ones are cut (and end in "...").
inline constexpr std::size_t kMaxAuditedPathBytes = 1024;

// The path of a forwarded request as the audit trail keeps it. Every query value is replaced by
// "REDACTED" and the parameter names stay ("/c/b?sv=REDACTED&sig=REDACTED"): URLs carry
// credentials (Azure SAS tokens: sig=, se=, sp=), and the audit trail must never hold them.
std::string audit_path(std::string_view origin_form);

// Why a request head cannot be forwarded safely, beyond what the parser refused: a
// Transfer-Encoding other than exactly "chunked" (its length could not be agreed on).
std::optional<Failure> request_framing_violation(const MessageHead& head);

// Where a request on a forwarding connection goes, or why it goes nowhere: a CONNECT or another
// upgrade (what follows it would not be HTTP), a target that is not http://host/..., or framing
// that two parsers could read differently. Checked before the policy sees the host.
std::variant<AbsoluteTarget, Refusal> forwarding_target(const MessageHead& head);

struct ForwardOptions {
    std::string_view client_ip;
    bool x_forwarded_for = false;  // [proxy] x_forwarded_for
};

// The request as the upstream sees it: origin-form request line, Host from the URI, hop-by-hop
// headers removed (Connection and what it names, Keep-Alive, Proxy-Connection,
// Proxy-Authorization, TE, Trailer, Upgrade), "Via: 1.1 egressgate" added.
std::string upstream_request_head(const MessageHead& head, const AbsoluteTarget& target, const ForwardOptions& options);

// The response as the client sees it: hop-by-hop headers removed, Via added, and
// "Connection: close" when the proxy will close the client connection after it. A body that
// reaches the client chunked keeps its Transfer-Encoding; one sent as-is (to an HTTP/1.0 client)
// loses it.
std::string client_response_head(const MessageHead& head, bool close_client, bool chunked_to_client);

// Chunked transfer coding of a piece of payload, and the end of a chunked body (no trailers).
void append_chunk(std::string& out, std::string_view payload);
inline constexpr std::string_view kLastChunk = "0\r\n\r\n";

}  // namespace egressgate::http
