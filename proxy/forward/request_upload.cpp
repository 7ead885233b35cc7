#include "proxy/forward/request_upload.hpp"

#include <string>

#include "http/forwarding.hpp"
#include "proxy/session.hpp"

namespace egressgate::proxy {

using audit::CloseReason;

RequestUpload::RequestUpload(ClientSession& session) : session_(session), tasks_(session.client().get_executor()) {}

void RequestUpload::start(std::span<char> buffer) {
    if (sent_) return;
    failed_ = stopping_ = false;
    client_failure_.reset();
    tasks_.spawn(run(buffer), [this](std::exception_ptr) {
        failed_ = true;
        session_.reset_both(CloseReason::internal_error);
    });
}

awaitable<void> RequestUpload::stop() {
    if (running()) {
        stopping_ = true;
        error_code ignored;
        session_.client().socket().cancel(ignored);
        session_.upstream().cancel(ignored);
    }
    co_await tasks_.wait();
}

// Every wait may end in a cancel from stop(), or complete just before it: after each one the
// upload looks at stopping_ before it starts anything new.
awaitable<void> RequestUpload::run(std::span<char> buffer) {
    auto& parser = session_.parser();
    auto& pipelined = session_.pipelined();
    auto& record = session_.record();
    const bool chunked = parser.head().framing == http::BodyFraming::chunked;
    std::string framed;
    while (!stopping_) {
        const auto status = parser.feed(pipelined);
        pipelined.erase(0, parser.consumed());
        if (status == http::MessageParser::Status::error) {
            client_failure_ = CloseReason::malformed_request;
            break;
        }
        std::string& body = parser.body();
        framed.clear();
        if (chunked) http::append_chunk(framed, body);
        else framed.swap(body);
        record.bytes_up += chunked ? body.size() : framed.size();
        body.clear();
        const bool done = status == http::MessageParser::Status::message_complete;
        if (done && chunked) framed += http::kLastChunk;
        error_code ec;
        if (!framed.empty()) co_await asio::async_write(session_.upstream(), asio::buffer(framed), with_error(ec));
        if (ec || stopping_) break;  // an upstream failure: the response side hears of it
        session_.last_activity() = std::chrono::steady_clock::now();
        if (done) {
            sent_ = true;
            co_return;
        }
        const std::size_t n = co_await session_.client().async_read_some(asio::buffer(buffer.data(), buffer.size()),
                                                                          with_error(ec));
        if (n == 0) {
            if (!stopping_) client_failure_ = is_end_of_stream(ec) ? CloseReason::client_closed : CloseReason::client_reset;
            break;
        }
        pipelined.append(buffer.data(), n);
    }
    failed_ = true;
    // A body the client broke off must not look whole to the origin, and nothing is left to wait
    // for: both sides are reset now, not at the idle deadline.
    if (client_failure_) session_.reset_both(*client_failure_);
}

}  // namespace egressgate::proxy
