#pragma once
// Listeners and workers: one single-threaded io_context per worker, each with its own
// SO_REUSEPORT acceptor per listen address, so the kernel spreads connections across cores.
#include <atomic>
#include <deque>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "audit/audit_record.hpp"
#include "audit/status_page.hpp"
#include "config/config.hpp"
#include "proxy/asio.hpp"
#include "proxy/client_series.hpp"
#include "proxy/connection_limiter.hpp"
#include "proxy/log_throttle.hpp"
#include "proxy/tls_context.hpp"

namespace egressgate::proxy {

class AuditWriter;

// How long a listener waits before accepting again when descriptors or memory ran out.
inline constexpr std::chrono::milliseconds kAcceptRetryDelay{50};
// Connections a listener accepts in a row before the worker's other handlers get a turn.
inline constexpr int kAcceptBatch = 16;
// How often each worker checks its sessions' deadlines and ticks its heartbeat: the precision
// of every timeout.
inline constexpr std::chrono::milliseconds kDeadlineSweepInterval{100};
// A worker whose heartbeat is older than this is stalled: /readyz fails and the systemd
// watchdog is not fed.
inline constexpr std::chrono::milliseconds kWorkerStallThreshold{2000};
// After the drain, how long workers get to end their sessions before the process leaves
// without a worker that does not stop (a stuck one).
inline constexpr std::chrono::milliseconds kWorkerStopGrace{750};
// How long a stop waits for the workers to close their listeners (each does at its next sweep)
// before the drain begins without a worker that has not (a stuck one).
inline constexpr std::chrono::milliseconds kListenerCloseWait{500};

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
        generation_.fetch_add(1, std::memory_order_release);
    }
    // Which replace() current() reflects at least: a worker compares it with the config it
    // holds, and takes the lock only after a reload.
    std::uint64_t generation() const { return generation_.load(std::memory_order_acquire); }

private:
    mutable std::mutex mutex_;
    std::shared_ptr<const config::Config> config_;
    std::atomic<std::uint64_t> generation_{0};
};

// [proxy] max_connections and the [clients] limits as the ledger takes them.
policy::ConnectionLimitSettings limit_settings(const config::Config& config);

class Server {
public:
    // Binds every listener (throws on failure: start-up only) and logs each bound address.
    // TLS listeners take their certificate from `tls` at each accept.
    Server(ConfigHolder& config, TlsContextHolder& tls, AuditWriter& audit);
    ~Server();

    void run();  // starts the worker threads
    // Stops accepting, lets sessions drain until the deadline, then ends the rest and joins the
    // workers. False when a worker did not stop within kWorkerStopGrace after that (it is stuck:
    // the caller should leave without it).
    bool stop(std::chrono::steady_clock::duration drain_timeout);
    // A reload: new connections count against the new limits.
    void apply_limits(const config::Config& config) { limiter_.update(limit_settings(config)); }
    std::size_t open_sessions() const;
    // Every worker's counters, merged, as Prometheus text (for the admin endpoint).
    std::string metrics_text() const;
    bool accepting() const { return accepting_.load(); }
    // SIGTERM's drain notice ([proxy] drain_notice_ms) has begun: the listeners still accept, but
    // /readyz and /metrics say the proxy is leaving, so that a load balancer stops sending to it.
    void announce_draining() { draining_ = true; }
    bool draining() const { return draining_.load(); }
    // Workers whose heartbeat is older than kWorkerStallThreshold, e.g. "eg-worker-1".
    std::vector<std::string> stalled_workers() const;
    // SIGHUP's outcome, for /metrics and /status.
    void note_reload(bool applied) { ++(applied ? reloads_applied_ : reloads_rejected_); }
    // The main thread, every audit::kStatusSampleInterval: per-VM bytes for /status's chart.
    void sample_traffic();
    // /status, rendered on the main thread (which also samples the traffic).
    std::string status_page() const;

private:
    struct Worker;
    struct Listener;

    awaitable<void> accept_loop(Worker& worker, Listener& listener);
    awaitable<void> sweep_deadlines(Worker& worker);
    void sweep_once(Worker& worker, std::int64_t tick);
    static void act_on_stop_request(Worker& worker);
    static void look_at_open_sessions(Worker& worker, std::chrono::steady_clock::time_point now);
    void accept_client(Worker& worker, tcp_socket client, const tcp::endpoint& peer, bool tls);
    void admit_client(Worker& worker, tcp_socket& client, const tcp::endpoint& peer, bool tls);
    template <typename LogLine>
    void count_accept_failure(LogLine log_line);
    void refuse_at_accept(Worker& worker, tcp_socket& client, audit::Record record, std::string_view reason,
                          audit::CloseReason close_reason);
    void bind_listeners(const std::vector<config::ListenAddress>& addresses, bool tls);
    void steer_by_cpu(Listener& group_member, const tcp::endpoint& endpoint) const;
    std::string next_connection_id();

    const std::shared_ptr<const config::Config>& worker_config(Worker& worker);

    ConfigHolder& config_;
    TlsContextHolder& tls_;
    AuditWriter& audit_;
    ConnectionLimiter limiter_;
    ClientSeries series_;
    std::vector<unsigned> worker_cpus_;  // worker i takes worker_cpus_[i]'s connections; empty: the hash picks
    std::vector<std::unique_ptr<Worker>> workers_;
    std::vector<std::string> bound_;  // "127.0.0.1:3128", "[::]:3129 (TLS)": logged by run()
    const std::string connection_id_prefix_;  // the process's start, unix ms: ids stay unique across restarts
    std::atomic<std::uint64_t> next_connection_id_{1};
    std::atomic<bool> accepting_{false};
    std::atomic<bool> draining_{false};
    std::atomic<std::uint64_t> accept_failures_{0};
    LogThrottle accept_failure_log_;
    const std::chrono::system_clock::time_point started_ = std::chrono::system_clock::now();
    std::atomic<std::uint64_t> reloads_applied_{0};
    std::atomic<std::uint64_t> reloads_rejected_{0};
    std::deque<audit::TrafficSample> history_;  // main thread only
};

}  // namespace egressgate::proxy
