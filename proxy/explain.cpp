#include "proxy/explain.hpp"

#include <utility>  // Boost 1.74's awaitable.hpp needs it first

#include <ostream>
#include <vector>

#include "config/config.hpp"
#include "policy/host.hpp"
#include "proxy/asio.hpp"
#include "proxy/dns/dns_resolver.hpp"

namespace egressgate::proxy {
namespace {

struct Resolved {
    std::vector<policy::IpAddress> addresses;
    DnsOutcome outcome = DnsOutcome::answered;
};

// As the proxy's dialer resolves: [dns.hosts] first, then c-ares with the [dns] settings.
Resolved resolve_like_the_proxy(const config::Config& config, const std::string& host) {
    if (auto pinned = config.dns.static_hosts.find(host); pinned != config.dns.static_hosts.end()) {
        return {pinned->second, DnsOutcome::answered};
    }
    asio::io_context io(1);
    DnsResolver resolver(io, config.dns);
    Resolved resolved;
    asio::co_spawn(io, [&]() -> awaitable<void> {
        auto lookup = resolver.lookup(host);
        co_await lookup->wait();
        resolved = {lookup->addresses(), lookup->outcome()};
        resolver.shutdown();
    }, asio::detached);
    io.run();
    return resolved;
}

std::string_view outcome_text(DnsOutcome outcome) {
    switch (outcome) {
        case DnsOutcome::answered: return "answered";
        case DnsOutcome::not_found: return "no A or AAAA records";
        case DnsOutcome::failed: return "the resolver failed";
        case DnsOutcome::timed_out: return "no DNS server answered in time";
        case DnsOutcome::abandoned: return "the lookup was abandoned";
    }
    return "the resolver failed";
}

int verdict(std::ostream& out, const policy::Decision& d) {
    out << "verdict: " << policy::to_string(d.verdict) << " (" << d.reason << ", " << d.rule << ")\n";
    return d.permits() ? kExplainAllowed : kExplainDenied;
}

void print(std::ostream& out, const policy::Trace& trace) {
    for (const auto& step : trace) out << step << '\n';
}

// The addresses' verdict as the dialer reaches it: a refusal of the whole name (service tags),
// else each address in turn; the proxy dials the first permitted one. In report mode the
// name's finding is what is audited when that address is allowed outright.
policy::Decision check_addresses(const policy::EgressPolicy& egress, const std::vector<policy::IpAddress>& addresses,
                                 const policy::Decision& decision, std::ostream& out) {
    policy::Trace trace;
    const auto finding = egress.check_resolution(addresses, decision, &trace);
    if (finding && !finding->permits()) {
        print(out, trace);
        return *finding;
    }
    std::optional<policy::Decision> first_permitted;
    policy::Decision first_refusal;
    for (const auto& address : addresses) {
        auto d = egress.check_address(address, decision, &trace);
        if (d.permits() && !first_permitted) first_permitted = std::move(d);
        else if (!d.permits() && first_refusal.rule.empty()) first_refusal = std::move(d);
    }
    print(out, trace);
    if (!first_permitted) return first_refusal;
    return finding && first_permitted->verdict == policy::Verdict::allow ? *finding : *first_permitted;
}

}  // namespace

int run_explain(const ExplainRequest& request, std::ostream& out, std::ostream& err) {
    const auto loaded = config::load_config_file(request.config_path);
    if (!loaded.config) {
        for (const auto& e : loaded.errors) err << e.to_string() << '\n';
        return kExplainError;
    }
    const config::Config& config = *loaded.config;
    const auto target = policy::parse_authority(request.target);
    if (!target) {
        err << "egressgate explain: --target " << request.target << ": expected HOST:PORT or [IPv6]:PORT\n";
        return kExplainError;
    }
    const auto ip = policy::IpAddress::parse(request.client);
    policy::Client client{ip, std::nullopt};
    if (const auto vm = config.inventory.find(*ip)) client.vm = std::string(*vm);
    const std::string who = "client " + ip->to_string() + (client.vm ? " (VM \"" + *client.vm + "\")" : "");
    const policy::Cidr* allowed = config.clients.find(*ip);
    if (allowed == nullptr) {
        out << who << ": not in [clients] allow: deny\n";
        return verdict(out, policy::Decision{policy::Verdict::deny, policy::reason::client_denied,
                                             policy::RuleText::fixed("clients.allow"),
                                             "clients.allow", nullptr, {}, {}});
    }
    out << who << ": in [clients] allow " << allowed->to_string() << '\n';
    out << "target " << request.target << '\n';

    policy::Trace trace;
    const policy::Decision decision = config.egress.decide(*target, client, &trace);
    print(out, trace);
    if (!decision.permits()) {
        // An IP literal's class is worth knowing even when the request is refused before it.
        if (target->literal) {
            policy::Trace address_trace;
            config.egress.check_address(*target->literal, {}, &address_trace);
            print(out, address_trace);
        }
        return verdict(out, decision);
    }

    policy::Decision outcome = decision;
    std::vector<policy::IpAddress> addresses;
    if (target->literal) {
        addresses.push_back(*target->literal);
    } else if (request.resolve) {
        const Resolved resolved = resolve_like_the_proxy(config, target->host);
        if (resolved.addresses.empty()) {
            out << target->host << ": " << outcome_text(resolved.outcome) << ": the proxy would answer 502\n";
            return kExplainDenied;
        }
        addresses = resolved.addresses;
    } else {
        out << target->host << ": its addresses were not checked (pass --resolve to resolve it as the proxy does)\n";
        if (decision.within) {
            out << target->host << ": allowed only if every address it resolves to lies in the service tags of "
                << decision.within_rule << '\n';
        }
    }
    if (!addresses.empty()) {
        const policy::Decision by_address = check_addresses(config.egress, addresses, decision, out);
        if (!by_address.permits()) return verdict(out, by_address);
        if (by_address.verdict == policy::Verdict::report) outcome = by_address;  // as the dial records it
    }
    if (request.sni && config.egress.inspects_tunnel(target->port)) {
        const policy::TunnelStart start{policy::TunnelStart::Kind::client_hello, *request.sni};
        const policy::Decision by_sni = config.egress.check_tunnel_start(*target, start, decision, client);
        out << "SNI \"" << *request.sni << "\": " << policy::to_string(by_sni.verdict) << " (" << by_sni.reason << ")\n";
        if (by_sni.verdict != policy::Verdict::allow) outcome = by_sni;
    } else if (request.sni) {
        out << "SNI: not inspected on port " << target->port << " ([egress] sni, tls_ports)\n";
    }
    if (decision.verdict == policy::Verdict::report && outcome.verdict == policy::Verdict::allow) outcome = decision;
    return verdict(out, outcome);
}

}  // namespace egressgate::proxy
