// EgressPolicy: the request decision (port, then host or IP literal) and the address decision run
// before dialing. Asserts the verdict, reason and rule that responses and audit lines carry.
#include <catch.hpp>

#include <optional>
#include <string>

#include "policy/catalog.hpp"
#include "policy/egress_policy.hpp"

using namespace egressgate::policy;
using namespace std::string_literals;

namespace {

EgressRules backup_rules(EgressMode mode) {
    EgressRules rules;
    rules.mode = mode;
    rules.ports = {443, 8443, 80};
    const auto catalog = catalog_patterns("azure-backup");  // a named optional: it must outlive the loop
    for (const auto p : *catalog) {
        rules.hosts.add(*HostPattern::parse(p), "catalog:azure-backup");
    }
    rules.hosts.add(*HostPattern::parse("myvault.example.com"), "egress.hosts");
    rules.allow_addresses.add(*Cidr::parse("20.60.0.0/16"));
    rules.allow_addresses.add(*Cidr::parse("10.0.9.8"));
    rules.allow_addresses.add(*Cidr::parse("2603:1020::/32"));
    return rules;
}

Target authority(std::string_view text) {
    const auto t = parse_authority(text);
    REQUIRE(t.has_value());
    return *t;
}

IpAddress ip(std::string_view text) {
    const auto a = IpAddress::parse(text);
    REQUIRE(a.has_value());
    return *a;
}

struct Expected {
    Verdict verdict;
    std::string_view reason;
    std::string rule;
};

void check_decision(const Decision& d, const Expected& e) {
    CHECK(to_string(d.verdict) == to_string(e.verdict));
    CHECK(d.reason == e.reason);
    CHECK(d.rule == e.rule);
    CHECK(d.permits() == (e.verdict != Verdict::deny));
}

struct DecideCase {
    const char* name;
    Target target;
    Expected enforce;
};

// Raw targets, as another layer might build them without parse_authority.
Target raw(std::string host, std::uint16_t port) { return Target{std::move(host), port, std::nullopt}; }

std::vector<DecideCase> decide_cases() {
    const auto blob = "catalog:azure-backup *.blob.core.windows.net"s;
    return {
        {"catalog wildcard", authority("x.blob.core.windows.net:443"), {Verdict::allow, reason::host_allowed, blob}},
        {"managed disk on 8443", authority("md-abc.z2.blob.storage.azure.net:8443"),
         {Verdict::allow, reason::host_allowed, "catalog:azure-backup *.blob.storage.azure.net"}},
        {"catalog exact", authority("login.microsoftonline.com:443"),
         {Verdict::allow, reason::host_allowed, "catalog:azure-backup login.microsoftonline.com"}},
        {"egress.hosts exact", authority("myvault.example.com:80"),
         {Verdict::allow, reason::host_allowed, "egress.hosts myvault.example.com"}},
        {"trailing dot", authority("x.blob.core.windows.net.:443"), {Verdict::allow, reason::host_allowed, blob}},
        {"upper case", authority("X.BLOB.Core.Windows.NET:443"), {Verdict::allow, reason::host_allowed, blob}},
        {"raw upper case with trailing dot", raw("X.BLOB.Core.Windows.NET.", 443),
         {Verdict::allow, reason::host_allowed, blob}},
        {"bare suffix", authority("blob.core.windows.net:443"),
         {Verdict::deny, reason::host_not_allowed, "egress.hosts"}},
        {"glued suffix", authority("xblob.core.windows.net:443"),
         {Verdict::deny, reason::host_not_allowed, "egress.hosts"}},
        {"suffix glued to a long label", authority("attacker-blob.core.windows.net:443"),
         {Verdict::deny, reason::host_not_allowed, "egress.hosts"}},
        {"suffix followed by attacker domain", authority("a.blob.core.windows.net.evil.com:443"),
         {Verdict::deny, reason::host_not_allowed, "egress.hosts"}},
        {"unlisted host", authority("evil.com:443"), {Verdict::deny, reason::host_not_allowed, "egress.hosts"}},
        {"port not allowed", authority("x.blob.core.windows.net:22"),
         {Verdict::deny, reason::port_not_allowed, "egress.ports"}},
        {"port 0", raw("x.blob.core.windows.net", 0), {Verdict::deny, reason::port_not_allowed, "egress.ports"}},
        {"port checked before literal", authority("20.60.1.2:22"),
         {Verdict::deny, reason::port_not_allowed, "egress.ports"}},
        {"ipv4 literal not allowed", authority("168.63.129.16:80"),
         {Verdict::deny, reason::ip_literal_not_allowed, "egress.allow_addresses"}},
        {"imds literal not allowed", authority("169.254.169.254:80"),
         {Verdict::deny, reason::ip_literal_not_allowed, "egress.allow_addresses"}},
        {"v6 loopback literal", authority("[::1]:443"),
         {Verdict::deny, reason::ip_literal_not_allowed, "egress.allow_addresses"}},
        {"v6 mapped imds literal", authority("[::ffff:169.254.169.254]:80"),
         {Verdict::deny, reason::ip_literal_not_allowed, "egress.allow_addresses"}},
        {"raw literal without literal set", raw("169.254.169.254", 80),
         {Verdict::deny, reason::ip_literal_not_allowed, "egress.allow_addresses"}},
        {"literal in allow_addresses", authority("20.60.1.2:443"),
         {Verdict::allow, reason::address_allowed, "allow_addresses:20.60.0.0/16"}},
        {"mapped literal in allow_addresses", authority("[::ffff:20.60.1.2]:443"),
         {Verdict::allow, reason::address_allowed, "allow_addresses:20.60.0.0/16"}},
        {"v6 literal in allow_addresses", authority("[2603:1020:200::682f:a0fd]:443"),
         {Verdict::allow, reason::address_allowed, "allow_addresses:2603:1020::/32"}},
        {"raw embedded NUL", raw("evil.com\0.blob.core.windows.net"s, 443),
         {Verdict::deny, reason::invalid_host, "host_syntax"}},
        {"raw percent NUL", raw("evil.com%00.blob.core.windows.net", 443),
         {Verdict::deny, reason::invalid_host, "host_syntax"}},
        {"raw double dot", raw("x.blob.core.windows.net..", 443), {Verdict::deny, reason::invalid_host, "host_syntax"}},
        {"raw empty host", raw("", 443), {Verdict::deny, reason::invalid_host, "host_syntax"}},
        {"raw userinfo", raw("user@x.blob.core.windows.net", 443), {Verdict::deny, reason::invalid_host, "host_syntax"}},
        {"raw short ipv4", raw("127.1", 80), {Verdict::deny, reason::invalid_host, "host_syntax"}},
        {"raw non-ascii", raw("x.blob.core.windows.n\xc3\xa9t", 443), {Verdict::deny, reason::invalid_host, "host_syntax"}},
        {"raw invalid host on bad port", raw("a..b", 22), {Verdict::deny, reason::invalid_host, "host_syntax"}},
    };
}

}  // namespace

TEST_CASE("decide in enforce mode", "[policy][decide]") {
    const EgressPolicy policy(backup_rules(EgressMode::enforce));
    for (const auto& c : decide_cases()) {
        DYNAMIC_SECTION(c.name) { check_decision(policy.decide(c.target), c.enforce); }
    }
}

TEST_CASE("decide in report mode reports policy denials but still denies invalid hosts",
          "[policy][decide]") {
    const EgressPolicy policy(backup_rules(EgressMode::report));
    for (const auto& c : decide_cases()) {
        DYNAMIC_SECTION(c.name) {
            Expected e = c.enforce;
            if (e.verdict == Verdict::deny && e.reason != reason::invalid_host) e.verdict = Verdict::report;
            check_decision(policy.decide(c.target), e);
        }
    }
}

TEST_CASE("decide fails closed with empty rules", "[policy][decide]") {
    const EgressPolicy policy{EgressRules{}};
    check_decision(policy.decide(authority("x.blob.core.windows.net:443")),
                   {Verdict::deny, reason::port_not_allowed, "egress.ports"});
    EgressRules ports_only;
    ports_only.ports = {443};
    check_decision(EgressPolicy(ports_only).decide(authority("x.blob.core.windows.net:443")),
                   {Verdict::deny, reason::host_not_allowed, "egress.hosts"});
    check_decision(EgressPolicy(ports_only).decide(authority("20.60.1.2:443")),
                   {Verdict::deny, reason::ip_literal_not_allowed, "egress.allow_addresses"});
}

TEST_CASE("the embedded NUL case really carries a NUL", "[policy][decide]") {
    const auto host = "evil.com\0.blob.core.windows.net"s;
    CHECK(host.size() == 31);
    CHECK(host[8] == '\0');
}

TEST_CASE("check_address denies every non-public class, in report mode too", "[policy][decide]") {
    struct Case {
        const char* name;
        const char* address;
        Expected expected;
    };
    const auto denied = [](std::string_view rule) {
        return Expected{Verdict::deny, reason::destination_address_denied, std::string(rule)};
    };
    const Case cases[] = {
        {"public v4", "52.239.1.1", {Verdict::allow, reason::address_allowed, "public"}},
        {"public v6", "2a01:111:f100::1", {Verdict::allow, reason::address_allowed, "public"}},
        {"imds", "169.254.169.254", denied("imds")},
        {"wireserver", "168.63.129.16", denied("wireserver")},
        {"loopback", "127.0.0.1", denied("loopback")},
        {"private", "10.0.0.4", denied("private_network")},
        {"cgnat", "100.64.0.1", denied("shared_cgnat")},
        {"link local", "169.254.1.1", denied("link_local")},
        {"multicast", "224.0.0.251", denied("multicast")},
        {"broadcast", "255.255.255.255", denied("broadcast")},
        {"reserved", "240.0.0.1", denied("reserved")},
        {"unspecified", "0.0.0.0", denied("unspecified")},
        {"v6 unspecified", "::", denied("unspecified")},
        {"v6 loopback", "::1", denied("loopback")},
        {"v6 unique local", "fd00::1", denied("unique_local")},
        {"v6 link local", "fe80::1", denied("link_local")},
        {"v6 multicast", "ff02::1", denied("multicast")},
        {"mapped imds", "::ffff:169.254.169.254", denied("imds")},
        {"compat wireserver", "::168.63.129.16", denied("wireserver")},
        {"nat64 imds", "64:ff9b::a9fe:a9fe", denied("imds")},
        {"6to4 imds", "2002:a9fe:a9fe::", denied("imds")},
        {"teredo imds", "2001:0:4136:e378:8000:63bf:5601:5601", denied("imds")},
        {"exempt private host", "10.0.9.8", {Verdict::allow, reason::address_allowed, "allow_addresses:10.0.9.8/32"}},
        {"exempt via mapped form", "::ffff:10.0.9.8",
         {Verdict::allow, reason::address_allowed, "allow_addresses:10.0.9.8/32"}},
        {"exempt public prefix", "20.60.1.2", {Verdict::allow, reason::address_allowed, "allow_addresses:20.60.0.0/16"}},
        {"exemption is exact", "10.0.9.9", denied("private_network")},
    };
    for (const auto mode : {EgressMode::enforce, EgressMode::report}) {
        const EgressPolicy policy(backup_rules(mode));
        for (const auto& c : cases) {
            DYNAMIC_SECTION((mode == EgressMode::report ? "report: " : "enforce: ") << c.name) {
                check_decision(policy.check_address(ip(c.address)), c.expected);
            }
        }
    }
}

TEST_CASE("to_string(Verdict)", "[policy][decide]") {
    CHECK(to_string(Verdict::allow) == "allow");
    CHECK(to_string(Verdict::deny) == "deny");
    CHECK(to_string(Verdict::report) == "report");
}
