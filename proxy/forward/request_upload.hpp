#pragma once
// Client -> upstream: a forwarded request's body, streamed up while the response comes down
// (Expect: 100-continue needs both at once). Decoded by the session's request parser and framed
// again: Content-Length bodies as they are, chunked bodies re-chunked without trailers.
#include <optional>
#include <span>

#include "audit/audit_record.hpp"
#include "proxy/asio.hpp"
#include "proxy/task_group.hpp"

namespace egressgate::proxy {

class ClientSession;

class RequestUpload {
public:
    explicit RequestUpload(ClientSession& session);

    // Starts streaming the current request's body through `buffer`, unless it already went up
    // whole (a retry on a fresh upstream has nothing left to send).
    void start(std::span<char> buffer);
    // Cancels what it still waits for and waits until it has ended, so that nothing else reads
    // the client meanwhile.
    awaitable<void> stop();
    awaitable<void> wait() { return tasks_.wait(); }
    // The next request on the connection (the upload has ended).
    void reset() {
        sent_ = failed_ = stopping_ = false;
        client_failure_.reset();
    }

    bool running() const { return tasks_.running() > 0; }
    bool sent() const { return sent_; }
    bool failed() const { return failed_; }
    // How the client broke the body off (EOF, reset, bad chunk framing), if it did: both sides
    // have been reset already, so that the origin never takes a cut-off body for a whole one.
    std::optional<audit::CloseReason> client_failure() const { return client_failure_; }

private:
    awaitable<void> run(std::span<char> buffer);

    ClientSession& session_;
    TaskGroup tasks_;
    bool sent_ = false;
    bool failed_ = false;
    bool stopping_ = false;
    std::optional<audit::CloseReason> client_failure_;
};

}  // namespace egressgate::proxy
