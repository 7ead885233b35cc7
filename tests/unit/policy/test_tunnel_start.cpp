// check_tunnel_start: what the first bytes of a tunnel must be, per [egress] sni and mode.
#include <catch.hpp>

#include "policy/catalog.hpp"
#include "policy/egress_policy.hpp"

using namespace egressgate::policy;
using Kind = TunnelStart::Kind;

namespace {

EgressPolicy policy_with(SniMode sni, EgressMode mode = EgressMode::enforce) {
    EgressRules rules;
    rules.mode = mode;
    rules.sni = sni;
    rules.ports = {443, 8443};
    const auto catalog = catalog_patterns("azure-backup");
    for (const auto p : *catalog) rules.hosts.add(*HostPattern::parse(p), "catalog:azure-backup");
    rules.allow_addresses.add(*Cidr::parse("20.60.0.0/16"));
    return EgressPolicy(std::move(rules));
}

const Target kByName{"vault.blob.core.windows.net", 443, std::nullopt};
const Target kByAddress{"20.60.1.1", 443, IpAddress::parse("20.60.1.1")};

TunnelStart hello(std::optional<std::string> sni) { return {Kind::client_hello, std::move(sni)}; }

struct Case {
    const char* name;
    Target target;
    TunnelStart start;
    Verdict verdict;
    std::string_view reason;
};

}  // namespace

TEST_CASE("sni = match refuses anything but the CONNECT host", "[policy][sni]") {
    const Case cases[] = {
        {"same name", kByName, hello("vault.blob.core.windows.net"), Verdict::allow, reason::sni_match},
        {"same name, other case and a trailing dot", kByName, hello("Vault.Blob.Core.Windows.NET."), Verdict::allow,
         reason::sni_match},
        {"fronting: another allowed name", kByName, hello("other.blob.core.windows.net"), Verdict::deny,
         reason::sni_mismatch},
        {"fronting: a forbidden name", kByName, hello("evil.example.com"), Verdict::deny, reason::sni_mismatch},
        {"no SNI", kByName, hello(std::nullopt), Verdict::deny, reason::sni_missing},
        {"SNI that is not a host name", kByName, hello("vault.blob..net"), Verdict::deny, reason::sni_mismatch},
        {"plain text", kByName, {Kind::not_tls, std::nullopt}, Verdict::deny, reason::not_tls},
        {"broken ClientHello", kByName, {Kind::malformed_hello, std::nullopt}, Verdict::deny, reason::tls_malformed},
        {"IP literal with an allowed SNI", kByAddress, hello("vault.blob.core.windows.net"), Verdict::allow,
         reason::sni_allowed},
        {"IP literal with a forbidden SNI", kByAddress, hello("evil.example.com"), Verdict::deny,
         reason::sni_not_allowed},
        {"IP literal without SNI", kByAddress, hello(std::nullopt), Verdict::deny, reason::sni_missing},
    };
    const EgressPolicy policy = policy_with(SniMode::match);
    for (const auto& c : cases) {
        DYNAMIC_SECTION(c.name) {
            const Decision d = policy.check_tunnel_start(c.target, c.start, policy.decide(c.target));
            CHECK(d.verdict == c.verdict);
            CHECK(d.reason == c.reason);
        }
    }
}

TEST_CASE("sni = log and report mode let a mismatch through as report", "[policy][sni]") {
    for (const auto& policy : {policy_with(SniMode::log), policy_with(SniMode::match, EgressMode::report)}) {
        const Decision mismatch = policy.check_tunnel_start(kByName, hello("evil.example.com"), policy.decide(kByName));
        CHECK(mismatch.verdict == Verdict::report);
        CHECK(mismatch.reason == reason::sni_mismatch);
        CHECK(mismatch.rule == "sni=evil.example.com");
        CHECK(policy.check_tunnel_start(kByName, {Kind::not_tls, std::nullopt}, policy.decide(kByName)).verdict == Verdict::report);
        CHECK(policy.check_tunnel_start(kByName, hello("vault.blob.core.windows.net"), policy.decide(kByName)).verdict == Verdict::allow);
    }
}

TEST_CASE("which tunnels are inspected", "[policy][sni]") {
    CHECK(policy_with(SniMode::match).inspects_tunnel(443));
    CHECK(policy_with(SniMode::match).inspects_tunnel(8443));
    CHECK_FALSE(policy_with(SniMode::match).inspects_tunnel(80));
    CHECK(policy_with(SniMode::log).inspects_tunnel(443));
    CHECK_FALSE(policy_with(SniMode::off).inspects_tunnel(443));
}
