#pragma once
// The one mapping from a failure to what the client is told: status, reason, body. Every failure
// has exactly one status and one fixed reason string, so a call site names the failure and
// cannot pair a status with the wrong reason; only a policy denial carries the reason of its
// Decision. Pure: no sockets.
#include <cstdint>
#include <string>
#include <string_view>

#include "policy/decision.hpp"

namespace egressgate::http {

// X(name, status): the failure and its status. The reason string is the name itself.
#define EGRESSGATE_HTTP_FAILURES(X)                                                                   \
    /* 400: requests this proxy will not read or forward */                                          \
    X(malformed_request, 400)                                                                         \
    X(invalid_host, 400)               /* the CONNECT authority or URI host is not a valid host:port */ \
    X(origin_form_target, 400)         /* "/path": a request for the proxy itself */                 \
    X(use_connect_for_https, 400)                                                                      \
    X(unsupported_scheme, 400)                                                                         \
    X(invalid_request_target, 400)     /* bytes other than visible ASCII in the target */            \
    X(content_length_with_transfer_encoding, 400)                                                      \
    X(conflicting_content_length, 400)                                                                 \
    X(invalid_content_length, 400)                                                                     \
    X(unsupported_transfer_encoding, 400)                                                              \
    X(obsolete_line_folding, 400)                                                                      \
    X(invalid_header_name, 400)        /* empty, or not a token */                                   \
    X(invalid_header_value, 400)       /* a control character */                                     \
    X(upgrade_not_supported, 400)      /* Connection: upgrade; bytes after it are not HTTP */        \
    X(connect_on_forwarding_connection, 400)                                                           \
    X(http2_not_supported, 400)        /* the HTTP/2 connection preface */                           \
    /* 403: the egress policy said no (the reason comes from the Decision) */                        \
    X(denied, 403)                                                                                     \
    /* 429: one client is over its share */                                                          \
    X(client_connection_limit, 429)                                                                    \
    X(client_rate_limit, 429)                                                                          \
    /* 431 */                                                                                          \
    X(request_head_too_large, 431)                                                                     \
    /* 502: the upstream failed us */                                                                \
    X(resolve_failed, 502)                                                                             \
    X(connect_failed, 502)                                                                             \
    X(upstream_failed, 502)            /* closed or reset before a complete response */              \
    X(upstream_malformed, 502)         /* the response is not HTTP we forward */                     \
    X(unrequested_upgrade, 502)        /* 101 Switching Protocols: never asked for */                \
    /* 503: the proxy itself is out of room */                                                       \
    X(proxy_connection_limit, 503)                                                                     \
    X(resource_exhausted, 503)         /* descriptors or memory for the upstream leg */              \
    X(source_ports_exhausted, 503)     /* EADDRNOTAVAIL: no ephemeral port toward the destination */ \
    /* 504: the upstream took too long */                                                            \
    X(resolve_timeout, 504)                                                                            \
    X(connect_timeout, 504)                                                                            \
    X(upstream_timeout, 504)           /* sent the request, heard nothing within idle_ms */

enum class Failure : std::uint8_t {
#define EGRESSGATE_FAILURE_ENUM(name, status) name,
    EGRESSGATE_HTTP_FAILURES(EGRESSGATE_FAILURE_ENUM)
#undef EGRESSGATE_FAILURE_ENUM
};

int status_of(Failure failure);
// The fixed reason string ("upgrade_not_supported"); for denied, "denied" (use the Decision's).
std::string_view reason_of(Failure failure);

// What a client is told when the proxy refuses or fails its request. Built from a failure (its
// own reason) or from a policy denial (the Decision's reason, its rule as the detail).
class Refusal {
public:
    explicit Refusal(Failure failure, std::string detail = {});
    static Refusal denied(const policy::Decision& decision);

    Failure failure() const { return failure_; }
    int status() const { return status_of(failure_); }
    std::string_view reason() const { return reason_; }
    const std::string& detail() const { return detail_; }

private:
    Refusal(Failure failure, std::string_view reason, std::string detail);
    Failure failure_;
    std::string_view reason_;
    std::string detail_;
};

// The response header that carries the reason, for clients and for admins reading client logs.
inline constexpr std::string_view kReasonHeader = "X-Egressgate-Reason";

// A complete HTTP/1.1 response that closes the connection. The detail (a rule, a parser message)
// goes into the body only, after the reason; it is sanitised to printable ASCII.
std::string render(const Refusal& refusal);

// What a successful CONNECT is answered with; WALinuxAgent wants status 200 exactly.
inline constexpr std::string_view kConnectEstablished = "HTTP/1.1 200 Connection established\r\n\r\n";

}  // namespace egressgate::http
