#include "proxy/tunnel/splice_pump.hpp"


#include <fcntl.h>
#include <unistd.h>

#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <memory>
#include <new>
#include <optional>
#include <tuple>

#include <spdlog/spdlog.h>
#include "proxy/resource_shortage.hpp"

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

// One recv(2), retried on EINTR. Returns bytes read, 0 at EOF, -1 with errno otherwise.
ssize_t recv_once(int from, std::span<char> into) {
    for (;;) {
        const ssize_t n = ::recv(from, into.data(), into.size(), MSG_DONTWAIT);
        if (n >= 0 || errno != EINTR) return n;
    }
}

// Sends what the socket takes now: the bytes sent, or kSendFailed when the peer is gone.
std::size_t send_once(int to, std::span<const char> bytes) {
    for (;;) {
        const ssize_t n = ::send(to, bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n >= 0) return static_cast<std::size_t>(n);
        if (errno == EAGAIN) return 0;
        if (errno != EINTR) return kSendFailed;
    }
}

// What a direction moves its bytes with now.
enum class Mode {
    messages,  // small reads by copy through the worker's 512-byte message buffer
    splicing,  // a stream: source -> pipe -> sink, never through user space
    copying,   // a stream without a pipe: by copy through kCopyFallbackBytes
};

// One splice from the pipe to the sink: the bytes moved, 0 when the sink is full (wait for it),
// nothing when the direction has failed.
std::optional<std::size_t> drain_once(SplicePipe& pipe, tcp::socket& sink, std::optional<PumpEnd>& end) {
    const ssize_t n = splice_once(pipe.read_fd(), sink.native_handle(), pipe.in_flight);
    if (n > 0) {
        pipe.in_flight -= static_cast<std::size_t>(n);
        return static_cast<std::size_t>(n);
    }
    // 0 would mean an empty pipe while bytes are counted in flight: no progress is possible, so
    // the direction fails rather than spin.
    if (n < 0 && errno == EAGAIN) return 0;
    end = n < 0 && is_resource_shortage(errno) ? PumpEnd::resource_exhausted : PumpEnd::sink_failed;
    return std::nullopt;
}

// No pipe for this direction: keep moving its bytes by copy if a buffer can be had.
bool fall_back_to_copying(std::unique_ptr<char[]>& copy_buffer, int error) {
    copy_buffer.reset(new (std::nothrow) char[kCopyFallbackBytes]);
    if (!copy_buffer) return false;
    static std::atomic<bool> logged{false};
    if (!logged.exchange(true)) {
        spdlog::warn("no splice pipe for a tunnel ({}): its bytes go by copy; raise the descriptor limit",
                     std::strerror(error));
    }
    return true;
}

// The part of a message the sink did not take at once: copied out of the worker's buffer before
// the wait, so that the worker's other tunnels can use the buffer meanwhile. Nothing: all sent.
awaitable<std::optional<PumpEnd>> send_rest(tcp::socket& sink, std::span<const char> rest, std::uint64_t& bytes) {
    std::unique_ptr<char[]> copy(new (std::nothrow) char[rest.size()]);
    if (!copy) co_return PumpEnd::resource_exhausted;
    std::memcpy(copy.get(), rest.data(), rest.size());
    std::span<const char> unsent(copy.get(), rest.size());
    while (!unsent.empty()) {
        error_code ec;
        co_await sink.async_wait(tcp::socket::wait_write, with_error(ec));  // backpressure
        if (ec) co_return PumpEnd::sink_failed;
        const std::size_t sent = send_once(sink.native_handle(), unsent);
        if (sent == kSendFailed) co_return PumpEnd::sink_failed;
        bytes += sent;
        unsent = unsent.subspan(sent);
    }
    co_return std::nullopt;
}

}  // namespace

// One coroutine frame per direction, with every wait in it: an idle tunnel's two directions
// each hold this frame and nothing more.
awaitable<PumpEnd> splice_pump(tcp::socket& source, tcp::socket& sink, SplicePipe& pipe, std::uint64_t& bytes,
                               std::chrono::steady_clock::time_point& last_activity) {
    // Both sockets are already non-blocking (Asio made them so for the reads and the connect
    // that came before), which splice(2) needs; recv and send say MSG_DONTWAIT all the same.
    Mode mode = Mode::messages;
    std::unique_ptr<char[]> copy_buffer;
    for (;;) {
        error_code ec;
        if (mode == Mode::splicing) {
            if (!pipe.is_open() && !pipe.open()) {
                if (!fall_back_to_copying(copy_buffer, errno)) co_return PumpEnd::resource_exhausted;
                mode = Mode::copying;
                continue;
            }
            const ssize_t n = splice_once(source.native_handle(), pipe.write_fd(), kSpliceChunkBytes);
            if (n == 0) co_return PumpEnd::eof;
            if (n < 0 && errno == EAGAIN) {
                // The source had nothing to read: wait for it without holding a pipe.
                pipe.release();
                co_await source.async_wait(tcp::socket::wait_read, with_error(ec));
                if (ec) co_return PumpEnd::source_failed;
                continue;
            }
            if (n < 0 && is_resource_shortage(errno)) {
                if (!fall_back_to_copying(copy_buffer, errno)) co_return PumpEnd::resource_exhausted;
                mode = Mode::copying;
                continue;
            }
            if (n < 0) co_return PumpEnd::source_failed;
            pipe.in_flight = static_cast<std::size_t>(n);
            last_activity = std::chrono::steady_clock::now();
            // Whatever is in the pipe goes to the sink; a full sink is waited for (backpressure).
            while (pipe.in_flight > 0) {
                std::optional<PumpEnd> end;
                const auto moved = drain_once(pipe, sink, end);
                if (!moved) co_return *end;
                bytes += *moved;
                if (*moved > 0) continue;
                co_await sink.async_wait(tcp::socket::wait_write, with_error(ec));
                if (ec) co_return PumpEnd::sink_failed;
            }
            last_activity = std::chrono::steady_clock::now();
            continue;
        }
        pipe.release();
        if (mode == Mode::messages) {
            // Read what is there; wait only when nothing is (a readiness wait after EAGAIN costs
            // no epoll_ctl: Asio registered the socket for input once).
            const std::span<char> buffer = pipe.message_buffer();
            const ssize_t got = recv_once(source.native_handle(), buffer);
            if (got < 0 && errno == EAGAIN) {
                co_await source.async_wait(tcp::socket::wait_read, with_error(ec));
                if (ec) co_return PumpEnd::source_failed;
                continue;
            }
            if (got == 0) co_return PumpEnd::eof;
            if (got < 0) co_return PumpEnd::source_failed;
            last_activity = std::chrono::steady_clock::now();
            const std::span<const char> message = buffer.first(static_cast<std::size_t>(got));
            const std::size_t sent = send_once(sink.native_handle(), message);
            if (sent == kSendFailed) co_return PumpEnd::sink_failed;
            bytes += sent;
            if (sent < message.size()) {
                if (const auto end = co_await send_rest(sink, message.subspan(sent), bytes)) co_return *end;
            }
            last_activity = std::chrono::steady_clock::now();
            if (static_cast<std::size_t>(got) == buffer.size()) mode = Mode::splicing;  // a full read: a stream
            continue;
        }
        // Copying: a stream without a pipe, through its own buffer. Asio tries the read at once
        // and waits only if it would block.
        const std::span<char> buffer(copy_buffer.get(), kCopyFallbackBytes);
        const std::size_t got = co_await source.async_read_some(asio::buffer(buffer.data(), buffer.size()), with_error(ec));
        if (got == 0) {
            if (!is_end_of_stream(ec)) co_return PumpEnd::source_failed;
            co_return PumpEnd::eof;
        }
        last_activity = std::chrono::steady_clock::now();
        std::span<const char> rest = buffer.first(got);
        while (!rest.empty()) {
            const std::size_t sent = send_once(sink.native_handle(), rest);
            if (sent == kSendFailed) co_return PumpEnd::sink_failed;
            bytes += sent;
            rest = rest.subspan(sent);
            if (rest.empty()) break;
            co_await sink.async_wait(tcp::socket::wait_write, with_error(ec));  // backpressure
            if (ec) co_return PumpEnd::sink_failed;
        }
        last_activity = std::chrono::steady_clock::now();
    }
}

}  // namespace egressgate::proxy
