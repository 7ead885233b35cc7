// libFuzzer target for policy::ServiceTags::parse: the Service Tags file is read at start and on
// every reload, and service_tags_file may point at a truncated download, another cloud's file or
// something that is no Service Tags file at all. Parsing must give either an error that names the
// file, or tags that the config can find by name (ignoring case) and whose every prefix the
// address check then finds under that tag's name; and the same text must give the same answer.
//
// Input: the JSON text, parsed as kSource.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_check.hpp"
#include "policy/ip_address.hpp"
#include "policy/prefix_set.hpp"
#include "policy/service_tags.hpp"

namespace {

namespace policy = egressgate::policy;

constexpr std::string_view kSource = "/etc/egressgate/ServiceTags_Public.json";
constexpr std::string_view kOtherSource = "other.json";

std::string swap_ascii_case(std::string_view text) {
    std::string out(text);
    for (char& c : out) {
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
        else if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    }
    return out;
}

bool same_prefix(const policy::Cidr& a, const policy::Cidr& b) {
    return a.network() == b.network() && a.prefix_length() == b.prefix_length();
}

// The message is the admin's only clue, so it starts with the file's name and says more than
// that; and it depends on nothing but the text, so a second parse under another name differs in
// the name alone.
void check_error(const policy::ServiceTagsLoad& load, std::string_view text) {
    FUZZ_REQUIRE(load.tags == nullptr);
    const std::string prefix = std::string(kSource) + ": ";
    FUZZ_REQUIRE(load.error.starts_with(prefix));
    FUZZ_REQUIRE(load.error.size() > prefix.size());
    const auto again = policy::ServiceTags::parse(text, kOtherSource);
    FUZZ_REQUIRE(again.tags == nullptr);
    FUZZ_REQUIRE(again.error == std::string(kOtherSource) + load.error.substr(kSource.size()));
}

void check_same(const policy::ServiceTags& a, const policy::ServiceTags& b) {
    FUZZ_REQUIRE(a.cloud() == b.cloud());
    FUZZ_REQUIRE(a.change_number() == b.change_number());
    FUZZ_REQUIRE(a.prefix_count() == b.prefix_count());
    FUZZ_REQUIRE(a.tags().size() == b.tags().size());
    for (std::size_t i = 0; i < a.tags().size(); ++i) {
        const policy::ServiceTag& x = a.tags()[i];
        const policy::ServiceTag& y = b.tags()[i];
        FUZZ_REQUIRE(x.name == y.name && x.id == y.id && x.region == y.region);
        FUZZ_REQUIRE(x.system_service == y.system_service && x.change_number == y.change_number);
        FUZZ_REQUIRE(x.prefixes.size() == y.prefixes.size());
        for (std::size_t j = 0; j < x.prefixes.size(); ++j) FUZZ_REQUIRE(same_prefix(x.prefixes[j], y.prefixes[j]));
    }
}

// Names are unique ignoring case, so each spelling of a name finds exactly its own entry, and the
// closest suggestion for a name the file has is that name.
void check_names(const policy::ServiceTags& tags) {
    for (const policy::ServiceTag& tag : tags.tags()) {
        FUZZ_REQUIRE(!tag.name.empty());
        FUZZ_REQUIRE(tags.find(tag.name) == &tag);
        FUZZ_REQUIRE(tags.find(swap_ascii_case(tag.name)) == &tag);
        const auto suggestions = tags.suggestions(tag.name);
        FUZZ_REQUIRE(!suggestions.empty() && suggestions.size() <= policy::kMaxTagSuggestions);
        FUZZ_REQUIRE(suggestions.front() == tag.name);
    }
}

// A prefix inside ::ffff:0:0/96 is never found by its own addresses: PrefixSet looks IPv4-mapped
// addresses up as IPv4 so that a dual-stack answer cannot slip past a v4 prefix. Azure publishes
// none; a file that did would only allow less.
bool findable(const policy::Cidr& prefix) {
    return prefix.network().unmapped() == prefix.network();
}

// The prefixes are what the loader promised: CIDRs with the host bits clear, which print and parse
// back to themselves.
void check_prefix_text(const policy::ServiceTags& tags) {
    std::size_t count = 0;
    for (const policy::ServiceTag& tag : tags.tags()) {
        count += tag.prefixes.size();
        for (const policy::Cidr& prefix : tag.prefixes) {
            const auto again = policy::Cidr::parse(prefix.to_string());
            FUZZ_REQUIRE(again && same_prefix(*again, prefix));
        }
    }
    FUZZ_REQUIRE(count == tags.prefix_count());
}

// What `service_tags = ["<name>"]` gives the address check: the network address of each of the
// tag's prefixes matches, labelled with the file's spelling of the name, at a prefix at least as
// specific as the listed one.
void check_tag_lookups(const policy::ServiceTags& tags) {
    for (const policy::ServiceTag& tag : tags.tags()) {
        const std::vector<std::string> names{swap_ascii_case(tag.name)};
        const auto resolution = tags.resolve(names);
        FUZZ_REQUIRE(resolution.unknown.empty());
        FUZZ_REQUIRE(resolution.set != nullptr);
        FUZZ_REQUIRE(resolution.set->prefix_count() <= tag.prefixes.size());
        FUZZ_REQUIRE(resolution.set->empty() == tag.prefixes.empty());
        for (const policy::Cidr& prefix : tag.prefixes) {
            if (!findable(prefix)) continue;
            const auto match = resolution.set->find(prefix.network());
            FUZZ_REQUIRE(match.has_value());
            FUZZ_REQUIRE(match->tag == tag.name);
            FUZZ_REQUIRE(match->prefix.contains(prefix.network()));
            FUZZ_REQUIRE(match->prefix.prefix_length() >= prefix.prefix_length());
            FUZZ_REQUIRE(resolution.set->tag_of(prefix.network()) == match->tag);
        }
    }
}

// All tags at once, as a config listing every name: nested prefixes of different tags still give
// each address its longest match, and nothing is lost in the union.
void check_union_lookups(const policy::ServiceTags& tags) {
    std::vector<std::string> names;
    for (const policy::ServiceTag& tag : tags.tags()) names.push_back(tag.name);
    const auto resolution = tags.resolve(names);
    FUZZ_REQUIRE(resolution.unknown.empty());
    FUZZ_REQUIRE(resolution.set != nullptr);
    FUZZ_REQUIRE(resolution.set->prefix_count() <= tags.prefix_count());
    for (const policy::ServiceTag& tag : tags.tags()) {
        for (const policy::Cidr& prefix : tag.prefixes) {
            if (!findable(prefix)) continue;
            const auto match = resolution.set->find(prefix.network());
            FUZZ_REQUIRE(match.has_value());
            FUZZ_REQUIRE(match->prefix.contains(prefix.network()));
            FUZZ_REQUIRE(match->prefix.prefix_length() >= prefix.prefix_length());
            const policy::ServiceTag* labelled = tags.find(match->tag);
            FUZZ_REQUIRE(labelled != nullptr && labelled->name == match->tag);
        }
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    const policy::ServiceTagsLoad load = policy::ServiceTags::parse(text, kSource);
    if (!load.error.empty()) {
        check_error(load, text);
        return 0;
    }
    FUZZ_REQUIRE(load.tags != nullptr);
    const auto again = policy::ServiceTags::parse(text, kOtherSource);
    FUZZ_REQUIRE(again.tags != nullptr && again.error.empty());
    check_same(*load.tags, *again.tags);
    check_names(*load.tags);
    check_prefix_text(*load.tags);
    check_tag_lookups(*load.tags);
    check_union_lookups(*load.tags);
    return 0;
}
