#pragma once
// One direction of a tunnel: read from one stream, write all of it to the other, repeat. A pump
// never reads more than it has written (backpressure). At the source's EOF it returns: when the
// sink's sending side is shut is the tunnel's choice (see TunnelSession::pass_on_eof).
#include <chrono>
#include <cstdint>
#include <span>

#include "proxy/asio.hpp"
#include "proxy/client_stream.hpp"

namespace egressgate::proxy {

// Per direction, so a tunnel holds two. Big enough for full-speed loopback and LAN transfers.
inline constexpr std::size_t kTunnelBufferBytes = 64 * 1024;

enum class PumpEnd {
    eof,                 // the source finished; the sink's sending side is still open
    source_failed,       // the source reset (or failed): the sink is to be reset too
    sink_failed,         // the sink reset (or failed): the source is to be reset too
    resource_exhausted,  // no pipe and no memory to move bytes with: both sides are aborted
};

inline void end_sending(tcp::socket& socket) { shutdown_send(socket); }
inline void end_sending(ClientStream& client) { client.shutdown_send(); }

// `bytes` counts what was delivered to the sink; `last_activity` is refreshed on every chunk.
// Source and Sink are tcp::socket or ClientStream.
template <typename Source, typename Sink>
awaitable<PumpEnd> pump(Source& source, Sink& sink, std::span<char> buffer, std::uint64_t& bytes,
                        std::chrono::steady_clock::time_point& last_activity) {
    for (;;) {
        error_code ec;
        const std::size_t n = co_await source.async_read_some(asio::buffer(buffer.data(), buffer.size()), with_error(ec));
        if (n == 0 && is_end_of_stream(ec)) co_return PumpEnd::eof;
        if (n == 0) co_return PumpEnd::source_failed;
        last_activity = std::chrono::steady_clock::now();
        co_await asio::async_write(sink, asio::buffer(buffer.data(), n), with_error(ec));
        if (ec) co_return PumpEnd::sink_failed;
        bytes += n;
        last_activity = std::chrono::steady_clock::now();
    }
}

}  // namespace egressgate::proxy
