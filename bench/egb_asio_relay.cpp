// egb-asio-relay: the bare relay of egb_relay.cpp, on Asio's reactor the way egressgate uses it.
//
//   egb-asio-relay --threads N --max-seconds S
//
// The same job as egb-relay: every CONNECT gets 200 and is relayed to 127.0.0.1 on the requested
// port; no policy, no DNS, no deadlines, no logging. The I/O is egressgate's: one io_context per
// thread with its own SO_REUSEPORT listener, sockets non-blocking from accept4 and
// socket(SOCK_NONBLOCK) and handed to Asio as egressgate hands them (proxy/native_socket.cpp),
// the head read and the connect through Asio, and while relaying a recv and a send per message
// with a readiness wait (async_wait) only when a side would block and no read after a short
// read. Completion handlers throughout, no coroutine, and no locks in Asio (nothing crosses
// threads). What it spends above egb-relay is what Asio's reactor costs, whatever runs on it;
// what egressgate spends above it is egressgate's own work. bench/run.sh shows all three.
// Prints "listening on 127.0.0.1:PORT", then serves until --max-seconds or SIGTERM.
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "loopback.hpp"
#include "relay_placement.hpp"
#include "proxy/native_socket.hpp"

namespace {

namespace asio = egressgate::proxy::asio;
using egressgate::proxy::error_code;
using egressgate::proxy::steady_timer;
using egressgate::proxy::tcp;
using egressgate::proxy::tcp_acceptor;
using egressgate::proxy::tcp_socket;

constexpr std::size_t kHeadLimit = 1024;      // a CONNECT head longer than this is refused
constexpr std::size_t kChunkBytes = 16 * 1024;
constexpr int kAcceptBatch = 16;              // connections taken per wake-up, as egressgate's workers do
constexpr auto kStopCheck = std::chrono::milliseconds(100);
constexpr auto kAcceptRetry = std::chrono::milliseconds(10);
constexpr std::string_view kEstablished = "HTTP/1.1 200 Connection established\r\n\r\n";

std::atomic<bool> g_stop{false};

// The copy buffer of a thread's tunnels: bytes stay in it only between a recv and its send.
thread_local std::array<char, kChunkBytes> t_chunk;

class Tunnel : public std::enable_shared_from_this<Tunnel> {
public:
    Tunnel(asio::io_context& io, tcp_socket client) : client_(std::move(client)), upstream_(io) {}

    void start() { read_head(); }

private:
    // One direction: bytes from `from` go to `to`.
    struct Direction {
        Direction(tcp_socket& source, tcp_socket& sink) : from(source), to(sink) {}
        tcp_socket& from;
        tcp_socket& to;
        std::string unsent;    // read from `from`, not yet taken by `to`
        bool drained = false;  // the last read stopped short: wait for the next edge
        bool ended = false;    // `from` sent its FIN, passed on to `to`
    };

    void read_head() {
        client_.async_read_some(asio::buffer(head_.data() + head_size_, head_.size() - head_size_),
                                [self = shared_from_this()](const error_code& ec, std::size_t n) { self->on_head(ec, n); });
    }

    // "CONNECT host:port HTTP/1.1": the port is all that is used; bytes behind the head are refused.
    void on_head(const error_code& ec, std::size_t n) {
        if (ec || n == 0) return close();
        head_size_ += n;
        const std::string_view head(head_.data(), head_size_);
        const auto end = head.find("\r\n\r\n");
        if (end == std::string_view::npos) return head_size_ < head_.size() ? read_head() : close();
        const std::string_view line = head.substr(0, head.find("\r\n"));
        const auto colon = line.find(':');
        const int port = colon == std::string_view::npos ? 0 : std::atoi(line.data() + colon + 1);
        if (!line.starts_with("CONNECT ") || port <= 0 || port > 65535 || end + 4 != head.size()) return close();
        error_code open_ec = egressgate::proxy::open_nonblocking(upstream_, tcp::v4());
        if (open_ec) return close();
        upstream_.set_option(tcp::no_delay(true), open_ec);
        const tcp::endpoint to(asio::ip::address_v4::loopback(), static_cast<std::uint16_t>(port));
        upstream_.async_connect(to, [self = shared_from_this()](const error_code& connect_ec) { self->on_connected(connect_ec); });
    }

    void on_connected(const error_code& ec) {
        if (ec) return close();
        const ssize_t sent = ::send(client_.native_handle(), kEstablished.data(), kEstablished.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (sent != static_cast<ssize_t>(kEstablished.size())) return close();
        relay(down_);  // the upstream may have spoken first
        relay(up_);
    }

    // Moves bytes until a side would block (then waits for it), `from` ends, or a side fails.
    // Every pass of the loop sends bytes, reads bytes or returns.
    void relay(Direction& d) {
        while (!d.ended && !closed_) {
            if (!d.unsent.empty()) {
                const ssize_t sent = ::send(d.to.native_handle(), d.unsent.data(), d.unsent.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
                if (sent < 0 && errno == EAGAIN) return wait(d, d.to, tcp_socket::wait_write);
                if (sent <= 0) return close();
                d.unsent.erase(0, static_cast<std::size_t>(sent));
                continue;
            }
            if (d.drained) return wait(d, d.from, tcp_socket::wait_read);
            const ssize_t got = ::recv(d.from.native_handle(), t_chunk.data(), t_chunk.size(), MSG_DONTWAIT);
            if (got < 0 && errno == EAGAIN) return wait(d, d.from, tcp_socket::wait_read);
            if (got < 0) return close();
            if (got == 0) return end_direction(d);
            const auto length = static_cast<std::size_t>(got);
            d.drained = length < t_chunk.size();
            const ssize_t sent = ::send(d.to.native_handle(), t_chunk.data(), length, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (sent < 0 && errno != EAGAIN) return close();
            const std::size_t taken = sent < 0 ? 0 : static_cast<std::size_t>(sent);
            if (taken < length) d.unsent.assign(t_chunk.data() + taken, length - taken);
        }
    }

    void wait(Direction& d, tcp_socket& socket, tcp_socket::wait_type type) {
        socket.async_wait(type, [self = shared_from_this(), &d](const error_code& ec) {
            d.drained = false;
            if (ec) return self->close();
            self->relay(d);
        });
    }

    void end_direction(Direction& d) {
        d.ended = true;
        ::shutdown(d.to.native_handle(), SHUT_WR);
        if (up_.ended && down_.ended) close();
    }

    // Pending waits end with an error and find the tunnel closed; the last one frees it.
    void close() {
        if (closed_) return;
        closed_ = true;
        error_code ignored;
        client_.close(ignored);
        upstream_.close(ignored);
    }

    tcp_socket client_;
    tcp_socket upstream_;
    std::array<char, kHeadLimit> head_;
    std::size_t head_size_ = 0;
    Direction up_{client_, upstream_};
    Direction down_{upstream_, client_};
    bool closed_ = false;
};

class Worker {
public:
    Worker(int listener, std::chrono::steady_clock::time_point until)
        : io_(BOOST_ASIO_CONCURRENCY_HINT_UNSAFE), acceptor_(io_, tcp::v4(), listener), stop_check_(io_), until_(until) {}

    void run() {
        accept();
        check_stop();
        io_.run();
    }

private:
    void accept() {
        for (int i = 0; i < kAcceptBatch; ++i) {
            tcp::endpoint peer;
            tcp_socket client(io_);
            const error_code ec = egressgate::proxy::accept_nonblocking(acceptor_, client, peer);
            if (ec == asio::error::would_block) {
                acceptor_.async_wait(tcp_acceptor::wait_read, [this](const error_code& wait_ec) {
                    if (!wait_ec) return accept();
                    if (wait_ec != asio::error::operation_aborted) retry_accept();  // not stopping: go on
                });
                return;
            }
            if (ec) return retry_accept();
            error_code ignored;
            client.set_option(tcp::no_delay(true), ignored);
            std::make_shared<Tunnel>(io_, std::move(client))->start();
        }
        asio::post(io_, [this] { accept(); });  // the batch is done: the tunnels get their turn
    }

    // A reset before accept or no descriptor left: the listener stays readable, so pause, not spin.
    void retry_accept() {
        accept_retry_.expires_after(kAcceptRetry);
        accept_retry_.async_wait([this](const error_code& ec) {
            if (!ec) accept();
        });
    }

    // Nothing reaches this thread's io_context from another thread: a timer of its own looks at g_stop.
    void check_stop() {
        if (g_stop || std::chrono::steady_clock::now() >= until_) return io_.stop();
        stop_check_.expires_after(kStopCheck);
        stop_check_.async_wait([this](const error_code&) { check_stop(); });
    }

    asio::io_context io_;
    tcp_acceptor acceptor_;
    steady_timer stop_check_;
    steady_timer accept_retry_{io_};
    std::chrono::steady_clock::time_point until_;
};

}  // namespace

int main(int argc, char** argv) {
    const auto [threads, max_seconds] = egb::relay_command_line(argc, argv);
    std::signal(SIGTERM, [](int) { g_stop = true; });
    std::signal(SIGINT, [](int) { g_stop = true; });
    std::signal(SIGPIPE, SIG_IGN);

    const std::vector<int> listeners = egb::relay_listeners(threads, "egb-asio-relay");
    egb::steer_relay(listeners, "egb-asio-relay");

    const auto until = std::chrono::steady_clock::now() +
                       std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(max_seconds));
    std::vector<std::thread> workers;
    for (int listener : listeners) {
        workers.emplace_back([listener, until] { Worker(listener, until).run(); });
    }
    for (auto& worker : workers) worker.join();
    return 0;
}
