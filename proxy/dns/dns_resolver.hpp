#pragma once
// DNS lookups with TTLs through c-ares, driven by the worker's own event loop, with a cache in
// front. One resolver per worker: it is only ever touched on that worker's thread.
#include <chrono>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include <ares.h>

#include "config/config.hpp"
#include "proxy/asio.hpp"
#include "proxy/dns/dns_cache.hpp"

namespace egressgate::proxy {

// Per try; c-ares tries each server kDnsTries times before it gives up on a name.
inline constexpr int kDnsTries = 2;

// How a lookup ended. Every c-ares status maps to one of these (see outcome_of).
enum class DnsOutcome {
    answered,   // addresses() holds at least one address
    not_found,  // the name has no A or AAAA records (NXDOMAIN, NODATA)
    failed,     // the resolver could not answer (SERVFAIL, refused, bad reply, out of memory)
    timed_out,  // no server answered within dns.timeout_ms
    abandoned,  // the session gave up (its deadline, the client left) or the resolver stopped
};

// One lookup in flight. The session abandons it when its resolve deadline passes; a late answer
// then lands here and is dropped.
class DnsLookup {
public:
    explicit DnsLookup(io_executor executor) : signal_(std::move(executor)) {
        signal_.expires_at(steady_timer::time_point::max());
    }
    awaitable<void> wait();
    void complete(DnsOutcome outcome, std::vector<policy::IpAddress> addresses);
    void abandon();
    DnsOutcome outcome() const { return outcome_; }
    const std::vector<policy::IpAddress>& addresses() const { return addresses_; }

private:
    steady_timer signal_;
    std::vector<policy::IpAddress> addresses_;
    DnsOutcome outcome_ = DnsOutcome::abandoned;
    bool done_ = false;
};

class DnsResolver {
public:
    // Throws std::runtime_error (start-up only) if c-ares cannot be set up with these settings.
    DnsResolver(asio::io_context& io, const config::DnsSettings& settings);
    ~DnsResolver();
    DnsResolver(const DnsResolver&) = delete;
    DnsResolver& operator=(const DnsResolver&) = delete;

    // Starts a lookup of A and AAAA records, or answers it from the cache at once.
    std::shared_ptr<DnsLookup> lookup(const std::string& name);
    // The worker is stopping: every query still out is answered as abandoned now, and nothing
    // of c-ares' (timer, socket waits) keeps the event loop busy until its timeout.
    void shutdown();

private:
    struct SocketWatch;
    struct PendingQuery;

    static void on_socket_state(void* self, ares_socket_t fd, int readable, int writable);
    static void on_answer(void* query, int status, int timeouts, ares_addrinfo* result);
    void watch(const std::shared_ptr<SocketWatch>& socket);
    void process(ares_socket_t read_fd, ares_socket_t write_fd);
    void arm_timer();

    asio::io_context& io_;
    ares_channel channel_ = nullptr;
    steady_timer timer_;
    std::unordered_map<ares_socket_t, std::shared_ptr<SocketWatch>> sockets_;
    dns::DnsCache cache_;
};

}  // namespace egressgate::proxy
