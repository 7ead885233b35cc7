#pragma once
// Loopback listeners shared by the benchmark's tools (egb_load.cpp, egb_relay.cpp,
// egb_asio_relay.cpp), and what the two relays share of their command line.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>
#include <vector>

namespace egb {

inline constexpr int kListenBacklog = 4096;

enum class PortSharing { exclusive, reuse_port };

// A non-blocking listener on 127.0.0.1:port (0: any free port); -1 with errno on failure.
// reuse_port lets several listeners share the port, one per thread.
inline int listen_on_loopback(std::uint16_t port, PortSharing sharing = PortSharing::exclusive) {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    const int one = 1;
    setsockopt(fd, SOL_SOCKET, sharing == PortSharing::reuse_port ? SO_REUSEPORT : SO_REUSEADDR, &one, sizeof one);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = htons(port);
    if (bind(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0 || listen(fd, kListenBacklog) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

inline std::uint16_t local_port(int fd) {
    sockaddr_in address{};
    socklen_t length = sizeof address;
    getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
    return ntohs(address.sin_port);
}

// A relay's listeners: one SO_REUSEPORT listener per thread on one port, as egressgate's workers
// have. Announces "listening on 127.0.0.1:PORT" on stderr; exits when it cannot listen.
inline std::vector<int> relay_listeners(int threads, const char* tool) {
    std::vector<int> listeners;
    std::uint16_t port = 0;
    while (static_cast<int>(listeners.size()) < threads) {
        const int fd = listen_on_loopback(port, PortSharing::reuse_port);
        if (fd < 0) {
            std::fprintf(stderr, "%s: listen on 127.0.0.1: ", tool);
            std::perror(nullptr);
            std::exit(1);
        }
        if (listeners.empty()) port = local_port(fd);
        listeners.push_back(fd);
    }
    std::fprintf(stderr, "listening on 127.0.0.1:%u\n", port);
    return listeners;
}

// "--name value" on a relay's command line, as a number; fallback when absent.
inline double numeric_option(int argc, char** argv, std::string_view name, double fallback) {
    for (int i = 1; i + 1 < argc; ++i) {
        if (name == argv[i]) return std::atof(argv[i + 1]);
    }
    return fallback;
}

// A relay's command line: --threads N (1 to 64) --max-seconds S (1 to 3600).
struct RelayCommandLine {
    int threads;
    double max_seconds;
};

inline RelayCommandLine relay_command_line(int argc, char** argv) {
    return {std::clamp(static_cast<int>(numeric_option(argc, argv, "--threads", 1)), 1, 64),
            std::clamp(numeric_option(argc, argv, "--max-seconds", 600), 1.0, 3600.0)};
}

}  // namespace egb
