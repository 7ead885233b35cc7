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

// Sends what the socket takes now: the bytes sent, or kSendFailed when the peer is gone.
std::size_t send_once(int to, std::span<const char> bytes) {
    for (;;) {
        const ssize_t n = ::send(to, bytes.data(), bytes.size(), MSG_NOSIGNAL);
        if (n >= 0) return static_cast<std::size_t>(n);
        if (errno == EAGAIN) return 0;
        if (errno != EINTR) return kSendFailed;
    }
}

class SplicePump {
public:
    SplicePump(tcp::socket& source, tcp::socket& sink, SplicePipe& pipe, std::span<char> message, std::uint64_t& bytes,
               std::chrono::steady_clock::time_point& last_activity)
        : source_(source), sink_(sink), pipe_(pipe), message_(message), bytes_(bytes), last_activity_(last_activity) {}

    awaitable<PumpEnd> run() {
        for (;;) {
            std::optional<PumpEnd> end;  // no co_await inside ?: (see asio.hpp)
            switch (mode_) {
            case Mode::messages: end = co_await copy_step(message_); break;
            case Mode::splicing: end = co_await splice_step(); break;
            case Mode::copying: end = co_await copy_step(std::span(copy_buffer_.get(), kCopyFallbackBytes)); break;
            }
            if (end) co_return *end;
        }
    }

private:
    enum class Mode {
        messages,  // small reads by copy through the 512-byte message buffer
        splicing,  // a stream: source -> pipe -> sink, never through user space
        copying,   // a stream without a pipe: by copy through kCopyFallbackBytes
    };

    // One read and its delivery. Asio tries the read at once and waits only if it would block,
    // without the epoll_ctl that a readiness wait costs: messages are cheapest this way.
    awaitable<std::optional<PumpEnd>> copy_step(std::span<char> buffer) {
        pipe_.release();
        error_code ec;
        const std::size_t got = co_await source_.async_read_some(asio::buffer(buffer.data(), buffer.size()), with_error(ec));
        if (got == 0) {
            if (!is_end_of_stream(ec)) co_return PumpEnd::source_failed;
            shutdown_send(sink_);
            co_return PumpEnd::eof;
        }
        last_activity_ = std::chrono::steady_clock::now();
        const bool delivered = co_await send_all(buffer.first(got));
        if (!delivered) co_return PumpEnd::sink_failed;
        if (mode_ == Mode::messages && got == buffer.size()) mode_ = Mode::splicing;  // a full read: a stream
        co_return std::nullopt;
    }

    awaitable<bool> send_all(std::span<const char> bytes) {
        while (!bytes.empty()) {
            const std::size_t sent = send_once(sink_.native_handle(), bytes);
            if (sent == kSendFailed) co_return false;
            bytes_ += sent;
            bytes = bytes.subspan(sent);
            if (bytes.empty()) break;
            error_code ec;
            co_await sink_.async_wait(tcp::socket::wait_write, with_error(ec));  // backpressure
            if (ec) co_return false;
        }
        last_activity_ = std::chrono::steady_clock::now();
        co_return true;
    }

    awaitable<std::optional<PumpEnd>> splice_step() {
        if (!pipe_.is_open() && !pipe_.open()) co_return fall_back_to_copying(errno);
        const ssize_t n = splice_once(source_.native_handle(), pipe_.write_fd(), kSpliceChunkBytes);
        if (n == 0) {
            shutdown_send(sink_);
            co_return PumpEnd::eof;
        }
        if (n > 0) {
            pipe_.in_flight = static_cast<std::size_t>(n);
            last_activity_ = std::chrono::steady_clock::now();
            const auto drained = co_await drain_pipe();
            co_return drained;
        }
        if (errno == EAGAIN) {
            // The source had nothing to read: wait for it without holding a pipe.
            pipe_.release();
            error_code ec;
            co_await source_.async_wait(tcp::socket::wait_read, with_error(ec));
            if (ec) co_return PumpEnd::source_failed;
            co_return std::nullopt;
        }
        if (is_resource_shortage(errno)) co_return fall_back_to_copying(errno);
        co_return PumpEnd::source_failed;
    }

    // Whatever is in the pipe goes to the sink; a full sink is waited for (backpressure).
    awaitable<std::optional<PumpEnd>> drain_pipe() {
        while (pipe_.in_flight > 0) {
            const ssize_t n = splice_once(pipe_.read_fd(), sink_.native_handle(), pipe_.in_flight);
            if (n > 0) {
                pipe_.in_flight -= static_cast<std::size_t>(n);
                bytes_ += static_cast<std::uint64_t>(n);
                continue;
            }
            // 0 would mean an empty pipe while bytes are counted in flight: no progress is
            // possible, so the direction fails rather than spin.
            if (n == 0) co_return PumpEnd::sink_failed;
            if (is_resource_shortage(errno)) co_return PumpEnd::resource_exhausted;
            if (errno != EAGAIN) co_return PumpEnd::sink_failed;
            error_code ec;
            co_await sink_.async_wait(tcp::socket::wait_write, with_error(ec));
            if (ec) co_return PumpEnd::sink_failed;
        }
        last_activity_ = std::chrono::steady_clock::now();
        co_return std::nullopt;
    }

    // No pipe for this direction: keep moving its bytes by copy if a buffer can be had.
    std::optional<PumpEnd> fall_back_to_copying(int error) {
        copy_buffer_.reset(new (std::nothrow) char[kCopyFallbackBytes]);
        if (!copy_buffer_) return PumpEnd::resource_exhausted;
        mode_ = Mode::copying;
        static std::atomic<bool> logged{false};
        if (!logged.exchange(true)) {
            spdlog::warn("no splice pipe for a tunnel ({}): its bytes go by copy; raise the descriptor limit",
                         std::strerror(error));
        }
        return std::nullopt;
    }

    tcp::socket& source_;
    tcp::socket& sink_;
    SplicePipe& pipe_;
    std::span<char> message_;
    std::uint64_t& bytes_;
    std::chrono::steady_clock::time_point& last_activity_;
    Mode mode_ = Mode::messages;
    std::unique_ptr<char[]> copy_buffer_;
};

}  // namespace

awaitable<PumpEnd> splice_pump(tcp::socket& source, tcp::socket& sink, SplicePipe& pipe, std::span<char> message,
                               std::uint64_t& bytes, std::chrono::steady_clock::time_point& last_activity) {
    // Both sockets are already non-blocking: Asio made them so for the reads and the connect
    // that came before.
    SplicePump pump(source, sink, pipe, message, bytes, last_activity);
    const PumpEnd end = co_await pump.run();
    co_return end;
}

}  // namespace egressgate::proxy
