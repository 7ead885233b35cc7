#include "proxy/splice_pump.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <tuple>

namespace egressgate::proxy {

PipePool::~PipePool() {
    for (auto [r, w] : pipes_) {
        ::close(r);
        ::close(w);
    }
}

bool PipePool::acquire(int& read_fd, int& write_fd) {
    if (!pipes_.empty()) {
        std::tie(read_fd, write_fd) = pipes_.back();
        pipes_.pop_back();
        return true;
    }
    int fds[2];
    if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) return false;
    read_fd = fds[0];
    write_fd = fds[1];
    return true;
}

void PipePool::release(int read_fd, int write_fd) {
    if (pipes_.size() < kMaxPooledPipes) {
        pipes_.emplace_back(read_fd, write_fd);
        return;
    }
    ::close(read_fd);
    ::close(write_fd);
}

void SplicePipe::release() {
    if (!is_open() || in_flight != 0) return;
    pool_.release(read_fd_, write_fd_);
    read_fd_ = write_fd_ = -1;
}

SplicePipe::~SplicePipe() {
    if (!is_open()) return;
    if (in_flight == 0) {
        pool_.release(read_fd_, write_fd_);
        return;
    }
    ::close(read_fd_);  // bytes left in it belong to nobody now
    ::close(write_fd_);
}

namespace {

constexpr unsigned kSpliceFlags = SPLICE_F_MOVE | SPLICE_F_NONBLOCK;

// One splice(2), retried on EINTR. Returns bytes moved, 0 at EOF, -1 with errno otherwise.
ssize_t splice_once(int from, int to, std::size_t length) {
    for (;;) {
        const ssize_t n = ::splice(from, nullptr, to, nullptr, length, kSpliceFlags);
        if (n >= 0 || errno != EINTR) return n;
    }
}

// Moves everything in the pipe to the sink, waiting for the sink to drain when it is full.
awaitable<bool> drain_pipe(SplicePipe& pipe, tcp::socket& sink, std::uint64_t& bytes) {
    while (pipe.in_flight > 0) {
        const ssize_t n = splice_once(pipe.read_fd(), sink.native_handle(), pipe.in_flight);
        if (n > 0) {
            pipe.in_flight -= static_cast<std::size_t>(n);
            bytes += static_cast<std::uint64_t>(n);
            continue;
        }
        if (n < 0 && errno != EAGAIN) co_return false;
        error_code ec;  // the sink is full: wait until it takes more
        co_await sink.async_wait(tcp::socket::wait_write, with_error(ec));
        if (ec) co_return false;
    }
    co_return true;
}

}  // namespace

awaitable<PumpEnd> splice_pump(tcp::socket& source, tcp::socket& sink, SplicePipe& pipe, std::uint64_t& bytes,
                               std::chrono::steady_clock::time_point& last_activity) {
    // Both sockets are already non-blocking: Asio made them so for the reads and the connect
    // that came before.
    error_code ec;
    for (;;) {
        if (!pipe.is_open()) {
            co_await source.async_wait(tcp::socket::wait_read, with_error(ec));
            if (ec || !pipe.open()) co_return PumpEnd::read_error;
        }
        const ssize_t n = splice_once(source.native_handle(), pipe.write_fd(), kSpliceChunkBytes);
        if (n == 0) {
            shutdown_send(sink);
            co_return PumpEnd::eof;
        }
        if (n < 0) {
            if (errno != EAGAIN) co_return PumpEnd::read_error;
            pipe.release();
            continue;
        }
        pipe.in_flight = static_cast<std::size_t>(n);
        last_activity = std::chrono::steady_clock::now();
        const bool drained = co_await drain_pipe(pipe, sink, bytes);
        if (!drained) co_return PumpEnd::write_error;
        last_activity = std::chrono::steady_clock::now();
    }
}

}  // namespace egressgate::proxy
