#include "proxy/tunnel.hpp"

namespace egressgate::proxy {

awaitable<PumpEnd> pump(tcp::socket& source, tcp::socket& sink, std::span<char> buffer, std::uint64_t& bytes,
                        std::chrono::steady_clock::time_point& last_activity) {
    for (;;) {
        error_code ec;
        const std::size_t n = co_await source.async_read_some(asio::buffer(buffer.data(), buffer.size()), with_error(ec));
        if (ec == asio::error::eof) {
            sink.shutdown(tcp::socket::shutdown_send, ec);
            co_return PumpEnd::eof;
        }
        if (ec) co_return PumpEnd::read_error;
        last_activity = std::chrono::steady_clock::now();
        co_await asio::async_write(sink, asio::buffer(buffer.data(), n), with_error(ec));
        if (ec) co_return PumpEnd::write_error;
        bytes += n;
        last_activity = std::chrono::steady_clock::now();
    }
}

}  // namespace egressgate::proxy
