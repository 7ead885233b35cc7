#pragma once
// Resolve, check every address against the policy, and connect to exactly an address that passed.
// The session owns the deadlines of both steps and cancels them when they pass.
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "policy/decision.hpp"
#include "policy/host.hpp"
#include "proxy/asio.hpp"
#include "proxy/dns/dns_resolver.hpp"

namespace egressgate::proxy {

// The addresses a name resolved to, seen where they are held: the target's IP literal, the
// config's [dns.hosts] entry or the dialer's lookup (whose answer does not change once given).
// Valid while those are, which is through the dial that asked: no copy per connection.
struct Resolution {
    std::span<const policy::IpAddress> addresses;  // empty unless outcome is answered
    DnsOutcome outcome = DnsOutcome::abandoned;
};

struct ConnectResult {
    bool connected = false;
    bool any_permitted = false;     // false: the policy refused every address (see refusal)
    bool out_of_resources = false;  // no descriptor (or buffer) for the upstream socket
    // The last attempt found no ephemeral port free toward the destination (EADDRNOTAVAIL) from
    // any source address: too many recent connections to that IP:port, most in TIME_WAIT.
    bool out_of_ports = false;
    // Both rare, so held apart: the result lives in the dial's coroutine frames, which then stay
    // small enough for the allocator's per-thread cache.
    std::unique_ptr<policy::Decision> refusal;  // why the last address was refused
    // Connected, though enforcing would have refused it (an address outside the service tags of
    // a decision in report mode): what the audit line says instead of the host's decision.
    std::unique_ptr<policy::Decision> reported;
    std::string address;            // the address connected to, or the last one tried or refused
};

class Dialer {
public:
    // `source_turn` is the worker's: consecutive dials start from consecutive source addresses.
    Dialer(DnsResolver& resolver, std::uint32_t& source_turn) : resolver_(resolver), source_turn_(source_turn) {}

    // An IP literal or a [dns.hosts] name: the answer without DNS, and without a wait.
    static std::optional<Resolution> resolve_at_once(const config::Config& config, const policy::Target& target);
    // DNS, through the worker's cache.
    awaitable<Resolution> look_up(const std::string& host);

    // Tries each address the policy permits, in the resolver's order, until one connects. Never
    // resolves again: the address checked is the address dialed.
    // `decision` is the request's: it may require the addresses to lie in service tags.
    // With [proxy] source_addresses, each address is dialed from the sources of its family in
    // turn, the next source taking over when one has no port left toward it.
    awaitable<ConnectResult> connect(const config::Config& config, const policy::Decision& decision,
                                     std::span<const policy::IpAddress> addresses, std::uint16_t port,
                                     tcp_socket& upstream);

    // The deadline passed or the client left: abandon the lookup; the session closes the
    // upstream socket itself.
    void cancel() {
        if (lookup_) lookup_->abandon();
    }

private:
    // Opens `upstream` for a connect to `to` from `source` (or from the kernel's choice); the
    // caller then co_awaits upstream.async_connect in its own frame. Asio's connect, not
    // connect(2) and a writable wait: after the wait it asks poll(2) whether the connect is
    // really done, and a readiness event meant for a socket closed in the same batch can reach
    // a new socket that reuses its reactor slot. A failed connect leaves the socket open unless
    // the deadline closed it.
    static error_code open_for(const tcp::endpoint& to, const policy::IpAddress* source, tcp_socket& upstream);
    // Dials `to` from each source of its family in turn until one is not out of ports.
    awaitable<error_code> connect_from_sources(const tcp::endpoint& to, const std::vector<policy::IpAddress>& sources,
                                               tcp_socket& upstream);

    DnsResolver& resolver_;
    std::uint32_t& source_turn_;
    std::shared_ptr<DnsLookup> lookup_;
};

// Conversions between the pure address type and Asio's.
asio::ip::address to_asio(const policy::IpAddress& address);
policy::IpAddress from_asio(const asio::ip::address& address);

}  // namespace egressgate::proxy
