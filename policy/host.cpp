#include "policy/host.hpp"

#include <algorithm>
#include <array>
#include <cstring>

#include "policy/authority.hpp"

namespace egressgate::policy {
namespace {

constexpr std::string_view kWildcardPrefix = "*.";

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_hex_digit(char c) { return is_digit(c) || (c >= 'a' && c <= 'f'); }

char to_lower_ascii(char c) {
    return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

// Bytes a normalized label cannot hold (anything but a-z, 0-9 and '-'), as a table: the check
// runs on every request's host.
constexpr std::array<bool, 256> kNotLabelByte = [] {
    std::array<bool, 256> table{};
    table.fill(true);
    for (int c = '0'; c <= '9'; ++c) table[c] = false;
    for (int c = 'a'; c <= 'z'; ++c) table[c] = false;
    table['-'] = false;
    return table;
}();

// "127.1", "010.0.0.1", "0x7f000001": the resolver's inet_aton reads these as IPv4 addresses.
// No top-level domain is numeric, so a name whose last label looks like a number is refused
// rather than resolved to an address the policy never saw.
bool last_label_is_numeric(std::string_view name) {
    const auto dot = name.rfind('.');
    const auto label = dot == std::string_view::npos ? name : name.substr(dot + 1);
    if (std::all_of(label.begin(), label.end(), is_digit)) return true;
    const bool hex = label.size() > 2 && label.substr(0, 2) == "0x" &&
                     std::all_of(label.begin() + 2, label.end(), is_hex_digit);
    return hex;
}

// Every label 1..kMaxLabelLength bytes of lower-case letters, digits and '-', with no '-' at
// either end. Label by label; within one, no branch that depends on the bytes.
bool all_labels_valid(std::string_view name) {
    if (name.empty()) return false;  // no label at all (and memchr wants a buffer)
    const char* label = name.data();
    const char* const end = label + name.size();
    for (;;) {
        const auto* dot = static_cast<const char*>(std::memchr(label, '.', static_cast<std::size_t>(end - label)));
        const char* const label_end = dot != nullptr ? dot : end;
        const auto length = static_cast<std::size_t>(label_end - label);
        if (length == 0 || length > kMaxLabelLength || *label == '-' || label_end[-1] == '-') return false;
        bool invalid = false;
        for (const char* p = label; p != label_end; ++p) invalid |= kNotLabelByte[static_cast<unsigned char>(*p)];
        if (invalid) return false;
        if (dot == nullptr) return true;
        label = dot + 1;
    }
}

}  // namespace

// Labels of lower-case letters, digits and hyphens leave nothing for normalize_host to change.
bool is_normalized_host(std::string_view host) {
    if (host.empty() || host.size() > kMaxHostNameLength || host.back() == '.') return false;
    return all_labels_valid(host) && !last_label_is_numeric(host);
}

std::optional<std::string> normalize_host(std::string_view host) {
    if (is_normalized_host(host)) return std::string(host);  // the common case: one pass, no rewrite
    std::string name(host);
    std::transform(name.begin(), name.end(), name.begin(), to_lower_ascii);
    if (!name.empty() && name.back() == '.') name.pop_back();  // the root label, once
    if (name.empty() || name.size() > kMaxHostNameLength) return std::nullopt;
    if (!all_labels_valid(name) || last_label_is_numeric(name)) return std::nullopt;
    return name;
}

std::optional<Target> parse_authority(std::string_view text, std::uint16_t default_port) {
    // Userinfo has no place in a proxy target, and "host:443@evil" reads differently to different
    // parsers: split_authority refuses any '@' outright.
    const auto parsed = split_authority(text);
    if (!parsed.authority) return std::nullopt;
    const Authority& authority = *parsed.authority;
    const std::uint16_t port = authority.port.value_or(default_port);
    if (port == 0) return std::nullopt;
    const auto address = IpAddress::parse(authority.host);
    // Brackets hold IPv6 and nothing else; an IPv6 literal needs them.
    if (authority.bracketed != (address && !address->is_v4())) return std::nullopt;
    if (address) return Target{address->to_string(), port, *address, true};
    auto name = normalize_host(authority.host);
    if (!name) return std::nullopt;
    return Target{std::move(*name), port, std::nullopt, true};
}

std::optional<HostPattern> HostPattern::parse(std::string_view text) {
    HostPattern pattern;
    if (text.starts_with(kWildcardPrefix)) {
        pattern.wildcard_ = true;
        text.remove_prefix(kWildcardPrefix.size());
    }
    // normalize_host refuses any other '*', so "*", "*.", "a.*.b", "**.x" and "*x.com" fail here.
    auto name = normalize_host(text);
    if (!name) return std::nullopt;
    pattern.name_ = std::move(*name);
    return pattern;
}

bool HostPattern::matches(std::string_view normalized_host) const {
    if (!wildcard_) return normalized_host == name_;
    // Strictly below the suffix: at least one label, then a dot, then the suffix.
    return normalized_host.size() > name_.size() + 1 && normalized_host.ends_with(name_) &&
           normalized_host[normalized_host.size() - name_.size() - 1] == '.';
}

void HostPatternSet::add(const HostPattern& pattern, std::string origin) {
    // The first origin to name a pattern keeps it, so audit rules do not depend on later entries.
    auto& map = pattern.is_wildcard() ? suffixes_ : exact_;
    if (map.contains(pattern.suffix())) return;
    std::string text = pattern.to_string();
    std::string label = origin + " " + text;
    map.try_emplace(pattern.suffix(), Entry{std::move(text), std::move(origin), std::move(label)});
}

std::optional<HostPatternSet::Match> HostPatternSet::find(std::string_view normalized_host) const {
    const auto match = [](const Entry& entry) { return Match{entry.pattern, entry.origin, entry.label}; };
    // An empty map still hashes the key: a set without exact names or suffixes skips that part.
    if (!exact_.empty()) {
        if (const auto it = exact_.find(normalized_host); it != exact_.end()) return match(it->second);
    }
    if (suffixes_.empty()) return std::nullopt;
    // Each proper suffix after a label boundary, longest (most specific) first; never the whole
    // name, because "*.x" does not match "x".
    for (auto dot = normalized_host.find('.'); dot != std::string_view::npos;
         dot = normalized_host.find('.', dot + 1)) {
        if (const auto it = suffixes_.find(normalized_host.substr(dot + 1)); it != suffixes_.end()) {
            return match(it->second);
        }
    }
    return std::nullopt;
}

}  // namespace egressgate::policy
