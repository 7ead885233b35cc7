// egressgate: the egress gateway of an Azure virtual network's proxy VM.
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <string_view>
#include <variant>

#include <ares.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include "config/config.hpp"
#include "proxy/admin_server.hpp"
#include "proxy/asio.hpp"
#include "proxy/audit_writer.hpp"
#include "policy/catalog.hpp"
#include "proxy/command_line.hpp"
#include "proxy/logging.hpp"
#include "proxy/preflight.hpp"
#include "proxy/server.hpp"
#include "proxy/systemd_notify.hpp"
#include "proxy/tls_context.hpp"

namespace {

using namespace egressgate;

config::LoadResult load(const std::string& path) {
    auto result = config::load_config_file(path);
    for (const auto& error : result.errors) std::cerr << error.to_string() << '\n';
    return result;
}

// SIGHUP re-reads the config, and the TLS listener's certificate and key, for new connections;
// open tunnels keep what they started with. A config or certificate with errors changes nothing.
void reload(const std::string& path, proxy::ConfigHolder& holder, proxy::TlsContextHolder& tls, proxy::Server& server) {
    auto result = load(path);
    if (!result.config) {
        spdlog::error("reload: {} has {} error(s); keeping the running config", path, result.errors.size());
        server.note_reload(false);
        return;
    }
    const auto& running = *holder.current();
    const auto& next = *result.config;
    if (next.listen.size() != running.listen.size() || next.tls_listen.size() != running.tls_listen.size() ||
        next.admin_listen.to_string() != running.admin_listen.to_string() || next.workers != running.workers) {
        spdlog::warn("reload: listener and worker changes take effect on restart only");
    }
    const auto servers = [](const config::Config& c) {
        std::string list;
        for (const auto& resolver : c.dns.servers) list += resolver.to_string() + " ";
        return list + std::to_string(c.dns.timeout.count());
    };
    if (servers(next) != servers(running) || next.audit_path != running.audit_path) {
        spdlog::warn("reload: dns.servers, dns.timeout_ms and audit.path take effect on restart only");
    }
    if (!result.config->tls_listen.empty()) {
        try {
            tls.replace(proxy::load_tls_context(result.config->tls_cert, result.config->tls_key));
        } catch (const std::exception& e) {
            spdlog::error("reload: {}; keeping the running config", e.what());
            server.note_reload(false);
            return;
        }
    }
    server.apply_limits(*result.config);
    holder.replace(std::move(result.config));
    server.note_reload(true);
    spdlog::info("reload: {} applied to new connections", path);
}

// /status's traffic chart: the per-VM byte counters, every audit::kStatusSampleInterval.
void sample_traffic(proxy::steady_timer& timer, proxy::Server& server) {
    server.sample_traffic();
    timer.expires_after(audit::kStatusSampleInterval);
    timer.async_wait([&timer, &server](const proxy::error_code& ec) {
        if (!ec) sample_traffic(timer, server);
    });
}

// WATCHDOG=1 only while every worker ticks: systemd restarts a proxy whose worker is stuck.
void feed_watchdog(proxy::steady_timer& timer, std::chrono::microseconds interval, const proxy::Server& server) {
    timer.expires_after(interval);
    timer.async_wait([&timer, interval, &server](const proxy::error_code& ec) {
        if (ec) return;
        const auto stalled = server.stalled_workers();
        if (stalled.empty()) {
            proxy::notify_systemd("WATCHDOG=1");
        } else {
            spdlog::error("{} stalled: not feeding the watchdog", stalled.front());
        }
        feed_watchdog(timer, interval, server);
    });
}

// Why /readyz says no: draining (a load balancer should stop sending), stopping, or a worker
// that has stopped ticking.
std::optional<std::string> readiness_problem(const proxy::Server& server, const proxy::AuditWriter& audit) {
    if (server.draining()) return "draining";
    if (!server.accepting()) return "stopping";
    if (const auto failure = audit.failure()) return "the audit file cannot be written: " + *failure;
    const auto stalled = server.stalled_workers();
    if (stalled.empty()) return std::nullopt;
    std::string names;
    for (const auto& name : stalled) names += (names.empty() ? "" : ", ") + name;
    return names + " stalled";
}

std::string_view signal_name(int signal) { return signal == SIGINT ? "SIGINT" : "SIGTERM"; }

// SIGTERM's first stage, [proxy] drain_notice_ms: the proxy keeps accepting and serving while
// /readyz answers 503 "draining", so that a load balancer's health probe takes this VM out of
// rotation before its listeners close. `close_listeners` runs when the notice ends, or at once
// when the timer is cancelled (a second SIGTERM).
void give_drain_notice(proxy::steady_timer& notice, std::chrono::milliseconds length, proxy::Server& server,
                       std::function<void()> close_listeners) {
    server.announce_draining();
    proxy::notify_systemd("STOPPING=1\nSTATUS=draining: failing /readyz, still accepting");
    spdlog::info("draining: /readyz answers 503 \"draining\" for {} ms while new connections are still accepted; "
                 "a second SIGTERM closes the listeners at once",
                 length.count());
    notice.expires_after(length);
    notice.async_wait([close_listeners = std::move(close_listeners)](const proxy::error_code& ec) {
        if (ec == proxy::asio::error::operation_aborted) spdlog::info("draining: the notice was cut short");
        else spdlog::info("draining: the notice is over");
        close_listeners();
    });
}

int serve(const proxy::CommandLine& options, std::shared_ptr<const config::Config> config) {
    proxy::ConfigHolder holder(std::move(config));
    proxy::TlsContextHolder tls;
    if (!holder.current()->tls_listen.empty()) {
        tls.replace(proxy::load_tls_context(holder.current()->tls_cert, holder.current()->tls_key));
    }
    // The main thread handles signals, feeds the watchdog and serves the admin endpoint. Every
    // signal an admin might send is handled, from before the first listener is announced (a
    // signal that comes meanwhile waits in the set): none of them may end the proxy by surprise.
    proxy::asio::io_context signals_io(1);
    proxy::asio::signal_set signals(signals_io, SIGINT, SIGTERM, SIGHUP);
    signals.add(SIGUSR1);
    signals.add(SIGUSR2);
    proxy::AuditWriter audit(holder.current()->audit_path);
    proxy::Server server(holder, tls, audit);
    proxy::AdminServer admin(
        signals_io, holder.current()->admin_listen, [&server] { return server.metrics_text(); },
        [&server, &audit] { return readiness_problem(server, audit); }, [&server] { return server.status_page(); });
    proxy::steady_timer traffic_sampler(signals_io);
    proxy::steady_timer drain_notice(signals_io);
    // SIGTERM's second stage: leaving signals_io.run() stops accepting, then the drain.
    const auto close_listeners = [&] {
        spdlog::info("stopping: draining open connections for up to {} ms", holder.current()->drain_timeout.count());
        admin.stop();
        traffic_sampler.cancel();
        signals_io.stop();
    };
    std::function<void(const proxy::error_code&, int)> on_signal = [&](const proxy::error_code& ec, int signal) {
        if (ec) return;
        if (signal == SIGHUP) {
            // Once STOPPING=1 is out, the service is leaving: READY=1 must not say otherwise.
            if (!server.draining()) proxy::notify_systemd("RELOADING=1");
            reload(options.config_path, holder, tls, server);
            if (!server.draining()) proxy::notify_systemd("READY=1");
        }
        if (signal == SIGUSR1) audit.reopen();  // logrotate's postrotate, as for Squid and nginx
        if (signal == SIGUSR2) spdlog::info("SIGUSR2 ignored (SIGHUP reloads, SIGUSR1 reopens the audit file, SIGTERM stops)");
        if (signal == SIGINT || signal == SIGTERM) {
            if (server.draining()) {
                spdlog::info("draining: {} again, closing the listeners now", signal_name(signal));
                drain_notice.cancel();
                return;
            }
            const auto notice = holder.current()->drain_notice;
            if (notice.count() == 0) {
                proxy::notify_systemd("STOPPING=1");
                close_listeners();
                return;
            }
            give_drain_notice(drain_notice, notice, server, close_listeners);
        }
        signals.async_wait(on_signal);
    };
    signals.async_wait(on_signal);
    proxy::steady_timer watchdog(signals_io);
    if (const auto interval = proxy::watchdog_interval()) feed_watchdog(watchdog, *interval, server);
    server.run();
    sample_traffic(traffic_sampler, server);
    admin.start();
    proxy::notify_systemd("READY=1\nSTATUS=accepting connections");
    signals_io.run();  // returns after SIGINT or SIGTERM
    const bool stopped = server.stop(holder.current()->drain_timeout);
    audit.stop();
    if (auto dropped = audit.dropped_lines()) spdlog::error("{} audit lines were dropped: the writer fell behind", dropped);
    if (!stopped) {
        // A stuck worker cannot be joined or destroyed; what the others recorded is written.
        spdlog::error("stopped without a stuck worker");
        spdlog::shutdown();
        std::_Exit(EXIT_FAILURE);
    }
    spdlog::info("stopped");
    return EXIT_SUCCESS;
}

// --check-config: the file, then the files it names and its source addresses. Every error is
// printed; 0 or 1.
int check_config(const std::string& path) {
    auto result = load(path);
    if (!result.config) return EXIT_FAILURE;
    auto problems = proxy::check_named_files(*result.config);
    for (auto& problem : proxy::check_source_addresses(*result.config)) problems.push_back(std::move(problem));
    for (const auto& problem : problems) std::cerr << problem.to_string() << '\n';
    if (!problems.empty()) return EXIT_FAILURE;
    std::cout << path << ": ok\n";
    return EXIT_SUCCESS;
}

// `egressgate report`: reads the audit files, prints the report; progress only on a terminal.
int report(audit::ReportRequest request) {
    request.show_progress = isatty(STDERR_FILENO) == 1;
    return audit::run_report(request, std::cout, std::cerr);
}

// `egressgate catalogs [NAME]`: 0, or 1 for an unknown name (the choices on stderr).
int list_catalogs(const std::optional<std::string>& name) {
    const std::string listing = policy::catalog_listing(name);
    if (name && policy::find_catalog(*name) == nullptr) {
        std::cerr << listing;
        return EXIT_FAILURE;
    }
    std::cout << listing;
    return EXIT_SUCCESS;
}

// `egressgate explain`: resolving with c-ares needs the library set up, as for serving.
int explain(const proxy::ExplainRequest& request) {
    if (int rc = ares_library_init(ARES_LIB_INIT_ALL); rc != ARES_SUCCESS) {
        std::cerr << "dns: " << ares_strerror(rc) << '\n';
        return proxy::kExplainError;
    }
    const int status = proxy::run_explain(request, std::cout, std::cerr);
    ares_library_cleanup();
    return status;
}

}  // namespace

int main(int argc, char** argv) {
    // A peer that goes away mid-write must cost an EPIPE, never the process: OpenSSL writes to
    // sockets without MSG_NOSIGNAL.
    std::signal(SIGPIPE, SIG_IGN);
    proxy::set_up_logging();
    const auto parsed = proxy::parse_command_line(argc, argv);
    if (const int* status = std::get_if<int>(&parsed)) return *status;
    const auto& command = std::get<proxy::CommandLine>(parsed);
    if (command.action == proxy::CommandLine::Action::check_config) return check_config(command.config_path);
    if (command.action == proxy::CommandLine::Action::report) return report(command.report);
    if (command.action == proxy::CommandLine::Action::catalogs) return list_catalogs(command.catalog);
    if (command.action == proxy::CommandLine::Action::explain) return explain(command.explain);
    auto result = load(command.config_path);
    if (!result.config) return EXIT_FAILURE;
    if (int rc = ares_library_init(ARES_LIB_INIT_ALL); rc != ARES_SUCCESS) {
        spdlog::critical("dns: {}", ares_strerror(rc));
        return EXIT_FAILURE;
    }
    try {
        return serve(command, std::move(result.config));
    } catch (const std::exception& e) {
        spdlog::critical("{}", e.what());
        return EXIT_FAILURE;
    }
}
