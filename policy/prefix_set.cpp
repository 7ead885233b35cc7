#include "policy/prefix_set.hpp"

#include <algorithm>
#include <stdexcept>
#include <tuple>

namespace egressgate::policy {
namespace {

constexpr int kV4Bits = 32;
constexpr int kV6Bits = 128;
constexpr int kBitsPerByte = 8;

// The first and last address of a prefix as integers of the family's width. CIDR prefixes are
// either nested or disjoint, never partly overlapping, which is what the sweep below relies on.
template <class Key>
struct Range {
    Key first;
    Key last;
    std::uint32_t index;  // position in the builder's list: the order prefixes were added
};

template <class Key>
Key key_of(const std::array<std::uint8_t, 16>& bytes, std::size_t width_bytes) {
    Key key = 0;
    for (std::size_t i = 0; i < width_bytes; ++i) key = static_cast<Key>((key << kBitsPerByte) | bytes[i]);
    return key;
}

// The host bits of a prefix of this length: all ones below the prefix.
template <class Key>
Key host_mask(int prefix_length, int width_bits) {
    if (prefix_length == 0) return static_cast<Key>(~Key{0});
    return static_cast<Key>((Key{1} << (width_bits - prefix_length)) - 1);
}

// Appends a breakpoint: from `first` on, `label` holds. A later breakpoint at the same address
// replaces the earlier one (an inner prefix starting where its parent does, or a parent resuming
// exactly where the next prefix starts), and a breakpoint that changes nothing is dropped.
template <class Key, class Label>
void add_breakpoint(std::vector<Key>& starts, std::vector<Label>& labels, Key first, Label label) {
    if (!starts.empty() && starts.back() == first) {
        labels.back() = label;
        if (labels.size() >= 2 && labels[labels.size() - 2] == label) {
            starts.pop_back();
            labels.pop_back();
        }
        return;
    }
    if (!labels.empty() && labels.back() == label) return;
    starts.push_back(first);
    labels.push_back(label);
}

// Turns nested prefixes into disjoint ranges labelled with their innermost prefix. `ranges` is
// sorted by first address, outer prefix before inner; `label_of(range)` gives its final label.
// A stack holds the prefixes that contain the current position: a prefix ends before the next one
// starts (pop: the parent resumes after it) or contains it (push).
template <class Key, class Label, class LabelOf>
void sweep(const std::vector<Range<Key>>& ranges, Label none, LabelOf label_of, std::vector<Key>& starts,
           std::vector<Label>& labels) {
    struct Open {
        Key last;
        Label label;
    };
    std::vector<Open> open;
    const auto close_until = [&](auto keep_open) {
        while (!open.empty() && !keep_open(open.back())) {
            const Open closed = open.back();
            open.pop_back();
            // Ending at the top of the address space (a /0, or the last prefix) leaves nothing after.
            if (closed.last == static_cast<Key>(~Key{0})) continue;
            add_breakpoint(starts, labels, static_cast<Key>(closed.last + 1), open.empty() ? none : open.back().label);
        }
    };
    for (const auto& range : ranges) {
        close_until([&](const Open& o) { return o.last >= range.first; });
        const Label label = label_of(range);
        add_breakpoint(starts, labels, range.first, label);
        open.push_back({range.last, label});
    }
    close_until([](const Open&) { return false; });
}

}  // namespace

std::optional<PrefixMatch> PrefixSet::match(Label label) const {
    if (label == kNone) return std::nullopt;
    const Labelled& entry = prefixes_[label];
    return PrefixMatch{entry.prefix, tags_[entry.tag]};
}

std::optional<PrefixMatch> PrefixSet::find(const IpAddress& address) const {
    const IpAddress a = address.unmapped();
    if (a.is_v4()) {
        const auto key = key_of<std::uint32_t>(a.bytes(), kV4Bits / kBitsPerByte);
        const auto it = std::upper_bound(v4_starts_.begin(), v4_starts_.end(), key);
        if (it == v4_starts_.begin()) return std::nullopt;
        return match(v4_labels_[static_cast<std::size_t>(it - v4_starts_.begin() - 1)]);
    }
    const auto key = key_of<V6Key>(a.bytes(), kV6Bits / kBitsPerByte);
    const auto it = std::upper_bound(v6_starts_.begin(), v6_starts_.end(), key);
    if (it == v6_starts_.begin()) return std::nullopt;
    return match(v6_labels_[static_cast<std::size_t>(it - v6_starts_.begin() - 1)]);
}

std::optional<std::string_view> PrefixSet::tag_of(const IpAddress& address) const {
    const auto found = find(address);
    if (!found) return std::nullopt;
    return found->tag;
}

void PrefixSet::Builder::add(std::string_view tag, const Cidr& prefix) {
    auto [it, inserted] = tag_index_.try_emplace(std::string(tag), static_cast<std::uint32_t>(tags_.size()));
    if (inserted) tags_.emplace_back(tag);
    prefixes_.push_back({prefix, it->second});
}

void PrefixSet::Builder::add(std::string_view tag, const std::vector<Cidr>& prefixes) {
    auto [it, inserted] = tag_index_.try_emplace(std::string(tag), static_cast<std::uint32_t>(tags_.size()));
    if (inserted) tags_.emplace_back(tag);
    for (const Cidr& prefix : prefixes) prefixes_.push_back({prefix, it->second});
}

PrefixSetPtr PrefixSet::Builder::build() && {
    if (prefixes_.size() >= kNone) throw std::length_error("too many prefixes for one PrefixSet");
    auto set = std::make_shared<PrefixSet>();
    set->tags_ = std::move(tags_);
    std::vector<Range<std::uint32_t>> v4;
    std::vector<Range<V6Key>> v6;
    for (std::uint32_t i = 0; i < prefixes_.size(); ++i) {
        const Cidr& p = prefixes_[i].prefix;
        if (p.network().is_v4()) {
            const auto first = key_of<std::uint32_t>(p.network().bytes(), kV4Bits / kBitsPerByte);
            v4.push_back({first, first | host_mask<std::uint32_t>(p.prefix_length(), kV4Bits), i});
        } else {
            const auto first = key_of<V6Key>(p.network().bytes(), kV6Bits / kBitsPerByte);
            v6.push_back({first, first | host_mask<V6Key>(p.prefix_length(), kV6Bits), i});
        }
    }
    // Outer before inner at the same first address; among exact duplicates the first added wins.
    const auto by_position = [](const auto& a, const auto& b) {
        return std::tie(a.first, b.last, a.index) < std::tie(b.first, a.last, b.index);
    };
    const auto same_prefix = [](const auto& a, const auto& b) { return a.first == b.first && a.last == b.last; };
    const auto keep = [&](const auto& range) {
        set->prefixes_.push_back(prefixes_[range.index]);
        return static_cast<Label>(set->prefixes_.size() - 1);
    };
    std::sort(v4.begin(), v4.end(), by_position);
    v4.erase(std::unique(v4.begin(), v4.end(), same_prefix), v4.end());
    std::sort(v6.begin(), v6.end(), by_position);
    v6.erase(std::unique(v6.begin(), v6.end(), same_prefix), v6.end());
    set->prefixes_.reserve(v4.size() + v6.size());
    sweep(v4, kNone, keep, set->v4_starts_, set->v4_labels_);
    sweep(v6, kNone, keep, set->v6_starts_, set->v6_labels_);
    prefixes_.clear();
    tag_index_.clear();
    return set;
}

}  // namespace egressgate::policy
