// Connections steered by CPU: how many workers and whose CPU's connections each takes, the
// steering program, and on real loopback sockets, that a connection made on a CPU lands on the
// listener of that CPU's worker.
#include <catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <thread>
#include <vector>

#include "proxy/cpu_placement.hpp"

using namespace egressgate::proxy;

namespace {

// A non-blocking SO_REUSEPORT listener on 127.0.0.1:port (0: any), or -1.
int reuseport_listener(std::uint16_t port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    const int on = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 || ::listen(fd, 16) != 0) {
        ::close(fd);
        return -1;
    }
    return fd;
}

std::uint16_t port_of(int fd) {
    sockaddr_in address{};
    socklen_t length = sizeof address;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
    return ntohs(address.sin_port);
}

// Connects to 127.0.0.1:port from a thread kept on `cpu`, so that the SYN is taken on that CPU;
// returns the connected socket or -1.
int connect_from_cpu(unsigned cpu, std::uint16_t port) {
    int connected = -1;
    std::thread dialer([&] {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        if (::pthread_setaffinity_np(pthread_self(), sizeof set, &set) != 0) return;
        const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_port = htons(port);
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0) connected = fd;
        else ::close(fd);
    });
    dialer.join();
    return connected;
}

// How long the listener a connection should reach may take to queue it: connect(2) can return
// before the handshake's last ACK has been processed on the listening side.
constexpr int kQueueWaitMs = 1000;

// Whether `listener` has a connection to accept within wait_ms (and accepts it).
bool accepts_one(int listener, int wait_ms) {
    pollfd ready{listener, POLLIN, 0};
    if (::poll(&ready, 1, wait_ms) != 1) return false;
    const int fd = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) return false;
    ::close(fd);
    return true;
}

}  // namespace

TEST_CASE("workers = 0 runs one worker per allowed CPU, each taking its CPU's connections", "[cpu_placement]") {
    const std::vector<unsigned> two{3, 7};
    CHECK(worker_count(0, two) == 2);
    CHECK(worker_cpus(0, two) == two);
    // One CPU, or none known: one worker, nothing to steer.
    CHECK(worker_count(0, {5}) == 1);
    CHECK(worker_cpus(0, {5}).empty());
    CHECK(worker_count(0, {}) == 1);
    CHECK(worker_cpus(0, {}).empty());
}

TEST_CASE("an explicit worker count leaves the choice of worker to the hash", "[cpu_placement]") {
    const std::vector<unsigned> two{0, 1};
    CHECK(worker_count(2, two) == 2);
    CHECK(worker_cpus(2, two).empty());
    CHECK(worker_count(4, two) == 4);
    CHECK(worker_cpus(4, two).empty());
}

TEST_CASE("more CPUs than the steering program can name are not steered", "[cpu_placement]") {
    std::vector<unsigned> many(kMaxSteeredWorkers + 1);
    for (unsigned i = 0; i < many.size(); ++i) many[i] = i;
    CHECK(worker_count(0, many) == kMaxSteeredWorkers);
    CHECK(worker_cpus(0, many).empty());
    CHECK(steer_by_cpu(-1, many) == std::errc::invalid_argument);
    CHECK(steer_by_cpu(-1, {}) == std::errc::invalid_argument);
}

TEST_CASE("the steering program names the worker of each CPU, and no worker for the others", "[cpu_placement]") {
    const auto program = steering_program({2, 5});
    REQUIRE(program.size() == 6);
    CHECK(program[0].code == (BPF_LD | BPF_W | BPF_ABS));
    CHECK(program[0].k == static_cast<__u32>(SKF_AD_OFF + SKF_AD_CPU));
    for (unsigned worker = 0; worker < 2; ++worker) {
        const sock_filter& test = program[1 + 2 * worker];
        const sock_filter& answer = program[2 + 2 * worker];
        CHECK(test.code == (BPF_JMP | BPF_JEQ | BPF_K));
        CHECK(test.k == (worker == 0 ? 2u : 5u));
        CHECK(test.jt == 0);
        CHECK(test.jf == 1);  // not this CPU: over the answer to the next test
        CHECK(answer.code == (BPF_RET | BPF_K));
        CHECK(answer.k == worker);
    }
    CHECK(program[5].code == (BPF_RET | BPF_K));
    CHECK(program[5].k == 0xffffffffu);  // past any listener: the kernel's hash picks
}

TEST_CASE("a connection goes to the listener of the worker on the CPU that took its SYN", "[cpu_placement]") {
    std::vector<unsigned> cpus = allowed_cpus();
    REQUIRE_FALSE(cpus.empty());
    if (cpus.size() > 2) cpus.resize(2);  // two workers show the steering; one still shows it is obeyed

    // Two listeners in one group; listener i belongs to the worker on cpus[i], listener 1
    // standing in for a worker on a CPU that takes nothing when there is only one.
    const int first = reuseport_listener(0);
    REQUIRE(first >= 0);
    const int second = reuseport_listener(port_of(first));
    REQUIRE(second >= 0);
    const std::vector<int> listeners{first, second};
    REQUIRE_FALSE(steer_by_cpu(second, cpus));  // any member of the group will do

    for (int round = 0; round < 3; ++round) {
        for (std::size_t worker = 0; worker < cpus.size(); ++worker) {
            const int client = connect_from_cpu(cpus[worker], port_of(first));
            REQUIRE(client >= 0);
            INFO("connection from CPU " << cpus[worker]);
            CHECK(accepts_one(listeners[worker], kQueueWaitMs));
            for (std::size_t i = 0; i < listeners.size(); ++i) {
                INFO("listener " << i);
                if (i != worker) CHECK_FALSE(accepts_one(listeners[i], 0));
            }
            ::close(client);
        }
    }
    ::close(first);
    ::close(second);
}
