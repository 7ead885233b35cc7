// libFuzzer target for the policy's view of names and authorities (policy/host.hpp,
// policy/authority.hpp, policy/ip_address.hpp). Whatever a client writes after CONNECT or in an
// absolute URI, what the policy decides on must be canonical: normalising again changes nothing,
// a parsed Target reads back as itself, no userinfo survives, and a pattern matches exactly the
// names it says it does.
//
// Input: two texts separated by the first '\n' (the second may be empty). Each goes through every
// parser; the first is also read as a host pattern and matched against the second.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_check.hpp"
#include "policy/authority.hpp"
#include "policy/host.hpp"
#include "policy/ip_address.hpp"

namespace {

namespace policy = egressgate::policy;

bool is_name_char(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.'; }

// What normalize_host promises of its output, checked label by label.
void check_normalized(const std::string& name) {
    FUZZ_REQUIRE(!name.empty() && name.size() <= policy::kMaxHostNameLength);
    for (const char c : name) FUZZ_REQUIRE(is_name_char(c));
    std::string_view rest = name;
    for (;;) {
        const auto dot = rest.find('.');
        const std::string_view label = rest.substr(0, dot);
        FUZZ_REQUIRE(!label.empty() && label.size() <= policy::kMaxLabelLength);
        FUZZ_REQUIRE(label.front() != '-' && label.back() != '-');
        if (dot == std::string_view::npos) break;
        rest.remove_prefix(dot + 1);
    }
    const auto again = policy::normalize_host(name);
    FUZZ_REQUIRE(again && *again == name);
}

void check_normalize(std::string_view text) {
    if (const auto name = policy::normalize_host(text)) check_normalized(*name);
}

bool same_target(const policy::Target& a, const policy::Target& b) {
    return a.host == b.host && a.port == b.port && a.literal == b.literal;
}

void check_target(const policy::Target& target, std::uint16_t default_port) {
    FUZZ_REQUIRE(target.port != 0);
    // The policy takes such a target as checked (Target::parsed): the checks below are why it may.
    FUZZ_REQUIRE(target.parsed);
    if (target.literal) {
        FUZZ_REQUIRE(!policy::normalize_host(target.host));
        const auto address = policy::IpAddress::parse(target.host);
        FUZZ_REQUIRE(address && *address == *target.literal);
        FUZZ_REQUIRE(target.literal->to_string() == target.host);
    } else {
        check_normalized(target.host);
        FUZZ_REQUIRE(!policy::IpAddress::parse(target.host));
    }
    // The authority written back (brackets for IPv6, the port spelled out) reads as the same
    // Target, and so does the bare host when the port is the default one.
    const bool v6 = target.literal && !target.literal->is_v4();
    const std::string host = v6 ? "[" + target.host + "]" : target.host;
    const auto with_port = policy::parse_authority(host + ":" + std::to_string(target.port));
    FUZZ_REQUIRE(with_port && same_target(*with_port, target));
    if (target.port == default_port) {
        const auto bare = policy::parse_authority(host, default_port);
        FUZZ_REQUIRE(bare && same_target(*bare, target));
    }
}

void check_authority(std::string_view text) {
    const auto split = policy::split_authority(text);
    FUZZ_REQUIRE(split.authority.has_value() == (split.problem == policy::AuthorityProblem::none));
    if (split.authority) {
        const auto& authority = *split.authority;
        FUZZ_REQUIRE(authority.host.find('@') == std::string_view::npos);
        // The shape only: what is inside the brackets is the caller's business.
        FUZZ_REQUIRE(authority.host.find(authority.bracketed ? ']' : ':') == std::string_view::npos);
    } else {
        FUZZ_REQUIRE(!policy::describe(split.problem).empty());
    }
    for (const std::uint16_t default_port : {std::uint16_t{0}, std::uint16_t{80}}) {
        const auto target = policy::parse_authority(text, default_port);
        if (!target) continue;
        FUZZ_REQUIRE(split.authority.has_value());
        check_target(*target, default_port);
    }
}

void check_port(std::string_view text) {
    const auto port = policy::parse_port(text);
    if (port) FUZZ_REQUIRE(std::to_string(*port) == text);
}

void check_addresses(std::string_view text) {
    if (const auto address = policy::IpAddress::parse(text)) {
        const std::string canonical = address->to_string();
        const auto again = policy::IpAddress::parse(canonical);
        FUZZ_REQUIRE(again && *again == *address && again->to_string() == canonical);
        FUZZ_REQUIRE(address->unmapped().unmapped() == address->unmapped());
    }
    if (const auto cidr = policy::Cidr::parse(text)) {
        const auto again = policy::Cidr::parse(cidr->to_string());
        FUZZ_REQUIRE(again && again->network() == cidr->network() && again->prefix_length() == cidr->prefix_length());
        FUZZ_REQUIRE(cidr->contains(cidr->network()));
    }
}

// A pattern matches what it says: an exact name itself only, a wildcard the names strictly
// below its suffix and never the suffix; and a set holding it finds the same names.
void check_pattern(std::string_view text, std::string_view other) {
    const auto pattern = policy::HostPattern::parse(text);
    if (!pattern) return;
    const std::string& suffix = pattern->suffix();
    check_normalized(suffix);
    const auto again = policy::HostPattern::parse(pattern->to_string());
    FUZZ_REQUIRE(again && again->suffix() == suffix && again->is_wildcard() == pattern->is_wildcard());
    policy::HostPatternSet set;
    set.add(*pattern, "fuzz");
    const auto consistent = [&](std::string_view host) {
        const bool matched = pattern->matches(host);
        FUZZ_REQUIRE(set.find(host).has_value() == matched);
        return matched;
    };
    if (pattern->is_wildcard()) {
        FUZZ_REQUIRE(!consistent(suffix));
        FUZZ_REQUIRE(consistent("a." + suffix));
        FUZZ_REQUIRE(!consistent("a" + suffix));
    } else {
        FUZZ_REQUIRE(consistent(suffix));
        FUZZ_REQUIRE(!consistent("a." + suffix));
    }
    const auto host = policy::normalize_host(other);
    if (!host) return;
    const bool below = host->size() > suffix.size() + 1 && host->ends_with("." + suffix);
    FUZZ_REQUIRE(consistent(*host) == (pattern->is_wildcard() ? below : *host == suffix));
}

void check_text(std::string_view text) {
    check_normalize(text);
    check_authority(text);
    check_port(text);
    check_addresses(text);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    const auto newline = input.find('\n');
    const std::string_view first = input.substr(0, newline);
    const std::string_view second = newline == std::string_view::npos ? std::string_view{} : input.substr(newline + 1);
    check_text(first);
    check_text(second);
    check_pattern(first, second);
    return 0;
}
