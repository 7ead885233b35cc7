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

}  // namespace

void SplicePump::start(PumpEndHandler on_end) {
    on_end_ = std::move(on_end);
    run();
}

// Moves bytes until a side would block, then waits for that side; kMaxChunksPerTurn chunks at
// most before the worker's other connections get their turn. Every step that does not wait or
// end moved bytes or changed the mode, so the loop always makes progress.
void SplicePump::run() {
    for (int chunks = 0; chunks < kMaxChunksPerTurn; ++chunks) {
        switch (advance()) {
        case Step::progressed: continue;
        case Step::source_empty:
            pipe_.release();  // an idle direction holds no pipe
            return await(source_, tcp_socket::wait_read);
        case Step::sink_full:
            source_drained_ = false;  // bytes may reach the source meanwhile, and their edge pass
            return await(sink_, tcp_socket::wait_write);
        case Step::ended:
            pipe_.release();
            return on_end_(end_);
        }
    }
    source_drained_ = false;  // as while waiting for the sink
    try {
        asio::post(source_.get_executor(), [this] { run(); });
    } catch (const std::bad_alloc&) {
        on_end_(PumpEnd::resource_exhausted);
    }
}

SplicePump::Step SplicePump::advance() {
    if (pipe_.in_flight > 0) return drain_pipe();
    if (!unsent_.empty()) return send_unsent();
    switch (mode_) {
    case Mode::messages: return read_message();
    case Mode::splicing: return splice_in();
    case Mode::copying: return copy_in();
    }
    return end_with(PumpEnd::resource_exhausted);  // unreachable: every mode is handled above
}

// Both sockets are already non-blocking (Asio made them so for the reads and the connect that
// came before), which splice(2) needs; recv and send say MSG_DONTWAIT all the same.
SplicePump::Step SplicePump::drain_pipe() {
    const ssize_t n = splice_once(pipe_.read_fd(), sink_.native_handle(), pipe_.in_flight);
    if (n > 0) {
        pipe_.in_flight -= static_cast<std::size_t>(n);
        bytes_ += static_cast<std::size_t>(n);
        if (pipe_.in_flight == 0) last_activity_ = std::chrono::steady_clock::now();
        return Step::progressed;
    }
    if (n < 0 && errno == EAGAIN) return Step::sink_full;
    // 0 would mean an empty pipe while bytes are counted in flight: no progress is possible, so
    // the direction fails rather than spin.
    return end_with(n < 0 && is_resource_shortage(errno) ? PumpEnd::resource_exhausted : PumpEnd::sink_failed);
}

SplicePump::Step SplicePump::send_unsent() {
    const std::size_t sent = send_once(sink_.native_handle(), unsent_);
    if (sent == kSendFailed) return end_with(PumpEnd::sink_failed);
    if (sent == 0) return Step::sink_full;
    bytes_ += sent;
    unsent_ = unsent_.subspan(sent);
    if (unsent_.empty()) {
        rest_.reset();
        last_activity_ = std::chrono::steady_clock::now();
    }
    return Step::progressed;
}

// Reads what is there; waits when nothing is. A read that fills the worker's buffer is a
// stream's, and the direction moves to splice for good.
SplicePump::Step SplicePump::read_message() {
    if (source_drained_) return Step::source_empty;
    const std::span<char> buffer = pipe_.message_buffer();
    const ssize_t got = recv_once(source_.native_handle(), buffer);
    if (got < 0 && errno == EAGAIN) return Step::source_empty;
    if (got == 0) return end_with(PumpEnd::eof);
    if (got < 0) return end_with(PumpEnd::source_failed);
    last_activity_ = std::chrono::steady_clock::now();
    note_read(static_cast<std::size_t>(got), buffer.size());
    const std::span<const char> message = buffer.first(static_cast<std::size_t>(got));
    const std::size_t sent = send_once(sink_.native_handle(), message);
    if (sent == kSendFailed) return end_with(PumpEnd::sink_failed);
    bytes_ += sent;
    if (static_cast<std::size_t>(got) == buffer.size()) mode_ = Mode::splicing;
    if (sent < message.size()) return keep_unsent(message.subspan(sent));
    last_activity_ = std::chrono::steady_clock::now();
    return Step::progressed;
}

// The worker's buffer is free again before any wait: the rest is copied out.
SplicePump::Step SplicePump::keep_unsent(std::span<const char> rest) {
    rest_.reset(new (std::nothrow) char[rest.size()]);
    if (!rest_) return end_with(PumpEnd::resource_exhausted);
    std::memcpy(rest_.get(), rest.data(), rest.size());
    unsent_ = std::span<const char>(rest_.get(), rest.size());
    return Step::sink_full;
}

SplicePump::Step SplicePump::splice_in() {
    if (!pipe_.is_open() && !pipe_.open()) return fall_back_to_copying(errno);
    const ssize_t n = splice_once(source_.native_handle(), pipe_.write_fd(), kSpliceChunkBytes);
    if (n == 0) return end_with(PumpEnd::eof);
    if (n < 0 && errno == EAGAIN) return Step::source_empty;
    if (n < 0 && is_resource_shortage(errno)) return fall_back_to_copying(errno);
    if (n < 0) return end_with(PumpEnd::source_failed);
    pipe_.in_flight = static_cast<std::size_t>(n);
    last_activity_ = std::chrono::steady_clock::now();
    return Step::progressed;
}

// No pipe for this direction: its bytes go on by copy if a buffer can be had.
SplicePump::Step SplicePump::fall_back_to_copying(int error) {
    copy_buffer_.reset(new (std::nothrow) char[kCopyFallbackBytes]);
    if (!copy_buffer_) return end_with(PumpEnd::resource_exhausted);
    static std::atomic<bool> logged{false};
    if (!logged.exchange(true)) {
        spdlog::warn("no splice pipe for a tunnel ({}): its bytes go by copy; raise the descriptor limit",
                     std::strerror(error));
    }
    mode_ = Mode::copying;
    return Step::progressed;
}

SplicePump::Step SplicePump::copy_in() {
    if (source_drained_) return Step::source_empty;
    const ssize_t got = recv_once(source_.native_handle(), std::span(copy_buffer_.get(), kCopyFallbackBytes));
    if (got < 0 && errno == EAGAIN) return Step::source_empty;
    if (got == 0) return end_with(PumpEnd::eof);
    if (got < 0) return end_with(PumpEnd::source_failed);
    last_activity_ = std::chrono::steady_clock::now();
    note_read(static_cast<std::size_t>(got), kCopyFallbackBytes);
    unsent_ = std::span<const char>(copy_buffer_.get(), static_cast<std::size_t>(got));
    return Step::progressed;
}

// A TCP recv(2) stops short only when the receive queue ran dry: bytes that come later raise a
// new edge, so the next read waits for it instead of asking again (one EAGAIN fewer per
// message). A splice can stop short with bytes left (the pipe's slots run out), so it asks.
void SplicePump::note_read(std::size_t got, std::size_t asked) { source_drained_ = got < asked; }

SplicePump::Step SplicePump::end_with(PumpEnd end) {
    end_ = end;
    return Step::ended;
}

// Starting the wait allocates; without memory the direction ends as resource-starved.
void SplicePump::await(tcp_socket& socket, tcp_socket::wait_type type) {
    const bool sink = &socket == &sink_;
    try {
        socket.async_wait(type, [this, sink](const error_code& ec) { on_ready(ec, sink); });
    } catch (const std::bad_alloc&) {
        pipe_.release();
        on_end_(PumpEnd::resource_exhausted);
    }
}

void SplicePump::on_ready(const error_code& ec, bool sink) {
    source_drained_ = false;
    if (!ec) return run();
    pipe_.release();
    on_end_(sink ? PumpEnd::sink_failed : PumpEnd::source_failed);
}

}  // namespace egressgate::proxy
