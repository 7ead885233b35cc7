#include "proxy/dns/dialer.hpp"

#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>

#include "policy/prefix_set.hpp"
#include "proxy/native_socket.hpp"
#include "proxy/resource_shortage.hpp"

namespace egressgate::proxy {

namespace {

// EADDRNOTAVAIL at connect(): every ephemeral port from this source toward the destination is
// taken, most by connections in TIME_WAIT. Another source address (or a minute) helps.
bool is_port_shortage(const error_code& ec) {
    return ec.category() == boost::system::system_category() && ec.value() == EADDRNOTAVAIL;
}

// With a source address bound, the kernel would pick the port at bind(), from the ports free
// toward every destination; IP_BIND_ADDRESS_NO_PORT defers the choice to connect(), where a
// port need only be free toward this destination (the 4-tuple is what must be unique).
error_code defer_port_choice(tcp_socket& socket) {
    const int on = 1;
    if (::setsockopt(socket.native_handle(), IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &on, sizeof on) == 0) return {};
    return error_code(errno, boost::system::system_category());
}

}  // namespace

asio::ip::address to_asio(const policy::IpAddress& address) {
    const auto& b = address.bytes();
    if (address.is_v4()) return asio::ip::address_v4({b[0], b[1], b[2], b[3]});
    return asio::ip::address_v6(b);
}

policy::IpAddress from_asio(const asio::ip::address& address) {
    if (address.is_v4()) return policy::IpAddress::v4(address.to_v4().to_bytes());
    return policy::IpAddress::v6(address.to_v6().to_bytes());
}

std::optional<Resolution> Dialer::resolve_at_once(const config::Config& config, const policy::Target& target) {
    if (target.literal) return Resolution{std::span(&*target.literal, 1), DnsOutcome::answered};
    if (auto pinned = config.dns.static_hosts.find(target.host); pinned != config.dns.static_hosts.end()) {
        return Resolution{pinned->second, DnsOutcome::answered};
    }
    return std::nullopt;
}

awaitable<Resolution> Dialer::look_up(const std::string& host) {
    lookup_ = resolver_.lookup(host);
    co_await lookup_->wait();
    co_return Resolution{lookup_->addresses(), lookup_->outcome()};
}

namespace {

// With service tags required, a name with any address outside them is refused before a dial, or
// in report mode dialed and reported. False: refused (result says why). Not a coroutine, so that
// the decisions it weighs never sit in the dial's frame.
bool screen_resolution(const policy::EgressPolicy& policy, const policy::Decision& decision,
                       std::span<const policy::IpAddress> addresses, ConnectResult& result) {
    auto finding = policy.check_resolution(addresses, decision);
    if (!finding) return true;
    if (finding->permits()) {
        result.reported = std::make_unique<policy::Decision>(std::move(*finding));  // report mode: the dial goes on
        return true;
    }
    // The audit line names the address that lay outside the service tags.
    for (const auto& address : addresses) {
        if (decision.within->tag_of(address)) continue;
        result.address = address.to_string();
        break;
    }
    result.refusal = std::make_unique<policy::Decision>(std::move(*finding));
    return false;
}

// The policy's word on one address. False: refused (result.refusal says why).
bool admit_address(const policy::EgressPolicy& policy, const policy::Decision& decision,
                   const policy::IpAddress& address, ConnectResult& result) {
    result.address = address.to_string();
    auto verdict = policy.check_address(address, decision);
    if (!verdict.permits()) {
        result.refusal = std::make_unique<policy::Decision>(std::move(verdict));
        return false;
    }
    if (verdict.verdict == policy::Verdict::report) result.reported = std::make_unique<policy::Decision>(std::move(verdict));
    result.any_permitted = true;
    return true;
}

}  // namespace

awaitable<ConnectResult> Dialer::connect(const config::Config& config, const policy::Decision& decision,
                                         std::span<const policy::IpAddress> addresses, std::uint16_t port,
                                         tcp_socket& upstream) {
    const policy::EgressPolicy& policy = config.egress;
    ConnectResult result;
    if (!screen_resolution(policy, decision, addresses, result)) co_return result;
    for (const auto& address : addresses) {
        if (!admit_address(policy, decision, address, result)) continue;
        const tcp::endpoint to(to_asio(address), port);
        error_code ec;
        if (config.source_addresses.empty()) {
            ec = open_for(to, nullptr, upstream);
            if (!ec) co_await upstream.async_connect(to, with_error(ec));
        } else {
            ec = co_await connect_from_sources(to, config.source_addresses, upstream);
        }
        if (!ec) {
            error_code ignored;
            upstream.set_option(tcp::no_delay(true), ignored);
            result.connected = true;
            co_return result;
        }
        // Checked first: a socket(2) that found no descriptor left the socket closed too.
        if (is_resource_shortage(ec)) {
            result.out_of_resources = true;
            co_return result;
        }
        if (!upstream.is_open()) co_return result;  // the deadline closed it: stop trying
        result.out_of_ports = is_port_shortage(ec);
        error_code ignored;
        upstream.close(ignored);
    }
    co_return result;
}

awaitable<error_code> Dialer::connect_from_sources(const tcp::endpoint& to, const std::vector<policy::IpAddress>& sources,
                                                   tcp_socket& upstream) {
    std::vector<const policy::IpAddress*> family;
    for (const auto& source : sources) {
        if (source.is_v4() == to.address().is_v4()) family.push_back(&source);
    }
    error_code ec;
    if (family.empty()) {
        ec = open_for(to, nullptr, upstream);
        if (!ec) co_await upstream.async_connect(to, with_error(ec));
        co_return ec;
    }
    const std::size_t first = source_turn_++ % family.size();
    for (std::size_t i = 0; i < family.size(); ++i) {
        if (i > 0) {
            if (!is_port_shortage(ec) || !upstream.is_open()) break;
            error_code ignored;
            upstream.close(ignored);  // that source is out of ports toward `to`: the next one
        }
        ec = open_for(to, family[(first + i) % family.size()], upstream);
        if (!ec) co_await upstream.async_connect(to, with_error(ec));
    }
    co_return ec;
}

error_code Dialer::open_for(const tcp::endpoint& to, const policy::IpAddress* source, tcp_socket& upstream) {
    error_code ec = open_nonblocking(upstream, to.protocol());
    if (ec || source == nullptr) return ec;
    ec = defer_port_choice(upstream);
    if (!ec) upstream.bind(tcp::endpoint(to_asio(*source), 0), ec);
    return ec;
}

}  // namespace egressgate::proxy
