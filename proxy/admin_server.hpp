#pragma once
// The admin endpoint ([admin] listen, loopback by default): GET /metrics (Prometheus text),
// /status (an HTML page for a person), /healthz (the process answers), /readyz (accepting, every
// worker's event loop ticking, the audit file writable).
// Read-only, no authentication: it must not be reachable from the virtual network.
#include <functional>
#include <optional>
#include <string>

#include "config/config.hpp"
#include "proxy/asio.hpp"

namespace egressgate::proxy {

// Bytes of an admin request head we read at most, and how long a client may take to send it.
inline constexpr std::size_t kMaxAdminRequestBytes = 8 * 1024;
inline constexpr std::chrono::seconds kAdminRequestTimeout{5};
// How long the endpoint waits before accepting again after a failed accept (EMFILE).
inline constexpr std::chrono::milliseconds kAdminAcceptRetryDelay{100};

class AdminServer {
public:
    using MetricsSource = std::function<std::string()>;
    // Why the proxy is not ready ("stopping", "eg-worker-1 stalled"), or nothing when it is.
    using ReadySource = std::function<std::optional<std::string>()>;
    using StatusSource = std::function<std::string()>;

    // Binds (throws on failure: start-up only) and logs the bound address.
    AdminServer(asio::io_context& io, const config::ListenAddress& listen, MetricsSource metrics, ReadySource ready,
                StatusSource status);
    void start();
    void stop();

private:
    awaitable<void> accept_loop();
    awaitable<void> serve(tcp_socket socket);

    tcp_acceptor acceptor_;
    MetricsSource metrics_;
    ReadySource ready_;
    StatusSource status_;
};

}  // namespace egressgate::proxy
