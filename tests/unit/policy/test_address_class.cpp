// The address classifier: every deny range, at both edges, and every IPv6 form that carries an
// IPv4 address. A miss here lets a VM reach IMDS or WireServer as the proxy VM.
#include <catch.hpp>

#include "policy/address_class.hpp"

using namespace egressgate::policy;

namespace {

struct Case {
    const char* name;
    const char* address;
    AddressClass expected;
};

void check_cases(const Case* begin, const Case* end) {
    for (const Case* c = begin; c != end; ++c) {
        DYNAMIC_SECTION(c->name << " " << c->address) {
            const auto a = IpAddress::parse(c->address);
            REQUIRE(a.has_value());
            CHECK(to_string(classify_address(*a)) == to_string(c->expected));
        }
    }
}

template <std::size_t N>
void check_cases(const Case (&cases)[N]) {
    check_cases(cases, cases + N);
}

using AC = AddressClass;

}  // namespace

TEST_CASE("classify_address: IPv4 deny ranges and their edges", "[policy][address]") {
    const Case cases[] = {
        {"this network low", "0.0.0.0", AC::unspecified},
        {"this network high", "0.255.255.255", AC::unspecified},
        {"loopback", "127.0.0.1", AC::loopback},
        {"loopback high", "127.255.255.254", AC::loopback},
        {"rfc1918 10/8", "10.0.0.5", AC::private_network},
        {"rfc1918 10/8 high", "10.255.255.255", AC::private_network},
        {"rfc1918 172.16/12 low", "172.16.0.0", AC::private_network},
        {"rfc1918 172.16/12 high", "172.31.255.255", AC::private_network},
        {"rfc1918 192.168/16", "192.168.1.1", AC::private_network},
        {"cgnat low", "100.64.0.0", AC::shared_cgnat},
        {"cgnat high", "100.127.255.255", AC::shared_cgnat},
        {"imds", "169.254.169.254", AC::imds},
        {"imds neighbour", "169.254.169.253", AC::link_local},
        {"link local low", "169.254.0.1", AC::link_local},
        {"link local high", "169.254.255.255", AC::link_local},
        {"wireserver", "168.63.129.16", AC::wireserver},
        {"multicast low", "224.0.0.1", AC::multicast},
        {"multicast high", "239.255.255.255", AC::multicast},
        {"reserved 240/4", "240.0.0.1", AC::reserved},
        {"reserved 240/4 high", "255.255.255.254", AC::reserved},
        {"broadcast", "255.255.255.255", AC::broadcast},
        {"ietf protocol assignments", "192.0.0.8", AC::reserved},
        {"test-net-1", "192.0.2.1", AC::reserved},
        {"benchmarking low", "198.18.0.1", AC::reserved},
        {"benchmarking high", "198.19.255.255", AC::reserved},
        {"test-net-2", "198.51.100.7", AC::reserved},
        {"test-net-3", "203.0.113.9", AC::reserved},
    };
    check_cases(cases);
}

TEST_CASE("classify_address: public IPv4 just outside each range", "[policy][address]") {
    const Case cases[] = {
        {"azure storage", "20.60.1.2", AC::public_unicast},
        {"after this network", "1.0.0.1", AC::public_unicast},
        {"before loopback", "126.255.255.255", AC::public_unicast},
        {"after loopback", "128.0.0.1", AC::public_unicast},
        {"before 172.16/12", "172.15.255.255", AC::public_unicast},
        {"after 172.16/12", "172.32.0.0", AC::public_unicast},
        {"after cgnat", "100.128.0.0", AC::public_unicast},
        {"before cgnat", "100.63.255.255", AC::public_unicast},
        {"wireserver neighbour", "168.63.129.17", AC::public_unicast},
        {"before multicast", "223.255.255.255", AC::public_unicast},
        {"after 192.0.0/24", "192.0.1.1", AC::public_unicast},
        {"after benchmarking", "198.20.0.1", AC::public_unicast},
        {"before 192.168/16", "192.167.255.255", AC::public_unicast},
    };
    check_cases(cases);
}

TEST_CASE("classify_address: IPv6 deny ranges", "[policy][address]") {
    const Case cases[] = {
        {"unspecified", "::", AC::unspecified},
        {"loopback", "::1", AC::loopback},
        {"link local", "fe80::1", AC::link_local},
        {"link local high", "febf:ffff::1", AC::link_local},
        {"unique local fc", "fc00::1", AC::unique_local},
        {"unique local fd", "fd12:3456::1", AC::unique_local},
        {"multicast", "ff02::1", AC::multicast},
        {"multicast global", "ff0e::101", AC::multicast},
        {"documentation", "2001:db8::1", AC::reserved},
        {"local-use NAT64", "64:ff9b:1::a9fe:a9fe", AC::reserved},
        {"discard-only", "100::1", AC::reserved},
        {"outside 2000::/3", "4000::1", AC::reserved},
        {"site local (deprecated)", "fec0::1", AC::reserved},
        {"public azure v6", "2603:1020:200::682f:a0fd", AC::public_unicast},
        {"public google dns v6", "2001:4860:4860::8888", AC::public_unicast},
    };
    check_cases(cases);
}

TEST_CASE("classify_address: IPv4-mapped addresses are classified as IPv4", "[policy][address]") {
    const Case cases[] = {
        {"imds dotted", "::ffff:169.254.169.254", AC::imds},
        {"imds hex", "::ffff:a9fe:a9fe", AC::imds},
        {"wireserver", "::ffff:a83f:8110", AC::wireserver},
        {"private", "::ffff:a01:203", AC::private_network},
        {"loopback", "::ffff:7f00:1", AC::loopback},
        {"unspecified", "::ffff:0.0.0.0", AC::unspecified},
        {"cgnat", "::ffff:100.64.0.1", AC::shared_cgnat},
        {"public", "::ffff:143c:102", AC::public_unicast},
    };
    check_cases(cases);
}

TEST_CASE("classify_address: IPv4-compatible addresses are classified as IPv4", "[policy][address]") {
    const Case cases[] = {
        {"imds dotted", "::169.254.169.254", AC::imds},
        {"imds hex", "::a9fe:a9fe", AC::imds},
        {"wireserver", "::a83f:8110", AC::wireserver},
        {"private", "::a01:203", AC::private_network},
        {"loopback", "::7f00:1", AC::loopback},
        {"0.0.0.2 is this network", "::2", AC::unspecified},
        {"public", "::143c:102", AC::public_unicast},
    };
    check_cases(cases);
}

TEST_CASE("classify_address: NAT64 64:ff9b::/96 is classified as IPv4", "[policy][address]") {
    const Case cases[] = {
        {"imds dotted", "64:ff9b::169.254.169.254", AC::imds},
        {"imds hex", "64:ff9b::a9fe:a9fe", AC::imds},
        {"wireserver", "64:ff9b::a83f:8110", AC::wireserver},
        {"private", "64:ff9b::a01:203", AC::private_network},
        {"loopback", "64:ff9b::7f00:1", AC::loopback},
        {"public", "64:ff9b::143c:102", AC::public_unicast},
    };
    check_cases(cases);
}

TEST_CASE("classify_address: 6to4 2002::/16 is classified by bytes 2..5", "[policy][address]") {
    const Case cases[] = {
        {"imds", "2002:a9fe:a9fe::1", AC::imds},
        {"imds bare", "2002:a9fe:a9fe::", AC::imds},
        {"wireserver", "2002:a83f:8110::1", AC::wireserver},
        {"private", "2002:a01:203::1", AC::private_network},
        {"loopback", "2002:7f00:1::1", AC::loopback},
        {"link local", "2002:a9fe:101::1", AC::link_local},
        {"public", "2002:143c:102::1", AC::public_unicast},
    };
    check_cases(cases);
}

TEST_CASE("classify_address: Teredo 2001::/32 is classified by the inverted client address",
          "[policy][address]") {
    const Case cases[] = {
        {"imds", "2001:0:4136:e378:8000:63bf:5601:5601", AC::imds},
        {"wireserver", "2001:0:4136:e378:8000:63bf:57c0:7eef", AC::wireserver},
        {"private", "2001:0:4136:e378:8000:63bf:f5fe:fdfc", AC::private_network},
        {"loopback", "2001:0:4136:e378:8000:63bf:80ff:fffe", AC::loopback},
        // Not inverted: a9fe:a9fe in the client field means 86.1.86.1, a public address.
        {"uninverted imds bytes are public", "2001:0:4136:e378:8000:63bf:a9fe:a9fe",
         AC::public_unicast},
        {"public", "2001:0:4136:e378:8000:63bf:ebc3:fefd", AC::public_unicast},
    };
    check_cases(cases);
}

TEST_CASE("to_string(AddressClass) gives the fixed audit names", "[policy][address]") {
    CHECK(to_string(AC::public_unicast) == "public_unicast");
    CHECK(to_string(AC::imds) == "imds");
    CHECK(to_string(AC::wireserver) == "wireserver");
    CHECK(to_string(AC::private_network) == "private_network");
    CHECK(to_string(AC::shared_cgnat) == "shared_cgnat");
    CHECK(to_string(AC::link_local) == "link_local");
    CHECK(to_string(AC::unique_local) == "unique_local");
    CHECK(to_string(AC::unspecified) == "unspecified");
    CHECK(to_string(AC::loopback) == "loopback");
    CHECK(to_string(AC::multicast) == "multicast");
    CHECK(to_string(AC::broadcast) == "broadcast");
    CHECK(to_string(AC::reserved) == "reserved");
}
