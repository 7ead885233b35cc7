// Sockets handed to Asio non-blocking from birth: Asio knows it (no ioctl before the first
// operation), they carry bytes both ways, and they close like any other. Listeners hand
// TCP_NODELAY down to what they accept.
#include <catch.hpp>

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <string>

#include "proxy/native_socket.hpp"

using namespace egressgate::proxy;

namespace {

bool nonblocking_and_cloexec(int fd) {
    return (::fcntl(fd, F_GETFL) & O_NONBLOCK) != 0 && (::fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0;
}

tcp_acceptor loopback_listener(asio::io_context& io) {
    return tcp_acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
}

}  // namespace

TEST_CASE("an accept with no connection waiting says would_block", "[native_socket]") {
    asio::io_context io;
    auto listener = loopback_listener(io);
    listener.non_blocking(true);
    tcp_socket client(io);
    tcp::endpoint peer;
    CHECK(accept_nonblocking(listener, client, peer) == asio::error::would_block);
    CHECK_FALSE(client.is_open());
}

TEST_CASE("sockets opened and accepted non-blocking carry bytes through Asio", "[native_socket]") {
    asio::io_context io;
    auto listener = loopback_listener(io);
    listener.non_blocking(true);

    tcp_socket dialer(io);
    REQUIRE_FALSE(open_nonblocking(dialer, tcp::v4()));
    CHECK(nonblocking_and_cloexec(dialer.native_handle()));
    // Asio's own flag: set, so it issues no ioctl(FIONBIO) before the first operation.
    CHECK(dialer.native_non_blocking());
    error_code connected = asio::error::would_block;
    dialer.async_connect(listener.local_endpoint(), [&](const error_code& ec) { connected = ec; });
    io.run();
    io.restart();
    REQUIRE_FALSE(connected);

    tcp_socket accepted(io);
    tcp::endpoint peer;
    REQUIRE_FALSE(accept_nonblocking(listener, accepted, peer));
    CHECK(nonblocking_and_cloexec(accepted.native_handle()));
    CHECK(accepted.native_non_blocking());
    CHECK(peer == dialer.local_endpoint());

    const std::string hello = "CONNECT x:443 HTTP/1.1\r\n\r\n";
    std::string received(hello.size(), '\0');
    asio::async_write(dialer, asio::buffer(hello), [](const error_code&, std::size_t) {});
    std::size_t got = 0;
    asio::async_read(accepted, asio::buffer(received), [&](const error_code& ec, std::size_t n) {
        if (!ec) got = n;
    });
    io.run();
    io.restart();
    CHECK(got == hello.size());
    CHECK(received == hello);

    // Closed like any socket: the peer sees EOF, and a descriptor number the kernel hands out
    // again is registered afresh.
    const int number = accepted.native_handle();
    accepted.close();
    CHECK(::fcntl(number, F_GETFD) == -1);
    char byte;
    error_code eof;
    dialer.async_read_some(asio::buffer(&byte, 1), [&](const error_code& ec, std::size_t) { eof = ec; });
    io.run();
    io.restart();
    CHECK(eof == asio::error::eof);
    tcp_socket again(io);
    REQUIRE_FALSE(open_nonblocking(again, tcp::v4()));
    CHECK(again.native_handle() == number);
    error_code refused;
    again.async_connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), 1), [&](const error_code& ec) { refused = ec; });
    io.run();
    CHECK(refused == asio::error::connection_refused);
}

TEST_CASE("a listener's connections are TCP_NODELAY from accept, with no setsockopt of their own", "[native_socket]") {
    asio::io_context io;
    auto listener = open_listener(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    tcp_socket client(io);
    tcp::endpoint peer;
    CHECK(accept_nonblocking(listener, client, peer) == asio::error::would_block);  // non-blocking

    tcp_socket dialer(io);
    dialer.connect(listener.local_endpoint());  // blocking: the handshake is done when it returns
    REQUIRE_FALSE(accept_nonblocking(listener, client, peer));
    int no_delay = 0;
    socklen_t length = sizeof no_delay;
    REQUIRE(::getsockopt(client.native_handle(), IPPROTO_TCP, TCP_NODELAY, &no_delay, &length) == 0);
    CHECK(no_delay == 1);
}
