#pragma once
// The client side of a session: plain TCP, or TLS for clients of [proxy] tls_listen. One session
// type serves both; the stream looks like any Asio AsyncStream to the code that reads and writes.
#include <sys/socket.h>

#include <cerrno>
#include <memory>
#include <string_view>
#include <variant>

#include <boost/asio/ssl.hpp>

#include "proxy/asio.hpp"

namespace egressgate::proxy {

using TlsStream = asio::ssl::stream<tcp_socket>;

// A clean end of the byte stream. A TLS peer that closes TCP without close_notify is treated as
// EOF too: what it sent was delivered, and tunnels carry their own integrity inside.
inline bool is_end_of_stream(const error_code& ec) {
    return ec == asio::error::eof || ec == asio::ssl::error::stream_truncated;
}

// Ends our sending direction, keeping the receiving one open (half close).
inline void shutdown_send(tcp_socket& socket) {
    error_code ignored;
    socket.shutdown(tcp_socket::shutdown_send, ignored);
}

class ClientStream {
public:
    using executor_type = tcp_socket::executor_type;

    explicit ClientStream(tcp_socket socket) : stream_(std::move(socket)) {}
    explicit ClientStream(TlsStream stream) : stream_(std::make_unique<TlsStream>(std::move(stream))) {}

    executor_type get_executor() { return socket().get_executor(); }
    tcp_socket& socket() {
        return std::visit([](auto& s) -> tcp_socket& { return lowest(s); }, stream_);
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

    // The server side of the TLS handshake (TLS clients only: plain TCP has none).
    awaitable<error_code> handshake() {
        error_code ec;
        co_await std::get<std::unique_ptr<TlsStream>>(stream_)->async_handshake(asio::ssl::stream_base::server,
                                                                                 with_error(ec));
        co_return ec;
    }

    // Sends what a plain TCP client's socket takes at once, so that a short answer (the 200)
    // needs no wait and no trip through the event loop; the caller writes the rest. A TLS
    // client takes nothing here: OpenSSL owns its record layer.
    std::size_t send_now(std::string_view bytes, error_code& ec) {
        if (is_tls()) return 0;
        for (;;) {
            const ssize_t n = ::send(socket().native_handle(), bytes.data(), bytes.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
            if (n >= 0) return static_cast<std::size_t>(n);
            if (errno == EAGAIN) return 0;
            if (errno != EINTR) {
                ec = error_code(errno, boost::system::system_category());
                return 0;
            }
        }
    }

    // Reads what a plain TCP client already sent, without waiting: 0 when nothing is there yet
    // (or the client is TLS, whose records OpenSSL reads); 0 and asio::error::eof when it
    // closed, 0 and the system's error (a reset, say) when the read failed.
    std::size_t receive_now(char* buffer, std::size_t size, error_code& ec) {
        if (is_tls()) return 0;
        for (;;) {
            const ssize_t n = ::recv(socket().native_handle(), buffer, size, MSG_DONTWAIT);
            if (n > 0) return static_cast<std::size_t>(n);
            if (n == 0) {
                ec = asio::error::eof;
                return 0;
            }
            if (errno == EAGAIN) return 0;
            if (errno != EINTR) {
                ec = error_code(errno, boost::system::system_category());
                return 0;
            }
        }
    }

    // TLS has no half close that keeps reading (close_notify needs its own exchange): the FIN
    // alone tells the client that the upstream has finished.
    void shutdown_send() { proxy::shutdown_send(socket()); }
    void close() {
        error_code ignored;
        socket().close(ignored);
    }

private:
    static tcp_socket& lowest(tcp_socket& s) { return s; }
    static tcp_socket& lowest(std::unique_ptr<TlsStream>& s) { return s->next_layer(); }
    static tcp_socket& layer(tcp_socket& s) { return s; }
    static TlsStream& layer(std::unique_ptr<TlsStream>& s) { return *s; }

    // The TLS stream (OpenSSL state, ~400 bytes) lives apart: plain clients, nearly all of them,
    // do not carry its size in every session.
    std::variant<tcp_socket, std::unique_ptr<TlsStream>> stream_;
};

}  // namespace egressgate::proxy
