#pragma once
// The admin endpoint ([admin] listen, loopback by default): GET /metrics (Prometheus text),
// /healthz (the process answers), /readyz (listeners are bound and accepting). Read-only, no
// authentication: it must not be reachable from the virtual network.
#include <functional>
#include <string>

#include "config/config.hpp"
#include "proxy/asio.hpp"

namespace egressgate::proxy {

// Bytes of an admin request head we read at most, and how long a client may take to send it.
inline constexpr std::size_t kMaxAdminRequestBytes = 8 * 1024;
inline constexpr std::chrono::seconds kAdminRequestTimeout{5};

class AdminServer {
public:
    using MetricsSource = std::function<std::string()>;
    using ReadySource = std::function<bool()>;

    // Binds (throws on failure: start-up only) and logs the bound address.
    AdminServer(asio::io_context& io, const config::ListenAddress& listen, MetricsSource metrics, ReadySource ready);
    void start();
    void stop();

private:
    awaitable<void> accept_loop();
    awaitable<void> serve(tcp::socket socket);

    tcp::acceptor acceptor_;
    MetricsSource metrics_;
    ReadySource ready_;
};

}  // namespace egressgate::proxy
