#pragma once
// The egress policy: which destinations VMs may reach. Pure: decide() and check_address() read
// nothing but their arguments and the rules, and fail closed.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "policy/address_class.hpp"
#include "policy/decision.hpp"
#include "policy/host.hpp"
#include "policy/ip_address.hpp"

namespace egressgate::policy {

enum class EgressMode { enforce, report };

// [egress] sni: what the ClientHello inside a tunnel must say. "match": the SNI must name the
// CONNECT host (domain fronting and non-TLS tunnels are refused); "log": mismatches are reported
// and let through; "off": the tunnel is not inspected.
enum class SniMode { match, log, off };

struct EgressRules {
    EgressMode mode = EgressMode::enforce;
    std::vector<std::uint16_t> ports;
    SniMode sni = SniMode::match;
    std::vector<std::uint16_t> tls_ports{443, 8443};  // where the first bytes must be a ClientHello
    HostPatternSet hosts;      // [egress] hosts plus the expanded catalogs
    CidrSet allow_addresses;   // exempt from the address deny list; the only way to allow IP literals
};

// What the proxy saw at the start of a tunnel, reduced to what the policy needs.
struct TunnelStart {
    enum class Kind { client_hello, not_tls, malformed_hello } kind = Kind::malformed_hello;
    std::optional<std::string> server_name;  // as sent, when kind is client_hello
};

class EgressPolicy {
public:
    explicit EgressPolicy(EgressRules rules) : rules_(std::move(rules)) {}

    // The request-level decision: port, then host (or IP literal).
    // In report mode a policy denial becomes Verdict::report; an invalid host is always denied.
    Decision decide(const Target& target) const;

    // The address-level decision for one resolved (or literal) address, run before dialing.
    // The deny list is enforced in report mode too: IMDS and WireServer answer as the proxy VM.
    Decision check_address(const IpAddress& address) const;

    // Whether a tunnel to this port is inspected before its bytes reach the upstream.
    bool inspects_tunnel(std::uint16_t port) const;

    // The tunnel-level decision, after the request-level one allowed `target`: in "match" the
    // SNI must equal the CONNECT host, or for an IP-literal CONNECT be a name decide() allows.
    // Denials become Verdict::report in "log" mode and in report mode. An allowed tunnel keeps
    // the reason "sni_match" or "sni_allowed".
    Decision check_tunnel_start(const Target& target, const TunnelStart& start) const;

    const EgressRules& rules() const { return rules_; }

private:
    EgressRules rules_;
};

}  // namespace egressgate::policy
