// Absolute-form HTTP forwarding: the part of a session that serves plain-http agents and
// port-80 storage traffic. Same policy, dialer and limits as CONNECT; one audit line per request.
#include "proxy/audit_writer.hpp"
#include "proxy/session.hpp"

namespace egressgate::proxy {

using std::chrono::steady_clock;

namespace {

constexpr std::string_view kOriginFormDetail =
    "this is a proxy: send absolute-form requests (GET http://host/path) or CONNECT host:port";
constexpr std::string_view kHttpsDetail = "https goes through a tunnel: send CONNECT host:443";

std::string authority_of(const policy::Target& target) { return target.host + ":" + std::to_string(target.port); }


// Which refusal a request-target earns, if any.
std::optional<std::pair<std::string_view, std::string_view>> target_refusal(http::TargetForm form) {
    switch (form) {
    case http::TargetForm::absolute_http: return std::nullopt;
    case http::TargetForm::absolute_https: return std::pair{http::reason::use_connect_for_https, kHttpsDetail};
    case http::TargetForm::other_scheme: return std::pair{http::reason::unsupported_scheme, "only http:// is forwarded"};
    case http::TargetForm::origin:
    case http::TargetForm::authority: return std::pair{http::reason::origin_form_target, kOriginFormDetail};
    case http::TargetForm::invalid: break;
    }
    return std::pair{policy::reason::invalid_host, std::string_view("the request target is not a valid http:// URI")};
}

}  // namespace

awaitable<void> Session::forward_requests() {
    for (;;) {
        const bool again = co_await forward_request(parser_.head());
        if (!again) co_return;
        audit_request();
        set_phase(Phase::reading_head, config_->timeouts.header);
        const bool have_head = co_await read_request_head();
        if (!have_head) co_return;
        record_open_ = true;
        record_.method = parser_.head().method;
    }
}

// Decides, connects (or reuses the upstream connection), then streams the request body up and
// the response down at the same time, as Expect: 100-continue needs. Returns whether the client
// connection can carry another request.
awaitable<bool> Session::forward_request(const http::MessageHead& head) {
    record_.method = head.method;
    const auto classified = http::classify_target(head.target);
    if (const auto refusal = target_refusal(classified.form)) {
        record_.host = head.target.substr(0, kMaxAuditedTargetBytes);
        co_await reject(http::Failure::malformed_request, refusal->first, refusal->second);
        co_return false;
    }
    if (const auto violation = http::request_framing_violation(head)) {
        co_await reject(http::Failure::malformed_request, *violation, "the body's length cannot be determined");
        co_return false;
    }
    const auto& target = classified.absolute->target;
    record_.host = target.host;
    record_.port = target.port;
    const auto decision = config_->egress.decide(target);
    record_decision(decision);
    if (!decision.permits()) {
        co_await reject(http::Failure::denied, decision.reason, decision.rule);
        co_return false;
    }
    bool reused = false;
    const bool reached = co_await reach_upstream(target, reused);
    if (!reached) co_return false;
    // A kept-alive upstream may close between two requests; if it did so before answering a
    // request without a body, nothing reached the client and the request can go again.
    const bool may_retry = reused && head.framing == http::BodyFraming::none;
    ResponseEnd end = co_await exchange(head, *classified.absolute, may_retry);
    if (end == ResponseEnd::stale_upstream) {
        const bool fresh = co_await reach_upstream(target, reused);
        if (!fresh) co_return false;
        end = co_await exchange(head, *classified.absolute, false);
    }
    co_return co_await conclude_exchange(head, end);
}

// Sends the request head, then streams the body up (its own coroutine) while the response
// streams down, as Expect: 100-continue needs.
awaitable<Session::ResponseEnd> Session::exchange(const http::MessageHead& head, const http::AbsoluteTarget& target,
                                                  bool may_retry) {
    set_phase(Phase::exchanging, config_->timeouts.idle);
    last_activity_ = steady_clock::now();
    const std::string request_head = http::upstream_request_head(head, target, {record_.client_ip, config_->x_forwarded_for});
    error_code ec;
    co_await asio::async_write(upstream_, asio::buffer(request_head), with_error(ec));
    if (ec && may_retry) {
        upstream_spent_ = true;
        co_return ResponseEnd::stale_upstream;
    }
    if (ec) {
        co_await reject(http::Failure::connect_failed, http::reason::upstream_failed, "the upstream closed the connection");
        co_return ResponseEnd::upstream_failed;
    }
    upload_failed_ = false;
    close_client_after_ = false;
    upstream_spent_ = false;
    if (!request_sent_) {  // a retry has no body left to send
        upload_running_ = true;
        upload_finished_.expires_at(asio::steady_timer::time_point::max());
        asio::co_spawn(client_.get_executor(), upload_body(shared_from_this()), on_exit());
    }
    const ResponseEnd end = co_await relay_response(head, may_retry);
    if (end == ResponseEnd::stale_upstream) drop_upstream();
    co_return end;
}

// Ends one exchange: waits for the upload, notes how it ended, and says whether the client
// connection can carry another request.
awaitable<bool> Session::conclude_exchange(const http::MessageHead& head, ResponseEnd end) {
    // An upstream that answered before the request body ended leaves the rest of that body
    // unread on the client connection: nothing after it can be parsed safely.
    const bool clean = end == ResponseEnd::complete && !upload_running_ && !upload_failed_;
    if (!clean) close_sockets();
    while (upload_running_) {
        error_code ignored;
        co_await upload_finished_.async_wait(with_error(ignored));
    }
    if (end == ResponseEnd::client_failed) record_.close_reason = audit::close_reason::client_reset;
    if (end == ResponseEnd::upstream_failed && record_.close_reason.empty()) {
        record_.close_reason = audit::close_reason::upstream_reset;
    }
    if (upstream_spent_) drop_upstream();
    request_sent_ = false;
    co_return clean && head.keep_alive && !close_client_after_;
}

void Session::drop_upstream() {
    error_code ignored;
    upstream_.close(ignored);
    response_parser_.reset();
    response_pending_.clear();
}

// The upstream connection of the previous request is reused only for the same host:port.
awaitable<bool> Session::reach_upstream(const policy::Target& target, bool& reused) {
    const std::string authority = authority_of(target);
    reused = upstream_.is_open() && response_parser_ && authority == upstream_authority_;
    if (reused) co_return true;
    drop_upstream();
    const bool connected = co_await dial(target);
    if (!connected) co_return false;
    upstream_authority_ = authority;
    response_parser_ = std::make_unique<http::MessageParser>(http::MessageKind::response);
    if (!tunnel_buffers_) tunnel_buffers_ = std::make_unique<char[]>(2 * kTunnelBufferBytes);
    co_return true;
}

// Client -> upstream: the request body, decoded by the request parser and framed again
// (Content-Length bodies as they are, chunked bodies re-chunked without trailers).
awaitable<void> Session::upload_body(std::shared_ptr<Session> self) {
    const bool chunked = parser_.head().framing == http::BodyFraming::chunked;
    std::span<char> buffer(tunnel_buffers_.get(), kTunnelBufferBytes);
    std::string framed;
    for (;;) {
        const auto status = parser_.feed(pipelined_);
        pipelined_.erase(0, parser_.consumed());
        if (status == http::MessageParser::Status::error) break;
        std::string& body = parser_.body();
        framed.clear();
        if (chunked) http::append_chunk(framed, body);
        else framed.swap(body);
        record_.bytes_up += chunked ? body.size() : framed.size();
        body.clear();
        const bool done = status == http::MessageParser::Status::message_complete;
        if (done && chunked) framed += http::kLastChunk;
        error_code ec;
        if (!framed.empty()) co_await asio::async_write(upstream_, asio::buffer(framed), with_error(ec));
        if (ec) break;
        last_activity_ = steady_clock::now();
        if (done) {
            self->request_sent_ = true;
            self->upload_running_ = false;
            self->upload_finished_.cancel();
            co_return;
        }
        const std::size_t n = co_await client_.async_read_some(asio::buffer(buffer.data(), buffer.size()), with_error(ec));
        if (n == 0) break;
        pipelined_.append(buffer.data(), n);
    }
    self->upload_failed_ = true;
    self->upload_running_ = false;
    self->upload_finished_.cancel();
}

awaitable<bool> Session::write_to_client(std::string_view bytes) {
    if (bytes.empty()) co_return true;
    error_code ec;
    co_await asio::async_write(client_, asio::buffer(bytes.data(), bytes.size()), with_error(ec));
    last_activity_ = steady_clock::now();
    co_return !ec;
}

// Upstream -> client: interim (1xx) responses and the final one, heads rewritten, bodies framed
// for the client. Before the final head has gone out, a failure can still become a 502.
awaitable<Session::ResponseEnd> Session::relay_response(const http::MessageHead& request, bool may_retry) {
    auto& parser = *response_parser_;
    std::span<char> buffer(tunnel_buffers_.get() + kTunnelBufferBytes, kTunnelBufferBytes);
    const bool client_http11 = request.version_major == 1 && request.version_minor >= 1;
    bool chunked_to_client = false;
    bool answered = false;    // the final response head went out
    bool heard_back = false;  // the upstream sent anything at all for this request
    for (;;) {
        auto status = parser.feed(response_pending_);
        response_pending_.erase(0, parser.consumed());
        bool upstream_ended = false;
        if (status == http::MessageParser::Status::need_more && response_pending_.empty()) {
            error_code ec;
            const std::size_t n = co_await upstream_.async_read_some(asio::buffer(buffer.data(), buffer.size()), with_error(ec));
            if (n > 0) {
                response_pending_.append(buffer.data(), n);
                last_activity_ = steady_clock::now();
                heard_back = true;
            } else {
                status = parser.finish();  // a body delimited by close ends here
                upstream_ended = true;
                upstream_spent_ = true;
            }
        }
        if (status == http::MessageParser::Status::error ||
            (status == http::MessageParser::Status::need_more && upstream_ended)) {
            upstream_spent_ = true;
            if (may_retry && !heard_back) co_return ResponseEnd::stale_upstream;
            if (!answered) {
                record_.bytes_down = 0;
                co_await reject(http::Failure::connect_failed, http::reason::upstream_failed, "no complete response");
            }
            co_return ResponseEnd::upstream_failed;
        }
        if (status == http::MessageParser::Status::head_complete) {
            const auto& head = parser.head();
            if (request.method == "HEAD" && head.status >= 200) parser.skip_body();
            chunked_to_client = client_http11 && head.framing == http::BodyFraming::chunked;
            const bool final = head.status >= 200;
            const bool close_client = final && (!request.keep_alive || !head.keep_alive ||
                                                head.framing == http::BodyFraming::until_close ||
                                                (head.framing == http::BodyFraming::chunked && !chunked_to_client));
            if (final) {
                record_.status = head.status;
                answered = true;
                close_client_after_ = close_client;
                upstream_spent_ = !head.keep_alive || head.framing == http::BodyFraming::until_close;
            }
            const bool written = co_await write_to_client(http::client_response_head(head, close_client, chunked_to_client));
            if (!written) co_return ResponseEnd::client_failed;
            continue;
        }
        outbound_.clear();
        std::string& body = parser.body();
        record_.bytes_down += body.size();
        if (chunked_to_client) http::append_chunk(outbound_, body);
        else outbound_.swap(body);
        body.clear();
        const bool done = status == http::MessageParser::Status::message_complete;
        if (done && chunked_to_client) outbound_ += http::kLastChunk;
        const bool written = co_await write_to_client(outbound_);
        if (!written) co_return ResponseEnd::client_failed;
        if (done && answered) co_return ResponseEnd::complete;
    }
}

// One audit line per request; the next request on the connection starts a fresh record.
void Session::audit_request() {
    record_.duration_ms = elapsed_ms(request_started_);
    record_.time = std::chrono::system_clock::now();
    if (record_.close_reason.empty()) record_.close_reason = audit::close_reason::completed;
    context_.conclude(record_);
    audit::Record next;
    next.connection_id = record_.connection_id;
    next.vm = record_.vm;
    next.client_ip = record_.client_ip;
    next.client_port = record_.client_port;
    record_ = std::move(next);
    request_started_ = steady_clock::now();
    record_open_ = false;
}

}  // namespace egressgate::proxy
