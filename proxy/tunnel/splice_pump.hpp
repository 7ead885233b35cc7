#pragma once
// A tunnel direction between two TCP sockets that never copies bytes into user space: splice(2)
// moves them from the source socket into a pipe and from the pipe into the sink. Used once no
// inspection is left (after the SNI check), when neither side is TLS-terminated here.
#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <utility>
#include <vector>

#include "proxy/asio.hpp"
#include "proxy/tunnel/pump.hpp"

namespace egressgate::proxy {

// Bytes asked of one splice(2) from the source: the default pipe capacity, so a direction holds at
// most this much in flight (backpressure, as with the buffered pump).
inline constexpr std::size_t kSpliceChunkBytes = 64 * 1024;

// Bytes a direction reads by copy while it looks like messages (requests, TLS handshakes, agent
// chatter, echoes): one read and one send cost less than two splices and a readiness wait. A
// direction whose read fills this buffer is a stream and moves to splice for good. The buffer
// is the worker's (PipePool::message_buffer), shared by all its tunnels: bytes stay in it only
// between a recv and the send right after, never across a wait, so an idle tunnel holds none.
inline constexpr std::size_t kMessageChunkBytes = 512;
// When no pipe can be had (descriptors exhausted), a streaming direction copies through a buffer
// of this size instead, allocated then and freed with the tunnel.
inline constexpr std::size_t kCopyFallbackBytes = 16 * 1024;

// Empty pipes kept by a worker for the next tunnel: a short tunnel then costs no pipe2() and no
// close() calls. Bounded by kMaxPooledPipes; touched only on the worker's thread.
//
// The kernel counts every pipe's capacity against its user's fs.pipe-user-pages-soft (16384
// pages by default: 1,024 pipes of 64 KiB) and gives an unprivileged user's pipes past it two pages
// only. Such a pipe still works, with more splice calls per MB; it is closed rather than pooled, so
// the pool holds full-size pipes only, and the first one is logged once per process with the fix
// (systemd/60-egressgate.conf lifts the limit).
inline constexpr std::size_t kMaxPooledPipes = 256;

class PipePool {
public:
    PipePool() = default;
    ~PipePool();
    PipePool(const PipePool&) = delete;
    PipePool& operator=(const PipePool&) = delete;

    // false: out of descriptors (errno says why). full_size: the pipe holds kSpliceChunkBytes.
    bool acquire(int& read_fd, int& write_fd, bool& full_size);
    void release(int read_fd, int write_fd, bool full_size);  // the pipe must be empty
    // The worker's buffer for reads by copy (kMessageChunkBytes): free again before any wait.
    std::span<char> message_buffer() { return message_buffer_; }

private:
    std::vector<std::pair<int, int>> pipes_;
    std::array<char, kMessageChunkBytes> message_buffer_;
};

// A direction's pipe, taken from the worker's pool while bytes are in flight.
class SplicePipe {
public:
    explicit SplicePipe(PipePool& pool) : pool_(pool) {}
    ~SplicePipe();
    SplicePipe(const SplicePipe&) = delete;
    SplicePipe& operator=(const SplicePipe&) = delete;

    bool open() { return pool_.acquire(read_fd_, write_fd_, full_size_); }
    std::span<char> message_buffer() { return pool_.message_buffer(); }
    // Gives an empty pipe back while the direction waits for its source: idle tunnels hold none.
    void release();
    bool is_open() const { return read_fd_ >= 0; }
    int read_fd() const { return read_fd_; }
    int write_fd() const { return write_fd_; }
    // Bytes spliced in and not yet out: a pipe goes back to the pool only when this is zero.
    std::size_t in_flight = 0;

private:
    PipePool& pool_;
    int read_fd_ = -1;
    int write_fd_ = -1;
    bool full_size_ = false;
};

// Moves bytes from source to sink until EOF or a failure: messages by copy, streams by splice,
// and by copy again when the worker cannot get a pipe. Backpressure throughout: nothing more is
// read until what was read has been written. Driven by completion handlers, not a coroutine: an
// idle direction holds this object and one pending readiness wait, nothing more.
class SplicePump {
public:
    SplicePump(tcp_socket& source, tcp_socket& sink, SplicePipe& pipe, std::uint64_t& bytes,
               std::chrono::steady_clock::time_point& last_activity)
        : source_(source), sink_(sink), pipe_(pipe), bytes_(bytes), last_activity_(last_activity) {}
    SplicePump(const SplicePump&) = delete;
    SplicePump& operator=(const SplicePump&) = delete;

    // Runs until the direction ends, then calls on_end once (possibly before start returns).
    // The pump must outlive its pending wait: its owner closes the sockets and waits for on_end.
    void start(PumpEndHandler on_end);

private:
    // What the last step found: move on, wait for one side, or stop.
    enum class Step { progressed, source_empty, sink_full, ended };
    // What a direction moves its bytes with now.
    enum class Mode {
        messages,  // small reads by copy through the worker's message buffer
        splicing,  // a stream: source -> pipe -> sink, never through user space
        copying,   // a stream without a pipe: by copy through kCopyFallbackBytes
    };

    void run();
    Step advance();
    Step drain_pipe();
    Step send_unsent();
    Step read_message();
    Step splice_in();
    Step copy_in();
    Step fall_back_to_copying(int error);
    Step keep_unsent(std::span<const char> rest);
    void note_read(std::size_t got, std::size_t asked);
    Step end_with(PumpEnd end);
    void await(tcp_socket& socket, tcp_socket::wait_type type);
    void on_ready(const error_code& ec, bool sink);

    tcp_socket& source_;
    tcp_socket& sink_;
    SplicePipe& pipe_;
    std::uint64_t& bytes_;
    std::chrono::steady_clock::time_point& last_activity_;
    PumpEndHandler on_end_;
    Mode mode_ = Mode::messages;
    PumpEnd end_ = PumpEnd::eof;
    // The last read stopped short within this turn: the source has nothing until its next edge.
    bool source_drained_ = false;
    // Bytes read by copy and not yet sent: in copy_buffer_ (copying) or in rest_ (the part of a
    // message the sink did not take at once, copied out of the worker's buffer before the wait).
    std::span<const char> unsent_;
    std::unique_ptr<char[]> rest_;
    std::unique_ptr<char[]> copy_buffer_;
};

}  // namespace egressgate::proxy
