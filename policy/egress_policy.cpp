#include "policy/egress_policy.hpp"

#include <algorithm>

namespace egressgate::policy {
namespace {

// Rule names for decisions that no single pattern or prefix made.
constexpr std::string_view kRulePorts = "egress.ports";
constexpr std::string_view kRuleHosts = "egress.hosts";
constexpr std::string_view kRuleAllowAddresses = "egress.allow_addresses";
constexpr std::string_view kRuleHostSyntax = "host_syntax";
constexpr std::string_view kRulePublic = "public";
constexpr std::string_view kAllowAddressesPrefix = "allow_addresses:";

Decision allow(std::string_view why, std::string rule) {
    return Decision{Verdict::allow, why, std::move(rule)};
}

Decision deny(std::string_view why, std::string_view rule) {
    return Decision{Verdict::deny, why, std::string(rule)};
}

Decision address_exemption(const Cidr& cidr) {
    return allow(reason::address_allowed, std::string(kAllowAddressesPrefix) + cidr.to_string());
}

// Target is a plain struct that other layers fill in: an IP literal may arrive without literal set.
std::optional<IpAddress> literal_of(const Target& target) {
    if (target.literal) return target.literal;
    return IpAddress::parse(target.host);
}

}  // namespace

std::string_view to_string(Verdict v) {
    switch (v) {
        case Verdict::allow: return "allow";
        case Verdict::deny: return "deny";
        case Verdict::report: return "report";
    }
    return "deny";
}

Decision EgressPolicy::decide(const Target& target) const {
    const auto literal = literal_of(target);
    // Re-validated here rather than trusted: the host may come from a Host header or SNI.
    const auto name = literal ? std::nullopt : normalize_host(target.host);
    // An invalid host is checked first and never reported: report mode must not let it through.
    if (!literal && !name) return deny(reason::invalid_host, kRuleHostSyntax);

    Decision d = [&] {
        const auto& ports = rules_.ports;
        if (std::find(ports.begin(), ports.end(), target.port) == ports.end()) {
            return deny(reason::port_not_allowed, kRulePorts);
        }
        if (literal) {
            if (const Cidr* cidr = rules_.allow_addresses.find(*literal)) {
                return address_exemption(*cidr);
            }
            return deny(reason::ip_literal_not_allowed, kRuleAllowAddresses);
        }
        if (const auto match = rules_.hosts.find(*name)) {
            return allow(reason::host_allowed, match->origin + " " + match->pattern);
        }
        return deny(reason::host_not_allowed, kRuleHosts);
    }();
    if (d.verdict == Verdict::deny && rules_.mode == EgressMode::report) d.verdict = Verdict::report;
    return d;
}

Decision EgressPolicy::check_address(const IpAddress& address) const {
    if (const Cidr* cidr = rules_.allow_addresses.find(address)) return address_exemption(*cidr);
    const AddressClass c = classify_address(address);
    if (c == AddressClass::public_unicast) return allow(reason::address_allowed, std::string(kRulePublic));
    // Never Verdict::report: in report mode too, IMDS and WireServer would answer as the proxy VM.
    return deny(reason::destination_address_denied, to_string(c));
}

bool EgressPolicy::inspects_tunnel(std::uint16_t port) const {
    const auto& ports = rules_.tls_ports;
    return rules_.sni != SniMode::off && std::find(ports.begin(), ports.end(), port) != ports.end();
}

Decision EgressPolicy::check_tunnel_start(const Target& target, const TunnelStart& start) const {
    Decision d = [&] {
        if (start.kind == TunnelStart::Kind::not_tls) return deny(reason::not_tls, "egress.tls_ports");
        if (start.kind == TunnelStart::Kind::malformed_hello) return deny(reason::tls_malformed, "egress.sni");
        if (!start.server_name) return deny(reason::sni_missing, "egress.sni");
        const auto sni = normalize_host(*start.server_name);
        const std::string rule = "sni=" + (sni ? *sni : std::string("<invalid>"));
        if (!sni) return deny(reason::sni_mismatch, rule);
        if (literal_of(target)) {
            // An IP-literal CONNECT says nothing about the name: the SNI must be allowed itself.
            const Decision by_name = decide(Target{*sni, target.port, std::nullopt});
            return by_name.verdict == Verdict::allow ? allow(reason::sni_allowed, rule) : deny(reason::sni_not_allowed, rule);
        }
        return *sni == target.host ? allow(reason::sni_match, rule) : deny(reason::sni_mismatch, rule);
    }();
    const bool lenient = rules_.sni == SniMode::log || rules_.mode == EgressMode::report;
    if (d.verdict == Verdict::deny && lenient) d.verdict = Verdict::report;
    return d;
}

}  // namespace egressgate::policy
