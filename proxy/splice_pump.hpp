#pragma once
// A tunnel direction between two TCP sockets that never copies bytes into user space: splice(2)
// moves them from the source socket into a pipe and from the pipe into the sink. Used once no
// inspection is left (after the SNI check), when neither side is TLS-terminated here.
#include <chrono>
#include <cstdint>

#include "proxy/asio.hpp"
#include "proxy/tunnel.hpp"

namespace egressgate::proxy {

// Bytes asked of one splice(2) from the source: the default pipe capacity, so a direction holds at
// most this much in flight (backpressure, as with the buffered pump).
inline constexpr std::size_t kSpliceChunkBytes = 64 * 1024;

// A pipe pair, opened on the first byte so that idle tunnels hold no pipe.
class SplicePipe {
public:
    SplicePipe() = default;
    ~SplicePipe();
    SplicePipe(const SplicePipe&) = delete;
    SplicePipe& operator=(const SplicePipe&) = delete;

    bool open();  // false: out of descriptors (errno says why)
    bool is_open() const { return read_fd_ >= 0; }
    int read_fd() const { return read_fd_; }
    int write_fd() const { return write_fd_; }

private:
    int read_fd_ = -1;
    int write_fd_ = -1;
};

awaitable<PumpEnd> splice_pump(tcp::socket& source, tcp::socket& sink, SplicePipe& pipe, std::uint64_t& bytes,
                               std::chrono::steady_clock::time_point& last_activity);

}  // namespace egressgate::proxy
