// Config snippets for the rules that have no fixture file of their own: one named case per rule.
#include <catch.hpp>

#include <string>
#include <vector>

#include "config/config.hpp"
#include "config_test_support.hpp"

namespace cfg = egressgate::config;
using config_test_support::describe;
namespace policy = egressgate::policy;

namespace {

constexpr const char* kSource = "inline.toml";
// Prepended to snippets that are not about [clients], so that they fail for one reason only.
const std::string kClients = "[clients]\nallow = [\"10.0.0.0/16\"]\n";

struct BadSnippet {
    const char* name;
    std::string toml;
    std::string key;
    std::string value;
    std::string message;  // substring
    int line;
    int column;
};

// Lines count from 1 in the whole text, kClients (2 lines) included.
const std::vector<BadSnippet> kBadSnippets = {
    {"egress.sni unknown", kClients + "[egress]\nsni = \"strict\"\n", "egress.sni", "\"strict\"",
     "expected \"match\", \"log\" or \"off\"", 4, 7},
    {"egress.tls_ports port 0", kClients + "[egress]\ntls_ports = [0]\n", "egress.tls_ports[0]", "0",
     "must be from 1 to 65535", 4, 14},
    {"tls_listen without a key", kClients + "[proxy]\ntls_listen = [\"127.0.0.1:3129\"]\ntls_cert = \"c.pem\"\n",
     "proxy.tls_key", "", "a PEM file, needed by proxy.tls_listen", 3, 1},
    {"listen without a port", kClients + "[proxy]\nlisten = [\"127.0.0.1\"]\n", "proxy.listen[0]",
     "\"127.0.0.1\"", "expected \"ip:port\" or \"[ipv6]:port\"", 4, 11},
    {"listen with unbracketed IPv6", kClients + "[proxy]\nlisten = [\"::1:3128\"]\n", "proxy.listen[0]",
     "\"::1:3128\"", "IPv6 addresses need brackets", 4, 11},
    {"listen with an IPv4 address in brackets", kClients + "[proxy]\nlisten = [\"[127.0.0.1]:3128\"]\n",
     "proxy.listen[0]", "\"[127.0.0.1]:3128\"", "not an IPv6 address inside the brackets", 4, 11},
    {"listen with port 65536", kClients + "[proxy]\nlisten = [\"0.0.0.0:65536\"]\n", "proxy.listen[0]",
     "\"0.0.0.0:65536\"", "port must be a number from 0 to 65535", 4, 11},
    {"listen as a string", kClients + "[proxy]\nlisten = \"0.0.0.0:3128\"\n", "proxy.listen",
     "\"0.0.0.0:3128\"", "expected an array of \"ip:port\" strings, got a string", 4, 10},
    {"listen empty", kClients + "[proxy]\nlisten = []\n", "proxy.listen", "[]", "must list at least one address", 4,
     10},
    {"negative workers", kClients + "[proxy]\nworkers = -1\n", "proxy.workers", "-1", "must be from 0 to 1024", 4, 11},
    {"source_addresses with a name", kClients + "[proxy]\nsource_addresses = [\"10.0.0.4\", \"proxy.local\"]\n",
     "proxy.source_addresses[1]", "\"proxy.local\"", "not an IP address", 4, 33},
    {"source_addresses with a CIDR", kClients + "[proxy]\nsource_addresses = [\"10.0.0.0/24\"]\n",
     "proxy.source_addresses[0]", "\"10.0.0.0/24\"", "not an IP address", 4, 21},
    {"source_addresses unspecified", kClients + "[proxy]\nsource_addresses = [\"0.0.0.0\"]\n",
     "proxy.source_addresses[0]", "\"0.0.0.0\"", "leave the key out to let the kernel pick", 4, 21},
    {"source_addresses twice", kClients + "[proxy]\nsource_addresses = [\"10.0.0.4\", \"10.0.0.4\"]\n",
     "proxy.source_addresses[1]", "\"10.0.0.4\"", "listed twice", 4, 33},
    {"source_addresses a number", kClients + "[proxy]\nsource_addresses = [4]\n", "proxy.source_addresses[0]", "4",
     "expected an IP address string", 4, 21},
    {"source_addresses a string", kClients + "[proxy]\nsource_addresses = \"10.0.0.4\"\n", "proxy.source_addresses",
     "\"10.0.0.4\"", "expected an array of IP address strings, got a string", 4, 20},
    {"clients.allow empty", "[clients]\nallow = []\n", "clients.allow", "[]", "must list at least one CIDR", 2, 9},
    {"clients.allow missing from [clients]", "\n[clients]\n", "clients.allow", "",
     "required: the virtual network's CIDRs", 2, 1},
    {"clients not a table", "clients = \"10.0.0.0/16\"\n", "clients", "\"10.0.0.0/16\"",
     "expected a table, got a string", 1, 11},
    {"clients.allow with a name", "[clients]\nallow = [\"vnet.example\"]\n", "clients.allow[0]", "\"vnet.example\"",
     "not a CIDR", 2, 10},
    {"egress.ports a float", kClients + "[egress]\nports = [443.0]\n", "egress.ports[0]", "443.0",
     "expected an integer, got a floating-point number", 4, 10},
    {"egress.ports empty", kClients + "[egress]\nports = []\n", "egress.ports", "[]", "must list at least one port", 4,
     9},
    {"egress.catalogs a string", kClients + "[egress]\ncatalogs = \"azure-backup\"\n", "egress.catalogs",
     "\"azure-backup\"", "expected an array of catalog names, got a string", 4, 12},
    {"egress.hosts with a bare wildcard", kClients + "[egress]\nhosts = [\"*\"]\n", "egress.hosts[0]", "\"*\"",
     "not a host pattern", 4, 10},
    {"egress.allow_addresses with host bits", kClients + "[egress]\nallow_addresses = [\"168.63.129.16/16\"]\n",
     "egress.allow_addresses[0]", "\"168.63.129.16/16\"", "not a CIDR", 4, 20},
    {"dns.servers with port 0", kClients + "[dns]\nservers = [\"10.0.0.2:0\"]\n", "dns.servers[0]",
     "\"10.0.0.2:0\"", "port must be a number from 1 to 65535", 4, 12},
    {"dns.servers with a name", kClients + "[dns]\nservers = [\"resolver.example\"]\n", "dns.servers[0]",
     "\"resolver.example\"", "not an IP address (names are not resolved here)", 4, 12},
    {"dns.timeout_ms zero", kClients + "[dns]\ntimeout_ms = 0\n", "dns.timeout_ms", "0", "must be from 1 to 60000", 4,
     14},
    {"dns.hosts with an invalid name", kClients + "[dns.hosts]\n\"bad name.example\" = \"127.0.0.1\"\n",
     "dns.hosts.\"bad name.example\"", "\"127.0.0.1\"", "not a valid DNS name", 4, 1},
    {"dns.hosts with a wildcard name", kClients + "[dns.hosts]\n\"*.example\" = \"127.0.0.1\"\n",
     "dns.hosts.\"*.example\"", "\"127.0.0.1\"", "not a valid DNS name", 4, 1},
    {"dns.hosts with an empty list", kClients + "[dns.hosts]\n\"a.example\" = []\n", "dns.hosts.\"a.example\"",
     "[]", "must list at least one address", 4, 15},
    {"dns.hosts list with a bad address", kClients + "[dns.hosts]\n\"a.example\" = [\"::1\", \"::g\"]\n",
     "dns.hosts.\"a.example\"[1]", "\"::g\"", "not an IP address", 4, 23},
    {"dns.hosts with a number", kClients + "[dns.hosts]\n\"a.example\" = 127\n", "dns.hosts.\"a.example\"", "127",
     "expected an array of IP addresses (or one address), got an integer", 4, 15},
    {"dns.hosts names equal after normalisation",
     kClients + "[dns.hosts]\n\"a.example\" = \"127.0.0.1\"\n\"A.Example.\" = \"127.0.0.2\"\n",
     "dns.hosts.\"A.Example.\"", "\"127.0.0.2\"", "same name as dns.hosts.\"a.example\"", 5, 1},
    {"timeouts.idle_ms over seven days", kClients + "[timeouts]\nidle_ms = 604800001\n", "timeouts.idle_ms",
     "604800001", "must be from 1 to 604800000", 4, 11},
    {"timeouts.header_ms over an hour", kClients + "[timeouts]\nheader_ms = 3600001\n", "timeouts.header_ms",
     "3600001", "must be from 1 to 3600000", 4, 13},
    {"timeouts.connect_ms a string", kClients + "[timeouts]\nconnect_ms = \"10s\"\n", "timeouts.connect_ms",
     "\"10s\"", "expected an integer, got a string", 4, 14},
    {"audit.path empty", kClients + "[audit]\npath = \"\"\n", "audit.path", "\"\"", "must not be empty", 4, 8},
    {"vm without ip", kClients + "[[vm]]\nname = \"web-01\"\n", "vm[0].ip", "",
     "required: the VM's private IP address", 3, 1},
    {"vm with an empty name", kClients + "[[vm]]\nname = \"\"\nip = \"10.0.1.4\"\n", "vm[0].name", "\"\"",
     "must not be empty", 4, 8},
    {"vm with an unknown key", kClients + "[[vm]]\nname = \"a\"\nip = \"10.0.1.4\"\nrole = \"web\"\n",
     "vm[0].role", "\"web\"", "unknown key", 6, 1},
    {"vm as a single table", kClients + "[vm]\nname = \"a\"\nip = \"10.0.1.4\"\n", "vm", "",
     "expected an array of tables ([[vm]] with name and ip), got a table", 3, 1},
    {"inventory.az_vm_list not a string", kClients + "[inventory]\naz_vm_list = 1\n", "inventory.az_vm_list", "1",
     "expected a string, got an integer", 4, 14},
    {"inventory with an unknown key", kClients + "[inventory]\nvms = \"x.json\"\n", "inventory.vms", "\"x.json\"",
     "unknown key", 4, 1},
    {"admin.listen without a port", kClients + "[admin]\nlisten = \"127.0.0.1\"\n", "admin.listen",
     "\"127.0.0.1\"", "expected \"ip:port\"", 4, 10},
    {"a key with a dot is quoted in the path", kClients + "[proxy]\n\"listen.v6\" = 1\n", "proxy.\"listen.v6\"", "1",
     "unknown key", 4, 1},
};

}  // namespace

TEST_CASE("each validation rule reports its key, value and line:column", "[config]") {
    for (const auto& snippet : kBadSnippets) {
        DYNAMIC_SECTION(snippet.name) {
            const auto result = cfg::parse_config(snippet.toml, kSource);
            INFO(describe(result));
            CHECK_FALSE(result.config);
            REQUIRE(result.errors.size() == 1);
            const auto& error = result.errors[0];
            CHECK(error.source == kSource);
            CHECK(error.key == snippet.key);
            CHECK(error.value == snippet.value);
            CHECK_THAT(error.message, Catch::Contains(snippet.message));
            CHECK(error.line == snippet.line);
            CHECK(error.column == snippet.column);
        }
    }
}

TEST_CASE("values at the edge of their range are accepted", "[config]") {
    const std::string text = kClients +
                             "[proxy]\nlisten = [\"[::]:65535\", \"0.0.0.0:0\"]\nworkers = 1024\n"
                             "[dns]\nservers = [\"[::1]:1\"]\ntimeout_ms = 60000\n"
                             "[timeouts]\nheader_ms = 3600000\nconnect_ms = 1\nidle_ms = 604800000\n"
                             "[egress]\nports = [1, 65535]\n";
    const auto result = cfg::parse_config(text, kSource);
    INFO(describe(result));
    REQUIRE(result.config);
    CHECK(result.config->listen.at(0).to_string() == "[::]:65535");
    CHECK(result.config->listen.at(1).to_string() == "0.0.0.0:0");
    CHECK(result.config->workers == 1024);
    CHECK(result.config->dns.servers.at(0).to_string() == "[::1]:1");
    CHECK(result.config->timeouts.idle == std::chrono::hours{24 * 7});
    CHECK(result.config->egress.rules().ports == std::vector<std::uint16_t>{1, 65535});
}

TEST_CASE("a relative az_vm_list without a config directory is taken from the working directory", "[config]") {
    // parse_config's source name has no directory here: the path is used as written.
    const auto result = cfg::parse_config(kClients + "[inventory]\naz_vm_list = \"no-such-dir/vms.json\"\n", "x.toml");
    REQUIRE(result.errors.size() == 1);
    CHECK_THAT(result.errors[0].message, Catch::StartsWith("cannot read no-such-dir/vms.json: "));
}

TEST_CASE("ConfigError::to_string omits what it does not have", "[config]") {
    const cfg::ConfigError with_value{"f.toml", "egress.mode", "\"audit\"", 5, 8, "expected \"enforce\" or \"report\""};
    CHECK(with_value.to_string() == "f.toml:5:8: egress.mode = \"audit\": expected \"enforce\" or \"report\"");
    const cfg::ConfigError without_value{"f.toml", "clients.allow", "", 1, 1, "required"};
    CHECK(without_value.to_string() == "f.toml:1:1: clients.allow: required");
    const cfg::ConfigError syntax{"f.toml", "", "", 3, 1, "expected a comma"};
    CHECK(syntax.to_string() == "f.toml:3:1: expected a comma");
    const cfg::ConfigError unreadable{"f.toml", "", "", 0, 0, "cannot read config file: Permission denied"};
    CHECK(unreadable.to_string() == "f.toml: cannot read config file: Permission denied");
}

TEST_CASE("ListenAddress::to_string brackets IPv6", "[config]") {
    CHECK(cfg::ListenAddress{*policy::IpAddress::parse("1.2.3.4"), 80}.to_string() == "1.2.3.4:80");
    CHECK(cfg::ListenAddress{*policy::IpAddress::parse("::1"), 80}.to_string() == "[::1]:80");
}

TEST_CASE("source_addresses keeps the order given, both families", "[config]") {
    const auto result =
        cfg::parse_config(kClients + "[proxy]\nsource_addresses = [\"10.0.0.5\", \"fd00::5\", \"10.0.0.4\"]\n", kSource);
    INFO(describe(result));
    REQUIRE(result.config);
    const auto& sources = result.config->source_addresses;
    REQUIRE(sources.size() == 3);
    CHECK(sources[0].to_string() == "10.0.0.5");
    CHECK(sources[1].to_string() == "fd00::5");
    CHECK(sources[2].to_string() == "10.0.0.4");
}

TEST_CASE("source_addresses holds at most 64 addresses", "[config]") {
    std::string list;
    for (int i = 1; i <= 65; ++i) list += (i > 1 ? ", " : "") + std::string("\"10.0.1.") + std::to_string(i) + "\"";
    const auto result = cfg::parse_config(kClients + "[proxy]\nsource_addresses = [" + list + "]\n", kSource);
    REQUIRE_FALSE(result.config);
    REQUIRE(result.errors.size() == 1);
    CHECK(result.errors[0].key == "proxy.source_addresses");
    CHECK(result.errors[0].message == "lists 65 addresses; at most 64");
}

TEST_CASE("TLS listener and tunnel inspection keys", "[config]") {
    const auto result = cfg::parse_config(kClients +
                                              "[proxy]\ntls_listen = [\"127.0.0.1:3129\"]\n"
                                              "tls_cert = \"/etc/egressgate/proxy.crt\"\ntls_key = \"proxy.key\"\n"
                                              "[egress]\nsni = \"log\"\ntls_ports = [443]\n",
                                          kSource);
    INFO(describe(result));
    REQUIRE(result.config);
    const auto& c = *result.config;
    REQUIRE(c.tls_listen.size() == 1);
    CHECK(c.tls_listen[0].to_string() == "127.0.0.1:3129");
    CHECK(c.tls_cert == "/etc/egressgate/proxy.crt");
    CHECK(c.tls_key.ends_with("proxy.key"));
    CHECK(c.egress.rules().sni == policy::SniMode::log);
    CHECK(c.egress.inspects_tunnel(443));
    CHECK_FALSE(c.egress.inspects_tunnel(8443));
}

TEST_CASE("tunnel inspection defaults to sni = match on 443 and 8443", "[config]") {
    const auto result = cfg::parse_config(kClients, kSource);
    REQUIRE(result.config);
    CHECK(result.config->egress.rules().sni == policy::SniMode::match);
    CHECK(result.config->egress.inspects_tunnel(443));
    CHECK(result.config->egress.inspects_tunnel(8443));
    CHECK_FALSE(result.config->egress.inspects_tunnel(80));
}
