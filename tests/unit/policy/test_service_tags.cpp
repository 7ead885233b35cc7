// Azure Service Tags: the loader on a fixture in the published schema, good and broken files, and
// the lookups the address check makes with the resulting prefix set. A wrong answer here lets a
// name that resolves outside Azure's storage ranges through `require_service_tag`, or refuses a
// real storage endpoint.
#include <catch.hpp>

#include <string>
#include <vector>

#include "policy/service_tags.hpp"

using namespace egressgate::policy;

namespace {

const std::string kFixtures = std::string(EGRESSGATE_FIXTURES) + "/service_tags/";
const std::string kGood = kFixtures + "ServiceTags_Public_fixture.json";

ServiceTagsPtr load_good() {
    const auto loaded = ServiceTags::load(kGood);
    INFO(loaded.error);
    REQUIRE(loaded.tags != nullptr);
    return loaded.tags;
}

IpAddress ip(const char* text) {
    const auto a = IpAddress::parse(text);
    REQUIRE(a.has_value());
    return *a;
}

struct LookupCase {
    const char* name;
    const char* address;
    const char* tag;     // nullptr: not in the set
    const char* prefix;  // the most specific prefix that matched
};

void check_lookups(const PrefixSet& set, const std::vector<LookupCase>& cases) {
    for (const auto& c : cases) {
        DYNAMIC_SECTION(c.name << " " << c.address) {
            const auto found = set.find(ip(c.address));
            CHECK(set.contains(ip(c.address)) == (c.tag != nullptr));
            if (c.tag == nullptr) {
                CHECK_FALSE(found.has_value());
                CHECK_FALSE(set.tag_of(ip(c.address)).has_value());
            } else {
                REQUIRE(found.has_value());
                CHECK(std::string(found->tag) == c.tag);
                CHECK(found->prefix.to_string() == c.prefix);
                CHECK(set.tag_of(ip(c.address)) == std::optional<std::string_view>(c.tag));
            }
        }
    }
}

PrefixSetPtr resolve_all_known(const ServiceTags& tags, std::vector<std::string> names) {
    auto resolution = tags.resolve(names);
    REQUIRE(resolution.unknown.empty());
    REQUIRE(resolution.set != nullptr);
    return resolution.set;
}

}  // namespace

TEST_CASE("ServiceTags: the fixture loads with its header fields and every entry", "[service_tags]") {
    const auto tags = load_good();
    CHECK(tags->cloud() == "Public");
    CHECK(tags->change_number() == 360);
    CHECK(tags->tags().size() == 8);
    CHECK(tags->prefix_count() == 5 + 5 + 4 + 8 + 3 + 0 + 2 + 1);
    // File order is kept: the file is not sorted and the loader does not need it to be.
    CHECK(tags->tags().front().name == "Storage.WestEurope");
    CHECK(tags->tags().back().name == "AzureCloud.usgovvirginia");

    struct FieldCase {
        const char* name;
        const char* region;
        const char* system_service;
        std::uint64_t change_number;
        std::size_t prefixes;
    };
    const FieldCase cases[] = {
        {"Storage.WestEurope", "westeurope", "AzureStorage", 41, 5},
        {"AzureCloud", "", "", 302, 5},
        {"AzureBackup.UKSouth", "UKSouth", "AzureBackup", 7, 4},
        {"storage.NorthEurope", "North Europe", "AzureStorage", 33, 3},
        {"AzureDevSpaces", "", "", 1, 0},           // region and systemService absent
        {"DataFactory.EastUS", "", "", 12, 2},      // region and systemService null
        {"AzureCloud.usgovvirginia", "usgovvirginia", "", 3, 1},
    };
    for (const auto& c : cases) {
        DYNAMIC_SECTION(c.name) {
            const ServiceTag* tag = tags->find(c.name);
            REQUIRE(tag != nullptr);
            CHECK(tag->name == c.name);
            CHECK(tag->id == c.name);
            CHECK(tag->region == c.region);
            CHECK(tag->system_service == c.system_service);
            CHECK(tag->change_number == c.change_number);
            CHECK(tag->prefixes.size() == c.prefixes);
        }
    }
}

TEST_CASE("ServiceTags: names match ignoring case and resolve to the file's spelling", "[service_tags]") {
    const auto tags = load_good();
    struct Case {
        const char* asked;
        const char* in_file;
    };
    const Case cases[] = {
        {"Storage.WestEurope", "Storage.WestEurope"},
        {"storage.westeurope", "Storage.WestEurope"},
        {"STORAGE.WESTEUROPE", "Storage.WestEurope"},
        {"Storage.NorthEurope", "storage.NorthEurope"},
        {"azurecloud", "AzureCloud"},
        {"AzureCloud.USGovVirginia", "AzureCloud.usgovvirginia"},
    };
    for (const auto& c : cases) {
        DYNAMIC_SECTION(c.asked) {
            const ServiceTag* tag = tags->find(c.asked);
            REQUIRE(tag != nullptr);
            CHECK(tag->name == c.in_file);
            const auto set = resolve_all_known(*tags, {c.asked});
            CHECK(set->prefix_count() == tag->prefixes.size());
            if (!tag->prefixes.empty()) {
                CHECK(set->tag_of(tag->prefixes.front().network()) == std::optional<std::string_view>(c.in_file));
            }
        }
    }
    CHECK(tags->find("Storage.WestEurope ") == nullptr);  // no trimming: config strings are exact
    CHECK(tags->find("Storage") != tags->find("Storage.WestEurope"));
}

TEST_CASE("ServiceTags: lookups in one regional tag, v4 and v6, inside, outside and at the edges",
          "[service_tags]") {
    const auto tags = load_good();
    const auto set = resolve_all_known(*tags, {"storage.westeurope", "AzureBackup.UKSouth"});
    const char* swe = "Storage.WestEurope";
    const char* backup = "AzureBackup.UKSouth";
    check_lookups(*set, {
        {"v4 inside", "20.60.26.77", swe, "20.60.26.0/23"},
        {"v4 first address", "20.60.26.0", swe, "20.60.26.0/23"},
        {"v4 last address", "20.60.27.255", swe, "20.60.26.0/23"},
        {"v4 just below", "20.60.25.255", nullptr, nullptr},
        {"v4 just above", "20.60.28.0", nullptr, nullptr},
        {"v4 /22 last address", "52.239.143.255", swe, "52.239.140.0/22"},
        {"v4 /22 just above", "52.239.144.0", nullptr, nullptr},
        {"v4 elsewhere in Azure, not in these tags", "20.32.0.1", nullptr, nullptr},
        {"v4 /32 exact", "51.140.1.14", backup, "51.140.1.14/32"},
        {"v4 /32 one below", "51.140.1.13", nullptr, nullptr},
        {"v4 /32 one above", "51.140.1.15", nullptr, nullptr},
        {"v4-mapped v6 inside", "::ffff:20.60.26.77", swe, "20.60.26.0/23"},
        {"v4-mapped v6 outside", "::ffff:20.60.28.0", nullptr, nullptr},
        {"v4 bytes as v6 are not v4", "::143c:1a4d", nullptr, nullptr},
        {"v6 inside", "2603:1020:205:12::7", swe, "2603:1020:205::/48"},
        {"v6 first address", "2603:1020:205::", swe, "2603:1020:205::/48"},
        {"v6 last address", "2603:1020:205:ffff:ffff:ffff:ffff:ffff", swe, "2603:1020:205::/48"},
        {"v6 just below", "2603:1020:204:ffff:ffff:ffff:ffff:ffff", nullptr, nullptr},
        {"v6 just above", "2603:1020:206::", nullptr, nullptr},
        {"v6 /62 last address", "2a01:111:f100:1003:ffff:ffff:ffff:ffff", swe, "2a01:111:f100:1000::/62"},
        {"v6 /62 just above", "2a01:111:f100:1004::", nullptr, nullptr},
        {"v6 /128 exact", "2603:1020:705:402::119", backup, "2603:1020:705:402::119/128"},
        {"v6 /128 one below", "2603:1020:705:402::118", nullptr, nullptr},
        {"v6 /128 one above", "2603:1020:705:402::11a", nullptr, nullptr},
        {"v6 /123 last address", "2603:1020:705:402::21f", backup, "2603:1020:705:402::200/123"},
        {"v6 /123 just above", "2603:1020:705:402::220", nullptr, nullptr},
        {"v6 ::", "::", nullptr, nullptr},
        {"v6 top", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", nullptr, nullptr},
        {"v4 0.0.0.0", "0.0.0.0", nullptr, nullptr},
        {"v4 top", "255.255.255.255", nullptr, nullptr},
    });
}

TEST_CASE("ServiceTags: a union of nested and duplicated tags names the most specific prefix",
          "[service_tags]") {
    const auto tags = load_good();
    // AzureCloud contains the regional prefixes; Storage repeats Storage.WestEurope's and
    // storage.NorthEurope's. The first tag asked for wins a tie on the very same prefix.
    const auto set = resolve_all_known(*tags, {"Storage", "AzureCloud", "Storage.WestEurope", "Storage.NorthEurope"});
    CHECK(set->prefix_count() == 5 + 8);  // AzureCloud's and Storage's; the regional ones are duplicates
    check_lookups(*set, {
        {"regional prefix, global tag asked first", "20.60.26.1", "Storage", "20.60.26.0/23"},
        {"inside AzureCloud, outside Storage", "20.60.28.0", "AzureCloud", "20.32.0.0/11"},
        {"AzureCloud /11 first", "20.32.0.0", "AzureCloud", "20.32.0.0/11"},
        {"AzureCloud /11 last", "20.63.255.255", "AzureCloud", "20.32.0.0/11"},
        {"after AzureCloud /11", "20.64.0.0", nullptr, nullptr},
        {"AzureCloud resumes after a nested /27", "52.239.148.32", "AzureCloud", "52.224.0.0/11"},
        {"nested /27 last", "52.239.148.31", "Storage", "52.239.148.0/27"},
        {"v6 nested /48", "2603:1030:408::1", "Storage", "2603:1030:408::/48"},
        {"v6 AzureCloud /24 around it", "2603:1030:409::", "AzureCloud", "2603:1000::/24"},
        {"v6 AzureCloud /24 last", "2603:10ff:ffff:ffff:ffff:ffff:ffff:ffff", "AzureCloud", "2603:1000::/24"},
        {"v6 after AzureCloud /24", "2603:1100::", nullptr, nullptr},
    });

    const auto regional_first = resolve_all_known(*tags, {"Storage.WestEurope", "Storage"});
    CHECK(regional_first->tag_of(ip("20.60.26.1")) == std::optional<std::string_view>("Storage.WestEurope"));
    CHECK(regional_first->tag_of(ip("20.60.40.1")) == std::optional<std::string_view>("Storage"));
}

TEST_CASE("ServiceTags: unknown names are reported with the closest names in the file", "[service_tags]") {
    const auto tags = load_good();
    struct Case {
        const char* name;
        std::vector<std::string> suggestions;
        const char* described;
    };
    const Case cases[] = {
        {"Storage.WestEurop", {"Storage.WestEurope", "storage.NorthEurope"},
         "unknown service tag \"Storage.WestEurop\" (did you mean \"Storage.WestEurope\" or \"storage.NorthEurope\"?)"},
        {"storag.northeurope", {"storage.NorthEurope", "Storage.WestEurope"},
         "unknown service tag \"storag.northeurope\" (did you mean \"storage.NorthEurope\" or \"Storage.WestEurope\"?)"},
        {"AzureCloude", {"AzureCloud"}, "unknown service tag \"AzureCloude\" (did you mean \"AzureCloud\"?)"},
        {"Storag", {"Storage"}, "unknown service tag \"Storag\" (did you mean \"Storage\"?)"},
        {"AzureBackup.UKWest", {"AzureBackup.UKSouth"},
         "unknown service tag \"AzureBackup.UKWest\" (did you mean \"AzureBackup.UKSouth\"?)"},
        {"Sql.EastUS2", {}, "unknown service tag \"Sql.EastUS2\" (no similar name in the file)"},
        {"", {}, "unknown service tag \"\" (no similar name in the file)"},
    };
    for (const auto& c : cases) {
        DYNAMIC_SECTION(c.name) {
            CHECK(tags->find(c.name) == nullptr);
            CHECK(tags->suggestions(c.name) == c.suggestions);
            const auto resolution = tags->resolve(std::vector<std::string>{"Storage.WestEurope", c.name});
            REQUIRE(resolution.unknown.size() == 1);
            CHECK(resolution.unknown[0].name == c.name);
            CHECK(resolution.unknown[0].suggestions == c.suggestions);
            CHECK(describe(resolution.unknown[0]) == c.described);
            // The known names still resolve, so `explain` can show what the rest would allow.
            REQUIRE(resolution.set != nullptr);
            CHECK(resolution.set->contains(ip("20.60.26.1")));
        }
    }
}

TEST_CASE("ServiceTags: broken files are errors that name the file and the place", "[service_tags]") {
    struct Case {
        const char* file;
        const char* message;  // after "<path>: "
    };
    const Case cases[] = {
        {"truncated.json",
         "invalid JSON at byte 1333: parse error at line 53, column 18: syntax error while parsing value - "
         "invalid string: missing closing quote; last read: '\"51.104'"},
        {"empty_file.json",
         "invalid JSON at byte 1: parse error at line 1, column 1: syntax error while parsing value - "
         "unexpected end of input; expected '[', '{', or a literal"},
        {"bad_prefix.json",
         "values[1] (\"Storage.WestEurope\").properties.addressPrefixes[2]: \"20.60.26.1/23\" is not a CIDR "
         "(or has host bits set)"},
        {"prefix_not_string.json",
         "values[0] (\"Storage\").properties.addressPrefixes[1]: expected a string, got number"},
        {"missing_prefixes.json", "values[0] (\"AzureCloud\").properties: missing \"addressPrefixes\""},
        {"missing_properties.json", "values[0] (\"AzureCloud\"): missing \"properties\""},
        {"name_not_string.json", "values[0].name: expected a string, got number"},
        {"empty_name.json", "values[0].name: is empty"},
        {"region_not_string.json", "values[0] (\"Storage.WestEurope\").properties.region: expected a string, got number"},
        {"duplicate_name.json", "values[2].name: \"STORAGE\" is already the name of values[0] (names ignore case)"},
        {"values_not_array.json", "values: expected an array, got object"},
        {"missing_cloud.json", "document: missing \"cloud\""},
        {"negative_change_number.json", "changeNumber: expected a non-negative integer, got number"},
        {"top_level_array.json", "document: expected an object, got array"},
    };
    for (const auto& c : cases) {
        DYNAMIC_SECTION(c.file) {
            const std::string path = kFixtures + "bad/" + c.file;
            const auto loaded = ServiceTags::load(path);
            CHECK(loaded.tags == nullptr);
            CHECK(loaded.error == path + ": " + c.message);
        }
    }
}

TEST_CASE("ServiceTags: a missing file names the path", "[service_tags]") {
    const std::string path = kFixtures + "no-such-file.json";
    const auto loaded = ServiceTags::load(path);
    CHECK(loaded.tags == nullptr);
    CHECK(loaded.error == path + ": cannot read: No such file or directory");
}

TEST_CASE("ServiceTags: an empty values array loads; every name is then unknown", "[service_tags]") {
    const auto loaded = ServiceTags::load(kFixtures + "empty_values.json");
    INFO(loaded.error);
    REQUIRE(loaded.tags != nullptr);
    CHECK(loaded.tags->cloud() == "AzureChinaCloud");
    CHECK(loaded.tags->change_number() == 1);
    CHECK(loaded.tags->tags().empty());
    const auto resolution = loaded.tags->resolve(std::vector<std::string>{"Storage"});
    REQUIRE(resolution.unknown.size() == 1);
    CHECK(resolution.unknown[0].suggestions.empty());
    REQUIRE(resolution.set != nullptr);
    CHECK(resolution.set->empty());
    CHECK_FALSE(resolution.set->contains(ip("20.60.26.1")));
    CHECK_FALSE(resolution.set->contains(ip("2603:1020:205::1")));
}

TEST_CASE("ServiceTags: parse() reads text with the source named in errors", "[service_tags]") {
    const auto ok = ServiceTags::parse(
        R"({"changeNumber": 2, "cloud": "AzureGovernment", "values": [{"name": "Storage.USGovVirginia",
            "id": "Storage.USGovVirginia", "properties": {"addressPrefixes": ["20.140.0.0/17", "2001:489a:2000::/44"]}}]})",
        "inline");
    INFO(ok.error);
    REQUIRE(ok.tags != nullptr);
    const auto set = resolve_all_known(*ok.tags, {"storage.usgovvirginia"});
    CHECK(set->contains(ip("20.140.127.255")));
    CHECK(set->contains(ip("2001:489a:200f:ffff::1")));
    CHECK_FALSE(set->contains(ip("2001:489a:2010::")));

    const auto bad = ServiceTags::parse(R"({"changeNumber": 1, "cloud": "Public", "values": [)", "inline");
    CHECK(bad.tags == nullptr);
    CHECK(bad.error.starts_with("inline: invalid JSON at byte "));
}
