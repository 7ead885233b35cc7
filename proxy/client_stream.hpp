#pragma once
// What a session needs from its client connection, for plain TCP and for clients that speak TLS
// to the proxy itself ([proxy] tls_listen). Sessions and pumps are written once against these.
#include <boost/asio/ssl.hpp>

#include "proxy/asio.hpp"

namespace egressgate::proxy {

using TlsStream = asio::ssl::stream<tcp::socket>;

inline tcp::socket& socket_of(tcp::socket& stream) { return stream; }
inline tcp::socket& socket_of(TlsStream& stream) { return stream.next_layer(); }

// A clean end of the byte stream. A TLS peer that closes TCP without close_notify is treated as
// EOF too: what it sent was delivered, and tunnels carry their own integrity inside.
inline bool is_end_of_stream(const error_code& ec) {
    return ec == asio::error::eof || ec == asio::ssl::error::stream_truncated;
}

// Ends our sending direction, keeping the receiving one open (half close).
inline void shutdown_send(tcp::socket& stream) {
    error_code ec;
    stream.shutdown(tcp::socket::shutdown_send, ec);
}
// TLS has no half close that keeps reading: a close_notify needs its own exchange. The FIN alone
// tells the client that the tunnel's upstream has finished.
inline void shutdown_send(TlsStream& stream) { shutdown_send(stream.next_layer()); }

// The server side of the TLS handshake; nothing to do for plain TCP.
inline awaitable<error_code> accept_handshake(tcp::socket&) { co_return error_code{}; }
inline awaitable<error_code> accept_handshake(TlsStream& stream) {
    error_code ec;
    co_await stream.async_handshake(asio::ssl::stream_base::server, with_error(ec));
    co_return ec;
}

}  // namespace egressgate::proxy
