#pragma once
// The egress policy: which destinations VMs may reach. Pure: decide() and check_address() read
// nothing but their arguments and the rules, and fail closed.
#include <cstdint>
#include <vector>

#include "policy/address_class.hpp"
#include "policy/decision.hpp"
#include "policy/host.hpp"
#include "policy/ip_address.hpp"

namespace egressgate::policy {

enum class EgressMode { enforce, report };

struct EgressRules {
    EgressMode mode = EgressMode::enforce;
    std::vector<std::uint16_t> ports;
    HostPatternSet hosts;      // [egress] hosts plus the expanded catalogs
    CidrSet allow_addresses;   // exempt from the address deny list; the only way to allow IP literals
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

    const EgressRules& rules() const { return rules_; }

private:
    EgressRules rules_;
};

}  // namespace egressgate::policy
