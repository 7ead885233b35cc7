#pragma once
// Loopback listeners shared by the benchmark's tools (egb_load.cpp, egb_relay.cpp).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>

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

}  // namespace egb
