#include "proxy/server.hpp"


#include <pthread.h>
#include <sys/resource.h>

#include <algorithm>
#include <filesystem>
#include <new>
#include <tuple>

#include <condition_variable>

#include <boost/asio/detail/socket_option.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "audit/audit_record.hpp"
#include "proxy/audit_writer.hpp"
#include "proxy/command_line.hpp"
#include "proxy/cpu_placement.hpp"
#include "proxy/dns/dns_resolver.hpp"
#include "proxy/native_socket.hpp"
#include "proxy/session.hpp"
#include "proxy/tunnel/splice_pump.hpp"
#include "proxy/resource_shortage.hpp"

namespace egressgate::proxy {

using std::chrono::steady_clock;

namespace {

std::int64_t steady_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(steady_clock::now().time_since_epoch()).count();
}

std::string unix_ms_now() {
    return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                              std::chrono::system_clock::now().time_since_epoch()).count());
}

std::string to_string(const tcp::endpoint& endpoint) {
    const auto address = endpoint.address().to_string();
    return endpoint.address().is_v6() ? "[" + address + "]:" + std::to_string(endpoint.port())
                                      : address + ":" + std::to_string(endpoint.port());
}

// The failure a connection over a limit is answered with.
http::Failure refusal_of(policy::Admission admission) {
    switch (admission) {
    case policy::Admission::over_client_connections: return http::Failure::client_connection_limit;
    case policy::Admission::over_client_rate: return http::Failure::client_rate_limit;
    case policy::Admission::over_proxy_connections: return http::Failure::proxy_connection_limit;
    case policy::Admission::admit: break;
    }
    return http::Failure::proxy_connection_limit;
}

}  // namespace

policy::ConnectionLimitSettings limit_settings(const config::Config& config) {
    return {config.client_limits.max_connections_per_ip, config.client_limits.max_new_connections_per_second_per_ip,
            config.max_connections != 0 ? config.max_connections : derived_max_connections()};
}

struct Server::Listener {
    tcp_acceptor acceptor;
    bool tls;
};

// A worker's io_context is only ever touched on its own thread: other threads reach a worker
// through its atomic stop_request, which its sweep reads. So neither the reactor nor the
// scheduler needs a lock (about 20 lock pairs per connection).
constexpr int kWorkerConcurrencyHint = BOOST_ASIO_CONCURRENCY_HINT_UNSAFE;

namespace {
// What Server::stop asks of a worker, in this order; the worker's sweep carries it out.
enum class StopRequest { none, close_listeners, shut_down };
}  // namespace

struct Server::Worker {
    Worker(unsigned i, AuditWriter& audit, const config::DnsSettings& dns, ConnectionLimiter& limits)
        : index(i), io(kWorkerConcurrencyHint), resolver(io, dns), context{i, audit, resolver, pipes, limits, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}}, sweep(io) {}
    std::string name() const { return fmt::format("eg-worker-{}", index); }

    unsigned index;
    asio::io_context io;
    DnsResolver resolver;  // destroyed before io: it holds descriptors and a timer of io's
    PipePool pipes;
    std::vector<Listener> listeners;
    WorkerContext context;
    steady_timer sweep;
    std::atomic<StopRequest> stop_request{StopRequest::none};
    std::atomic<bool> listeners_closed{false};  // Server::stop waits for it before the drain
    bool stopping = false;
    std::atomic<std::int64_t> heartbeat_ms{steady_ms()};  // the sweep's last tick
    std::atomic<bool> exited{false};
    std::atomic<std::uint64_t> accepted{0};  // connections its listeners accepted, for /metrics
    // The config this worker's new sessions take (Server::worker_config), and the holder's
    // generation it came from.
    std::shared_ptr<const config::Config> config;
    std::uint64_t config_generation = 0;
    std::thread thread;
};

Server::Server(ConfigHolder& config, TlsContextHolder& tls, AuditWriter& audit)
    : config_(config), tls_(tls), audit_(audit), limiter_(limit_settings(*config.current())),
      connection_id_prefix_(unix_ms_now()) {
    const auto cfg = config_.current();
    const auto allowed = allowed_cpus();
    const unsigned count = worker_count(cfg->workers, allowed);
    worker_cpus_ = worker_cpus(cfg->workers, allowed);
    for (unsigned i = 0; i < count; ++i) workers_.push_back(std::make_unique<Worker>(i, audit_, cfg->dns, limiter_));
    bind_listeners(cfg->listen, false);
    bind_listeners(cfg->tls_listen, true);
    const auto limits = limit_settings(*cfg);
    spdlog::info("limits: {} connections in all, {} per client IP, {} new per second per client IP", limits.max_total,
                 limits.max_per_ip, limits.new_per_second_per_ip);
}

// main() stops the server itself; this is for the paths that leave early (a start-up error
// after the workers were made). A worker thread that still runs cannot be destroyed under it:
// the process leaves without destroying anything then.
Server::~Server() {
    if (!stop(std::chrono::seconds(0))) std::_Exit(EXIT_FAILURE);
}

// The first worker binds (port 0 gets its port here); the others join the same port.
void Server::bind_listeners(const std::vector<config::ListenAddress>& addresses, bool tls) {
    for (const auto& listen : addresses) {
        tcp::endpoint endpoint(to_asio(listen.address), listen.port);
        for (auto& worker : workers_) {
            worker->listeners.push_back(Listener{open_listener(worker->io, endpoint), tls});
            endpoint = worker->listeners.back().acceptor.local_endpoint();
        }
        steer_by_cpu(workers_.front()->listeners.back(), endpoint);
        bound_.push_back(fmt::format("{}{}", to_string(endpoint), tls ? " (TLS)" : ""));
    }
}

// Worker i's listener is member i of the group: they joined it in worker order.
void Server::steer_by_cpu(Listener& group_member, const tcp::endpoint& endpoint) const {
    if (worker_cpus_.empty()) return;
    if (const std::error_code ec = proxy::steer_by_cpu(group_member.acceptor.native_handle(), worker_cpus_)) {
        spdlog::warn("{}: new connections cannot be steered to the worker of their CPU ({}): the kernel's hash "
                     "picks a worker",
                     to_string(endpoint), ec.message());
    }
}

void Server::run() {
    for (auto& worker : workers_) {
        for (auto& listener : worker->listeners) {
            asio::co_spawn(worker->io, accept_loop(*worker, listener), asio::detached);
        }
        asio::co_spawn(worker->io, sweep_deadlines(*worker), asio::detached);
        worker->thread = std::thread([&w = *worker] {
            // A handler that throws is a bug; the worker logs it and goes on serving.
            for (;;) {
                try {
                    w.io.run();
                    break;
                } catch (const std::exception& e) {
                    spdlog::critical("{}: unexpected error: {}", w.name(), e.what());
                }
            }
            w.exited = true;
        });
        pthread_setname_np(worker->thread.native_handle(), worker->name().c_str());
    }
    if (!worker_cpus_.empty()) {
        spdlog::info("a worker per CPU ({}): a new connection goes to the worker of the CPU that took it",
                     fmt::join(worker_cpus_, ","));
    }
    accepting_ = true;
    // Announced once the workers run: a client that reads this can connect and be served.
    for (const auto& listener : bound_) spdlog::info("listening on {} ({} workers)", listener, workers_.size());
}

// "<prefix>-<sequence>", built in place: one allocation at most.
std::string Server::next_connection_id() {
    const fmt::format_int sequence(next_connection_id_++);
    std::string id;
    id.reserve(connection_id_prefix_.size() + 1 + sequence.size());
    id.append(connection_id_prefix_).append(1, '-').append(sequence.data(), sequence.size());
    return id;
}

// Accepts with accept4, so that a client's socket is non-blocking from the start (native_socket.hpp),
// up to kAcceptBatch connections at a time before the loop lets the worker's other work run.
awaitable<void> Server::accept_loop(Worker& worker, Listener& listener) {
    int accepted_in_a_row = 0;
    // One socket object for the loop: each accepted connection is moved out of it (accept_client
    // takes it by value), which leaves it as newly constructed (Asio says so), and constructing
    // one looks its service up under the io_context's lock.
    tcp_socket client(worker.io);
    while (listener.acceptor.is_open()) {
        tcp::endpoint peer;  // filled by accept itself: no getpeername per connection
        error_code ec = accept_nonblocking(listener.acceptor, client, peer);
        if (!ec) {
            worker.accepted.fetch_add(1, std::memory_order_relaxed);
            accept_client(worker, std::move(client), peer, listener.tls);
            if (++accepted_in_a_row < kAcceptBatch) continue;
            accepted_in_a_row = 0;
            co_await asio::post(worker.io, use_awaitable);
            continue;
        }
        accepted_in_a_row = 0;
        if (ec == asio::error::would_block) {
            co_await listener.acceptor.async_wait(tcp_acceptor::wait_read, with_error(ec));
            if (ec == asio::error::operation_aborted) break;
            if (!ec) continue;
        }
        if (!listener.acceptor.is_open()) break;
        count_accept_failure([&](std::uint64_t held_back) {
            spdlog::warn("accept failed: {} ({} more failures since the last warning)", ec.message(), held_back);
        });
        // Out of descriptors or memory: keep serving the open connections, and retry after a
        // pause rather than spinning on a listener that stays readable. A connection reset
        // before accept is gone: accept the next one at once.
        if (!is_resource_shortage(ec)) continue;
        steady_timer pause(worker.io, kAcceptRetryDelay);
        co_await pause.async_wait(with_error(ec));
    }
}

// Counts a client that was not accepted or not served, and logs it through the throttle. The
// log line's text may need memory that is not there; the count says enough then.
template <typename LogLine>
void Server::count_accept_failure(LogLine log_line) {
    ++accept_failures_;
    const auto held_back = accept_failure_log_.admit();
    if (!held_back) return;
    try {
        log_line(*held_back);
    } catch (const std::bad_alloc&) {
    }
}

// One timer per worker instead of one per session: sessions only note their deadlines. The
// tick is the worker's heartbeat too: a worker that stops ticking is stuck.
awaitable<void> Server::sweep_deadlines(Worker& worker) {
    for (std::int64_t tick = 1; !worker.stopping; ++tick) {
        worker.sweep.expires_after(kDeadlineSweepInterval);
        error_code ec;
        co_await worker.sweep.async_wait(with_error(ec));
        worker.heartbeat_ms = steady_ms();
        // A tick that throws is a bug: it is logged and the sweep goes on, because every deadline
        // and Server::stop depend on it.
        try {
            sweep_once(worker, tick);
        } catch (const std::exception& e) {
            static LogThrottle failures;
            if (const auto held_back = failures.admit()) {
                spdlog::critical("{}: the deadline sweep failed: {} ({} more since the last report)", worker.name(),
                                 e.what(), *held_back);
            }
        }
    }
}

void Server::sweep_once(Worker& worker, std::int64_t tick) {
    constexpr auto kSweepsPerLiveLook = kLiveInterval / kDeadlineSweepInterval;
    act_on_stop_request(worker);
    if (worker.stopping) return;
    worker_config(worker);  // a worker that accepts nothing lets a replaced config go too
    const auto now = steady_clock::now();
    // check_deadline closes sockets and writes progress lines; sessions leave the registry
    // only when their coroutines end, never inside it.
    for (ClientSession& session : worker.context.sessions) session.check_deadline(now);
    if (tick % kSweepsPerLiveLook == 0) look_at_open_sessions(worker, now);
}

// Within one sweep interval of Server::stop asking. Sessions end on their own once shut down, and
// the worker's loop returns when the last one has.
void Server::act_on_stop_request(Worker& worker) {
    const StopRequest request = worker.stop_request.load();
    if (request == StopRequest::none) return;
    if (!worker.listeners_closed) {
        error_code ignored;
        for (auto& listener : worker.listeners) listener.acceptor.close(ignored);
        worker.listeners_closed = true;
    }
    if (request != StopRequest::shut_down) return;
    for (ClientSession& session : worker.context.sessions) session.shutdown();
    worker.resolver.shutdown();  // abandoned lookups would keep the loop busy until they time out
    worker.stopping = true;
}

// Bytes count into /metrics as they move (here, once a second: no lock on the data path), and
// /status learns who is transferring what.
void Server::look_at_open_sessions(Worker& worker, steady_clock::time_point now) {
    LiveCollector live;
    for (ClientSession& session : worker.context.sessions) session.observe(live, now);
    std::lock_guard lock(worker.context.counters_mutex);
    live.apply(worker.context.counters, worker.context.open_by_vm, worker.context.largest_open);
}

// The holder's config, held under a reference count of this worker's own (an owner that keeps
// the holder's pointer): a session's copy touches no count that the other workers touch too, and
// an accept takes the holder's lock only after a reload.
const std::shared_ptr<const config::Config>& Server::worker_config(Worker& worker) {
    const std::uint64_t generation = config_.generation();
    if (!worker.config || generation != worker.config_generation) {
        auto current = config_.current();
        const config::Config* raw = current.get();
        auto owner = std::make_shared<const std::shared_ptr<const config::Config>>(std::move(current));
        worker.config = std::shared_ptr<const config::Config>(std::move(owner), raw);
        worker.config_generation = generation;
    }
    return worker.config;
}

// Memory can run out on the way from accept to a running session. A client it runs out for is
// closed, counted and logged, and the accept loop goes on to the next one; so does it after any
// other failure here, which is a bug, and logged as one.
void Server::accept_client(Worker& worker, tcp_socket client, const tcp::endpoint& peer, bool tls) {
    try {
        admit_client(worker, client, peer, tls);
        return;
    } catch (const std::bad_alloc&) {
        count_accept_failure([&](std::uint64_t held_back) {
            spdlog::error("a connection from {} could not be served: out of memory ({} more since the last report)",
                          to_string(peer), held_back);
        });
    } catch (const std::exception& e) {
        count_accept_failure([&](std::uint64_t held_back) {
            spdlog::critical("a connection from {} could not be served: unexpected error: {} ({} more since the last "
                             "report)", to_string(peer), e.what(), held_back);
        });
    }
    error_code ignored;
    client.close(ignored);
}

// Clients outside [clients] allow are closed before a single byte is read from them; clients
// over a limit are answered 429/503 once their head is in, or closed at once when even that
// would cost too much. `client` moves into the session once there is one.
void Server::admit_client(Worker& worker, tcp_socket& client, const tcp::endpoint& peer, bool tls) {
    auto config = worker_config(worker);
    const auto ip = from_asio(peer.address()).unmapped();
    auto record = accepted_record(*config, peer, next_connection_id());
    record.series = series_.label(ip, record.vm, config->inventory.find(ip).has_value(), config->max_client_series);
    if (!config->clients.contains(ip)) {
        refuse_at_accept(worker, client, std::move(record), policy::reason::client_denied,
                         audit::CloseReason::client_denied);
        return;
    }
    const auto decision = limiter_.admit(ip);
    std::optional<http::Failure> refusal;
    if (decision.admission != policy::Admission::admit) refusal = refusal_of(decision.admission);
    if (refusal && !decision.answered) {
        refuse_at_accept(worker, client, std::move(record), http::reason_of(*refusal), audit::CloseReason::overloaded);
        return;
    }
    // From here the session releases the ledger's place when it finishes; until it exists (an
    // SSL object or the session itself could not be allocated), this does.
    try {
        ClientStream stream = tls ? ClientStream(TlsStream(std::move(client), *tls_.current()))
                                  : ClientStream(std::move(client));
        std::make_shared<ClientSession>(std::move(stream), std::move(config), worker.context, std::move(record), ip,
                                        refusal)
            ->start();
    } catch (const std::exception&) {
        limiter_.release(ip, refusal.has_value());
        throw;
    }
}

void Server::refuse_at_accept(Worker& worker, tcp_socket& client, audit::Record record, std::string_view reason,
                              audit::CloseReason close_reason) {
    error_code ignored;
    client.close(ignored);
    record.time = std::chrono::system_clock::now();
    record.decision = policy::to_string(policy::Verdict::deny);
    record.reason = reason;
    record.close_reason = close_reason;
    worker.context.conclude(record);
}

std::vector<std::string> Server::stalled_workers() const {
    std::vector<std::string> stalled;
    const auto now = steady_ms();
    for (const auto& worker : workers_) {
        if (!worker->exited && now - worker->heartbeat_ms.load() > kWorkerStallThreshold.count()) {
            stalled.push_back(worker->name());
        }
    }
    return stalled;
}

namespace {

// Descriptors open now and the limit (RLIMIT_NOFILE), for /status.
std::pair<std::uint64_t, std::uint64_t> descriptor_use() {
    std::uint64_t open = 0;
    std::error_code ec;
    for (auto it = std::filesystem::directory_iterator("/proc/self/fd", ec); !ec && it != std::filesystem::directory_iterator();
         it.increment(ec)) {
        ++open;
    }
    rlimit limit{};
    const std::uint64_t max = ::getrlimit(RLIMIT_NOFILE, &limit) == 0 ? limit.rlim_cur : 0;
    return {open, max};
}

}  // namespace

std::string Server::metrics_text() const {
    audit::TrafficCounters total;
    for (const auto& worker : workers_) {
        std::lock_guard lock(worker->context.counters_mutex);
        total.merge(worker->context.counters);
    }
    static const std::string version_label = fmt::format("version=\"{}\"", kVersion);
    const double started = std::chrono::duration<double>(started_.time_since_epoch()).count();
    std::vector<audit::TrafficCounters::Sample> samples{
        {"egressgate_build_info", "The version of this egressgate binary", 1, "gauge", version_label},
        {"egressgate_process_start_time_seconds", "When the process started, unix time", started},
        {"egressgate_open_connections", "Client connections open now", static_cast<double>(open_sessions())},
        {"egressgate_draining", "1 once SIGTERM began the drain notice: /readyz answers 503, connections are still accepted",
         draining() ? 1.0 : 0.0},
        {"egressgate_audit_lines_written_total", "Audit lines written to the audit file",
         static_cast<double>(audit_.written_lines()), "counter"},
        {"egressgate_audit_lines_dropped_total", "Audit lines lost: the writer fell behind or the file could not be written",
         static_cast<double>(audit_.dropped_lines()), "counter"},
        {"egressgate_audit_failing", "1 while the audit file cannot be written", audit_.failure() ? 1.0 : 0.0},
        {"egressgate_reloads_total", "SIGHUP reloads applied", static_cast<double>(reloads_applied_.load()), "counter",
         "result=\"applied\""},
        {"egressgate_reloads_total", "SIGHUP reloads rejected (the running config stays)",
         static_cast<double>(reloads_rejected_.load()), "counter", "result=\"rejected\""},
        {"egressgate_accept_failures_total", "Clients not accepted or not served: descriptors or memory exhausted, resets before accept, internal errors",
         static_cast<double>(accept_failures_.load()), "counter"},
        {"egressgate_workers_stalled", "Workers whose event loop has not ticked for 2 s",
         static_cast<double>(stalled_workers().size())},
    };
    // How evenly the listeners spread new connections over the workers.
    std::vector<std::string> worker_labels;  // complete before any sample views one of them
    for (const auto& worker : workers_) worker_labels.push_back(fmt::format("worker=\"{}\"", worker->index));
    for (std::size_t i = 0; i < workers_.size(); ++i) {
        samples.push_back({"egressgate_worker_connections_accepted_total", "Client connections each worker accepted",
                           static_cast<double>(workers_[i]->accepted.load(std::memory_order_relaxed)), "counter",
                           worker_labels[i]});
    }
    return total.prometheus_text(samples);
}

void Server::sample_traffic() {
    audit::TrafficSample sample{std::chrono::system_clock::now(), {}};
    for (const auto& worker : workers_) {
        std::lock_guard lock(worker->context.counters_mutex);
        for (const auto& [vm, totals] : worker->context.counters.by_vm()) {
            auto& bytes = sample.bytes_by_vm[vm];
            bytes.first += totals.bytes_up;
            bytes.second += totals.bytes_down;
        }
    }
    history_.push_back(std::move(sample));
    if (history_.size() > audit::kStatusHistorySamples) history_.pop_front();
}

std::string Server::status_page() const {
    audit::StatusSnapshot snapshot;
    auto& health = snapshot.health;
    const auto now = std::chrono::system_clock::now();
    health.version = kVersion;
    health.uptime_s = std::chrono::duration_cast<std::chrono::seconds>(now - started_).count();
    health.workers = static_cast<unsigned>(workers_.size());
    health.stalled_workers = stalled_workers();
    health.accepting = accepting();
    health.open_connections = open_sessions();
    std::tie(health.descriptors_open, health.descriptor_limit) = descriptor_use();
    health.reloads_applied = reloads_applied_.load();
    health.reloads_rejected = reloads_rejected_.load();
    health.audit_lines_written = audit_.written_lines();
    health.audit_lines_dropped = audit_.dropped_lines();
    health.audit_failing = audit_.failure();
    for (const auto& worker : workers_) {
        std::lock_guard lock(worker->context.counters_mutex);
        for (const auto& [vm, open] : worker->context.open_by_vm) {
            auto& mine = snapshot.open_by_vm[vm];
            mine.connections += open.connections;
            mine.bytes_up += open.bytes_up;
            mine.bytes_down += open.bytes_down;
            mine.oldest_ms = std::max(mine.oldest_ms, open.oldest_ms);
        }
        snapshot.largest_open.insert(snapshot.largest_open.end(), worker->context.largest_open.begin(),
                                     worker->context.largest_open.end());
        snapshot.recent_denials.insert(snapshot.recent_denials.end(), worker->context.recent_denials.begin(),
                                       worker->context.recent_denials.end());
    }
    std::sort(snapshot.largest_open.begin(), snapshot.largest_open.end(), [](const auto& a, const auto& b) {
        return a.bytes_up + a.bytes_down > b.bytes_up + b.bytes_down;
    });
    if (snapshot.largest_open.size() > audit::kStatusLargestTransfers) snapshot.largest_open.resize(audit::kStatusLargestTransfers);
    std::sort(snapshot.recent_denials.begin(), snapshot.recent_denials.end(),
              [](const auto& a, const auto& b) { return a.time > b.time; });
    if (snapshot.recent_denials.size() > audit::kStatusRecentDenials) snapshot.recent_denials.resize(audit::kStatusRecentDenials);
    snapshot.history.assign(history_.begin(), history_.end());
    return audit::render_status_page(snapshot, now);
}

std::size_t Server::open_sessions() const {
    std::size_t total = 0;
    for (const auto& worker : workers_) total += worker->context.open_sessions.load();
    return total;
}

bool Server::stop(steady_clock::duration drain_timeout) {
    if (workers_.empty()) return true;
    accepting_ = false;
    // A worker whose thread never started (a start-up error before run()) has nothing to stop.
    const auto ended = [](const Worker& w) { return w.exited.load() || !w.thread.joinable(); };
    const auto all_workers = [&](auto&& done) {
        return std::all_of(workers_.begin(), workers_.end(), [&](const auto& w) { return done(*w); });
    };
    for (auto& worker : workers_) worker->stop_request = StopRequest::close_listeners;
    // Clients that come now are refused by the kernel rather than accepted and shut down with the
    // rest; a stuck worker's listeners stay open, and the drain goes on without it.
    const auto closed = [&](const Worker& w) { return w.listeners_closed.load() || ended(w); };
    const auto closed_by = steady_clock::now() + kListenerCloseWait;
    while (!all_workers(closed) && steady_clock::now() < closed_by) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    const auto drained_by = steady_clock::now() + drain_timeout;
    while (open_sessions() > 0 && steady_clock::now() < drained_by) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    for (auto& worker : workers_) worker->stop_request = StopRequest::shut_down;
    const auto given_up_by = steady_clock::now() + kWorkerStopGrace;
    while (!all_workers(ended) && steady_clock::now() < given_up_by) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    bool stopped = true;
    for (auto& worker : workers_) {
        if (ended(*worker)) {
            if (worker->thread.joinable()) worker->thread.join();
            continue;
        }
        const std::size_t open = worker->context.open_sessions.load();
        if (open > 0) {
            spdlog::error("{} did not stop (stuck); leaving without it: its {} open connections are not audited",
                          worker->name(), open);
        } else {
            spdlog::error("{} did not stop (stuck); leaving without it", worker->name());
        }
        stopped = false;
    }
    if (stopped) workers_.clear();
    return stopped;
}

}  // namespace egressgate::proxy
