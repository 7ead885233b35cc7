#include "proxy/dns/dialer.hpp"

#include <cerrno>

#include "policy/prefix_set.hpp"
#include "proxy/resource_shortage.hpp"

namespace egressgate::proxy {

asio::ip::address to_asio(const policy::IpAddress& address) {
    const auto& b = address.bytes();
    if (address.is_v4()) return asio::ip::address_v4({b[0], b[1], b[2], b[3]});
    return asio::ip::address_v6(b);
}

policy::IpAddress from_asio(const asio::ip::address& address) {
    if (address.is_v4()) return policy::IpAddress::v4(address.to_v4().to_bytes());
    return policy::IpAddress::v6(address.to_v6().to_bytes());
}

awaitable<Resolution> Dialer::resolve(const config::Config& config, const policy::Target& target) {
    if (target.literal) co_return Resolution{{*target.literal}, DnsOutcome::answered};
    if (auto pinned = config.dns.static_hosts.find(target.host); pinned != config.dns.static_hosts.end()) {
        co_return Resolution{pinned->second, DnsOutcome::answered};
    }
    lookup_ = resolver_.lookup(target.host);
    co_await lookup_->wait();
    co_return Resolution{lookup_->addresses(), lookup_->outcome()};
}

awaitable<ConnectResult> Dialer::connect(const policy::EgressPolicy& policy, const policy::Decision& decision,
                                         const std::vector<policy::IpAddress>& addresses, std::uint16_t port,
                                         tcp::socket& upstream) {
    ConnectResult result;
    if (auto refusal = policy.check_resolution(addresses, decision)) {
        // The audit line names the address that lay outside the service tags.
        for (const auto& address : addresses) {
            if (decision.within->tag_of(address)) continue;
            result.address = address.to_string();
            break;
        }
        result.refusal = std::move(*refusal);
        co_return result;
    }
    for (const auto& address : addresses) {
        result.address = address.to_string();
        auto verdict = policy.check_address(address, decision);
        if (!verdict.permits()) {
            result.refusal = std::move(verdict);
            continue;
        }
        result.any_permitted = true;
        error_code ec;
        upstream.open(address.is_v4() ? tcp::v4() : tcp::v6(), ec);
        if (ec) {
            result.out_of_resources = is_resource_shortage(ec);
            co_return result;
        }
        co_await upstream.async_connect(tcp::endpoint(to_asio(address), port), with_error(ec));
        if (!ec) {
            upstream.set_option(tcp::no_delay(true), ec);
            result.connected = true;
            co_return result;
        }
        if (!upstream.is_open()) co_return result;  // the deadline closed it: stop trying
        if (is_resource_shortage(ec)) {
            result.out_of_resources = true;
            co_return result;
        }
        upstream.close(ec);
    }
    co_return result;
}

}  // namespace egressgate::proxy
