#include "policy/egress_policy.hpp"

#include <algorithm>

namespace egressgate::policy {
namespace {

// Rule names for decisions that no single pattern or prefix made.
constexpr std::string_view kRulePorts = "egress.ports";
constexpr std::string_view kRuleHosts = "egress.hosts";
constexpr std::string_view kRuleDenyHosts = "egress.deny_hosts";
constexpr std::string_view kRuleServiceTags = "egress.service_tags";
constexpr std::string_view kRuleServiceTagsByAddress = "egress.service_tags, by address";
constexpr std::string_view kRuleAllowAddresses = "egress.allow_addresses";
constexpr std::string_view kRuleHostSyntax = "host_syntax";
constexpr std::string_view kRulePublic = "public";
constexpr std::string_view kAllowAddressesPrefix = "allow_addresses:";
constexpr std::string_view kRulePrefix = "rule:";

Decision allow(std::string_view why, RuleText rule, std::string_view rule_name) {
    return Decision{Verdict::allow, why, std::move(rule), rule_name, nullptr, {}, {}};
}

Decision deny(std::string_view why, RuleText rule, std::string_view rule_name) {
    return Decision{Verdict::deny, why, std::move(rule), rule_name, nullptr, {}, {}};
}

// An address outside the service tags a decision requires: refused, or reported when the
// decision is on trial (report mode).
Decision outside_service_tags(const Decision& decision) {
    return Decision{decision.on_trial ? Verdict::report : Verdict::deny, reason::address_outside_service_tags,
                    decision.within_rule, decision.within_name, nullptr, {}, {}};
}


// Target is a plain struct that other layers fill in: an IP literal may arrive without literal set.
std::optional<IpAddress> literal_of(const Target& target) {
    if (target.literal || target.parsed) return target.literal;
    return IpAddress::parse(target.host);
}

bool has_port(const std::vector<std::uint16_t>& ports, std::uint16_t port) {
    return std::find(ports.begin(), ports.end(), port) != ports.end();
}

// The step's text is built only when someone asks for the trace (--explain), not for every
// connection.
template <typename Describe>
void note(Trace* trace, Describe&& describe) {
    if (trace != nullptr) trace->push_back(std::string(describe()));
}

std::string deny_hosts_rule(const HostPatternSet::Match& match) {
    return std::string(kRuleDenyHosts) + " " + std::string(match.pattern);
}

std::string rule_label(const EgressRule& rule) { return std::string(kRulePrefix) + rule.name; }

}  // namespace

EgressPolicy::EgressPolicy(EgressRules rules) : rules_(std::move(rules)) {
    for (const Cidr& cidr : rules_.allow_addresses.cidrs()) {
        exemption_rules_.push_back(std::string(kAllowAddressesPrefix) + cidr.to_string());
    }
}

Decision EgressPolicy::address_exemption(const Cidr& cidr) const {
    const auto index = static_cast<std::size_t>(&cidr - rules_.allow_addresses.cidrs().data());
    return allow(reason::address_allowed, RuleText::fixed(exemption_rules_[index]), kRuleAllowAddresses);
}

std::string_view to_string(Verdict v) {
    switch (v) {
        case Verdict::allow: return "allow";
        case Verdict::deny: return "deny";
        case Verdict::report: return "report";
    }
    return "deny";
}

bool ClientSelector::matches(const Client& client) const {
    if (cidrs.empty() && vm_names.empty()) return true;
    if (client.address && cidrs.contains(*client.address)) return true;
    return client.vm && std::find(vm_names.begin(), vm_names.end(), *client.vm) != vm_names.end();
}

// A rule decides a request when the client, the port and the destination are its: a name its
// hosts match, an IP literal in its service tags, a name that must resolve into its service tags
// (a rule with service tags and no hosts), or any destination (a rule that lists none).
std::optional<Decision> EgressPolicy::apply_rule(const EgressRule& rule, const Target& target,
                                                 const std::optional<IpAddress>& literal,
                                                 std::optional<std::string_view> name, const Client& client,
                                                 Trace* trace) const {
    if (!rule.clients.matches(client)) return std::nullopt;
    // A deny rule without ports denies on every port: else a later rule's own port would slip by it.
    const bool any_port = rule.ports.empty() && rule.action == RuleAction::deny;
    if (!any_port && !has_port(rule.ports.empty() ? rules_.ports : rule.ports, target.port)) return std::nullopt;
    const bool lists_hosts = rule.hosts.size() != 0;
    std::string matched;
    if (!lists_hosts && !rule.service_tags) {
        matched = "any destination";
    } else if (name) {
        if (const auto match = lists_hosts ? rule.hosts.find(*name) : std::nullopt) {
            matched = match->label;
        } else if (!lists_hosts) {
            matched = "service tags, by address";
        } else {
            return std::nullopt;
        }
    } else if (literal) {
        const auto tag = rule.service_tags ? rule.service_tags->tag_of(*literal) : std::nullopt;
        if (!tag) return std::nullopt;
        matched = "service tag " + std::string(*tag);
    }
    const std::string label = rule_label(rule) + " " + matched;
    note(trace, [&] {
        return "rule \"" + rule.name + "\" matches (" + matched + "): " +
               (rule.action == RuleAction::allow ? "allow" : "deny");
    });
    if (rule.action == RuleAction::deny) return deny(reason::denied_by_rule, label, rule.name);
    Decision d = allow(literal ? reason::address_allowed : reason::host_allowed, label, rule.name);
    if (name && (rule.service_tags || rules_.require_service_tag)) {
        d.within = rule.service_tags ? rule.service_tags : rules_.service_tags;
        d.within_rule = rule.service_tags ? rule_label(rule) : std::string(kRuleServiceTags);
        d.within_name = rule.service_tags ? std::string_view(rule.name) : kRuleServiceTags;
    }
    return d;
}

std::optional<EgressPolicy::RuleMatch> EgressPolicy::match_rule(const Target& target,
                                                              const std::optional<IpAddress>& literal,
                                                              std::optional<std::string_view> name,
                                                              const Client& client, Trace* trace) const {
    for (const auto& rule : rules_.rules) {
        if (auto d = apply_rule(rule, target, literal, name, client, trace)) return RuleMatch{&rule, std::move(*d)};
    }
    return std::nullopt;
}

Decision EgressPolicy::decide_global(const Target& target, const std::optional<IpAddress>& literal,
                                     std::optional<std::string_view> name, Trace* trace) const {
    if (!has_port(rules_.ports, target.port)) {
        note(trace, [&] { return "[egress] ports do not list " + std::to_string(target.port) + ": deny"; });
        return deny(reason::port_not_allowed, RuleText::fixed(kRulePorts), kRulePorts);
    }
    if (literal) {
        if (const Cidr* cidr = rules_.allow_addresses.find(*literal)) {
            note(trace, [&] { return "[egress] allow_addresses " + cidr->to_string() + ": allow"; });
            return address_exemption(*cidr);
        }
        if (const auto tag = rules_.service_tags ? rules_.service_tags->tag_of(*literal) : std::nullopt) {
            note(trace, [&] { return "[egress] service_tags: the address lies in " + std::string(*tag) + ": allow"; });
            return allow(reason::address_allowed, std::string(kRuleServiceTags) + " " + std::string(*tag), kRuleServiceTags);
        }
        note(trace, [&] { return "an IP literal outside [egress] allow_addresses and service_tags: deny"; });
        return deny(reason::ip_literal_not_allowed, RuleText::fixed(kRuleAllowAddresses), kRuleAllowAddresses);
    }
    if (const auto match = rules_.hosts.find(*name)) {
        note(trace, [&] { return "[egress] hosts: " + std::string(match->label) + ": allow"; });
        Decision d = allow(reason::host_allowed, RuleText::fixed(match->label), match->origin);
        if (rules_.require_service_tag) {
            d.within = rules_.service_tags;
            d.within_rule = std::string(kRuleServiceTags);
            d.within_name = kRuleServiceTags;
        }
        return d;
    }
    if (rules_.service_tags) {
        note(trace, [&] { return "[egress] service_tags: allowed if every address lies in them"; });
        Decision d = allow(reason::host_allowed, RuleText::fixed(kRuleServiceTagsByAddress), kRuleServiceTags);
        d.within = rules_.service_tags;
        d.within_rule = std::string(kRuleServiceTags);
        d.within_name = kRuleServiceTags;
        return d;
    }
    note(trace, [&] { return "no rule and no [egress] host allows it: deny"; });
    return deny(reason::host_not_allowed, RuleText::fixed(kRuleHosts), kRuleHosts);
}

Decision EgressPolicy::decide(const Target& target, const Client& client, Trace* trace) const {
    const auto literal = literal_of(target);
    // Re-validated here unless parse_authority made the target: the host may come from SNI. A
    // host already in normal form is used as it is.
    std::optional<std::string> normalized;
    std::optional<std::string_view> name;
    if (!literal && (target.parsed || is_normalized_host(target.host))) {
        name = target.host;
    } else if (!literal && (normalized = normalize_host(target.host))) {
        name = *normalized;
    }
    // An invalid host is checked first and never reported: report mode must not let it through.
    if (!literal && !name) {
        note(trace, [&] { return "\"" + target.host + "\" is not a valid host name: deny"; });
        return deny(reason::invalid_host, RuleText::fixed(kRuleHostSyntax), kRuleHostSyntax);
    }
    // The deny list is the admin's last word, in report mode too.
    if (name) {
        if (const auto match = rules_.deny_hosts.find(*name)) {
            note(trace, [&] { return "[egress] deny_hosts " + std::string(match->pattern) + ": deny"; });
            return deny(reason::host_denied, deny_hosts_rule(*match), kRuleDenyHosts);
        }
    }
    if (auto match = match_rule(target, literal, name, client, trace)) {
        const EgressRule& rule = *match->rule;
        Decision& d = match->decision;
        d.on_trial = rule.mode.value_or(rules_.mode) == EgressMode::report;
        if (d.verdict == Verdict::deny && d.on_trial) {
            note(trace, [&] { return "rule \"" + rule.name + "\" is in report mode: allowed, audited as report"; });
            d.verdict = Verdict::report;
        }
        return d;
    }
    Decision d = decide_global(target, literal, name, trace);
    d.on_trial = rules_.mode == EgressMode::report;
    if (d.verdict == Verdict::deny && d.on_trial) {
        note(trace, [&] { return "[egress] mode = \"report\": allowed, audited as report"; });
        d.verdict = Verdict::report;
    }
    return d;
}

Decision EgressPolicy::check_address(const IpAddress& address, const Decision& decision, Trace* trace) const {
    // The service tags a decision requires bind every address, allow_addresses included: with
    // require_service_tag, a name that resolves outside them is refused whatever else allows it.
    // In report mode an address outside them goes on to the checks below, and is reported if
    // they let it through.
    std::optional<std::string_view> tag;
    bool outside = false;
    if (decision.within) {
        tag = decision.within->tag_of(address);
        outside = !tag;
        if (outside && !decision.on_trial) {
            note(trace, [&] {
                return address.to_string() + ": outside the service tags " + decision.within_rule + " requires: deny";
            });
            return outside_service_tags(decision);
        }
        note(trace, [&] {
            return outside ? address.to_string() + ": outside the service tags " + decision.within_rule +
                                 " requires; in report mode, reported if nothing else refuses it"
                           : address.to_string() + ": in service tag " + std::string(*tag);
        });
    }
    if (const Cidr* cidr = rules_.allow_addresses.find(address)) {
        note(trace, [&] {
            return address.to_string() + ": in [egress] allow_addresses " + cidr->to_string() +
                   (outside ? ": report" : ": allow");
        });
        return outside ? outside_service_tags(decision) : address_exemption(*cidr);
    }
    const AddressClass c = classify_address(address);
    if (c != AddressClass::public_unicast) {
        // Never Verdict::report: in report mode too, IMDS and WireServer would answer as the proxy VM.
        note(trace, [&] {
            return address.to_string() + ": " + std::string(to_string(c)) + ", never a destination: deny";
        });
        return deny(reason::destination_address_denied, RuleText::fixed(to_string(c)), to_string(c));
    }
    note(trace, [&] { return address.to_string() + (outside ? ": public_unicast: report" : ": public_unicast: allow"); });
    if (outside) return outside_service_tags(decision);
    if (tag) return allow(reason::address_allowed, decision.within_rule + " " + std::string(*tag), decision.within_name);
    return allow(reason::address_allowed, RuleText::fixed(kRulePublic), kRulePublic);
}

std::optional<Decision> EgressPolicy::check_resolution(std::span<const IpAddress> addresses,
                                                       const Decision& decision, Trace* trace) const {
    if (!decision.within) return std::nullopt;
    for (const auto& address : addresses) {
        if (decision.within->tag_of(address)) continue;
        note(trace, [&] {
            return address.to_string() + ": outside the service tags " + decision.within_rule +
                   (decision.on_trial ? " requires; in report mode: the name is reported, its addresses checked"
                                      : " requires, so the name is refused: deny");
        });
        return outside_service_tags(decision);
    }
    return std::nullopt;
}

bool EgressPolicy::inspects_tunnel(std::uint16_t port) const {
    const auto& ports = rules_.tls_ports;
    return rules_.sni != SniMode::off && std::find(ports.begin(), ports.end(), port) != ports.end();
}

Decision EgressPolicy::check_tunnel_start(const Target& target, const TunnelStart& start, const Decision& connect,
                                          const Client& client) const {
    // The deny list is the admin's last word on the SNI too, whatever [egress] sni and mode say.
    if (start.kind == TunnelStart::Kind::client_hello && start.server_name) {
        if (const auto sni = normalize_host(*start.server_name)) {
            if (const auto match = rules_.deny_hosts.find(*sni)) {
                return deny(reason::host_denied, deny_hosts_rule(*match), kRuleDenyHosts);
            }
        }
    }
    Decision d = [&] {
        if (start.kind == TunnelStart::Kind::not_tls) return deny(reason::not_tls, RuleText::fixed("egress.tls_ports"), "egress.tls_ports");
        if (start.kind == TunnelStart::Kind::malformed_hello) return deny(reason::tls_malformed, RuleText::fixed("egress.sni"), "egress.sni");
        if (!start.server_name) return deny(reason::sni_missing, RuleText::fixed("egress.sni"), "egress.sni");
        const auto sni = normalize_host(*start.server_name);
        const std::string rule = "sni=" + (sni ? *sni : std::string("<invalid>"));
        if (!sni) return deny(reason::sni_mismatch, rule, "egress.sni");
        if (const auto literal = literal_of(target)) {
            // An IP-literal CONNECT says nothing about the name: the SNI must be allowed itself,
            // and lie where its decision requires (a name allowed by its addresses).
            const Decision by_name = decide(Target{*sni, target.port, std::nullopt}, client);
            const bool placed = !by_name.within || by_name.within->tag_of(*literal).has_value();
            return by_name.verdict == Verdict::allow && placed ? allow(reason::sni_allowed, rule, "egress.sni")
                                                               : deny(reason::sni_not_allowed, rule, "egress.sni");
        }
        return *sni == target.host ? allow(reason::sni_match, rule, "egress.sni") : deny(reason::sni_mismatch, rule, "egress.sni");
    }();
    // The tunnel is the request the CONNECT made: the rule that allowed it (or reported it) sets
    // its mode, so a rule on trial in report mode is not enforced by the SNI.
    const bool lenient = rules_.sni == SniMode::log || connect.on_trial;
    if (d.verdict == Verdict::deny && lenient) d.verdict = Verdict::report;
    return d;
}

}  // namespace egressgate::policy
