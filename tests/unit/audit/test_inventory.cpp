// The VM inventory and the `az vm list-ip-addresses -o json` reader.
#include <catch.hpp>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "audit/inventory.hpp"

namespace audit = egressgate::audit;
namespace policy = egressgate::policy;

namespace {

policy::IpAddress ip(const char* text) {
    const auto parsed = policy::IpAddress::parse(text);
    REQUIRE(parsed);
    return *parsed;
}

std::string read_fixture(const std::string& name) {
    std::ifstream in(std::string(EGRESSGATE_FIXTURES) + "/inventory/" + name, std::ios::binary);
    REQUIRE(in);
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
}

}  // namespace

TEST_CASE("inventory names VMs by address", "[inventory]") {
    audit::Inventory inventory;
    inventory.add(ip("10.0.1.4"), "web-01");
    inventory.add(ip("fd00::4"), "web-01-v6");

    SECTION("an exact address") { CHECK(inventory.find(ip("10.0.1.4")) == "web-01"); }
    SECTION("an IPv4-mapped address as seen by a dual-stack listener") {
        CHECK(inventory.find(ip("::ffff:10.0.1.4")) == "web-01");
    }
    SECTION("an IPv6 address") { CHECK(inventory.find(ip("fd00:0::4")) == "web-01-v6"); }
    SECTION("an unknown address") {
        CHECK_FALSE(inventory.find(ip("10.0.1.5")));
        CHECK_FALSE(inventory.find(ip("::10.0.1.4")));  // IPv4-compatible is not IPv4-mapped
    }
    SECTION("a later entry for the same address replaces the earlier one, whatever its form") {
        inventory.add(ip("::ffff:10.0.1.4"), "web-01-renamed");
        CHECK(inventory.size() == 2);
        CHECK(inventory.find(ip("10.0.1.4")) == "web-01-renamed");
    }
}

TEST_CASE("az vm list-ip-addresses output is read, extra fields ignored", "[inventory]") {
    const auto result = audit::parse_az_vm_list(read_fixture("vms.json"));
    INFO(result.error);
    REQUIRE(result.error.empty());
    REQUIRE(result.vms.size() == 4);
    const std::vector<std::pair<std::string, std::string>> expected = {
        {"web-01", "10.0.1.4"}, {"db-01", "10.0.2.4"}, {"db-01", "10.0.2.5"}, {"win-app-01", "10.0.3.4"}};
    for (std::size_t i = 0; i < expected.size(); ++i) {
        CHECK(result.vms[i].name == expected[i].first);
        CHECK(result.vms[i].ip.to_string() == expected[i].second);
    }
}

TEST_CASE("an empty az vm list is valid", "[inventory]") {
    const auto result = audit::parse_az_vm_list(read_fixture("empty.json"));
    CHECK(result.error.empty());
    CHECK(result.vms.empty());
}

TEST_CASE("broken az vm lists say what is wrong and where", "[inventory]") {
    struct Case {
        const char* name;
        std::string json;
        std::string error;  // exact
    };
    const std::vector<Case> cases = {
        {"bad address", read_fixture("bad_ip.json"),
         "[2].virtualMachine.network.privateIpAddresses[0]: \"10.0.0.x\" is not an IP address"},
        {"missing name", read_fixture("missing_name.json"), "[0].virtualMachine: missing \"name\""},
        {"missing network", read_fixture("missing_network.json"), "[1].virtualMachine: missing \"network\""},
        {"addresses not an array", read_fixture("addresses_not_array.json"),
         "[0].virtualMachine.network.privateIpAddresses: expected an array of IP addresses, got string"},
        {"document not an array", read_fixture("not_an_array.json"),
         "document: expected an array of {\"virtualMachine\": ...} objects, got object"},
        {"element not an object", "[1]", "[0]: expected an object, got number"},
        {"missing virtualMachine", "[{\"vm\": {}}]", "[0]: missing \"virtualMachine\""},
        {"name not a string", R"([{"virtualMachine": {"name": 7, "network": {"privateIpAddresses": []}}}])",
         "[0].virtualMachine.name: expected a string, got number"},
        {"empty name", R"([{"virtualMachine": {"name": "", "network": {"privateIpAddresses": []}}}])",
         "[0].virtualMachine.name: is empty"},
        {"address not a string", R"([{"virtualMachine": {"name": "a", "network": {"privateIpAddresses": [null]}}}])",
         "[0].virtualMachine.network.privateIpAddresses[0]: expected a string, got null"},
        {"missing privateIpAddresses", R"([{"virtualMachine": {"name": "a", "network": {}}}])",
         "[0].virtualMachine.network: missing \"privateIpAddresses\""},
    };
    for (const auto& c : cases) {
        DYNAMIC_SECTION(c.name) {
            const auto result = audit::parse_az_vm_list(c.json);
            CHECK(result.error == c.error);
            CHECK(result.vms.empty());
        }
    }
}

TEST_CASE("JSON syntax errors carry the parser's position", "[inventory]") {
    SECTION("a truncated file") {
        const auto result = audit::parse_az_vm_list(read_fixture("truncated.json"));
        // 88 bytes in the file: the parser fails on reading past the end.
        CHECK_THAT(result.error, Catch::StartsWith("invalid JSON at byte 89: "));
        CHECK_THAT(result.error, Catch::Contains("line 3, column 1"));
        CHECK(result.vms.empty());
    }
    SECTION("an empty file") {
        const auto result = audit::parse_az_vm_list("");
        CHECK_THAT(result.error, Catch::StartsWith("invalid JSON at byte 1: "));
    }
}

// Found by tests/fuzz/inventory_fuzzer (tests/fuzz/regressions/inventory/): nlohmann throws
// out_of_range, not parse_error, for a number a double cannot hold, and it ended the process.
TEST_CASE("a number too large for a double is an error, not a crash", "[inventory]") {
    const auto result = audit::parse_az_vm_list(
        R"([{"virtualMachine": {"name": "vm", "network": {"privateIpAddresses": ["10.0.0.4"]}, "x": 1e999}}])");
    CHECK(result.vms.empty());
    CHECK_THAT(result.error, Catch::Contains("number overflow"));
}
