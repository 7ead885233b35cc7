// [[egress.rule]] evaluation: [egress] deny_hosts first, then the rules in order (first match wins),
// then the global allowlist; client selectors, ports, deny actions and their modes, service tags
// (by name and by IP literal), the address check a decision may require, and the trace.
// The rules are built by hand, as config/ would build them, so a failure here is the policy's.
#include <catch.hpp>

#include <algorithm>
#include <initializer_list>
#include <optional>
#include <string>
#include <vector>

#include "policy/egress_policy.hpp"
#include "policy/prefix_set.hpp"

using namespace egressgate::policy;

namespace {

Target at(std::string_view authority) {
    const auto t = parse_authority(authority);
    REQUIRE(t.has_value());
    return *t;
}

// A host as another layer might pass it, without parse_authority's validation.
Target raw(std::string host, std::uint16_t port) { return Target{std::move(host), port, std::nullopt}; }

IpAddress ip(std::string_view text) {
    const auto a = IpAddress::parse(text);
    REQUIRE(a.has_value());
    return *a;
}

Cidr cidr(std::string_view text) {
    const auto c = Cidr::parse(text);
    REQUIRE(c.has_value());
    return *c;
}

Client from(std::string_view address, std::optional<std::string> vm = std::nullopt) {
    return Client{ip(address), std::move(vm)};
}
Client vm_only(std::string vm) { return Client{std::nullopt, std::move(vm)}; }

// origin as config/ records it: "hosts" inside a rule, "egress.hosts" and "egress.deny_hosts" globally.
HostPatternSet patterns(std::initializer_list<const char*> texts, const std::string& origin) {
    HostPatternSet set;
    for (const char* text : texts) {
        const auto p = HostPattern::parse(text);
        REQUIRE(p.has_value());
        set.add(*p, origin);
    }
    return set;
}

EgressRule rule(std::string name, std::initializer_list<const char*> hosts, RuleAction action = RuleAction::allow) {
    EgressRule r;
    r.name = std::move(name);
    r.hosts = patterns(hosts, "hosts");
    r.action = action;
    return r;
}

PrefixSetPtr tags(std::initializer_list<std::pair<const char*, const char*>> entries) {
    PrefixSet::Builder builder;
    for (const auto& [tag, prefix] : entries) builder.add(tag, cidr(prefix));
    return std::move(builder).build();
}

struct Expected {
    Verdict verdict;
    std::string_view reason;
    std::string rule_name;
    std::string rule;
};

void check_decision(const Decision& d, const Expected& e) {
    CHECK(to_string(d.verdict) == to_string(e.verdict));
    CHECK(d.reason == e.reason);
    CHECK(d.rule_name == e.rule_name);
    CHECK(d.rule == e.rule);
    CHECK(d.permits() == (e.verdict != Verdict::deny));
}

Expected host_not_allowed() { return {Verdict::deny, reason::host_not_allowed, "egress.hosts", "egress.hosts"}; }
Expected port_not_allowed() { return {Verdict::deny, reason::port_not_allowed, "egress.ports", "egress.ports"}; }
Expected literal_not_allowed() {
    return {Verdict::deny, reason::ip_literal_not_allowed, "egress.allow_addresses", "egress.allow_addresses"};
}

struct Row {
    const char* name;
    Target target;
    Client client;
    Expected expected;
};

void check_rows(const EgressRules& rules, const std::vector<Row>& rows) {
    const EgressPolicy policy(rules);
    for (const auto& r : rows) {
        DYNAMIC_SECTION(r.name) { check_decision(policy.decide(r.target, r.client), r.expected); }
    }
}

struct AddressRow {
    const char* name;
    const char* address;
    Expected expected;
};

// The same rows under [egress] mode = "enforce" and "report": only the verdict may change.
struct ModeRow {
    const char* name;
    Target target;
    Expected enforce;
    Verdict in_report;
};

void check_in_both_modes(EgressRules rules, const std::vector<ModeRow>& rows) {
    for (const auto mode : {EgressMode::enforce, EgressMode::report}) {
        rules.mode = mode;
        const EgressPolicy policy(rules);
        for (const auto& r : rows) {
            DYNAMIC_SECTION((mode == EgressMode::report ? "report: " : "enforce: ") << r.name) {
                Expected e = r.enforce;
                if (mode == EgressMode::report) e.verdict = r.in_report;
                check_decision(policy.decide(r.target), e);
            }
        }
    }
}

EgressRules ordered_rules() {
    EgressRules rules;
    rules.ports = {443};
    rules.deny_hosts = patterns({"blocked.example.com", "*.evil.example"}, "egress.deny_hosts");
    rules.hosts = patterns({"blocked.example.com", "x.evil.example", "global.example.com"}, "egress.hosts");
    rules.rules.push_back(rule("first", {"shared.example.com", "blocked.example.com"}));
    rules.rules.push_back(rule("second", {"shared.example.com", "second.example.com"}, RuleAction::deny));
    return rules;
}

}  // namespace

TEST_CASE("rules: deny_hosts, then the rules in order, then [egress] hosts", "[policy][rules]") {
    check_in_both_modes(ordered_rules(), {
        {"deny_hosts beats a rule and the global hosts", at("blocked.example.com:443"),
         {Verdict::deny, reason::host_denied, "egress.deny_hosts", "egress.deny_hosts blocked.example.com"}, Verdict::deny},
        {"deny_hosts wildcard beats the global hosts", at("x.evil.example:443"),
         {Verdict::deny, reason::host_denied, "egress.deny_hosts", "egress.deny_hosts *.evil.example"}, Verdict::deny},
        {"the first of two matching rules decides", at("shared.example.com:443"),
         {Verdict::allow, reason::host_allowed, "first", "rule:first hosts shared.example.com"}, Verdict::allow},
        {"the second rule decides what the first does not match", at("second.example.com:443"),
         {Verdict::deny, reason::denied_by_rule, "second", "rule:second hosts second.example.com"}, Verdict::report},
        {"then the global hosts", at("global.example.com:443"),
         {Verdict::allow, reason::host_allowed, "egress.hosts", "egress.hosts global.example.com"}, Verdict::allow},
        {"else deny", at("other.example.com:443"), host_not_allowed(), Verdict::report},
    });
}

TEST_CASE("rules: clients by CIDR, by VM name, or every client", "[policy][rules]") {
    EgressRules rules;
    rules.ports = {443};
    EgressRule vnet = rule("vnet-a", {"a.example.com"});
    vnet.clients.cidrs = CidrSet({cidr("10.1.0.0/16"), cidr("fd00:1::/64")});
    EgressRule build = rule("build-vm", {"a.example.com", "b.example.com"});
    build.clients.vm_names = {"build-01"};
    rules.rules = {vnet, build, rule("everyone", {"a.example.com"})};

    const auto decided_by = [](const char* name) {
        return Expected{Verdict::allow, reason::host_allowed, name, "rule:" + std::string(name) + " hosts a.example.com"};
    };
    check_rows(rules, {
        {"v4 client in the CIDR", at("a.example.com:443"), from("10.1.2.3"), decided_by("vnet-a")},
        {"v4-mapped client in the CIDR", at("a.example.com:443"), from("::ffff:10.1.2.3"), decided_by("vnet-a")},
        {"v6 client in the CIDR", at("a.example.com:443"), from("fd00:1::5"), decided_by("vnet-a")},
        {"v4 client outside", at("a.example.com:443"), from("10.2.0.1"), decided_by("everyone")},
        {"v6 client outside", at("a.example.com:443"), from("fd00:2::5"), decided_by("everyone")},
        {"the named VM", at("a.example.com:443"), from("10.2.0.1", "build-01"), decided_by("build-vm")},
        {"the named VM without an address", at("a.example.com:443"), vm_only("build-01"), decided_by("build-vm")},
        {"another VM", at("a.example.com:443"), from("10.2.0.1", "build-02"), decided_by("everyone")},
        {"a client with no address", at("a.example.com:443"), Client{}, decided_by("everyone")},
        {"the VM's own host", at("b.example.com:443"), vm_only("build-01"),
         {Verdict::allow, reason::host_allowed, "build-vm", "rule:build-vm hosts b.example.com"}},
        {"the VM's host for another VM", at("b.example.com:443"), vm_only("build-02"), host_not_allowed()},
        {"the VM's host for a client with no address", at("b.example.com:443"), Client{}, host_not_allowed()},
    });
}

TEST_CASE("rules: a rule's own ports, else [egress] ports; a port mismatch falls through", "[policy][rules]") {
    EgressRules rules;
    rules.ports = {443};
    rules.hosts = patterns({"web.example.com"}, "egress.hosts");
    EgressRule alt = rule("on-8443", {"svc.example.com", "web.example.com"});
    alt.ports = {8443};
    rules.rules = {alt, rule("on-global-ports", {"svc.example.com", "other.example.com"})};

    check_rows(rules, {
        {"own port, not in [egress] ports", at("svc.example.com:8443"), {},
         {Verdict::allow, reason::host_allowed, "on-8443", "rule:on-8443 hosts svc.example.com"}},
        {"own port mismatch falls to the next rule", at("svc.example.com:443"), {},
         {Verdict::allow, reason::host_allowed, "on-global-ports", "rule:on-global-ports hosts svc.example.com"}},
        {"no ports of its own: [egress] ports", at("other.example.com:8443"), {}, port_not_allowed()},
        {"no rule's port and not in [egress] ports", at("svc.example.com:80"), {}, port_not_allowed()},
        {"own port mismatch falls to the global hosts", at("web.example.com:443"), {},
         {Verdict::allow, reason::host_allowed, "egress.hosts", "egress.hosts web.example.com"}},
        {"a rule's port does not widen the global hosts", at("web.example.com:80"), {}, port_not_allowed()},
    });
}

TEST_CASE("rules: action deny, per-rule mode and global mode", "[policy][rules]") {
    EgressRules rules;
    rules.ports = {443};
    rules.hosts = patterns({"ok.example.com"}, "egress.hosts");
    EgressRule trial = rule("block-report", {"trial.example.com"}, RuleAction::deny);
    trial.mode = EgressMode::report;
    EgressRule strict = rule("block-enforce", {"strict.example.com"}, RuleAction::deny);
    strict.mode = EgressMode::enforce;
    rules.rules = {rule("block", {"blocked.example.com"}, RuleAction::deny), trial, strict};

    check_in_both_modes(rules, {
        {"deny rule follows the global mode", at("blocked.example.com:443"),
         {Verdict::deny, reason::denied_by_rule, "block", "rule:block hosts blocked.example.com"}, Verdict::report},
        {"deny rule in report mode reports", at("trial.example.com:443"),
         {Verdict::report, reason::denied_by_rule, "block-report", "rule:block-report hosts trial.example.com"},
         Verdict::report},
        {"deny rule in enforce mode denies", at("strict.example.com:443"),
         {Verdict::deny, reason::denied_by_rule, "block-enforce", "rule:block-enforce hosts strict.example.com"},
         Verdict::deny},
        {"global allow", at("ok.example.com:443"),
         {Verdict::allow, reason::host_allowed, "egress.hosts", "egress.hosts ok.example.com"}, Verdict::allow},
        {"global deny", at("unlisted.example.com:443"), host_not_allowed(), Verdict::report},
        {"global port deny", raw("ok.example.com", 22), port_not_allowed(), Verdict::report},
        {"invalid host", raw("trial..example.com", 443),
         {Verdict::deny, reason::invalid_host, "host_syntax", "host_syntax"}, Verdict::deny},
    });
}

TEST_CASE("rules: a rule with no hosts and no service tags is for every destination", "[policy][rules]") {
    EgressRules rules;
    rules.ports = {443};
    EgressRule vnet = rule("vnet-b-any", {});
    vnet.clients.cidrs = CidrSet({cidr("10.2.0.0/16")});
    rules.rules = {vnet, rule("deny-rest", {}, RuleAction::deny)};

    const Expected any_name{Verdict::allow, reason::host_allowed, "vnet-b-any", "rule:vnet-b-any any destination"};
    const Expected any_address{Verdict::allow, reason::address_allowed, "vnet-b-any", "rule:vnet-b-any any destination"};
    const Expected rest{Verdict::deny, reason::denied_by_rule, "deny-rest", "rule:deny-rest any destination"};
    check_rows(rules, {
        {"a name", at("anything.example.com:443"), from("10.2.0.1"), any_name},
        {"a v4 literal", at("93.184.216.34:443"), from("10.2.0.1"), any_address},
        {"a v6 literal", at("[2603:1030::1]:443"), from("10.2.0.1"), any_address},
        {"on a port [egress] ports lacks too", at("anything.example.com:8443"), from("10.2.0.1"), rest},
        {"another client's name", at("anything.example.com:443"), from("10.3.0.1"), rest},
        {"another client's literal", at("93.184.216.34:443"), from("10.3.0.1"), rest},
    });
    const EgressPolicy policy(rules);  // a decision's rule names are the policy's: it outlives d
    const Decision d = policy.decide(at("anything.example.com:443"), from("10.2.0.1"));
    CHECK(d.within == nullptr);  // nothing requires its addresses to lie anywhere
}

TEST_CASE("rules: a rule's service tags, by name and by IP literal", "[policy][rules]") {
    const auto storage = tags({{"Storage.WestEurope", "20.60.0.0/16"}, {"Storage.WestEurope", "2603:1020:200::/48"}});
    EgressRules rules;
    rules.ports = {443};
    EgressRule by_tags = rule("storage", {});
    by_tags.service_tags = storage;
    rules.rules = {by_tags};
    const EgressPolicy policy(rules);

    const Expected tagged_literal{Verdict::allow, reason::address_allowed, "storage",
                                  "rule:storage service tag Storage.WestEurope"};
    check_rows(rules, {
        {"a name, by its addresses", at("acct.blob.core.windows.net:443"), {},
         {Verdict::allow, reason::host_allowed, "storage", "rule:storage service tags, by address"}},
        {"a v4 literal inside", at("20.60.1.2:443"), {}, tagged_literal},
        {"a v6 literal inside", at("[2603:1020:200::1]:443"), {}, tagged_literal},
        {"a v4 literal outside falls through", at("20.61.0.1:443"), {}, literal_not_allowed()},
        {"a v6 literal outside falls through", at("[2603:1020:300::1]:443"), {}, literal_not_allowed()},
    });

    const Decision by_name = policy.decide(at("acct.blob.core.windows.net:443"));
    CHECK(by_name.within == storage);
    CHECK(by_name.within_rule == "rule:storage");
    CHECK(policy.decide(at("20.60.1.2:443")).within == nullptr);  // the literal itself was checked

    struct TaggedAddressRow {  // no rule_name: the next test case asserts it
        const char* name;
        const char* address;
        Verdict verdict;
        std::string_view reason;
        const char* rule;
    };
    const TaggedAddressRow addresses[] = {
        {"v4 inside", "20.60.1.2", Verdict::allow, reason::address_allowed, "rule:storage Storage.WestEurope"},
        {"v6 inside", "2603:1020:200::1", Verdict::allow, reason::address_allowed, "rule:storage Storage.WestEurope"},
        {"v4 outside", "20.61.0.1", Verdict::deny, reason::address_outside_service_tags, "rule:storage"},
        {"v6 outside", "2603:1020:300::1", Verdict::deny, reason::address_outside_service_tags, "rule:storage"},
        {"private, outside", "10.0.0.4", Verdict::deny, reason::address_outside_service_tags, "rule:storage"},
    };
    for (const auto& a : addresses) {
        DYNAMIC_SECTION("check_address " << a.name) {
            const Decision d = policy.check_address(ip(a.address), by_name);
            CHECK(to_string(d.verdict) == to_string(a.verdict));
            CHECK(d.reason == a.reason);
            CHECK(d.rule == a.rule);
        }
    }
}

// decision.hpp: rule_name is "the rule's name alone, for /metrics: an [[egress.rule]] name". The
// request was counted under "storage"; its address denial must be counted under the same name.
TEST_CASE("rules: check_address names a rule's service tags by the rule's name alone", "[policy][rules]") {
    EgressRules rules;
    rules.ports = {443};
    EgressRule by_tags = rule("storage", {});
    by_tags.service_tags = tags({{"Storage.WestEurope", "20.60.0.0/16"}});
    rules.rules = {by_tags};
    const EgressPolicy policy(rules);
    const Decision by_name = policy.decide(at("acct.blob.core.windows.net:443"));
    REQUIRE(by_name.rule_name == "storage");
    check_decision(policy.check_address(ip("20.61.0.1"), by_name),
                   {Verdict::deny, reason::address_outside_service_tags, "storage", "rule:storage"});
}

TEST_CASE("rules: require_service_tag binds names to [egress] service_tags", "[policy][rules]") {
    const auto vault = tags({{"AzureKeyVault.WestEurope", "20.38.0.0/16"}, {"AzureKeyVault.WestEurope", "2603:1020:10::/48"}});
    EgressRules rules;
    rules.ports = {443};
    rules.hosts = patterns({"vault.example.com"}, "egress.hosts");
    rules.service_tags = vault;
    rules.require_service_tag = true;
    rules.allow_addresses = CidrSet({cidr("20.99.0.0/16"), cidr("2603:1020:99::/48")});
    rules.rules = {rule("app", {"app.example.com"})};
    const EgressPolicy policy(rules);

    const Decision global = policy.decide(at("vault.example.com:443"));
    check_decision(global, {Verdict::allow, reason::host_allowed, "egress.hosts", "egress.hosts vault.example.com"});
    CHECK(global.within == vault);
    CHECK(global.within_rule == "egress.service_tags");
    const Decision by_rule = policy.decide(at("app.example.com:443"));
    check_decision(by_rule, {Verdict::allow, reason::host_allowed, "app", "rule:app hosts app.example.com"});
    CHECK(by_rule.within == vault);

    const Expected inside{Verdict::allow, reason::address_allowed, "egress.service_tags",
                          "egress.service_tags AzureKeyVault.WestEurope"};
    const Expected outside{Verdict::deny, reason::address_outside_service_tags, "egress.service_tags", "egress.service_tags"};
    const AddressRow addresses[] = {
        {"v4 inside", "20.38.1.2", inside},
        {"v6 inside", "2603:1020:10::1", inside},
        {"v4 outside, in allow_addresses", "20.99.1.2", outside},
        {"v6 outside, in allow_addresses", "2603:1020:99::1", outside},
        {"v4 outside", "52.239.1.1", outside},
    };
    for (const auto& a : addresses) {
        DYNAMIC_SECTION("check_address " << a.name) {
            check_decision(policy.check_address(ip(a.address), global), a.expected);
            check_decision(policy.check_address(ip(a.address), by_rule), a.expected);
        }
    }
    SECTION("allow_addresses still exempts an address no decision binds") {
        check_decision(policy.check_address(ip("20.99.1.2")),
                       {Verdict::allow, reason::address_allowed, "egress.allow_addresses", "allow_addresses:20.99.0.0/16"});
    }
}

TEST_CASE("rules: check_address denies what would answer as the proxy VM, in report mode too", "[policy][rules]") {
    const auto denied = [](const char* cls) { return Expected{Verdict::deny, reason::destination_address_denied, cls, cls}; };
    const AddressRow addresses[] = {
        {"loopback", "127.0.0.1", denied("loopback")},
        {"v6 loopback", "::1", denied("loopback")},
        {"private", "10.0.0.4", denied("private_network")},
        {"imds", "169.254.169.254", denied("imds")},
        {"mapped imds", "::ffff:169.254.169.254", denied("imds")},
        {"wireserver", "168.63.129.16", denied("wireserver")},
        {"public", "52.239.1.1", {Verdict::allow, reason::address_allowed, "public", "public"}},
        {"exempt by allow_addresses", "10.0.9.8",
         {Verdict::allow, reason::address_allowed, "egress.allow_addresses", "allow_addresses:10.0.9.0/24"}},
        {"next to the exemption", "10.0.10.1", denied("private_network")},
    };
    for (const auto mode : {EgressMode::enforce, EgressMode::report}) {
        EgressRules rules = ordered_rules();
        rules.mode = mode;
        rules.allow_addresses = CidrSet({cidr("10.0.9.0/24")});
        const EgressPolicy policy(rules);
        const Decision allowed = policy.decide(at("shared.example.com:443"));
        REQUIRE(allowed.verdict == Verdict::allow);
        for (const auto& a : addresses) {
            DYNAMIC_SECTION((mode == EgressMode::report ? "report: " : "enforce: ") << a.name) {
                check_decision(policy.check_address(ip(a.address), allowed), a.expected);
            }
        }
    }
}

TEST_CASE("rules: the trace names the deciding rule", "[policy][rules]") {
    struct TraceRow {
        const char* name;
        const char* authority;
        const char* mentions;
    };
    const TraceRow rows[] = {
        {"first rule", "shared.example.com:443", "\"first\""},
        {"second rule", "second.example.com:443", "\"second\""},
        {"deny_hosts", "blocked.example.com:443", "deny_hosts blocked.example.com"},
        {"global hosts", "global.example.com:443", "egress.hosts global.example.com"},
    };
    const EgressPolicy policy(ordered_rules());
    for (const auto& r : rows) {
        DYNAMIC_SECTION(r.name) {
            Trace trace;
            policy.decide(at(r.authority), Client{}, &trace);
            REQUIRE_FALSE(trace.empty());
            const bool mentioned = std::any_of(trace.begin(), trace.end(), [&](const std::string& step) {
                return step.find(r.mentions) != std::string::npos;
            });
            INFO("trace: " << Catch::Detail::stringify(trace));
            CHECK(mentioned);
        }
    }
}

TEST_CASE("rules: a deny rule without ports denies on every port, before a later rule's own port",
          "[policy][rules]") {
    EgressRules rules;
    rules.ports = {443};
    EgressRule quarantine;
    quarantine.name = "quarantine";
    quarantine.clients.cidrs.add(cidr("10.0.9.0/24"));
    quarantine.action = RuleAction::deny;
    rules.rules.push_back(quarantine);
    EgressRule ssh = rule("ssh-out", {"git.example.com"});
    ssh.ports = {22};
    rules.rules.push_back(ssh);
    check_rows(rules, {
        {"quarantined, on the later rule's port", at("git.example.com:22"), from("10.0.9.5"),
         {Verdict::deny, reason::denied_by_rule, "quarantine", "rule:quarantine any destination"}},
        {"another VM, on that port", at("git.example.com:22"), from("10.0.1.5"),
         {Verdict::allow, reason::host_allowed, "ssh-out", "rule:ssh-out hosts git.example.com"}},
    });
}

TEST_CASE("tunnels: the SNI is checked against deny_hosts in every mode", "[policy][rules]") {
    for (const auto sni_mode : {SniMode::match, SniMode::log}) {
        for (const auto mode : {EgressMode::enforce, EgressMode::report}) {
            EgressRules rules;
            rules.ports = {443};
            rules.mode = mode;
            rules.sni = sni_mode;
            rules.hosts = patterns({"ok.example.com"}, "egress.hosts");
            rules.deny_hosts = patterns({"bad.example.com"}, "egress.deny_hosts");
            rules.allow_addresses.add(cidr("20.0.0.0/8"));
            const EgressPolicy policy(rules);
            const TunnelStart hello{TunnelStart::Kind::client_hello, std::string("bad.example.com")};
            DYNAMIC_SECTION("sni " << (sni_mode == SniMode::log ? "log" : "match") << ", mode "
                                   << (mode == EgressMode::report ? "report" : "enforce")) {
                for (const auto* target : {"ok.example.com:443", "20.1.2.3:443"}) {
                    INFO(target);
                    const Decision d = policy.check_tunnel_start(at(target), hello, policy.decide(at(target)));
                    CHECK(d.verdict == Verdict::deny);
                    CHECK(d.reason == reason::host_denied);
                    CHECK(d.rule_name == "egress.deny_hosts");
                }
            }
        }
    }
}

TEST_CASE("tunnels: an IP-literal CONNECT's SNI allowed by service tags must name an address inside them",
          "[policy][rules]") {
    EgressRules rules;
    rules.ports = {443};
    rules.service_tags = tags({{"Storage", "20.60.0.0/16"}});
    const EgressPolicy policy(rules);
    const TunnelStart hello{TunnelStart::Kind::client_hello, std::string("anything.attacker.example")};
    CHECK(policy.check_tunnel_start(at("20.60.1.1:443"), hello, policy.decide(at("20.60.1.1:443"))).reason ==
          reason::sni_allowed);
    const Decision outside = policy.check_tunnel_start(at("20.38.108.1:443"), hello, policy.decide(at("20.38.108.1:443")));
    CHECK(outside.verdict == Verdict::deny);
    CHECK(outside.reason == reason::sni_not_allowed);
}

TEST_CASE("tunnels: an SNI mismatch takes the mode of the rule that decided the CONNECT", "[policy][rules]") {
    EgressRules rules;
    rules.ports = {443};
    rules.hosts = patterns({"trial.example.com", "ok.example.com"}, "egress.hosts");
    EgressRule trial = rule("trial", {"trial.example.com"});
    trial.clients.cidrs.add(cidr("10.0.7.0/24"));
    trial.mode = EgressMode::report;
    EgressRule strict = rule("strict", {"strict.example.com"});
    strict.mode = EgressMode::enforce;
    // With hosts, so that only an IP literal in its tags matches by address, not every name.
    EgressRule trial_storage = rule("trial-storage", {"vault.blob.core.windows.net"});
    trial_storage.service_tags = tags({{"Storage", "20.60.0.0/16"}});
    trial_storage.mode = EgressMode::report;
    rules.rules = {trial, strict, rule("follows", {"follows.example.com"}), trial_storage};

    struct TunnelRow {
        const char* name;
        Target target;
        Client client;
        std::string_view reason;
        Verdict in_enforce;  // under [egress] mode = "enforce"
        Verdict in_report;   // under [egress] mode = "report"
    };
    const std::vector<TunnelRow> rows = {
        {"a report rule's tunnel is reported", at("trial.example.com:443"), from("10.0.7.5"), reason::sni_mismatch,
         Verdict::report, Verdict::report},
        {"an enforce rule's tunnel is denied", at("strict.example.com:443"), from("10.0.7.5"), reason::sni_mismatch,
         Verdict::deny, Verdict::deny},
        {"a rule without a mode follows the global mode", at("follows.example.com:443"), from("10.0.7.5"),
         reason::sni_mismatch, Verdict::deny, Verdict::report},
        {"another client's report rule does not apply", at("trial.example.com:443"), from("10.0.1.5"),
         reason::sni_mismatch, Verdict::deny, Verdict::report},
        {"no rule: the global mode", at("ok.example.com:443"), from("10.0.7.5"), reason::sni_mismatch, Verdict::deny,
         Verdict::report},
        {"an IP literal in a report rule's service tags", at("20.60.1.1:443"), from("10.0.7.5"),
         reason::sni_not_allowed, Verdict::report, Verdict::report},
    };
    const TunnelStart hello{TunnelStart::Kind::client_hello, std::string("evil.example.com")};
    for (const auto mode : {EgressMode::enforce, EgressMode::report}) {
        rules.mode = mode;
        const EgressPolicy policy(rules);
        for (const auto& r : rows) {
            DYNAMIC_SECTION((mode == EgressMode::report ? "report: " : "enforce: ") << r.name) {
                // The CONNECT itself was allowed, else there would be no tunnel to inspect.
                const Decision connect = policy.decide(r.target, r.client);
                REQUIRE(connect.verdict == Verdict::allow);
                const Decision d = policy.check_tunnel_start(r.target, hello, connect, r.client);
                CHECK(to_string(d.verdict) == to_string(mode == EgressMode::report ? r.in_report : r.in_enforce));
                CHECK(d.reason == r.reason);
            }
        }
    }
}

// Report mode reports what enforcing would refuse; an address outside the service tags a rule
// requires is one such refusal. The address deny list stays enforced.
TEST_CASE("rules: in report mode an address outside the required service tags is reported", "[policy][rules]") {
    const auto storage = tags({{"Storage.WestEurope", "20.60.0.0/16"}});
    const Expected outside{Verdict::report, reason::address_outside_service_tags, "storage", "rule:storage"};
    const AddressRow addresses[] = {
        {"inside", "20.60.1.2", {Verdict::allow, reason::address_allowed, "storage", "rule:storage Storage.WestEurope"}},
        {"outside, public", "20.61.0.1", outside},
        {"outside, in allow_addresses", "20.99.1.2", outside},
        {"outside, private", "10.0.0.4", {Verdict::deny, reason::destination_address_denied, "private_network", "private_network"}},
        {"outside, imds", "169.254.169.254", {Verdict::deny, reason::destination_address_denied, "imds", "imds"}},
    };
    struct ModeRow {
        const char* name;
        EgressMode global;
        std::optional<EgressMode> of_rule;
    };
    const ModeRow modes[] = {
        {"[egress] mode = report", EgressMode::report, std::nullopt},
        {"the rule's mode = report", EgressMode::enforce, EgressMode::report},
    };
    for (const auto& m : modes) {
        EgressRules rules;
        rules.ports = {443};
        rules.mode = m.global;
        rules.allow_addresses = CidrSet({cidr("20.99.0.0/16")});
        EgressRule by_tags = rule("storage", {});
        by_tags.service_tags = storage;
        by_tags.mode = m.of_rule;
        rules.rules = {by_tags};
        const EgressPolicy policy(rules);
        const Decision by_name = policy.decide(at("acct.blob.core.windows.net:443"));
        REQUIRE(by_name.verdict == Verdict::allow);
        CHECK(by_name.on_trial);
        for (const auto& a : addresses) {
            DYNAMIC_SECTION(m.name << ": check_address " << a.name) {
                check_decision(policy.check_address(ip(a.address), by_name), a.expected);
            }
        }
        DYNAMIC_SECTION(m.name << ": check_resolution reports the name, not refuses it") {
            const auto finding = policy.check_resolution(std::vector{ip("20.60.1.2"), ip("20.61.0.1")}, by_name);
            REQUIRE(finding);
            check_decision(*finding, outside);
            CHECK_FALSE(policy.check_resolution(std::vector{ip("20.60.1.2")}, by_name));
        }
    }
    SECTION("a rule in enforce mode under [egress] mode = report still refuses") {
        EgressRules rules;
        rules.ports = {443};
        rules.mode = EgressMode::report;
        EgressRule by_tags = rule("storage", {});
        by_tags.service_tags = storage;
        by_tags.mode = EgressMode::enforce;
        rules.rules = {by_tags};
        const EgressPolicy policy(rules);
        const Decision by_name = policy.decide(at("acct.blob.core.windows.net:443"));
        CHECK_FALSE(by_name.on_trial);
        check_decision(policy.check_address(ip("20.61.0.1"), by_name),
                       {Verdict::deny, reason::address_outside_service_tags, "storage", "rule:storage"});
        const auto finding = policy.check_resolution(std::vector{ip("20.61.0.1")}, by_name);
        REQUIRE(finding);
        CHECK(finding->verdict == Verdict::deny);
    }
}
