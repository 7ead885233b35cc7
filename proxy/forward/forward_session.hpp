#pragma once
// The absolute-form path: plain-http agents and port-80 storage traffic. One request after the
// other on the client connection, each decided, forwarded and audited on its own, under the
// same policy, dialer and limits as CONNECT. The upstream connection is reused only for the
// same host:port.
#include <memory>
#include <optional>
#include <string>

#include "http/forwarding.hpp"
#include "http/message.hpp"
#include "policy/host.hpp"
#include "proxy/asio.hpp"
#include "proxy/forward/request_upload.hpp"

namespace egressgate::proxy {

class ClientSession;

class ForwardSession {
public:
    explicit ForwardSession(ClientSession& session);
    // Serves the request whose head the session has read, and the ones after it.
    awaitable<void> run();

private:
    // How an exchange ended, for what becomes of both connections.
    enum class ResponseEnd {
        complete,         // the response went to the client whole
        client_failed,    // the client went away or reset: the upstream is reset
        upstream_failed,  // refused before the response head (answered 502/504), or broken after it (client reset)
        stale_upstream,   // a kept-alive upstream had closed before this request: try a fresh one
    };

    awaitable<void> serve_requests();
    awaitable<bool> forward_request(const http::MessageHead& head);
    awaitable<bool> reach_upstream(const policy::Target& target, const policy::Decision& decision, bool& reused);
    awaitable<ResponseEnd> exchange(const http::MessageHead& head, const http::AbsoluteTarget& target, bool may_retry);
    awaitable<bool> conclude_exchange(const http::MessageHead& head, ResponseEnd end);
    awaitable<ResponseEnd> relay_response(const http::MessageHead& request, bool may_retry);
    awaitable<ResponseEnd> fail_response(bool answered, bool may_retry, bool heard_back, http::Failure failure,
                                         const std::string& detail);
    awaitable<bool> write_to_client(std::string_view bytes);
    void drop_upstream();

    ClientSession& session_;
    std::string upstream_authority_;  // "host:port" the upstream socket is connected to
    std::unique_ptr<http::MessageParser> response_parser_;
    std::string response_pending_;    // upstream bytes not parsed yet
    std::string outbound_;            // framed bytes on their way to a peer
    std::unique_ptr<char[]> buffers_;  // two kTunnelBufferBytes halves: upload, response
    RequestUpload upload_;
    // Per exchange.
    bool close_client_after_ = false;  // the response was delimited by close, or the client asked
    bool upstream_spent_ = false;      // the upstream connection cannot carry another request
};

}  // namespace egressgate::proxy
