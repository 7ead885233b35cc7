#pragma once
// One direction of a tunnel: read from one socket, write all of it to the other, repeat. A pump
// never reads more than it has written (backpressure), and turns EOF into a write shutdown.
#include <chrono>
#include <cstdint>
#include <span>

#include "proxy/asio.hpp"

namespace egressgate::proxy {

// Per direction, so a tunnel holds two. Big enough for full-speed loopback and LAN transfers.
inline constexpr std::size_t kTunnelBufferBytes = 64 * 1024;

enum class PumpEnd {
    eof,          // the source finished; the sink's write side was shut down
    read_error,   // the source reset or failed
    write_error,  // the sink reset or failed
};

// `bytes` counts what was delivered to the sink; `last_activity` is refreshed on every chunk.
awaitable<PumpEnd> pump(tcp::socket& source, tcp::socket& sink, std::span<char> buffer, std::uint64_t& bytes,
                        std::chrono::steady_clock::time_point& last_activity);

}  // namespace egressgate::proxy
