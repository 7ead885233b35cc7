#pragma once
// The egress policy: which destinations VMs may reach. Pure: decide() and check_address() read
// nothing but their arguments and the rules, and fail closed.
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "policy/address_class.hpp"
#include "policy/decision.hpp"
#include "policy/host.hpp"
#include "policy/ip_address.hpp"
#include "policy/service_tags.hpp"

namespace egressgate::policy {

enum class EgressMode { enforce, report };

// [egress] sni: what the ClientHello inside a tunnel must say. "match": the SNI must name the
// CONNECT host (domain fronting and non-TLS tunnels are refused); "log": mismatches are reported
// and let through; "off": the tunnel is not inspected.
enum class SniMode { match, log, off };

// Who asks: the client's address, and its VM name when the inventory knows it.
struct Client {
    std::optional<IpAddress> address;
    std::optional<std::string> vm;
};

// Which clients a rule is for: addresses in `cidrs`, or VMs of the inventory by name. Neither
// given: every client.
struct ClientSelector {
    CidrSet cidrs;
    std::vector<std::string> vm_names;
    bool matches(const Client& client) const;
};

enum class RuleAction { allow, deny };

// [[egress.rule]]: the rules are tried in file order, after [egress] deny_hosts and before the
// global [egress] allowlist; the first that matches decides.
// A rule that lists no hosts, catalogs or service tags is for every destination.
struct EgressRule {
    std::string name;             // unique; names the decision in audit lines and /metrics
    ClientSelector clients;
    HostPatternSet hosts;         // its hosts plus its catalogs, expanded
    std::vector<std::uint16_t> ports;  // empty: [egress] ports
    // Destinations by address: an IP literal in these tags matches; a name its hosts matched must
    // resolve into them; with no hosts, a name matches by its resolved addresses.
    std::shared_ptr<const PrefixSet> service_tags;
    RuleAction action = RuleAction::allow;
    std::optional<EgressMode> mode;  // unset: [egress] mode
};

struct EgressRules {
    EgressMode mode = EgressMode::enforce;
    std::vector<std::uint16_t> ports;
    SniMode sni = SniMode::match;
    std::vector<std::uint16_t> tls_ports{443, 8443};  // where the first bytes must be a ClientHello
    HostPatternSet hosts;      // [egress] hosts plus the expanded catalogs
    CidrSet allow_addresses;   // exempt from the address deny list; the only way to allow IP literals
    HostPatternSet deny_hosts;  // [egress] deny_hosts: denied before any rule, in report mode too
    std::vector<EgressRule> rules;
    // [egress] service_tags: destinations whose address lies in these Azure Service Tags.
    std::shared_ptr<const PrefixSet> service_tags;
    // [egress] require_service_tag: every resolved address of an allowed name must lie in the
    // service tags (its rule's, or [egress] service_tags).
    bool require_service_tag = false;
};

// decide() with a trace says each step it took, for `egressgate explain`.
using Trace = std::vector<std::string>;

// What the proxy saw at the start of a tunnel, reduced to what the policy needs.
struct TunnelStart {
    enum class Kind { client_hello, not_tls, malformed_hello } kind = Kind::malformed_hello;
    std::optional<std::string> server_name;  // as sent, when kind is client_hello
};

class EgressPolicy {
public:
    explicit EgressPolicy(EgressRules rules);

    // The request-level decision, in this order: an invalid host (always denied), [egress]
    // deny_hosts (no rule overrides it), the rules in file order (first match wins), the global
    // [egress] allowlist (ports, then hosts, IP literals through allow_addresses or service
    // tags), else deny. A denial becomes Verdict::report in report mode (the rule's, else the
    // global one). The decision may require the resolved addresses to lie in service tags.
    Decision decide(const Target& target, const Client& client = {}, Trace* trace = nullptr) const;

    // The address-level decision for one resolved (or literal) address, run before dialing: the
    // service tags `decision` requires the address to lie in (allow_addresses does not exempt from
    // them), then allow_addresses, then the address class (private, loopback, IMDS, WireServer...
    // are denied, in report mode too: they would answer as the proxy VM). A decision on trial
    // (report mode) gets Verdict::report for an address outside its service tags that the
    // other checks let through.
    Decision check_address(const IpAddress& address, const Decision& decision = {}, Trace* trace = nullptr) const;

    // With service tags required (decision.within), every address a name resolves to must lie in
    // them: the first that does not is the refusal of the whole name, before any is dialed. On
    // trial (report mode) that finding is Verdict::report instead, and the addresses are dialed.
    std::optional<Decision> check_resolution(std::span<const IpAddress> addresses, const Decision& decision,
                                             Trace* trace = nullptr) const;

    // Whether a tunnel to this port is inspected before its bytes reach the upstream.
    bool inspects_tunnel(std::uint16_t port) const;

    // The tunnel-level decision, after decide() allowed the CONNECT to `target` (`connect`, its
    // decision): in "match" the SNI must equal the CONNECT host, or for an IP-literal CONNECT be
    // a name decide() allows `client`. Denials become Verdict::report in "log" mode and when the
    // CONNECT was decided in report mode (connect.on_trial: its rule's mode, else the global
    // one). An allowed tunnel keeps the reason "sni_match" or "sni_allowed".
    Decision check_tunnel_start(const Target& target, const TunnelStart& start, const Decision& connect,
                                const Client& client = {}) const;

    const EgressRules& rules() const { return rules_; }

private:
    struct RuleMatch {
        const EgressRule* rule;  // into rules_.rules
        Decision decision;       // before the rule's mode is applied
    };
    // The first [[egress.rule]] that matches, in file order.
    std::optional<RuleMatch> match_rule(const Target& target, const std::optional<IpAddress>& literal,
                                        std::optional<std::string_view> name, const Client& client,
                                        Trace* trace) const;
    std::optional<Decision> apply_rule(const EgressRule& rule, const Target& target,
                                       const std::optional<IpAddress>& literal, std::optional<std::string_view> name,
                                       const Client& client, Trace* trace) const;
    Decision decide_global(const Target& target, const std::optional<IpAddress>& literal,
                           std::optional<std::string_view> name, Trace* trace) const;

    // The decision an address in [egress] allow_addresses gets, whose rule text is made here once.
    Decision address_exemption(const Cidr& cidr) const;

    EgressRules rules_;
    // "allow_addresses:<cidr>" for each of rules_.allow_addresses, in its order.
    std::vector<std::string> exemption_rules_;
};

}  // namespace egressgate::policy
