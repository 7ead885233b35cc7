#pragma once
// Listeners and workers: one single-threaded io_context per worker, each with its own
// SO_REUSEPORT acceptor per listen address, so the kernel spreads connections across cores.
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "config/config.hpp"
#include "proxy/asio.hpp"
#include "proxy/session.hpp"
#include "proxy/tls_context.hpp"

namespace egressgate::proxy {

// How long open tunnels may take to finish on their own once the proxy has been told to stop.
inline constexpr std::chrono::seconds kShutdownDrainTimeout{10};
// How long a listener waits before accepting again after a failed accept (EMFILE, ENFILE).
inline constexpr std::chrono::milliseconds kAcceptRetryDelay{50};
// How often each worker checks its sessions' deadlines: the precision of every timeout.
inline constexpr std::chrono::milliseconds kDeadlineSweepInterval{100};

// The config new connections get. Sessions keep the pointer they started with, so a reload never
// changes a tunnel under its feet.
class ConfigHolder {
public:
    explicit ConfigHolder(std::shared_ptr<const config::Config> config) : config_(std::move(config)) {}
    std::shared_ptr<const config::Config> current() const {
        std::lock_guard lock(mutex_);
        return config_;
    }
    void replace(std::shared_ptr<const config::Config> config) {
        std::lock_guard lock(mutex_);
        config_ = std::move(config);
    }

private:
    mutable std::mutex mutex_;
    std::shared_ptr<const config::Config> config_;
};

class Server {
public:
    // Binds every listener (throws on failure: start-up only) and logs each bound address.
    // TLS listeners take their certificate from `tls` at each accept.
    Server(ConfigHolder& config, TlsContextHolder& tls, AuditWriter& audit);
    ~Server();

    void run();  // starts the worker threads
    // Stops accepting, lets sessions drain until the deadline, then ends the rest. Then joins.
    void stop(std::chrono::steady_clock::duration drain_timeout);
    std::size_t open_sessions() const;
    // Every worker's counters, merged, as Prometheus text (for the admin endpoint).
    std::string metrics_text() const;
    bool accepting() const { return accepting_.load(); }

private:
    struct Worker;

    struct Listener;

    awaitable<void> accept_loop(Worker& worker, Listener& listener);
    static awaitable<void> sweep_deadlines(Worker& worker);
    void accept_client(Worker& worker, tcp::socket client, const tcp::endpoint& peer, bool tls);
    void bind_listeners(const std::vector<config::ListenAddress>& addresses, bool tls);

    ConfigHolder& config_;
    TlsContextHolder& tls_;
    AuditWriter& audit_;
    std::vector<std::unique_ptr<Worker>> workers_;
    std::atomic<std::uint64_t> next_connection_id_{1};
    std::atomic<bool> accepting_{false};
};

}  // namespace egressgate::proxy
