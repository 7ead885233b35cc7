#pragma once
// Azure Service Tags: Microsoft's weekly file of the address prefixes behind each Azure service
// and region (ServiceTags_Public_YYYYMMDD.json; the US Gov and China files share the schema):
//   {"changeNumber": n, "cloud": "Public", "values": [{"name": "Storage.WestEurope", "id": "...",
//    "properties": {"changeNumber": n, "region": "westeurope", "regionId": n, "platform": "Azure",
//    "systemService": "AzureStorage", "addressPrefixes": ["20.60.0.0/16", "2603:1020::/47"],
//    "networkFeatures": [...]}}]}
// Pure: the loader reads the file and parses it; nothing here opens a socket.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "policy/ip_address.hpp"
#include "policy/prefix_set.hpp"

namespace egressgate::policy {

// Refuse files past this size before reading them: the public file is ~5 MB and grows slowly, so
// anything this large is not a Service Tags file (or is a mistake such as /dev/zero).
inline constexpr std::uintmax_t kMaxServiceTagsFileBytes = 64 * 1024 * 1024;

// How many "did you mean" names an unknown tag gets, and how far (edit distance, ignoring case)
// a name may be from it to be suggested: at most a third of its length, and at least 2 edits.
inline constexpr std::size_t kMaxTagSuggestions = 3;

// One entry of "values". Fields the proxy does not use (platform, networkFeatures, regionId) are
// not kept; fields Microsoft may add later are ignored rather than refused.
struct ServiceTag {
    std::string name;            // as in the file: "Storage.WestEurope"
    std::string id;              // usually the name again
    std::string region;          // as in the file, "" for global tags; spellings vary, never parsed
    std::string system_service;  // "AzureStorage", "" for some tags
    std::uint64_t change_number = 0;
    std::vector<Cidr> prefixes;  // v4 and v6, in file order
};

// A configured tag name that the file does not have, with the closest names the file does have.
struct UnknownServiceTag {
    std::string name;
    std::vector<std::string> suggestions;  // at most kMaxTagSuggestions, closest first
};

// "unknown service tag \"Storage.WestEurop\" (did you mean \"Storage.WestEurope\"?)": the one
// wording for config errors and `explain`.
std::string describe(const UnknownServiceTag& unknown);

struct ServiceTagResolution {
    PrefixSetPtr set;                        // the union of the known names' prefixes; never null
    std::vector<UnknownServiceTag> unknown;  // empty when every name was found
};

class ServiceTags;
using ServiceTagsPtr = std::shared_ptr<const ServiceTags>;

struct ServiceTagsLoad {
    ServiceTagsPtr tags;  // null on error
    // On error, one line naming the file and what is wrong, e.g.
    //   "/etc/egressgate/ServiceTags_Public.json:1:5121 (byte 5121): invalid JSON: ..."
    //   "/etc/egressgate/ServiceTags_Public.json: values[12] (\"Storage.WestEurope\")
    //    .properties.addressPrefixes[3]: \"20.60.0.1/16\" is not a CIDR"
    std::string error;
};

// Contract:
// - load() and parse() accept the published schema and nothing looser where it matters: the
//   top-level changeNumber, cloud and values; each value's name (non-empty, unique ignoring case)
//   and properties.addressPrefixes (strings that Cidr::parse accepts, host bits clear). Entries
//   may come in any order, a prefix may appear under several tags, "values" may be empty.
// - Names compare ignoring ASCII case: "storage.westeurope" finds "Storage.WestEurope".
// - Immutable after loading; share it as ServiceTagsPtr, and on SIGHUP load anew and swap.
class ServiceTags {
public:
    static ServiceTagsLoad load(const std::filesystem::path& path);
    // `source` names the text in error messages (the path when called by load()).
    static ServiceTagsLoad parse(std::string_view json_text, std::string_view source);

    std::string_view cloud() const { return cloud_; }
    std::uint64_t change_number() const { return change_number_; }
    std::span<const ServiceTag> tags() const { return tags_; }
    std::size_t prefix_count() const { return prefix_count_; }  // over all tags, duplicates counted

    const ServiceTag* find(std::string_view name) const;  // ignoring case; null when absent
    // The closest names in the file to `name`, closest first (ties in file-name order).
    std::vector<std::string> suggestions(std::string_view name) const;
    // The prefix set for `names` (each tag labelling its own prefixes) and the names not found.
    ServiceTagResolution resolve(std::span<const std::string> names) const;

private:
    std::string cloud_;
    std::uint64_t change_number_ = 0;
    std::size_t prefix_count_ = 0;
    std::vector<ServiceTag> tags_;         // in file order
    std::vector<std::size_t> by_name_;     // indexes into tags_, sorted by lower-cased name
    std::vector<std::string> lower_names_; // parallel to tags_
};

}  // namespace egressgate::policy
