#pragma once
// Resolve, check every address against the policy, and connect to exactly an address that passed.
// The session owns the deadlines of both steps and cancels them when they pass.
#include <optional>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "policy/decision.hpp"
#include "policy/host.hpp"
#include "proxy/asio.hpp"
#include "proxy/dns/dns_resolver.hpp"

namespace egressgate::proxy {

struct Resolution {
    std::vector<policy::IpAddress> addresses;  // empty unless outcome is answered
    DnsOutcome outcome = DnsOutcome::abandoned;
};

struct ConnectResult {
    bool connected = false;
    bool any_permitted = false;     // false: the policy refused every address (see refusal)
    bool out_of_resources = false;  // no descriptor (or buffer) for the upstream socket
    policy::Decision refusal;
    std::string address;            // the address connected to, or the last one tried or refused
};

class Dialer {
public:
    explicit Dialer(DnsResolver& resolver) : resolver_(resolver) {}

    // [dns.hosts] first, then DNS (through the worker's cache).
    awaitable<Resolution> resolve(const config::Config& config, const policy::Target& target);

    // Tries each address the policy permits, in the resolver's order, until one connects. Never
    // resolves again: the address checked is the address dialed.
    // `decision` is the request's: it may require the addresses to lie in service tags.
    awaitable<ConnectResult> connect(const policy::EgressPolicy& policy, const policy::Decision& decision,
                                     const std::vector<policy::IpAddress>& addresses, std::uint16_t port,
                                     tcp::socket& upstream);

    // The deadline passed or the client left: abandon the lookup; the session closes the
    // upstream socket itself.
    void cancel() {
        if (lookup_) lookup_->abandon();
    }

private:
    DnsResolver& resolver_;
    std::shared_ptr<DnsLookup> lookup_;
};

// Conversions between the pure address type and Asio's.
asio::ip::address to_asio(const policy::IpAddress& address);
policy::IpAddress from_asio(const asio::ip::address& address);

}  // namespace egressgate::proxy
