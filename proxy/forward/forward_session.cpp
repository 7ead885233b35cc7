#include "proxy/forward/forward_session.hpp"

#include <variant>

#include "proxy/session.hpp"
#include "proxy/tunnel/pump.hpp"

namespace egressgate::proxy {

using audit::CloseReason;
using std::chrono::steady_clock;

namespace {

std::string authority_of(const policy::Target& target) { return target.host + ":" + std::to_string(target.port); }

}  // namespace

ForwardSession::ForwardSession(ClientSession& session) : session_(session), upload_(session) {}

// The upload refers to this object: if anything here throws (a bug, or memory), the upload is
// ended and waited for before the exception leaves, so that it never outlives what it uses.
awaitable<void> ForwardSession::run() {
    std::exception_ptr failure;
    try {
        co_await serve_requests();
    } catch (...) {
        failure = std::current_exception();
    }
    if (!failure) co_return;
    session_.reset_both(CloseReason::internal_error);
    co_await upload_.stop();
    std::rethrow_exception(failure);
}

awaitable<void> ForwardSession::serve_requests() {
    for (;;) {
        const bool again = co_await forward_request(session_.parser().head());
        if (!again) co_return;
        session_.conclude_request();
        session_.enter(Phase::reading_head, session_.config().timeouts.header);
        const bool have_head = co_await session_.read_request_head();
        if (!have_head) co_return;
        session_.begin_request();
        session_.record().method = session_.parser().head().method;
    }
}

// Decides, connects (or reuses the upstream connection), then streams the request body up and
// the response down at the same time, as Expect: 100-continue needs. Returns whether the client
// connection can carry another request.
awaitable<bool> ForwardSession::forward_request(const http::MessageHead& head) {
    auto& record = session_.record();
    record.method = head.method;
    auto where = http::forwarding_target(head);
    if (const auto* refusal = std::get_if<http::Refusal>(&where)) {
        record.host = head.target.substr(0, kMaxAuditedTargetBytes);
        co_await session_.reject(*refusal);
        co_return false;
    }
    const auto& absolute = std::get<http::AbsoluteTarget>(where);
    const auto& target = absolute.target;
    record.host = target.host;
    record.port = target.port;
    record.path = http::audit_path(absolute.origin_form);
    const auto decision = session_.config().egress.decide(target, session_.client_identity());
    session_.record_decision(decision);
    if (!decision.permits()) {
        co_await session_.reject(http::Refusal::denied(decision));
        co_return false;
    }
    bool reused = false;
    const bool reached = co_await reach_upstream(target, decision, reused);
    if (!reached) co_return false;
    // A kept-alive upstream may close between two requests; if it did so before answering a
    // request without a body, nothing reached the client and the request can go again.
    const bool may_retry = reused && head.framing == http::BodyFraming::none;
    ResponseEnd end = co_await exchange(head, absolute, may_retry);
    if (end == ResponseEnd::stale_upstream) {
        const bool fresh = co_await reach_upstream(target, decision, reused);
        if (!fresh) co_return false;
        end = co_await exchange(head, absolute, false);
    }
    const bool again = co_await conclude_exchange(head, end);
    co_return again;
}

// The upstream connection of the previous request is reused only for the same host:port.
awaitable<bool> ForwardSession::reach_upstream(const policy::Target& target, const policy::Decision& decision,
                                               bool& reused) {
    const std::string authority = authority_of(target);
    reused = session_.upstream().is_open() && response_parser_ && !upstream_spent_ && authority == upstream_authority_;
    if (reused) {
        session_.record_upstream_finding();
        co_return true;
    }
    drop_upstream();
    const bool connected = co_await session_.dial(target, decision);
    if (!connected) co_return false;
    upstream_authority_ = authority;
    response_parser_ = std::make_unique<http::MessageParser>(http::MessageKind::response);
    if (!buffers_) buffers_ = std::make_unique<char[]>(2 * kTunnelBufferBytes);
    co_return true;
}

// Sends the request head, then streams the body up (its own coroutine) while the response
// streams down.
awaitable<ForwardSession::ResponseEnd> ForwardSession::exchange(const http::MessageHead& head,
                                                                const http::AbsoluteTarget& target, bool may_retry) {
    session_.enter(Phase::awaiting_response, session_.config().timeouts.idle);
    session_.last_activity() = steady_clock::now();
    const auto& record = session_.record();
    const std::string request_head =
        http::upstream_request_head(head, target, {record.client_ip, session_.config().x_forwarded_for});
    error_code ec;
    co_await asio::async_write(session_.upstream(), asio::buffer(request_head), with_error(ec));
    if (ec && may_retry) {
        // Closed here, so that the retry dials afresh: a socket whose write failed is not
        // written again (Asio gives up on it without a readiness event to wake it).
        drop_upstream();
        co_return ResponseEnd::stale_upstream;
    }
    if (ec) {
        upstream_spent_ = true;
        co_await session_.reject(http::Refusal(http::Failure::upstream_failed, "the upstream closed the connection"));
        co_return ResponseEnd::upstream_failed;
    }
    close_client_after_ = false;
    upstream_spent_ = false;
    upload_.start(std::span(buffers_.get(), kTunnelBufferBytes));
    const ResponseEnd end = co_await relay_response(head, may_retry);
    if (end == ResponseEnd::stale_upstream) {
        co_await upload_.wait();  // a bodiless request's upload ends at once
        drop_upstream();
    }
    co_return end;
}

// Ends one exchange: waits for the upload, notes how it ended, and says whether the client
// connection can carry another request.
awaitable<bool> ForwardSession::conclude_exchange(const http::MessageHead& head, ResponseEnd end) {
    // An upstream that answered before the request body ended leaves the rest of that body
    // unread on the client connection: nothing after it can be parsed safely.
    const bool body_unread = end == ResponseEnd::complete && upload_.running();
    const bool clean = end == ResponseEnd::complete && !upload_.running() && !upload_.failed();
    if (!clean) {
        co_await upload_.stop();
        if (const auto client_failure = upload_.client_failure()) {
            session_.reset_both(*client_failure);  // a cut-off request body must not look whole upstream
        } else if (end == ResponseEnd::client_failed) {
            session_.reset_both(CloseReason::client_reset);
        } else if (body_unread) {
            // Closing with the body unread would reset the connection, and some clients drop a
            // response they already have when the reset comes: let it read the answer first.
            drop_upstream();
            co_await session_.linger_then_close();
        } else {
            session_.close_sockets();
        }
    }
    if (upstream_spent_) drop_upstream();
    upload_.reset();
    co_return clean && head.keep_alive && !close_client_after_;
}

void ForwardSession::drop_upstream() {
    error_code ignored;
    session_.upstream().close(ignored);
    response_parser_.reset();
    response_pending_.clear();
}

awaitable<bool> ForwardSession::write_to_client(std::string_view bytes) {
    if (bytes.empty()) co_return true;
    error_code ec;
    co_await asio::async_write(session_.client(), asio::buffer(bytes.data(), bytes.size()), with_error(ec));
    session_.last_activity() = steady_clock::now();
    co_return !ec;
}

// The exchange failed on the upstream side. Before the final response head went out, the
// client is told (502, or 504 when the upstream stayed silent past idle_ms); after it, the
// client connection is reset, so that a cut-off response never looks complete.
awaitable<ForwardSession::ResponseEnd> ForwardSession::fail_response(bool answered, bool may_retry, bool heard_back,
                                                                     http::Failure failure, const std::string& detail) {
    upstream_spent_ = true;
    // A reused upstream that closed before a word of the answer: the request can go again,
    // unless it stayed silent until the deadline (that is the origin's answer).
    if (may_retry && !heard_back && !session_.timed_out()) co_return ResponseEnd::stale_upstream;
    if (answered) {
        session_.reset_both(CloseReason::upstream_reset);
        co_return ResponseEnd::upstream_failed;
    }
    co_await upload_.stop();  // reject() reads the client: nothing else may
    session_.record().bytes_down = 0;
    co_await session_.reject(http::Refusal(failure, detail));
    co_return ResponseEnd::upstream_failed;
}

// Upstream -> client: interim (1xx) responses and the final one, heads rewritten, bodies framed
// for the client and flushed before the next read.
awaitable<ForwardSession::ResponseEnd> ForwardSession::relay_response(const http::MessageHead& request, bool may_retry) {
    using Status = http::MessageParser::Status;
    auto& parser = *response_parser_;
    auto& record = session_.record();
    std::span<char> buffer(buffers_.get() + kTunnelBufferBytes, kTunnelBufferBytes);
    const bool client_http11 = request.version_major == 1 && request.version_minor >= 1;
    bool chunked_to_client = false;
    bool answered = false;    // the final response head went out
    bool heard_back = false;  // the upstream sent anything at all for this request
    bool upstream_ended = false;
    for (;;) {
        Status status = Status::need_more;
        if (!upstream_ended) {
            status = parser.feed(response_pending_);
            response_pending_.erase(0, parser.consumed());
        } else {
            status = parser.finish();  // a body delimited by close ends here
        }
        if (status == Status::error) {
            const auto end = co_await fail_response(answered, may_retry, heard_back, parser.failure(), parser.error_detail());
            co_return end;
        }
        if (status == Status::head_complete) {
            const auto& head = parser.head();
            if (request.method == "HEAD" && head.status >= 200) parser.skip_body();
            chunked_to_client = client_http11 && head.framing == http::BodyFraming::chunked;
            const bool final = head.status >= 200;
            const bool close_client = final && (!request.keep_alive || !head.keep_alive ||
                                                head.framing == http::BodyFraming::until_close ||
                                                (head.framing == http::BodyFraming::chunked && !chunked_to_client));
            const bool written = co_await write_to_client(http::client_response_head(head, close_client, chunked_to_client));
            if (!written) co_return ResponseEnd::client_failed;
            if (final) {
                record.status = head.status;
                answered = true;
                close_client_after_ = close_client;
                upstream_spent_ = !head.keep_alive || head.framing == http::BodyFraming::until_close;
                session_.enter(Phase::exchanging, session_.config().timeouts.idle);
            }
            continue;
        }
        outbound_.clear();
        std::string& body = parser.body();
        record.bytes_down += body.size();
        if (chunked_to_client) http::append_chunk(outbound_, body);
        else outbound_.swap(body);
        body.clear();
        const bool done = status == Status::message_complete;
        if (done && chunked_to_client) outbound_ += http::kLastChunk;
        const bool written = co_await write_to_client(outbound_);
        if (!written) co_return ResponseEnd::client_failed;
        if (done && answered) {
            // Bytes behind a complete response were not asked for: the connection is not reused.
            if (!response_pending_.empty()) upstream_spent_ = true;
            co_return ResponseEnd::complete;
        }
        if (done) continue;  // an interim response ended: the final one follows
        if (upstream_ended) {
            const auto end = co_await fail_response(answered, may_retry, heard_back, http::Failure::upstream_failed,
                                                    "the upstream closed before a complete response");
            co_return end;
        }
        error_code ec;
        const std::size_t n =
            co_await session_.upstream().async_read_some(asio::buffer(buffer.data(), buffer.size()), with_error(ec));
        if (n > 0) {
            response_pending_.append(buffer.data(), n);
            session_.last_activity() = steady_clock::now();
            heard_back = true;
            continue;
        }
        if (upload_.client_failure()) co_return ResponseEnd::client_failed;  // the upload reset both sides
        if (is_end_of_stream(ec)) {
            upstream_ended = true;
            continue;
        }
        const bool silent = session_.timed_out() && !answered;
        const auto end = co_await fail_response(answered, may_retry, heard_back,
                                                silent ? http::Failure::upstream_timeout : http::Failure::upstream_failed,
                                                silent ? "no response within idle_ms" : "the upstream reset the connection");
        co_return end;
    }
}

}  // namespace egressgate::proxy
