#pragma once
// IP addresses and CIDR sets as plain values: no sockets, no Asio.
#include <array>
#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace egressgate::policy {

// An IPv4 or IPv6 address. IPv4 addresses keep their 4 bytes in bytes()[0..3].
class IpAddress {
public:
    // Parses dotted-quad IPv4 or textual IPv6 (no brackets, no zone id). Strict: no leading
    // zeros tricks ("010.0.0.1"), no short forms ("127.1"), no trailing garbage.
    static std::optional<IpAddress> parse(std::string_view text);
    static IpAddress v4(std::array<std::uint8_t, 4> b);
    static IpAddress v6(const std::array<std::uint8_t, 16>& b);

    bool is_v4() const { return is_v4_; }
    const std::array<std::uint8_t, 16>& bytes() const { return bytes_; }
    // For ::ffff:a.b.c.d returns a.b.c.d; otherwise the address itself.
    IpAddress unmapped() const;
    std::string to_string() const;

    auto operator<=>(const IpAddress&) const = default;

private:
    std::array<std::uint8_t, 16> bytes_{};
    bool is_v4_ = true;
};

struct IpAddressHash {
    std::size_t operator()(const IpAddress& address) const noexcept;
};

// A network prefix "10.0.0.0/16" or "fd00::/8". A bare address means a host prefix (/32, /128).
class Cidr {
public:
    // Rejects host bits set below the prefix ("10.0.0.1/16") so that a typo cannot widen a rule.
    static std::optional<Cidr> parse(std::string_view text);
    // Throws std::invalid_argument for a prefix length outside 0..32 (v4) or 0..128 (v6).
    Cidr(IpAddress network, int prefix_length);

    bool contains(const IpAddress& address) const;  // families must match
    const IpAddress& network() const { return network_; }
    int prefix_length() const { return prefix_length_; }
    std::string to_string() const;

private:
    IpAddress network_;
    int prefix_length_;
};

// A set of prefixes; contains() unmaps IPv4-mapped IPv6 first, so that a dual-stack listener
// sees ::ffff:10.0.0.4 as 10.0.0.4. Returns the matching prefix for audit rules.
class CidrSet {
public:
    CidrSet() = default;
    explicit CidrSet(std::vector<Cidr> cidrs) : cidrs_(std::move(cidrs)) {}
    void add(Cidr c) { cidrs_.push_back(std::move(c)); }
    const Cidr* find(const IpAddress& address) const;
    bool contains(const IpAddress& address) const { return find(address) != nullptr; }
    bool empty() const { return cidrs_.empty(); }
    const std::vector<Cidr>& cidrs() const { return cidrs_; }

private:
    std::vector<Cidr> cidrs_;
};

// Source prefixes that may use the proxy: the virtual network.
using ClientAllowList = CidrSet;

}  // namespace egressgate::policy
