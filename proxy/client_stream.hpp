#pragma once
// The client side of a session: plain TCP, or TLS for clients of [proxy] tls_listen. One session
// type serves both; the stream looks like any Asio AsyncStream to the code that reads and writes.
#include <memory>
#include <variant>

#include <boost/asio/ssl.hpp>

#include "proxy/asio.hpp"

namespace egressgate::proxy {

using TlsStream = asio::ssl::stream<tcp::socket>;

// A clean end of the byte stream. A TLS peer that closes TCP without close_notify is treated as
// EOF too: what it sent was delivered, and tunnels carry their own integrity inside.
inline bool is_end_of_stream(const error_code& ec) {
    return ec == asio::error::eof || ec == asio::ssl::error::stream_truncated;
}

// Ends our sending direction, keeping the receiving one open (half close).
inline void shutdown_send(tcp::socket& socket) {
    error_code ignored;
    socket.shutdown(tcp::socket::shutdown_send, ignored);
}

class ClientStream {
public:
    using executor_type = tcp::socket::executor_type;

    explicit ClientStream(tcp::socket socket) : stream_(std::move(socket)) {}
    explicit ClientStream(TlsStream stream) : stream_(std::make_unique<TlsStream>(std::move(stream))) {}

    executor_type get_executor() { return socket().get_executor(); }
    tcp::socket& socket() {
        return std::visit([](auto& s) -> tcp::socket& { return lowest(s); }, stream_);
    }
    bool is_tls() const { return std::holds_alternative<std::unique_ptr<TlsStream>>(stream_); }

    template <typename Buffers, typename Token>
    auto async_read_some(const Buffers& buffers, Token&& token) {
        return std::visit([&](auto& s) { return layer(s).async_read_some(buffers, std::forward<Token>(token)); }, stream_);
    }
    template <typename Buffers, typename Token>
    auto async_write_some(const Buffers& buffers, Token&& token) {
        return std::visit([&](auto& s) { return layer(s).async_write_some(buffers, std::forward<Token>(token)); }, stream_);
    }

    // The server side of the TLS handshake; nothing to do for plain TCP.
    awaitable<error_code> handshake() {
        error_code ec;
        if (auto* tls = std::get_if<std::unique_ptr<TlsStream>>(&stream_)) {
            co_await (*tls)->async_handshake(asio::ssl::stream_base::server, with_error(ec));
        }
        co_return ec;
    }

    // TLS has no half close that keeps reading (close_notify needs its own exchange): the FIN
    // alone tells the client that the upstream has finished.
    void shutdown_send() { proxy::shutdown_send(socket()); }
    void close() {
        error_code ignored;
        socket().close(ignored);
    }

private:
    static tcp::socket& lowest(tcp::socket& s) { return s; }
    static tcp::socket& lowest(std::unique_ptr<TlsStream>& s) { return s->next_layer(); }
    static tcp::socket& layer(tcp::socket& s) { return s; }
    static TlsStream& layer(std::unique_ptr<TlsStream>& s) { return *s; }

    // The TLS stream (OpenSSL state, ~400 bytes) lives apart: plain clients, nearly all of them,
    // do not carry its size in every session.
    std::variant<tcp::socket, std::unique_ptr<TlsStream>> stream_;
};

}  // namespace egressgate::proxy
