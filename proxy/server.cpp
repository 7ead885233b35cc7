#include "proxy/server.hpp"

#include <boost/asio/detail/socket_option.hpp>
#include <spdlog/spdlog.h>

#include "audit/audit_record.hpp"
#include "proxy/audit_writer.hpp"

namespace egressgate::proxy {

using reuse_port = asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;

struct Server::Listener {
    tcp::acceptor acceptor;
    bool tls;
};

struct Server::Worker {
    Worker(AuditWriter& audit, const config::DnsSettings& dns)
        : io(1), resolver(io, dns), context{audit, resolver, pipes, {}, {}, {}, {}}, sweep(io) {}
    asio::io_context io;
    DnsResolver resolver;  // destroyed before io: it holds descriptors and a timer of io's
    PipePool pipes;
    std::vector<Listener> listeners;
    WorkerContext context;
    asio::steady_timer sweep;
    bool stopping = false;
    std::thread thread;
};

namespace {

tcp::acceptor open_acceptor(asio::io_context& io, const tcp::endpoint& endpoint) {
    tcp::acceptor acceptor(io);
    acceptor.open(endpoint.protocol());
    acceptor.set_option(tcp::acceptor::reuse_address(true));
    acceptor.set_option(reuse_port(true));
    acceptor.bind(endpoint);
    acceptor.listen(asio::socket_base::max_listen_connections);
    return acceptor;
}

std::string to_string(const tcp::endpoint& endpoint) {
    const auto address = endpoint.address().to_string();
    return endpoint.address().is_v6() ? "[" + address + "]:" + std::to_string(endpoint.port())
                                      : address + ":" + std::to_string(endpoint.port());
}

}  // namespace

Server::Server(ConfigHolder& config, TlsContextHolder& tls, AuditWriter& audit)
    : config_(config), tls_(tls), audit_(audit) {
    const auto cfg = config_.current();
    const unsigned count = cfg->workers != 0 ? cfg->workers : std::max(1u, std::thread::hardware_concurrency());
    for (unsigned i = 0; i < count; ++i) workers_.push_back(std::make_unique<Worker>(audit_, cfg->dns));
    bind_listeners(cfg->listen, false);
    bind_listeners(cfg->tls_listen, true);
}

Server::~Server() { stop(std::chrono::seconds(0)); }

// The first worker binds (port 0 gets its port here); the others join the same port.
void Server::bind_listeners(const std::vector<config::ListenAddress>& addresses, bool tls) {
    for (const auto& listen : addresses) {
        tcp::endpoint endpoint(to_asio(listen.address), listen.port);
        for (auto& worker : workers_) {
            worker->listeners.push_back(Listener{open_acceptor(worker->io, endpoint), tls});
            endpoint = worker->listeners.back().acceptor.local_endpoint();
        }
        spdlog::info("listening on {}{} ({} workers)", to_string(endpoint), tls ? " (TLS)" : "", workers_.size());
    }
}

void Server::run() {
    for (auto& worker : workers_) {
        for (auto& listener : worker->listeners) {
            asio::co_spawn(worker->io, accept_loop(*worker, listener), asio::detached);
        }
        asio::co_spawn(worker->io, sweep_deadlines(*worker), asio::detached);
        worker->thread = std::thread([&io = worker->io] { io.run(); });
    }
    accepting_ = true;
}

awaitable<void> Server::accept_loop(Worker& worker, Listener& listener) {
    while (listener.acceptor.is_open()) {
        error_code ec;
        tcp::endpoint peer;  // filled by accept itself: no getpeername per connection
        tcp::socket client = co_await listener.acceptor.async_accept(peer, with_error(ec));
        if (ec == asio::error::operation_aborted) break;
        if (ec) {
            // Out of descriptors, or a connection reset before accept: keep serving the open
            // connections, and retry after a pause rather than spinning on a readable listener.
            spdlog::warn("accept failed: {}; retrying in {} ms", ec.message(), kAcceptRetryDelay.count());
            asio::steady_timer pause(worker.io, kAcceptRetryDelay);
            co_await pause.async_wait(with_error(ec));
            continue;
        }
        accept_client(worker, std::move(client), peer, listener.tls);
    }
}

// One timer per worker instead of one per session: sessions only note their deadlines.
awaitable<void> Server::sweep_deadlines(Worker& worker) {
    while (!worker.stopping) {
        worker.sweep.expires_after(kDeadlineSweepInterval);
        error_code ec;
        co_await worker.sweep.async_wait(with_error(ec));
        const auto now = std::chrono::steady_clock::now();
        for (Session* session : worker.context.sessions) session->check_deadline(now);
    }
}

// Clients outside [clients] allow are closed before a single byte is read from them.
void Server::accept_client(Worker& worker, tcp::socket client, const tcp::endpoint& peer, bool tls) {
    error_code ec;
    auto config = config_.current();
    auto record = accepted_record(*config, peer, next_connection_id_++);
    if (!config->clients.contains(from_asio(peer.address()))) {
        client.close(ec);
        record.time = std::chrono::system_clock::now();
        record.decision = policy::to_string(policy::Verdict::deny);
        record.reason = policy::reason::client_denied;
        record.close_reason = audit::close_reason::client_denied;
        worker.context.conclude(record);
        return;
    }
    client.set_option(tcp::no_delay(true), ec);
    ClientStream stream = tls ? ClientStream(TlsStream(std::move(client), *tls_.current()))
                              : ClientStream(std::move(client));
    std::make_shared<Session>(std::move(stream), std::move(config), worker.context, std::move(record))->start();
}

std::string Server::metrics_text() const {
    audit::TrafficCounters total;
    for (const auto& worker : workers_) {
        std::lock_guard lock(worker->context.counters_mutex);
        total.merge(worker->context.counters);
    }
    return total.prometheus_text({
        {"egressgate_open_connections", "Client connections open now", static_cast<double>(open_sessions())},
        {"egressgate_audit_lines_dropped", "Audit lines dropped because the writer fell behind",
         static_cast<double>(audit_.dropped_lines())},
    });
}

std::size_t Server::open_sessions() const {
    std::size_t total = 0;
    for (const auto& worker : workers_) total += worker->context.open_sessions.load();
    return total;
}

void Server::stop(std::chrono::steady_clock::duration drain_timeout) {
    if (workers_.empty()) return;
    accepting_ = false;
    for (auto& worker : workers_) {
        asio::post(worker->io, [&w = *worker] {
            for (auto& listener : w.listeners) listener.acceptor.close();
        });
    }
    const auto deadline = std::chrono::steady_clock::now() + drain_timeout;
    while (open_sessions() > 0 && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    for (auto& worker : workers_) {
        asio::post(worker->io, [&w = *worker] {
            for (auto* session : w.context.sessions) session->shutdown();  // they end on their own
            w.stopping = true;
            w.sweep.cancel();
        });
    }
    for (auto& worker : workers_) {
        if (worker->thread.joinable()) worker->thread.join();
    }
    workers_.clear();
}

}  // namespace egressgate::proxy
