// One tunnel direction on real loopback sockets: every byte arrives, each way a side can fail
// has its own end, and a fast stream gives the worker's other handlers their turn.
#include <catch.hpp>

#include <sys/socket.h>

#include <cstring>
#include <optional>
#include <string>
#include <thread>

#include "proxy/tunnel/splice_pump.hpp"

using namespace egressgate::proxy;

namespace {

// Two ends of one loopback TCP connection.
struct Connection {
    tcp_socket near;  // the pump's side
    tcp_socket far;   // the peer's side
};

Connection connect_pair(asio::io_context& io) {
    tcp_acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    tcp_socket far(io);
    far.connect(acceptor.local_endpoint());
    tcp_socket near = acceptor.accept();
    near.non_blocking(true);  // as the proxy's sockets are once Asio has used them
    return {std::move(near), std::move(far)};
}

std::string pattern(std::size_t size) {
    std::string bytes(size, '\0');
    for (std::size_t i = 0; i < size; ++i) bytes[i] = static_cast<char>('a' + i % 23);
    return bytes;
}

void reset(tcp_socket& socket) {
    socket.set_option(asio::socket_base::linger(true, 0));
    socket.close();
}

// Room for `bytes` in the kernel, beyond the autotuned default (needs CAP_NET_ADMIN, which the
// tests have as root; without it the kernel's maximum applies and the test says so).
bool force_buffer(tcp_socket& socket, int option, int bytes) {
    return ::setsockopt(socket.native_handle(), SOL_SOCKET, option, &bytes, sizeof bytes) == 0;
}

struct Direction {
    PipePool pool;
    SplicePipe pipe{pool};
    std::uint64_t bytes = 0;
    std::chrono::steady_clock::time_point activity{};
    std::optional<PumpEnd> end;
};

}  // namespace

TEST_CASE("a pump delivers every byte in order and ends at the source's EOF", "[pump]") {
    asio::io_context io;
    auto source = connect_pair(io);
    auto sink = connect_pair(io);
    const std::string sent = pattern(3 * 1024 * 1024 + 17);  // messages first, then a stream
    std::string received;
    std::thread writer([&] {
        asio::write(source.far, asio::buffer(sent));
        source.far.shutdown(tcp_socket::shutdown_send);
    });
    std::thread reader([&] {
        error_code ec;
        char chunk[65536];
        for (;;) {
            const std::size_t n = sink.far.read_some(asio::buffer(chunk), ec);
            if (ec) break;
            received.append(chunk, n);
        }
    });
    Direction d;
    SplicePump pump(source.near, sink.near, d.pipe, d.bytes, d.activity);
    pump.start([&](PumpEnd end) {
        d.end = end;
        sink.near.shutdown(tcp_socket::shutdown_send);  // the tunnel passes the EOF on
    });
    io.run();
    writer.join();
    reader.join();
    REQUIRE(d.end == PumpEnd::eof);
    CHECK(d.bytes == sent.size());
    CHECK(received == sent);
    CHECK_FALSE(d.pipe.is_open());  // an ended direction keeps no pipe
}

// Each message comes after the last was delivered: the pump read every one short (the
// source drained) and waited for the next without asking the socket again.
TEST_CASE("a pump that found its source drained takes the next message on its edge", "[pump]") {
    asio::io_context io;
    auto source = connect_pair(io);
    auto sink = connect_pair(io);
    constexpr int kMessages = 50;
    int delivered = 0;
    std::thread peer([&] {
        for (int i = 0; i < kMessages; ++i) {
            const std::string message = "message " + std::to_string(i);
            asio::write(source.far, asio::buffer(message));
            std::string echoed(message.size(), '\0');
            error_code ec;
            asio::read(sink.far, asio::buffer(echoed), ec);
            if (ec || echoed != message) return;
            ++delivered;
        }
        source.far.shutdown(tcp_socket::shutdown_send);
    });
    Direction d;
    SplicePump pump(source.near, sink.near, d.pipe, d.bytes, d.activity);
    pump.start([&](PumpEnd end) {
        d.end = end;
        sink.near.shutdown(tcp_socket::shutdown_send);
    });
    io.run_for(std::chrono::seconds(10));
    if (!d.end) sink.near.close();  // a stuck pump: let the peer's read end
    peer.join();
    CHECK(delivered == kMessages);
    CHECK(d.end == PumpEnd::eof);
}

TEST_CASE("a source that resets ends the direction as source_failed", "[pump]") {
    asio::io_context io;
    auto source = connect_pair(io);
    auto sink = connect_pair(io);
    asio::write(source.far, asio::buffer(std::string("hello")));
    Direction d;
    SplicePump pump(source.near, sink.near, d.pipe, d.bytes, d.activity);
    pump.start([&](PumpEnd end) { d.end = end; });
    io.run_for(std::chrono::milliseconds(50));  // the message is through, the pump waits
    CHECK_FALSE(d.end);
    CHECK(d.bytes == 5);
    reset(source.far);
    io.run_for(std::chrono::seconds(5));
    CHECK(d.end == PumpEnd::source_failed);
}

TEST_CASE("a sink that resets ends the direction as sink_failed", "[pump]") {
    asio::io_context io;
    auto source = connect_pair(io);
    auto sink = connect_pair(io);
    reset(sink.far);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // the RST is in
    asio::write(source.far, asio::buffer(std::string("bytes for nobody")));
    Direction d;
    SplicePump pump(source.near, sink.near, d.pipe, d.bytes, d.activity);
    pump.start([&](PumpEnd end) { d.end = end; });
    io.run_for(std::chrono::seconds(5));
    CHECK(d.end == PumpEnd::sink_failed);
    CHECK(d.bytes == 0);
}

TEST_CASE("a socket closed under a waiting pump ends it, and nothing runs after", "[pump]") {
    asio::io_context io;
    auto source = connect_pair(io);
    auto sink = connect_pair(io);
    Direction d;
    int ends = 0;
    SplicePump pump(source.near, sink.near, d.pipe, d.bytes, d.activity);
    pump.start([&](PumpEnd end) {
        d.end = end;
        ++ends;
    });
    io.run_for(std::chrono::milliseconds(20));
    REQUIRE_FALSE(d.end);
    source.near.close();  // the idle deadline, or a reset passed on from the other direction
    io.run_for(std::chrono::seconds(1));
    CHECK(d.end == PumpEnd::source_failed);
    CHECK(ends == 1);
}

TEST_CASE("a fast stream yields to the worker's other handlers", "[pump]") {
    asio::io_context io;
    auto source = connect_pair(io);
    auto sink = connect_pair(io);
    constexpr int kRoom = 8 * 1024 * 1024;
    const bool forced = force_buffer(source.far, SO_SNDBUFFORCE, kRoom) && force_buffer(source.near, SO_RCVBUFFORCE, kRoom) &&
                        force_buffer(sink.near, SO_SNDBUFFORCE, kRoom) && force_buffer(sink.far, SO_RCVBUFFORCE, kRoom);
    INFO("socket buffers forced to 8 MiB: " << forced);
    // All of it queued before the pump starts: without a yield, the pump would move it all (the
    // sink has room for it) before anything else on the worker ran.
    const std::string sent = pattern(4 * 1024 * 1024);
    source.far.non_blocking(true);
    error_code ec;
    const std::size_t queued = source.far.write_some(asio::buffer(sent), ec);
    REQUIRE(queued >= 2 * 1024 * 1024);  // more than one turn moves (17 chunks at most)
    source.far.shutdown(tcp_socket::shutdown_send);
    Direction d;
    std::optional<std::uint64_t> bytes_when_others_ran;
    asio::post(io, [&] { bytes_when_others_ran = d.bytes; });  // another tunnel's handler
    SplicePump pump(source.near, sink.near, d.pipe, d.bytes, d.activity);
    pump.start([&](PumpEnd end) { d.end = end; });
    std::string received;
    std::thread reader([&] {
        error_code read_ec;
        char chunk[65536];
        while (received.size() < queued) {
            const std::size_t n = sink.far.read_some(asio::buffer(chunk), read_ec);
            if (read_ec) break;
            received.append(chunk, n);
        }
    });
    io.run_for(std::chrono::seconds(10));
    reader.join();
    REQUIRE(bytes_when_others_ran);
    CHECK(*bytes_when_others_ran <= kMessageChunkBytes + kMaxChunksPerTurn * kSpliceChunkBytes);
    CHECK(*bytes_when_others_ran < queued);
    CHECK(d.end == PumpEnd::eof);
    CHECK(d.bytes == queued);
    CHECK(received == sent.substr(0, queued));
}
