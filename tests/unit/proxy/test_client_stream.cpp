// A plain client's bytes read without waiting: what is there, nothing (and no error) when
// nothing is, and the end of the stream as such.
#include <catch.hpp>

#include <sys/socket.h>
#include <unistd.h>

#include <optional>
#include <string>

#include "proxy/client_stream.hpp"
#include "proxy/native_socket.hpp"

using namespace egressgate::proxy;

namespace {

// A connected loopback pair: the client's end, and the proxy's end as a ClientStream.
struct Connection {
    asio::io_context io;
    tcp_socket client{io};
    std::optional<ClientStream> stream;

    Connection() {
        tcp_acceptor listener(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
        listener.non_blocking(true);
        client.connect(listener.local_endpoint());
        tcp_socket accepted(io);
        tcp::endpoint peer;
        for (int i = 0; i < 1000 && accept_nonblocking(listener, accepted, peer) == asio::error::would_block; ++i) {
            ::usleep(1000);
        }
        REQUIRE(accepted.is_open());
        stream.emplace(std::move(accepted));
    }
};

// Reads what is there, trying for up to a second while the kernel moves it across loopback.
std::size_t receive_within_a_second(ClientStream& stream, char* buffer, std::size_t size, error_code& ec) {
    for (int i = 0; i < 1000; ++i) {
        if (const std::size_t n = stream.receive_now(buffer, size, ec); n != 0 || ec) return n;
        ::usleep(1000);
    }
    return 0;
}

}  // namespace

TEST_CASE("receive_now returns what a plain client sent, and never waits", "[client_stream]") {
    Connection c;
    char buffer[64];
    error_code ec;
    CHECK(c.stream->receive_now(buffer, sizeof buffer, ec) == 0);  // nothing yet
    CHECK_FALSE(ec);

    const std::string head = "CONNECT x.example:443 HTTP/1.1\r\n\r\n";
    asio::write(c.client, asio::buffer(head));
    const std::size_t n = receive_within_a_second(*c.stream, buffer, sizeof buffer, ec);
    CHECK_FALSE(ec);
    CHECK(std::string(buffer, n) == head);

    CHECK(c.stream->receive_now(buffer, sizeof buffer, ec) == 0);  // all of it was taken
    CHECK_FALSE(ec);
}

TEST_CASE("receive_now says eof once the client has closed", "[client_stream]") {
    Connection c;
    c.client.shutdown(tcp::socket::shutdown_send);
    char buffer[16];
    error_code ec;
    CHECK(receive_within_a_second(*c.stream, buffer, sizeof buffer, ec) == 0);
    CHECK(ec == asio::error::eof);
}
