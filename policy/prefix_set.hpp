#pragma once
// An immutable set of IPv4 and IPv6 prefixes, each labelled with the tag it came from, built once
// and shared: lookups are a binary search over the set's boundaries, O(log n) with no allocation.
// Pure: no sockets; the address check calls it after DNS and before connect.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "policy/ip_address.hpp"

namespace egressgate::policy {

// The prefix that matched an address and the tag that listed it.
struct PrefixMatch {
    Cidr prefix;
    std::string_view tag;  // valid while the PrefixSet lives
};

class PrefixSet;
using PrefixSetPtr = std::shared_ptr<const PrefixSet>;

// Contract:
// - find(a) returns the most specific prefix that contains a (longest match), so the audit line
//   names "Storage.WestEurope 20.60.0.0/16" rather than "AzureCloud 20.0.0.0/8" when both are in
//   the set. The same prefix listed by several tags (Azure lists each regional prefix again under
//   the global tag) matches as the tag added first.
// - IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) are looked up as a.b.c.d, as CidrSet does, so a
//   dual-stack resolver answer cannot slip past a v4 prefix; a v4 address never matches a v6
//   prefix and the other way round.
// - Immutable once built: share it as PrefixSetPtr; a reload builds a new one and swaps the pointer.
class PrefixSet {
public:
    class Builder;

    PrefixSet() = default;  // the empty set: contains nothing

    std::optional<PrefixMatch> find(const IpAddress& address) const;
    bool contains(const IpAddress& address) const { return find(address).has_value(); }
    std::optional<std::string_view> tag_of(const IpAddress& address) const;

    // Distinct prefixes after removing exact duplicates (nested prefixes all count).
    std::size_t prefix_count() const { return prefixes_.size(); }
    bool empty() const { return prefixes_.empty(); }
    // Breakpoints of the lookup tables: what a lookup searches, for the benchmark's figures.
    std::size_t boundary_count() const { return v4_starts_.size() + v6_starts_.size(); }

private:
    // An index into prefixes_, or kNone for a gap between prefixes.
    using Label = std::uint32_t;
    static constexpr Label kNone = UINT32_MAX;
    __extension__ typedef unsigned __int128 V6Key;  // GCC and Clang; __extension__ for -Wpedantic

    struct Labelled {
        Cidr prefix;
        std::uint32_t tag;  // index into tags_
    };

    std::optional<PrefixMatch> match(Label label) const;

    std::vector<std::string> tags_;
    std::vector<Labelled> prefixes_;
    // Sorted, distinct starts of the ranges where the innermost covering prefix changes; the label
    // at i holds from starts[i] up to starts[i + 1] - 1 (or the end of the address space).
    std::vector<std::uint32_t> v4_starts_;
    std::vector<Label> v4_labels_;
    std::vector<V6Key> v6_starts_;
    std::vector<Label> v6_labels_;
};

// Collects prefixes, then builds the lookup tables once: sort, drop exact duplicates, and sweep
// the nested prefixes into disjoint ranges, each labelled with its innermost prefix.
class PrefixSet::Builder {
public:
    // Tags are kept in the order first added; add(tag, ...) with a known tag reuses it.
    void add(std::string_view tag, const Cidr& prefix);
    void add(std::string_view tag, const std::vector<Cidr>& prefixes);
    PrefixSetPtr build() &&;

private:
    std::vector<std::string> tags_;
    std::unordered_map<std::string, std::uint32_t> tag_index_;
    std::vector<Labelled> prefixes_;
};

}  // namespace egressgate::policy
