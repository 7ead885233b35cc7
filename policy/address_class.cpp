#include "policy/address_class.hpp"

#include <algorithm>
#include <stdexcept>
#include <vector>

namespace egressgate::policy {
namespace {

struct ClassifiedRange {
    std::string_view cidr;
    AddressClass address_class;
};

// First match wins: single addresses come before the ranges that contain them.
constexpr ClassifiedRange kV4Ranges[] = {
    {"169.254.169.254/32", AddressClass::imds},
    {"168.63.129.16/32", AddressClass::wireserver},
    {"255.255.255.255/32", AddressClass::broadcast},
    {"0.0.0.0/8", AddressClass::unspecified},
    {"127.0.0.0/8", AddressClass::loopback},
    {"10.0.0.0/8", AddressClass::private_network},
    {"172.16.0.0/12", AddressClass::private_network},
    {"192.168.0.0/16", AddressClass::private_network},
    {"100.64.0.0/10", AddressClass::shared_cgnat},
    {"169.254.0.0/16", AddressClass::link_local},
    {"224.0.0.0/4", AddressClass::multicast},
    {"240.0.0.0/4", AddressClass::reserved},
    {"192.0.0.0/24", AddressClass::reserved},     // IETF protocol assignments
    {"192.0.2.0/24", AddressClass::reserved},     // TEST-NET-1
    {"198.18.0.0/15", AddressClass::reserved},    // benchmarking
    {"198.51.100.0/24", AddressClass::reserved},  // TEST-NET-2
    {"203.0.113.0/24", AddressClass::reserved},   // TEST-NET-3
};

// IPv6 ranges that do not embed an IPv4 address (those are looked through first).
constexpr ClassifiedRange kV6Ranges[] = {
    {"::/128", AddressClass::unspecified},
    {"::1/128", AddressClass::loopback},
    {"fe80::/10", AddressClass::link_local},
    {"fc00::/7", AddressClass::unique_local},
    {"ff00::/8", AddressClass::multicast},
    {"2001:db8::/32", AddressClass::reserved},     // documentation
    {"64:ff9b:1::/48", AddressClass::reserved},    // local-use NAT64: translates to anywhere
    {"100::/64", AddressClass::reserved},          // discard-only
};

// Only 2000::/3 is allocated as global unicast; anything else is not a public destination.
constexpr std::string_view kV6GlobalUnicast = "2000::/3";

struct CompiledRange {
    Cidr cidr;
    AddressClass address_class;
};

Cidr parse_builtin(std::string_view text) {
    auto cidr = Cidr::parse(text);
    if (!cidr) throw std::logic_error("bad built-in range " + std::string(text));
    return *cidr;
}

template <std::size_t N>
std::vector<CompiledRange> compile(const ClassifiedRange (&ranges)[N]) {
    std::vector<CompiledRange> out;
    for (const auto& r : ranges) out.push_back({parse_builtin(r.cidr), r.address_class});
    return out;
}

std::optional<AddressClass> lookup(const std::vector<CompiledRange>& table, const IpAddress& a) {
    const auto hit = std::find_if(table.begin(), table.end(),
                                  [&](const CompiledRange& r) { return r.cidr.contains(a); });
    if (hit == table.end()) return std::nullopt;
    return hit->address_class;
}

AddressClass classify_v4(const IpAddress& a) {
    static const auto table = compile(kV4Ranges);
    return lookup(table, a).value_or(AddressClass::public_unicast);
}

IpAddress v4_at(const std::array<std::uint8_t, 16>& b, std::size_t offset, std::uint8_t flip = 0) {
    return IpAddress::v4({static_cast<std::uint8_t>(b[offset] ^ flip),
                          static_cast<std::uint8_t>(b[offset + 1] ^ flip),
                          static_cast<std::uint8_t>(b[offset + 2] ^ flip),
                          static_cast<std::uint8_t>(b[offset + 3] ^ flip)});
}

// Where an IPv6 form carries an IPv4 address; the packet ends up at that address, so it decides.
struct Embedding {
    std::string_view cidr;
    std::size_t v4_offset;
    std::uint8_t flip;  // Teredo stores the client address inverted
};

constexpr std::size_t kLowV4Offset = 12;
constexpr std::size_t kSixToFourOffset = 2;
constexpr std::uint8_t kTeredoFlip = 0xff;

constexpr Embedding kEmbeddings[] = {
    {"::ffff:0:0/96", kLowV4Offset, 0},          // IPv4-mapped
    {"64:ff9b::/96", kLowV4Offset, 0},           // NAT64 well-known prefix
    {"2002::/16", kSixToFourOffset, 0},          // 6to4
    {"2001::/32", kLowV4Offset, kTeredoFlip},    // Teredo client
};

// IPv4-compatible ::a.b.c.d, except :: and ::1 which are IPv6's own unspecified and loopback.
std::optional<IpAddress> v4_compatible(const IpAddress& a) {
    static const Cidr compatible = parse_builtin("::/96");
    if (!compatible.contains(a)) return std::nullopt;
    const auto& b = a.bytes();
    const bool low_is_zero_or_one =
        b[12] == 0 && b[13] == 0 && b[14] == 0 && (b[15] == 0 || b[15] == 1);
    if (low_is_zero_or_one) return std::nullopt;
    return v4_at(b, kLowV4Offset);
}

std::optional<IpAddress> embedded_v4(const IpAddress& a) {
    struct CompiledEmbedding {
        Cidr cidr;
        Embedding how;
    };
    static const auto embeddings = [] {
        std::vector<CompiledEmbedding> out;
        for (const auto& e : kEmbeddings) out.push_back({parse_builtin(e.cidr), e});
        return out;
    }();
    for (const auto& e : embeddings) {
        if (e.cidr.contains(a)) return v4_at(a.bytes(), e.how.v4_offset, e.how.flip);
    }
    return v4_compatible(a);
}

AddressClass classify_v6(const IpAddress& a) {
    if (const auto v4 = embedded_v4(a)) return classify_v4(*v4);
    static const auto table = compile(kV6Ranges);
    if (const auto c = lookup(table, a)) return *c;
    static const Cidr global_unicast = parse_builtin(kV6GlobalUnicast);
    return global_unicast.contains(a) ? AddressClass::public_unicast : AddressClass::reserved;
}

}  // namespace

AddressClass classify_address(const IpAddress& address) {
    return address.is_v4() ? classify_v4(address) : classify_v6(address);
}

std::string_view to_string(AddressClass c) {
    switch (c) {
        case AddressClass::public_unicast: return "public_unicast";
        case AddressClass::unspecified: return "unspecified";
        case AddressClass::loopback: return "loopback";
        case AddressClass::private_network: return "private_network";
        case AddressClass::shared_cgnat: return "shared_cgnat";
        case AddressClass::link_local: return "link_local";
        case AddressClass::wireserver: return "wireserver";
        case AddressClass::imds: return "imds";
        case AddressClass::multicast: return "multicast";
        case AddressClass::broadcast: return "broadcast";
        case AddressClass::reserved: return "reserved";
        case AddressClass::unique_local: return "unique_local";
    }
    return "unknown";
}

}  // namespace egressgate::policy
