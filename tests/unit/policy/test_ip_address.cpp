// IpAddress and Cidr parsing: strict, because a lax parser lets a client name one address while
// the policy checks another.
#include <catch.hpp>

#include <optional>
#include <string>

#include "policy/ip_address.hpp"

using namespace egressgate::policy;

namespace {

IpAddress ip(std::string_view text) {
    auto a = IpAddress::parse(text);
    REQUIRE(a.has_value());
    return *a;
}

}  // namespace

TEST_CASE("IpAddress::parse accepts canonical text and prints it canonically", "[policy][address]") {
    struct Case {
        const char* name;
        std::string_view input;
        bool v4;
        const char* canonical;
    };
    const Case cases[] = {
        {"dotted quad", "20.60.1.2", true, "20.60.1.2"},
        {"zero octets", "0.0.0.0", true, "0.0.0.0"},
        {"max octets", "255.255.255.255", true, "255.255.255.255"},
        {"one, two and three digits", "1.22.103.9", true, "1.22.103.9"},
        {"a ten and a hundred", "10.100.200.250", true, "10.100.200.250"},
        {"v6 loopback", "::1", false, "::1"},
        {"v6 upper case", "FE80::ABCD", false, "fe80::abcd"},
        {"v6 uncompressed", "2001:0db8:0000:0000:0000:0000:0000:0001", false, "2001:db8::1"},
        {"v6 mapped dotted", "::ffff:169.254.169.254", false, "::ffff:169.254.169.254"},
        {"v6 mapped hex", "::ffff:a9fe:a9fe", false, "::ffff:169.254.169.254"},
    };
    for (const auto& c : cases) {
        DYNAMIC_SECTION(c.name) {
            const auto a = IpAddress::parse(c.input);
            REQUIRE(a.has_value());
            CHECK(a->is_v4() == c.v4);
            CHECK(a->to_string() == c.canonical);
        }
    }
}

TEST_CASE("IpAddress::parse refuses short, octal, hex and padded forms", "[policy][address]") {
    struct Case {
        const char* name;
        std::string_view input;
    };
    using namespace std::string_view_literals;
    const Case cases[] = {
        {"empty", ""},
        {"short form", "127.1"},
        {"three parts", "10.0.1"},
        {"five parts", "1.2.3.4.5"},
        {"leading zero is octal to inet_aton", "010.0.0.1"},
        {"leading zero in last octet", "1.2.3.04"},
        {"hex octet", "0x7f.0.0.1"},
        {"single number", "2130706433"},
        {"octet above 255", "256.0.0.1"},
        {"trailing space", "1.2.3.4 "},
        {"leading space", " 1.2.3.4"},
        {"trailing dot", "1.2.3.4."},
        {"empty octet", "1..3.4"},
        {"plus sign", "+1.2.3.4"},
        {"embedded NUL", "1.2.3.4\0.5"sv},
        {"v6 zone id", "fe80::1%eth0"},
        {"v6 brackets", "[::1]"},
        {"v6 trailing garbage", "::1x"},
        {"v6 two double colons", "1::2::3"},
        {"v6 embedded NUL", "::1\0:2"sv},
        {"v6 octal embedded v4", "::ffff:010.0.0.1"},
        {"host name", "example.com"},
    };
    for (const auto& c : cases) {
        DYNAMIC_SECTION(c.name) { CHECK_FALSE(IpAddress::parse(c.input).has_value()); }
    }
}

TEST_CASE("IpAddress::unmapped looks through ::ffff:0:0/96 only", "[policy][address]") {
    CHECK(ip("::ffff:10.0.0.4").unmapped() == ip("10.0.0.4"));
    CHECK(ip("::ffff:10.0.0.4").unmapped().is_v4());
    CHECK(ip("10.0.0.4").unmapped() == ip("10.0.0.4"));
    CHECK(ip("::10.0.0.4").unmapped() == ip("::10.0.0.4"));
    CHECK_FALSE(ip("::10.0.0.4").unmapped().is_v4());
    CHECK(ip("::fffe:10.0.0.4").unmapped() == ip("::fffe:10.0.0.4"));
}

TEST_CASE("Cidr::parse refuses garbage, bad lengths and host bits", "[policy][address]") {
    struct Case {
        const char* name;
        std::string_view input;
        std::optional<std::string> canonical;  // nullopt: refused
    };
    const Case cases[] = {
        {"v4 network", "10.0.0.0/16", "10.0.0.0/16"},
        {"v4 bare address is a host prefix", "10.0.0.5", "10.0.0.5/32"},
        {"v4 default route", "0.0.0.0/0", "0.0.0.0/0"},
        {"v6 network", "FD00::/8", "fd00::/8"},
        {"v6 bare address", "2001:db8::1", "2001:db8::1/128"},
        {"v4 host bits set", "10.0.0.1/16", std::nullopt},
        {"v4 host bits in partial byte", "172.16.0.0/11", std::nullopt},
        {"v6 host bits set", "fd00::1/64", std::nullopt},
        {"v4 prefix too long", "10.0.0.0/33", std::nullopt},
        {"v6 prefix too long", "::/129", std::nullopt},
        {"negative prefix", "10.0.0.0/-1", std::nullopt},
        {"empty prefix", "10.0.0.0/", std::nullopt},
        {"leading zero prefix", "10.0.0.0/08", std::nullopt},
        {"prefix with space", "10.0.0.0/8 ", std::nullopt},
        {"two slashes", "10.0.0.0/8/8", std::nullopt},
        {"not an address", "vnet/16", std::nullopt},
        {"empty", "", std::nullopt},
    };
    for (const auto& c : cases) {
        DYNAMIC_SECTION(c.name) {
            const auto cidr = Cidr::parse(c.input);
            REQUIRE(cidr.has_value() == c.canonical.has_value());
            if (cidr) CHECK(cidr->to_string() == *c.canonical);
        }
    }
}

TEST_CASE("Cidr::contains compares the prefix bits within one family", "[policy][address]") {
    const auto net = *Cidr::parse("172.16.0.0/12");
    CHECK(net.contains(ip("172.16.0.1")));
    CHECK(net.contains(ip("172.31.255.255")));
    CHECK_FALSE(net.contains(ip("172.32.0.0")));
    CHECK_FALSE(net.contains(ip("172.15.255.255")));
    CHECK_FALSE(net.contains(ip("::ffff:172.16.0.1")));  // families must match
    const auto any = *Cidr::parse("0.0.0.0/0");
    CHECK(any.contains(ip("203.0.113.9")));
    CHECK_FALSE(any.contains(ip("::1")));
    const auto host = *Cidr::parse("168.63.129.16");
    CHECK(host.contains(ip("168.63.129.16")));
    CHECK_FALSE(host.contains(ip("168.63.129.17")));
    CHECK_THROWS(Cidr(ip("10.0.0.0"), 33));
    CHECK_THROWS(Cidr(ip("10.0.0.0"), -1));
}

TEST_CASE("CidrSet::find unmaps IPv4-mapped addresses and returns the matching prefix",
          "[policy][address]") {
    CidrSet set;
    set.add(*Cidr::parse("10.0.0.0/16"));
    set.add(*Cidr::parse("fd00::/8"));
    REQUIRE(set.find(ip("10.0.1.4")) != nullptr);
    CHECK(set.find(ip("10.0.1.4"))->to_string() == "10.0.0.0/16");
    REQUIRE(set.find(ip("::ffff:10.0.1.4")) != nullptr);
    CHECK(set.find(ip("::ffff:10.0.1.4"))->to_string() == "10.0.0.0/16");
    CHECK(set.find(ip("fd12::1"))->to_string() == "fd00::/8");
    CHECK(set.find(ip("10.1.0.1")) == nullptr);
    CHECK(set.find(ip("::10.0.1.4")) == nullptr);  // v4-compatible is not the dual-stack form
    CHECK_FALSE(CidrSet{}.contains(ip("10.0.1.4")));
    CHECK(CidrSet{}.empty());
}
