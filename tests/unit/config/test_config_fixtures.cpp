// Config files on disk: every deliberately broken fixture names its key, message and line:column;
// every good fixture yields the values an operator wrote; the bundled configs load.
#include <catch.hpp>

#include <algorithm>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "config_test_support.hpp"

namespace cfg = egressgate::config;
using config_test_support::describe;
namespace policy = egressgate::policy;

namespace {

const std::string kFixtures = EGRESSGATE_FIXTURES;

policy::IpAddress ip(const char* text) {
    const auto parsed = policy::IpAddress::parse(text);
    REQUIRE(parsed);
    return *parsed;
}

policy::Decision decide(const cfg::Config& config, const char* host, std::uint16_t port) {
    return config.egress.decide(policy::Target{host, port, policy::IpAddress::parse(host)});
}

std::vector<std::string> listen_texts(const std::vector<cfg::ListenAddress>& addresses) {
    std::vector<std::string> texts;
    for (const auto& a : addresses) texts.push_back(a.to_string());
    return texts;
}

std::shared_ptr<const cfg::Config> load_good(const std::string& relative) {
    const auto result = cfg::load_config_file(kFixtures + "/config/good/" + relative);
    INFO(describe(result));
    REQUIRE(result.errors.empty());
    REQUIRE(result.config);
    return result.config;
}

struct ExpectedError {
    std::string key;
    std::string value;    // as written in the file, TOML-quoted for strings
    std::string message;  // a substring of the message
    int line;
    int column;
};

void check_error(const cfg::ConfigError& actual, const ExpectedError& expected, const std::string& path) {
    CHECK(actual.source == path);
    CHECK(actual.key == expected.key);
    CHECK(actual.value == expected.value);
    CHECK_THAT(actual.message, Catch::Contains(expected.message));
    CHECK(actual.line == expected.line);
    CHECK(actual.column == expected.column);
}

struct BadFixture {
    const char* file;
    std::vector<ExpectedError> errors;  // all of them, in file order
};

const std::vector<BadFixture> kBadFixtures = {
    {"unknown_key.toml", {{"proxy.worker", "4", "unknown key", 3, 1}}},
    {"unknown_table.toml", {{"logging", "", "unknown key", 4, 2}}},
    {"wrong_type.toml", {{"proxy.workers", "\"4\"", "expected an integer, got a string", 2, 11}}},
    {"cidr_host_bits.toml",
     {{"clients.allow[1]", "\"10.0.0.1/16\"", "host bits below the prefix must be zero", 2, 24}}},
    {"port_zero.toml", {{"egress.ports[1]", "0", "must be from 1 to 65535", 5, 15}}},
    {"port_too_large.toml", {{"egress.ports[2]", "70000", "must be from 1 to 65535", 5, 21}}},
    {"bad_mode.toml", {{"egress.mode", "\"audit\"", "expected \"enforce\" or \"report\"", 5, 8}}},
    {"unknown_catalog.toml",
     {{"egress.catalogs[1]", "\"azure-storge\"",
       "unknown catalog; choices: azure-backup, azure-backup-usgov, azure-backup-china, azure-storage, "
       "azure-ad-login, azure-agent, azure-workload-backup",
       5, 29}}},
    {"bad_host_pattern.toml",
     {{"egress.hosts[1]", "\"*backup.example.com\"", "not a host pattern", 5, 37}}},
    {"bad_dns_host_address.toml",
     {{"dns.hosts.\"x.example\"", "\"10.0.0.300\"", "not an IP address", 6, 15}}},
    {"missing_clients_allow.toml",
     {{"clients.allow", "", "required: the virtual network's CIDRs", 1, 1}}},
    {"toml_syntax.toml", {{"", "", "expected comma or closing ']'", 3, 1}}},
    {"malformed_az_vm_list.toml",
     {{"inventory.az_vm_list", "\"../../inventory/truncated.json\"", "truncated.json: invalid JSON at byte", 5,
       14}}},
    {"missing_az_vm_list.toml",
     {{"inventory.az_vm_list", "\"does-not-exist.json\"",
       "bad/does-not-exist.json: No such file or directory", 5, 14}}},
    {"several_errors.toml",
     {{"proxy.listen[1]", "\"localhost:3128\"", "not an IP address", 3, 30},
      {"proxy.workers", "4096", "must be from 0 to 1024", 4, 11},
      {"egress.ports[1]", "70000", "must be from 1 to 65535", 11, 15},
      {"egress.colour", "\"blue\"", "unknown key", 12, 1},
      {"vm[0].ip", "\"10.0.1.400\"", "not an IP address", 16, 8}}},
};

}  // namespace

TEST_CASE("broken config fixtures report every error with key, value and line:column", "[config]") {
    for (const auto& fixture : kBadFixtures) {
        DYNAMIC_SECTION(fixture.file) {
            const std::string path = kFixtures + "/config/bad/" + fixture.file;
            const auto result = cfg::load_config_file(path);
            INFO(describe(result));
            CHECK_FALSE(result.config);
            REQUIRE(result.errors.size() == fixture.errors.size());
            for (std::size_t i = 0; i < fixture.errors.size(); ++i) check_error(result.errors[i], fixture.errors[i], path);
        }
    }
}

TEST_CASE("an error prints as FILE:LINE:COLUMN: KEY = VALUE: MESSAGE", "[config]") {
    const auto result = cfg::load_config_file(kFixtures + "/config/bad/port_too_large.toml");
    REQUIRE(result.errors.size() == 1);
    CHECK(result.errors[0].to_string() ==
          kFixtures + "/config/bad/port_too_large.toml:5:21: egress.ports[2] = 70000: must be from 1 to 65535");

    const auto missing = cfg::load_config_file(kFixtures + "/config/bad/missing_clients_allow.toml");
    REQUIRE(missing.errors.size() == 1);
    CHECK(missing.errors[0].to_string() == kFixtures +
                                               "/config/bad/missing_clients_allow.toml:1:1: clients.allow: "
                                               "required: the virtual network's CIDRs");
}

TEST_CASE("an unreadable config file is one error naming the path", "[config]") {
    const std::string path = kFixtures + "/config/no-such-file.toml";
    const auto result = cfg::load_config_file(path);
    CHECK_FALSE(result.config);
    REQUIRE(result.errors.size() == 1);
    CHECK(result.errors[0].source == path);
    CHECK(result.errors[0].to_string() == path + ": cannot read config file: No such file or directory");

    const auto directory = cfg::load_config_file(kFixtures + "/config");
    REQUIRE(directory.errors.size() == 1);
    CHECK_THAT(directory.errors[0].message, Catch::Contains("cannot read config file"));
}

TEST_CASE("minimal config: everything but clients.allow has its default", "[config]") {
    const auto config = load_good("minimal.toml");
    CHECK(listen_texts(config->listen) == std::vector<std::string>{"0.0.0.0:3128"});
    CHECK(config->workers == 0);
    CHECK(config->clients.contains(ip("10.0.200.7")));
    CHECK_FALSE(config->clients.contains(ip("10.1.0.1")));
    CHECK(config->egress.rules().mode == policy::EgressMode::enforce);
    CHECK(config->egress.rules().ports == std::vector<std::uint16_t>{443, 8443, 80});
    CHECK(config->egress.rules().allow_addresses.empty());
    CHECK(config->dns.servers.empty());
    CHECK(config->dns.timeout == std::chrono::milliseconds{5000});
    CHECK(config->dns.static_hosts.empty());
    CHECK(config->timeouts.header == std::chrono::milliseconds{10000});
    CHECK(config->timeouts.connect == std::chrono::milliseconds{10000});
    CHECK(config->timeouts.idle == std::chrono::milliseconds{300000});
    CHECK(config->audit_path == "/var/log/egressgate/audit.jsonl");
    CHECK(config->inventory.size() == 0);
    CHECK(config->admin_listen.to_string() == "127.0.0.1:9090");

    // The default catalog is azure-backup, and nothing else.
    const auto blob = decide(*config, "md-abc.z12.blob.storage.azure.net", 8443);
    CHECK(blob.verdict == policy::Verdict::allow);
    CHECK(blob.rule == "catalog:azure-backup *.blob.storage.azure.net");
    CHECK(decide(*config, "login.microsoftonline.com", 443).verdict == policy::Verdict::allow);
    CHECK(decide(*config, "example.com", 443).reason == policy::reason::host_not_allowed);
    CHECK(decide(*config, "myvault.blob.core.windows.net", 22).reason == policy::reason::port_not_allowed);
}

TEST_CASE("full config: every key is read", "[config]") {
    const auto config = load_good("full.toml");
    CHECK(listen_texts(config->listen) == std::vector<std::string>{"127.0.0.1:0", "[::1]:3129"});
    CHECK(config->workers == 4);
    CHECK(config->clients.contains(ip("192.168.10.20")));
    CHECK(config->clients.contains(ip("fd00:10::5")));
    CHECK(config->clients.contains(ip("::ffff:10.0.3.3")));
    CHECK_FALSE(config->clients.contains(ip("192.168.11.1")));

    const auto& rules = config->egress.rules();
    CHECK(rules.ports == std::vector<std::uint16_t>{443, 8443});
    CHECK(decide(*config, "x.blob.core.windows.net", 443).reason == policy::reason::host_not_allowed);
    const auto usgov = decide(*config, "vault1.blob.core.usgovcloudapi.net", 443);
    CHECK(usgov.verdict == policy::Verdict::allow);
    CHECK(usgov.rule.view().starts_with("catalog:azure-backup-usgov "));
    const auto exact = decide(*config, "Packages.Example.com", 443);
    CHECK(exact.verdict == policy::Verdict::allow);
    CHECK(exact.rule == "egress.hosts packages.example.com");
    CHECK(decide(*config, "eu.mirror.example.org", 8443).rule == "egress.hosts *.mirror.example.org");
    CHECK(decide(*config, "mirror.example.org", 443).reason == policy::reason::host_not_allowed);
    CHECK(decide(*config, "packages.example.com", 80).reason == policy::reason::port_not_allowed);
    CHECK(decide(*config, "10.0.9.7", 443).reason == policy::reason::address_allowed);
    CHECK(decide(*config, "10.0.8.7", 443).reason == policy::reason::ip_literal_not_allowed);

    CHECK(listen_texts(config->dns.servers) ==
          std::vector<std::string>{"127.0.0.53:53", "10.0.0.2:5353", "[fd00::53]:53", "[::1]:53"});
    CHECK(config->dns.timeout == std::chrono::milliseconds{1500});
    REQUIRE(config->dns.static_hosts.size() == 2);
    CHECK(config->dns.static_hosts.at("myvault.blob.core.windows.net") == std::vector{ip("127.0.0.1")});
    CHECK(config->dns.static_hosts.at("dual.example") == std::vector{ip("127.0.0.2"), ip("::1")});

    CHECK(config->timeouts.header == std::chrono::milliseconds{2000});
    CHECK(config->timeouts.connect == std::chrono::milliseconds{3000});
    CHECK(config->timeouts.idle == std::chrono::milliseconds{60000});
    CHECK(config->audit_path == "/tmp/egressgate-audit.jsonl");
    CHECK(config->inventory.size() == 2);
    CHECK(config->inventory.find(ip("10.0.1.4")) == "web-01");
    CHECK(config->inventory.find(ip("::ffff:10.0.2.4")) == "db-01");
    CHECK(config->admin_listen.to_string() == "127.0.0.1:0");
}

TEST_CASE("report mode allows what it would deny, and says so", "[config]") {
    const auto config = load_good("report_mode.toml");
    CHECK(config->egress.rules().mode == policy::EgressMode::report);
    CHECK(decide(*config, "login.microsoftonline.com", 443).verdict == policy::Verdict::allow);
    // catalogs = [] removes the default catalog.
    const auto blob = decide(*config, "x.blob.core.windows.net", 443);
    CHECK(blob.verdict == policy::Verdict::report);
    CHECK(blob.reason == policy::reason::host_not_allowed);
    CHECK(decide(*config, "bad host", 443).verdict == policy::Verdict::deny);
}

TEST_CASE("az_vm_list is read relative to the config file, and [[vm]] wins over it", "[config]") {
    const auto config = load_good("az_inventory.toml");
    const auto& inventory = config->inventory;
    CHECK(inventory.size() == 5);
    CHECK(inventory.find(ip("10.0.1.4")) == "web-01");
    CHECK(inventory.find(ip("10.0.2.4")) == "db-01");
    CHECK(inventory.find(ip("10.0.2.5")) == "db-01-renamed");
    CHECK(inventory.find(ip("10.0.3.4")) == "win-app-01");
    CHECK(inventory.find(ip("10.0.9.9")) == "jumpbox");
    CHECK_FALSE(inventory.find(ip("20.50.1.2")));  // public addresses never reach the proxy as clients
}

TEST_CASE("the bundled configs load", "[config]") {
    const std::string repo = kFixtures + "/../..";
    SECTION("config/egressgate.toml runs as a non-root user with no other files") {
        const auto result = cfg::load_config_file(repo + "/config/egressgate.toml");
        INFO(describe(result));
        REQUIRE(result.config);
        CHECK(listen_texts(result.config->listen) == std::vector<std::string>{"127.0.0.1:3128"});
        CHECK(result.config->audit_path == "-");
        CHECK(result.config->admin_listen.to_string() == "127.0.0.1:9090");
        CHECK(result.config->clients.contains(ip("127.0.0.2")));
        CHECK(result.config->clients.contains(ip("10.0.1.4")));
        CHECK(decide(*result.config, "myvault.blob.core.windows.net", 443).verdict == policy::Verdict::allow);
    }
    SECTION("config/examples/azure-vnet.toml") {
        const auto result = cfg::load_config_file(repo + "/config/examples/azure-vnet.toml");
        INFO(describe(result));
        REQUIRE(result.config);
        CHECK(listen_texts(result.config->listen) == std::vector<std::string>{"0.0.0.0:3128"});
        CHECK(result.config->audit_path == "/var/log/egressgate/audit.jsonl");
        CHECK(result.config->inventory.size() == 2);
        CHECK(result.config->inventory.find(ip("10.0.2.4")) == "db-01");
        CHECK_FALSE(result.config->clients.contains(ip("127.0.0.1")));
    }
}
