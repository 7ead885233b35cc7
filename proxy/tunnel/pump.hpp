#pragma once
// One direction of a tunnel: read from one stream, write all of it to the other, repeat. A pump
// never reads more than it has written (backpressure). At the source's EOF it ends: when the
// sink's sending side is shut is the tunnel's choice (see TunnelSession::pass_on).
//
// Pumps are driven by completion handlers rather than coroutines: a tunnel idles for hours, and
// a pending handler is all an idle direction should hold.
#include <chrono>
#include <cstdint>
#include <functional>
#include <new>
#include <span>

#include "proxy/asio.hpp"
#include "proxy/client_stream.hpp"

namespace egressgate::proxy {

// Per direction, so a tunnel holds two. Big enough for full-speed loopback and LAN transfers.
inline constexpr std::size_t kTunnelBufferBytes = 64 * 1024;

// Chunks a pump moves in one turn of its worker before it lets the worker's other connections
// run: one fast stream cannot hold up the rest.
inline constexpr int kMaxChunksPerTurn = 16;

enum class PumpEnd {
    eof,                 // the source finished; the sink's sending side is still open
    source_failed,       // the source reset (or failed): the sink is to be reset too
    sink_failed,         // the sink reset (or failed): the source is to be reset too
    resource_exhausted,  // no pipe and no memory to move bytes with: both sides are aborted
};

// Told once, when a pump has ended.
using PumpEndHandler = std::function<void(PumpEnd)>;

inline void end_sending(tcp_socket& socket) { shutdown_send(socket); }
inline void end_sending(ClientStream& client) { client.shutdown_send(); }

// A direction through a buffer of the tunnel's: for TLS clients, whose bytes pass through
// OpenSSL. `bytes` counts what was delivered to the sink; `last_activity` is refreshed on every
// chunk. Source and Sink are tcp_socket or ClientStream.
template <typename Source, typename Sink>
class CopyPump {
public:
    CopyPump(Source& source, Sink& sink, std::span<char> buffer, std::uint64_t& bytes,
             std::chrono::steady_clock::time_point& last_activity)
        : source_(source), sink_(sink), buffer_(buffer), bytes_(bytes), last_activity_(last_activity) {}
    CopyPump(const CopyPump&) = delete;
    CopyPump& operator=(const CopyPump&) = delete;

    void start(PumpEndHandler on_end) {
        on_end_ = std::move(on_end);
        read();
    }

private:
    // Starting an operation allocates; without memory the direction ends as resource-starved.
    void read() {
        try {
            source_.async_read_some(asio::buffer(buffer_.data(), buffer_.size()),
                                    [this](const error_code& ec, std::size_t n) { on_read(ec, n); });
        } catch (const std::bad_alloc&) {
            on_end_(PumpEnd::resource_exhausted);
        }
    }
    void on_read(const error_code& ec, std::size_t n) {
        if (n == 0) return on_end_(is_end_of_stream(ec) ? PumpEnd::eof : PumpEnd::source_failed);
        last_activity_ = std::chrono::steady_clock::now();
        try {
            asio::async_write(sink_, asio::buffer(buffer_.data(), n),
                              [this](const error_code& write_ec, std::size_t written) { on_written(write_ec, written); });
        } catch (const std::bad_alloc&) {
            on_end_(PumpEnd::resource_exhausted);
        }
    }
    void on_written(const error_code& ec, std::size_t n) {
        if (ec) return on_end_(PumpEnd::sink_failed);
        bytes_ += n;
        last_activity_ = std::chrono::steady_clock::now();
        read();
    }

    Source& source_;
    Sink& sink_;
    std::span<char> buffer_;
    std::uint64_t& bytes_;
    std::chrono::steady_clock::time_point& last_activity_;
    PumpEndHandler on_end_;
};

}  // namespace egressgate::proxy
