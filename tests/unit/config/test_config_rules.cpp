// [[egress.rule]], [egress] deny_hosts and service tags as the config reads them: each error at
// its key and line:column, and a valid file decided as its rules say.
#include <catch.hpp>

#include <string>
#include <vector>

#include "config/config.hpp"
#include "config_test_support.hpp"

namespace cfg = egressgate::config;
using config_test_support::describe;
namespace policy = egressgate::policy;

namespace {

const std::string kClients = "[clients]\nallow = [\"10.0.0.0/16\", \"fd00::/8\"]\n";
const std::string kTags = std::string("service_tags_file = \"") + EGRESSGATE_FIXTURES +
                          "/service_tags/ServiceTags_Public_fixture.json\"\n";

struct BadRule {
    const char* name;
    std::string toml;
    std::string key;
    std::string message;  // substring
    int line;
    int column;
};

// Lines count from 1 in the whole text, kClients (2 lines) included.
const std::vector<BadRule> kBadRules = {
    {"a rule without a name", kClients + "[[egress.rule]]\nhosts = [\"a.example.com\"]\n", "egress.rule[0].name",
     "required: the rule's name", 3, 1},
    {"two rules of one name", kClients + "[[egress.rule]]\nname = \"r\"\n[[egress.rule]]\nname = \"r\"\n",
     "egress.rule[1].name", "another [[egress.rule]] has this name", 6, 8},
    {"a name that is not a label", kClients + "[[egress.rule]]\nname = \"a b\"\n", "egress.rule[0].name",
     "letters, digits", 4, 8},
    {"a VM name the inventory lacks", kClients + "[[egress.rule]]\nname = \"r\"\nclients = [\"sql-01\"]\n",
     "egress.rule[0].clients[0]", "no VM of this name in the inventory", 5, 12},
    {"a CIDR with host bits", kClients + "[[egress.rule]]\nname = \"r\"\nclients = [\"10.0.0.1/16\"]\n",
     "egress.rule[0].clients[0]", "not a CIDR, an IP address or a VM name", 5, 12},
    {"an unknown action", kClients + "[[egress.rule]]\nname = \"r\"\naction = \"block\"\n", "egress.rule[0].action",
     "expected \"allow\" or \"deny\"", 5, 10},
    {"an unknown mode", kClients + "[[egress.rule]]\nname = \"r\"\nmode = \"audit\"\n", "egress.rule[0].mode",
     "expected \"enforce\" or \"report\"", 5, 8},
    {"an unknown key", kClients + "[[egress.rule]]\nname = \"r\"\nhost = [\"a.example.com\"]\n",
     "egress.rule[0].host", "unknown key", 5, 1},
    {"an unknown catalog in a rule", kClients + "[[egress.rule]]\nname = \"r\"\ncatalogs = [\"azure-sql\"]\n",
     "egress.rule[0].catalogs[0]", "unknown catalog; choices: azure-backup", 5, 13},
    {"a wildcard over a public suffix in a rule", kClients + "[[egress.rule]]\nname = \"r\"\nhosts = [\"*.co.uk\"]\n",
     "egress.rule[0].hosts[0]", "\"co.uk\", a public suffix", 5, 10},
    {"a wildcard over a public suffix globally", kClients + "[egress]\nhosts = [\"*.com\"]\n", "egress.hosts[0]",
     "\"com\", a public suffix", 4, 10},
    {"service tags without a file", kClients + "[egress]\nservice_tags = [\"Storage\"]\n", "egress.service_tags[0]",
     "needs [egress] service_tags_file", 4, 17},
    {"a rule's service tags without a file", kClients + "[[egress.rule]]\nname = \"r\"\nservice_tags = [\"Storage\"]\n",
     "egress.rule[0].service_tags[0]", "needs [egress] service_tags_file", 5, 17},
    {"an unknown service tag", kClients + "[egress]\n" + kTags + "service_tags = [\"Storage.WestEurop\"]\n",
     "egress.service_tags[0]", "did you mean \"Storage.WestEurope\"", 5, 17},
    {"require_service_tag without tags", kClients + "[egress]\nrequire_service_tag = true\n",
     "egress.require_service_tag", "needs [egress] service_tags", 4, 23},
    {"a deny rule by service tags", kClients + "[egress]\n" + kTags +
     "[[egress.rule]]\nname = \"r\"\naction = \"deny\"\nservice_tags = [\"Storage\"]\n",
     "egress.rule[0].service_tags", "service_tags only allow", 8, 16},
    {"an empty hosts list in a rule", kClients + "[[egress.rule]]\nname = \"r\"\nhosts = []\n", "egress.rule[0].hosts",
     "must not be empty", 5, 9},
    {"an empty catalogs list in a rule", kClients + "[[egress.rule]]\nname = \"r\"\ncatalogs = []\n",
     "egress.rule[0].catalogs", "must not be empty", 5, 12},
    {"a missing tags file", kClients + "[egress]\nservice_tags_file = \"missing-tags.json\"\n",
     "egress.service_tags_file", "missing-tags.json: cannot read", 4, 21},
    // A file that is set but does not load is the one error: the names cannot be checked against
    // it, and "needs service_tags_file" or "needs service_tags" would send the admin elsewhere.
    {"a missing tags file and a global tag", kClients + "[egress]\nservice_tags_file = \"missing-tags.json\"\n" +
     "service_tags = [\"Storage.WestEurope\"]\n",
     "egress.service_tags_file", "missing-tags.json: cannot read", 4, 21},
    {"a missing tags file and a rule's tag", kClients + "[egress]\nservice_tags_file = \"missing-tags.json\"\n" +
     "[[egress.rule]]\nname = \"r\"\nservice_tags = [\"Storage.WestEurope\"]\n",
     "egress.service_tags_file", "missing-tags.json: cannot read", 4, 21},
    {"a truncated tags file and require_service_tag", kClients + "[egress]\nservice_tags_file = \"" +
     EGRESSGATE_FIXTURES + "/service_tags/bad/truncated.json\"\nservice_tags = [\"Storage\"]\n" +
     "require_service_tag = true\n",
     "egress.service_tags_file", "truncated.json: invalid JSON", 4, 21},
    {"a tags file that is not a string", kClients + "[egress]\nservice_tags_file = 7\nservice_tags = [\"Storage\"]\n",
     "egress.service_tags_file", "expected a string", 4, 21},
};

}  // namespace

TEST_CASE("rule and service-tag errors name their key and line:column", "[config][rules]") {
    for (const auto& c : kBadRules) {
        DYNAMIC_SECTION(c.name) {
            const auto result = cfg::parse_config(c.toml, "inline.toml");
            INFO(describe(result));
            REQUIRE_FALSE(result.config);
            REQUIRE(result.errors.size() == 1);
            const auto& e = result.errors.front();
            CHECK(e.key == c.key);
            CHECK(e.message.find(c.message) != std::string::npos);
            CHECK(e.line == c.line);
            CHECK(e.column == c.column);
        }
    }
}

TEST_CASE("a wildcard inside a domain is accepted, and a deny list may be as wide as it likes", "[config][rules]") {
    const auto result = cfg::parse_config(
        kClients + "[egress]\nhosts = [\"*.blob.core.windows.net\", \"*.windows.net\"]\ndeny_hosts = [\"*.com\"]\n",
        "inline.toml");
    INFO(describe(result));
    REQUIRE(result.config);
}

TEST_CASE("the rules of a file decide in its order", "[config][rules]") {
    const std::string toml = kClients +
                             "[egress]\n"
                             "catalogs = []\nhosts = [\"*.example.com\"]\ndeny_hosts = [\"bad.example.com\"]\n"
                             "[[egress.rule]]\nname = \"jump\"\nclients = [\"jump-01\", \"fd00::7\"]\n"
                             "hosts = [\"mirror.example.org\", \"bad.example.com\"]\n"
                             "[[egress.rule]]\nname = \"trial\"\nclients = [\"10.0.9.0/24\"]\naction = \"deny\"\n"
                             "mode = \"report\"\n"
                             "[[vm]]\nname = \"jump-01\"\nip = \"10.0.0.5\"\n";
    const auto result = cfg::parse_config(toml, "inline.toml");
    INFO(describe(result));
    REQUIRE(result.config);
    const auto& egress = result.config->egress;
    struct Case {
        const char* name;
        policy::Client client;
        std::string host;
        policy::Verdict verdict;
        std::string_view reason;
        std::string rule_name;
    };
    const auto ip = [](const char* text) { return policy::IpAddress::parse(text); };
    const Case cases[] = {
        {"the jump host by VM name", {ip("10.0.0.5"), "jump-01"}, "mirror.example.org", policy::Verdict::allow,
         policy::reason::host_allowed, "jump"},
        {"the jump host by IPv6 address", {ip("fd00::7"), std::nullopt}, "mirror.example.org", policy::Verdict::allow,
         policy::reason::host_allowed, "jump"},
        {"another VM", {ip("10.0.0.6"), std::nullopt}, "mirror.example.org", policy::Verdict::deny,
         policy::reason::host_not_allowed, "egress.hosts"},
        {"the deny list over a rule", {ip("10.0.0.5"), "jump-01"}, "bad.example.com", policy::Verdict::deny,
         policy::reason::host_denied, "egress.deny_hosts"},
        {"the trial subnet, in report mode", {ip("10.0.9.4"), std::nullopt}, "other.example.net",
         policy::Verdict::report, policy::reason::denied_by_rule, "trial"},
        {"the global list", {ip("10.0.0.6"), std::nullopt}, "www.example.com", policy::Verdict::allow,
         policy::reason::host_allowed, "egress.hosts"},
    };
    for (const auto& c : cases) {
        DYNAMIC_SECTION(c.name) {
            const auto d = egress.decide(policy::Target{c.host, 443, std::nullopt}, c.client);
            CHECK(d.verdict == c.verdict);
            CHECK(d.reason == c.reason);
            CHECK(d.rule_name == c.rule_name);
        }
    }
}
