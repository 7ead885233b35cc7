// egb-relay: the floor of the connection-rate phases, a CONNECT relay with nothing else in it.
//
//   egb-relay --threads N --max-seconds S
//
// It answers every CONNECT with 200 and relays to 127.0.0.1 on the requested port (the host is not
// read, so it can reach nothing but loopback). No policy, no DNS, no deadlines, no logging, and the
// fewest system calls a relay can make: edge-triggered epoll registered once per socket,
// non-blocking sockets from creation, no read after a short read. What it reaches on a machine is
// what any proxy could reach there; bench/run.sh shows it beside egressgate and Squid.
// Prints "listening on 127.0.0.1:PORT", then serves until --max-seconds or SIGTERM.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "loopback.hpp"
#include "relay_placement.hpp"

namespace {

constexpr std::size_t kHeadLimit = 1024;      // a CONNECT head longer than this is refused
constexpr std::size_t kChunkBytes = 16 * 1024;
constexpr int kMaxEvents = 256;

std::atomic<bool> g_stop{false};

struct Tunnel;

// One socket of a tunnel; epoll's tag.
struct End {
    explicit End(Tunnel* owner) : tunnel(owner) {}

    Tunnel* tunnel;
    int fd = -1;
    bool eof = false;          // the peer sent FIN: the other end's write side is shut
    std::string unsent;        // bytes read here that the other end could not take yet
};

struct Tunnel {
    enum class Step { head, connecting, relaying, closed } step = Step::head;
    End client{this};
    End upstream{this};
    std::string head;
};

int one = 1;

void watch(int epoll_fd, End& end) {
    epoll_event event{};
    event.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    event.data.ptr = &end;
    epoll_ctl(epoll_fd, EPOLL_CTL_ADD, end.fd, &event);
}

class Worker {
public:
    explicit Worker(int listener) : listener_(listener), epoll_fd_(epoll_create1(EPOLL_CLOEXEC)) {
        epoll_event event{};
        event.events = EPOLLIN;
        event.data.ptr = nullptr;
        epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, listener_, &event);
    }
    ~Worker() { close(epoll_fd_); }

    void run(double max_seconds) {
        const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(max_seconds);
        epoll_event events[kMaxEvents];
        while (!g_stop && std::chrono::steady_clock::now() < until) {
            const int n = epoll_wait(epoll_fd_, events, kMaxEvents, 200);
            for (int i = 0; i < n; ++i) {
                if (events[i].data.ptr == nullptr) accept_all();
                else on_event(*static_cast<End*>(events[i].data.ptr), events[i].events);
            }
            for (Tunnel* tunnel : closed_) delete tunnel;   // after the batch: later events may name them
            closed_.clear();
        }
    }

private:
    void accept_all() {
        for (;;) {
            const int fd = accept4(listener_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (fd < 0) return;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            auto* tunnel = new Tunnel;
            tunnel->client.fd = fd;
            watch(epoll_fd_, tunnel->client);
        }
    }

    void on_event(End& end, std::uint32_t events) {
        Tunnel& tunnel = *end.tunnel;
        switch (tunnel.step) {
        case Tunnel::Step::head:
            if (&end == &tunnel.client) read_head(tunnel);
            return;
        case Tunnel::Step::connecting:
            if (&end == &tunnel.upstream && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) connected(tunnel);
            return;
        case Tunnel::Step::relaying:
            if (events & EPOLLOUT) flush(end);
            if (events & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP)) pump(end);
            return;
        case Tunnel::Step::closed:
            return;
        }
    }

    void read_head(Tunnel& tunnel) {
        char buffer[kHeadLimit];
        const ssize_t got = recv(tunnel.client.fd, buffer, sizeof buffer, 0);
        if (got < 0 && errno == EAGAIN) return;
        if (got <= 0) return finish(tunnel);
        tunnel.head.append(buffer, static_cast<std::size_t>(got));
        const auto end = tunnel.head.find("\r\n\r\n");
        if (end == std::string::npos) {
            if (tunnel.head.size() > kHeadLimit) finish(tunnel);
            return;
        }
        // "CONNECT host:port HTTP/1.1": the port is all that is used; bytes behind the head are refused.
        const std::string_view line(tunnel.head.data(), tunnel.head.find("\r\n"));
        const auto colon = line.find(':');
        const int port = colon == std::string_view::npos ? 0 : std::atoi(line.data() + colon + 1);
        if (!line.starts_with("CONNECT ") || port <= 0 || port > 65535 || end + 4 != tunnel.head.size()) {
            return finish(tunnel);
        }
        sockaddr_in to{};
        to.sin_family = AF_INET;
        to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        to.sin_port = htons(static_cast<std::uint16_t>(port));
        tunnel.upstream.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (tunnel.upstream.fd < 0) return finish(tunnel);
        setsockopt(tunnel.upstream.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (connect(tunnel.upstream.fd, reinterpret_cast<const sockaddr*>(&to), sizeof to) != 0 &&
            errno != EINPROGRESS) {
            return finish(tunnel);
        }
        tunnel.step = Tunnel::Step::connecting;
        watch(epoll_fd_, tunnel.upstream);
    }

    void connected(Tunnel& tunnel) {
        int error = 0;
        socklen_t length = sizeof error;
        if (getsockopt(tunnel.upstream.fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0 || error != 0) {
            return finish(tunnel);
        }
        static constexpr std::string_view kEstablished = "HTTP/1.1 200 Connection established\r\n\r\n";
        if (send(tunnel.client.fd, kEstablished.data(), kEstablished.size(), MSG_NOSIGNAL) !=
            static_cast<ssize_t>(kEstablished.size())) {
            return finish(tunnel);
        }
        tunnel.step = Tunnel::Step::relaying;
        pump(tunnel.upstream);   // the upstream may have spoken first
    }

    End& other(End& end) { return &end == &end.tunnel->client ? end.tunnel->upstream : end.tunnel->client; }

    // Reads `from` until a short read, EOF or backpressure, and writes to the other end.
    void pump(End& from) {
        End& to = other(from);
        char buffer[kChunkBytes];
        while (from.unsent.empty() && !from.eof) {
            const ssize_t got = recv(from.fd, buffer, sizeof buffer, 0);
            if (got < 0) {
                if (errno != EAGAIN) finish(*from.tunnel);
                return;
            }
            if (got == 0) {
                from.eof = true;
                shutdown(to.fd, SHUT_WR);
                if (to.eof) finish(*from.tunnel);
                return;
            }
            const ssize_t sent = send(to.fd, buffer, static_cast<std::size_t>(got), MSG_NOSIGNAL);
            if (sent < 0 && errno != EAGAIN) return finish(*from.tunnel);
            const std::size_t done = sent < 0 ? 0 : static_cast<std::size_t>(sent);
            if (done < static_cast<std::size_t>(got)) from.unsent.assign(buffer + done, static_cast<std::size_t>(got) - done);
            if (static_cast<std::size_t>(got) < sizeof buffer) return;   // drained: the next bytes bring an event
        }
    }

    // `end` became writable: the other end's leftover goes out, then the other end is read again.
    void flush(End& end) {
        End& from = other(end);
        if (from.unsent.empty()) return;
        const ssize_t sent = send(end.fd, from.unsent.data(), from.unsent.size(), MSG_NOSIGNAL);
        if (sent < 0 && errno != EAGAIN) return finish(*end.tunnel);
        if (sent > 0) from.unsent.erase(0, static_cast<std::size_t>(sent));
        if (from.unsent.empty()) pump(from);
    }

    void finish(Tunnel& tunnel) {
        if (tunnel.step == Tunnel::Step::closed) return;
        tunnel.step = Tunnel::Step::closed;
        close(tunnel.client.fd);
        if (tunnel.upstream.fd >= 0) close(tunnel.upstream.fd);
        closed_.push_back(&tunnel);
    }

    int listener_;
    int epoll_fd_;
    std::vector<Tunnel*> closed_;
};

}  // namespace

int main(int argc, char** argv) {
    const auto [threads, max_seconds] = egb::relay_command_line(argc, argv);
    std::signal(SIGTERM, [](int) { g_stop = true; });
    std::signal(SIGINT, [](int) { g_stop = true; });

    const std::vector<int> listeners = egb::relay_listeners(threads, "egb-relay");
    egb::steer_relay(listeners, "egb-relay");

    std::vector<std::thread> workers;
    for (int listener : listeners) {
        workers.emplace_back([listener, max_seconds] { Worker(listener).run(max_seconds); });
    }
    for (auto& worker : workers) worker.join();
    return 0;
}
