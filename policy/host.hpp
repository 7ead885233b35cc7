#pragma once
// Host names and request targets as the policy sees them: normalised, validated, pure.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "policy/ip_address.hpp"

namespace egressgate::policy {

// Named limits of DNS names (RFC 1035).
inline constexpr std::size_t kMaxHostNameLength = 253;
inline constexpr std::size_t kMaxLabelLength = 63;

// Lower-cases, removes one trailing dot, and validates a DNS name: labels of letters, digits and
// '-', 1..63 bytes, not starting or ending with '-', total at most 253. Non-ASCII is refused: IDNs
// must arrive as punycode ("xn--..."). Returns nullopt for anything else (empty labels, '%', '@',
// NUL, spaces, "a..b", "..", a second trailing dot). A name whose last label is numeric ("127.1",
// "0x7f000001", "1.2.3.4") is refused too: no TLD is numeric, and the resolver would read it as an
// IPv4 address that the policy never saw.
std::optional<std::string> normalize_host(std::string_view host);
// Whether normalize_host(host) == host: a check that copies nothing.
bool is_normalized_host(std::string_view host);

// What a request asks to reach. literal is set when the host is an IP literal; host then holds
// the canonical text of the address (no brackets).
struct Target {
    std::string host;
    std::uint16_t port = 0;
    std::optional<IpAddress> literal;
    // Set by parse_authority only: host is in normal form and is an IP literal exactly when
    // literal is set, so the policy need not check it again. A Target built any other way (from
    // SNI, in tests) leaves it false and is checked.
    bool parsed = false;
};

// Parses an authority "host:port", "[v6]:port", or "host" when default_port != 0.
// Refuses userinfo ("user@host", "host:443@evil"), unbracketed IPv6, port 0, ports > 65535,
// non-digit ports, and hosts that normalize_host() refuses.
std::optional<Target> parse_authority(std::string_view authority, std::uint16_t default_port = 0);

// "name.example" (exact) or "*.example" (any name strictly below example; never example itself).
class HostPattern {
public:
    static std::optional<HostPattern> parse(std::string_view text);
    bool matches(std::string_view normalized_host) const;
    bool is_wildcard() const { return wildcard_; }
    const std::string& suffix() const { return name_; }  // without "*."
    std::string to_string() const { return wildcard_ ? "*." + name_ : name_; }

private:
    std::string name_;
    bool wildcard_ = false;
};

// Patterns with the rule each came from ("egress.hosts", "catalog:azure-backup"). Lookup costs one
// hash probe per label of the host, whatever the number of patterns.
class HostPatternSet {
public:
    // Views into the set: valid while it is.
    struct Match {
        std::string_view pattern;  // as written, e.g. "*.blob.core.windows.net"
        std::string_view origin;   // e.g. "catalog:azure-backup"
        std::string_view label;    // both: "catalog:azure-backup *.blob.core.windows.net"
    };
    void add(const HostPattern& pattern, std::string origin);
    std::optional<Match> find(std::string_view normalized_host) const;
    std::size_t size() const { return exact_.size() + suffixes_.size(); }

private:
    // Looked up by string_view: a lookup builds no string.
    struct NameHash {
        using is_transparent = void;
        std::size_t operator()(std::string_view name) const noexcept { return std::hash<std::string_view>{}(name); }
    };
    // Made when the set is built, so that a match builds no string.
    struct Entry {
        std::string pattern;
        std::string origin;
        std::string label;
    };
    using Names = std::unordered_map<std::string, Entry, NameHash, std::equal_to<>>;
    Names exact_;     // name -> its entry
    Names suffixes_;  // suffix -> its entry
};

}  // namespace egressgate::policy
