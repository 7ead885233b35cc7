#include "proxy/splice_pump.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <tuple>

#include <spdlog/spdlog.h>

namespace egressgate::proxy {

namespace {

// True when the new pipe holds kSpliceChunkBytes; logs the first one that does not.
bool check_capacity(int write_fd) {
    const int capacity = ::fcntl(write_fd, F_GETPIPE_SZ);
    if (capacity < 0 || static_cast<std::size_t>(capacity) >= kSpliceChunkBytes) return true;
    static std::atomic<bool> logged{false};
    if (!logged.exchange(true)) {
        spdlog::warn("splice pipes get {} bytes instead of {}: this user's fs.pipe-user-pages-soft is used up; "
                     "tunnels still work, with more system calls per MB (systemd/60-egressgate.conf lifts the limit)",
                     capacity, kSpliceChunkBytes);
    }
    return false;
}

}  // namespace

PipePool::~PipePool() {
    for (auto [r, w] : pipes_) {
        ::close(r);
        ::close(w);
    }
}

bool PipePool::acquire(int& read_fd, int& write_fd, bool& full_size) {
    if (!pipes_.empty()) {
        std::tie(read_fd, write_fd) = pipes_.back();
        pipes_.pop_back();
        full_size = true;
        return true;
    }
    int fds[2];
    if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) return false;
    read_fd = fds[0];
    write_fd = fds[1];
    full_size = check_capacity(write_fd);
    return true;
}

void PipePool::release(int read_fd, int write_fd, bool full_size) {
    if (full_size && pipes_.size() < kMaxPooledPipes) {
        pipes_.emplace_back(read_fd, write_fd);
        return;
    }
    ::close(read_fd);
    ::close(write_fd);
}

void SplicePipe::release() {
    if (!is_open() || in_flight != 0) return;
    pool_.release(read_fd_, write_fd_, full_size_);
    read_fd_ = write_fd_ = -1;
}

SplicePipe::~SplicePipe() {
    if (!is_open()) return;
    if (in_flight == 0) {
        pool_.release(read_fd_, write_fd_, full_size_);
        return;
    }
    ::close(read_fd_);  // bytes left in it belong to nobody now
    ::close(write_fd_);
}

namespace {

constexpr unsigned kSpliceFlags = SPLICE_F_MOVE | SPLICE_F_NONBLOCK;

constexpr std::size_t kSendFailed = static_cast<std::size_t>(-1);

// One splice(2), retried on EINTR. Returns bytes moved, 0 at EOF, -1 with errno otherwise.
ssize_t splice_once(int from, int to, std::size_t length) {
    for (;;) {
        const ssize_t n = ::splice(from, nullptr, to, nullptr, length, kSpliceFlags);
        if (n >= 0 || errno != EINTR) return n;
    }
}

// Sends what the socket takes now: the bytes sent, or kSendFailed when the peer is gone.
std::size_t send_once(int to, std::span<const char> bytes) {
    for (;;) {
        const ssize_t n = ::send(to, bytes.data(), bytes.size(), MSG_NOSIGNAL);
        if (n >= 0) return static_cast<std::size_t>(n);
        if (errno == EAGAIN) return 0;
        if (errno != EINTR) return kSendFailed;
    }
}

// Keeps bytes the sink could not take in the direction's pipe, so the read buffer is free again.
bool park_in_pipe(SplicePipe& pipe, std::span<const char> rest) {
    if (!pipe.is_open() && !pipe.open()) return false;
    const ssize_t n = ::write(pipe.write_fd(), rest.data(), rest.size());  // an empty pipe takes it all
    if (n != static_cast<ssize_t>(rest.size())) return false;
    pipe.in_flight = rest.size();
    return true;
}

// The source had nothing to read: wait for it without holding a pipe.
awaitable<bool> wait_readable(tcp::socket& source, SplicePipe& pipe) {
    pipe.release();
    error_code ec;
    co_await source.async_wait(tcp::socket::wait_read, with_error(ec));
    co_return !ec;
}

}  // namespace

awaitable<PumpEnd> splice_pump(tcp::socket& source, tcp::socket& sink, SplicePipe& pipe, std::span<char> message,
                               std::uint64_t& bytes, std::chrono::steady_clock::time_point& last_activity) {
    // Both sockets are already non-blocking: Asio made them so for the reads and the connect
    // that came before.
    bool bulk = false;
    for (;;) {
        // Whatever is in the pipe goes first; a full sink is waited for (backpressure).
        while (pipe.in_flight > 0) {
            const ssize_t n = splice_once(pipe.read_fd(), sink.native_handle(), pipe.in_flight);
            if (n > 0) {
                pipe.in_flight -= static_cast<std::size_t>(n);
                bytes += static_cast<std::uint64_t>(n);
                continue;
            }
            if (n < 0 && errno != EAGAIN) co_return PumpEnd::write_error;
            error_code ec;
            co_await sink.async_wait(tcp::socket::wait_write, with_error(ec));
            if (ec) co_return PumpEnd::write_error;
        }
        last_activity = std::chrono::steady_clock::now();

        if (!bulk) {
            // Asio tries the read at once and waits only if it would block, without the
            // epoll_ctl that a readiness wait costs: messages are cheapest this way.
            pipe.release();
            error_code ec;
            const std::size_t got = co_await source.async_read_some(asio::buffer(message.data(), message.size()),
                                                                     with_error(ec));
            if (got == 0) {
                if (!is_end_of_stream(ec)) co_return PumpEnd::read_error;
                shutdown_send(sink);
                co_return PumpEnd::eof;
            }
            last_activity = std::chrono::steady_clock::now();
            const std::size_t sent = send_once(sink.native_handle(), message.first(got));
            if (sent == kSendFailed) co_return PumpEnd::write_error;
            bytes += sent;
            if (sent < got && !park_in_pipe(pipe, message.subspan(sent, got - sent))) co_return PumpEnd::write_error;
            bulk = got == message.size();  // a full read: a stream, not a message
            continue;
        }
        if (!pipe.is_open() && !pipe.open()) co_return PumpEnd::read_error;
        const ssize_t n = splice_once(source.native_handle(), pipe.write_fd(), kSpliceChunkBytes);
        if (n == 0) {
            shutdown_send(sink);
            co_return PumpEnd::eof;
        }
        if (n > 0) {
            pipe.in_flight = static_cast<std::size_t>(n);
            continue;
        }
        if (errno != EAGAIN) co_return PumpEnd::read_error;
        const bool readable = co_await wait_readable(source, pipe);
        if (!readable) co_return PumpEnd::read_error;
    }
}

}  // namespace egressgate::proxy
