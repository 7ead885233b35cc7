// Service Tags at full size: generate a file in the published layout, then time loading it,
// building prefix sets for large unions, and looking addresses up in them. bench/prefix_bench.sh
// builds and runs it; docs/service-tags.md has the figures.
//
//   prefix_bench generate FILE [--distinct N] [--seed N]
//       ~3,000 tags: 49 services x 60 regions (one pair in 20 left out, as not every service is in
//       every region), a global tag per service, AzureCloud.<region> and AzureCloud. N distinct
//       prefixes are dealt out to the regional tags; each is listed again under its global service
//       tag, its AzureCloud.<region> and AzureCloud, as Microsoft's file does, so the file lists 4 N.
//   prefix_bench measure FILE [--lookups N] [--runs N]
//       Prints a Markdown table: load time, set build time, lookups per second, RSS.
//
// Generation and measurement run as separate processes so that the peak RSS of `measure` is the
// loader's and the sets', not the generator's. Nothing here opens a socket.
#include <malloc.h>
#include <sys/resource.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <unordered_set>
#include <vector>

#include <nlohmann/json.hpp>

#include "policy/ip_address.hpp"
#include "policy/prefix_set.hpp"
#include "policy/service_tags.hpp"

using namespace egressgate::policy;
using Clock = std::chrono::steady_clock;

namespace {

constexpr const char* kRegions[] = {
    "australiacentral", "australiacentral2", "australiaeast", "australiasoutheast", "brazilse", "brazilsouth",
    "canadacentral", "canadaeast", "centralfrance", "centralindia", "centralus", "centraluseuap", "eastasia",
    "eastus", "eastus2", "eastus2euap", "germanyn", "germanywc", "israelcentral", "italynorth", "japaneast",
    "japanwest", "jioindiacentral", "jioindiawest", "koreacentral", "koreasouth", "malaysiasouth", "mexicocentral",
    "northcentralus", "northeurope", "norwaye", "norwayw", "polandcentral", "qatarcentral", "southafricanorth",
    "southafricawest", "southcentralus", "southeastasia", "southfrance", "southindia", "spaincentral",
    "swedencentral", "swedensouth", "switzerlandn", "switzerlandw", "taiwannorth", "uaecentral", "uaenorth",
    "uksouth", "ukwest", "westcentralus", "westeurope", "westindia", "westus", "westus2", "westus3",
    "newzealandnorth", "chilecentral", "indonesiacentral", "austriaeast",
};

constexpr const char* kServices[] = {
    "ActionGroup", "ApiManagement", "AppConfiguration", "AppService", "AppServiceManagement",
    "AzureActiveDirectoryDomainServices", "AzureAdvancedThreatProtection", "AzureArcInfrastructure",
    "AzureAttestation", "AzureBackup", "AzureBotService", "AzureConnectors", "AzureContainerRegistry",
    "AzureCosmosDB", "AzureDatabricks", "AzureDataExplorerManagement", "AzureDataLake", "AzureDevOps",
    "AzureDigitalTwins", "AzureEventGrid", "AzureIoTHub", "AzureKeyVault", "AzureLoadTestingInstanceManagement",
    "AzureMachineLearning", "AzureMonitor", "AzureOpenDatasets", "AzurePortal", "AzureResourceManager",
    "AzureSentinel", "AzureSignalR", "AzureSiteRecovery", "AzureSpringCloud", "AzureStack", "AzureTrafficManager",
    "AzureUpdateDelivery", "BatchNodeManagement", "CognitiveServicesManagement", "DataFactory", "EventHub",
    "GatewayManager", "GuestAndHybridManagement", "HDInsight", "LogicApps", "MicrosoftContainerRegistry",
    "PowerBI", "ServiceBus", "ServiceFabric", "Sql", "Storage",
};

// Where Azure's prefixes come from, roughly: a few large v4 blocks and the v6 /24s and /32s.
struct Pool {
    std::array<std::uint8_t, 16> network;
    int length;
};

std::array<std::uint8_t, 16> v4_bytes(std::uint8_t a, std::uint8_t b) { return {a, b}; }
std::array<std::uint8_t, 16> v6_bytes(std::uint16_t g0, std::uint16_t g1) {
    return {static_cast<std::uint8_t>(g0 >> 8), static_cast<std::uint8_t>(g0), static_cast<std::uint8_t>(g1 >> 8),
            static_cast<std::uint8_t>(g1)};
}

const Pool kV4Pools[] = {
    {v4_bytes(4, 0), 9},     {v4_bytes(13, 64), 11}, {v4_bytes(20, 0), 8},   {v4_bytes(40, 64), 10},
    {v4_bytes(51, 0), 8},    {v4_bytes(52, 0), 8},   {v4_bytes(104, 40), 13}, {v4_bytes(137, 116), 14},
    {v4_bytes(168, 61), 16}, {v4_bytes(191, 232), 13},
};
const Pool kV6Pools[] = {
    {v6_bytes(0x2603, 0x1000), 24}, {v6_bytes(0x2a01, 0x0111), 32}, {v6_bytes(0x2620, 0x1ec0), 28},
    {v6_bytes(0x2404, 0xf800), 32}, {v6_bytes(0x2c0f, 0xfb80), 32},
};

// Prefix lengths in proportion to what the public file lists: mostly /20.../32 in v4 with a long
// tail of small blocks, and /44.../64 or single /121.../128 ranges in v6.
int draw_length(std::mt19937_64& rng, bool v4) {
    const unsigned roll = static_cast<unsigned>(rng() % 100);
    if (v4) {
        if (roll < 2) return 14 + static_cast<int>(rng() % 3);   // /14../16
        if (roll < 12) return 17 + static_cast<int>(rng() % 4);  // /17../20
        if (roll < 42) return 21 + static_cast<int>(rng() % 4);  // /21../24
        if (roll < 80) return 25 + static_cast<int>(rng() % 4);  // /25../28
        if (roll < 92) return 29 + static_cast<int>(rng() % 3);  // /29../31
        return 32;
    }
    if (roll < 10) return 40 + static_cast<int>(rng() % 5);   // /40../44
    if (roll < 35) return 45 + static_cast<int>(rng() % 4);   // /45../48
    if (roll < 45) return 52 + static_cast<int>(rng() % 5);   // /52../56
    if (roll < 70) return 59 + static_cast<int>(rng() % 6);   // /59../64
    return 121 + static_cast<int>(rng() % 8);                 // /121../128
}

Cidr draw_prefix(std::mt19937_64& rng, bool v4) {
    const Pool& pool = v4 ? kV4Pools[rng() % std::size(kV4Pools)] : kV6Pools[rng() % std::size(kV6Pools)];
    const int bits = v4 ? 32 : 128;
    const int length = std::max(draw_length(rng, v4), pool.length);
    std::array<std::uint8_t, 16> bytes{};
    for (auto& b : bytes) b = static_cast<std::uint8_t>(rng());
    for (int bit = 0; bit < bits; ++bit) {
        const auto mask = static_cast<std::uint8_t>(0x80 >> (bit % 8));
        auto& byte = bytes[static_cast<std::size_t>(bit / 8)];
        if (bit < pool.length) {
            byte = static_cast<std::uint8_t>((byte & ~mask) | (pool.network[static_cast<std::size_t>(bit / 8)] & mask));
        } else if (bit >= length) {
            byte = static_cast<std::uint8_t>(byte & ~mask);
        }
    }
    const IpAddress network = v4 ? IpAddress::v4({bytes[0], bytes[1], bytes[2], bytes[3]}) : IpAddress::v6(bytes);
    return Cidr(network, length);
}

struct GeneratedTag {
    std::string name;
    std::string region;
    std::string service;
    std::vector<std::string> prefixes;
};

void write_tag(std::FILE* out, const GeneratedTag& tag, std::size_t region_id, bool last) {
    std::fprintf(out,
                 "    {\n      \"name\": \"%s\",\n      \"id\": \"%s\",\n      \"properties\": {\n"
                 "        \"changeNumber\": %zu,\n        \"region\": \"%s\",\n        \"regionId\": %zu,\n"
                 "        \"platform\": \"Azure\",\n        \"systemService\": \"%s\",\n"
                 "        \"addressPrefixes\": [",
                 tag.name.c_str(), tag.name.c_str(), tag.prefixes.size() % 97 + 1, tag.region.c_str(), region_id,
                 tag.service.c_str());
    for (std::size_t i = 0; i < tag.prefixes.size(); ++i) {
        std::fprintf(out, "%s\n          \"%s\"", i == 0 ? "" : ",", tag.prefixes[i].c_str());
    }
    std::fprintf(out, "%s],\n        \"networkFeatures\": [\"API\", \"NSG\", \"UDR\", \"FW\"]\n      }\n    }%s\n",
                 tag.prefixes.empty() ? "" : "\n        ", last ? "" : ",");
}

int generate(const std::string& path, std::size_t distinct, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::vector<GeneratedTag> regional;
    for (const char* service : kServices) {
        for (const char* region : kRegions) {
            if (rng() % 20 == 0) continue;  // not every service in every region
            regional.push_back({std::string(service) + "." + region, region, service, {}});
        }
    }
    // Heavy-tailed sizes: Storage and AzureMonitor get many, most tags a handful.
    std::vector<double> weights;
    for (const auto& tag : regional) {
        const bool big = tag.service == "Storage" || tag.service == "AzureMonitor" || tag.service == "AppService";
        weights.push_back((big ? 20.0 : 1.0) * std::exponential_distribution<double>(1.0)(rng));
    }
    std::discrete_distribution<std::size_t> pick(weights.begin(), weights.end());
    // Redraw exact repeats, so that N is the number of distinct prefixes the full set will hold
    // (short prefixes in the small pools come out the same often).
    std::unordered_set<std::string> drawn;
    drawn.reserve(distinct);
    while (drawn.size() < distinct) {
        const bool v4 = rng() % 10 < 7;
        std::string prefix = draw_prefix(rng, v4).to_string();
        if (!drawn.insert(prefix).second) continue;
        regional[pick(rng)].prefixes.push_back(std::move(prefix));
    }

    std::vector<GeneratedTag> all;
    for (const char* service : kServices) {
        GeneratedTag global{service, "", service, {}};
        for (const auto& tag : regional) {
            if (tag.service == service) global.prefixes.insert(global.prefixes.end(), tag.prefixes.begin(), tag.prefixes.end());
        }
        all.push_back(std::move(global));
    }
    for (const char* region : kRegions) {
        GeneratedTag cloud{std::string("AzureCloud.") + region, region, "", {}};
        for (const auto& tag : regional) {
            if (tag.region == region) cloud.prefixes.insert(cloud.prefixes.end(), tag.prefixes.begin(), tag.prefixes.end());
        }
        all.push_back(std::move(cloud));
    }
    GeneratedTag cloud{"AzureCloud", "", "", {}};
    for (const auto& tag : regional) cloud.prefixes.insert(cloud.prefixes.end(), tag.prefixes.begin(), tag.prefixes.end());
    all.push_back(std::move(cloud));
    all.insert(all.end(), regional.begin(), regional.end());
    std::shuffle(all.begin(), all.end(), rng);  // the real file is not sorted either

    std::FILE* out = std::fopen(path.c_str(), "w");
    if (out == nullptr) {
        std::perror(path.c_str());
        return 1;
    }
    std::fprintf(out, "{\n  \"changeNumber\": 360,\n  \"cloud\": \"Public\",\n  \"values\": [\n");
    std::size_t listed = 0;
    for (std::size_t i = 0; i < all.size(); ++i) {
        write_tag(out, all[i], i % std::size(kRegions), i + 1 == all.size());
        listed += all[i].prefixes.size();
    }
    std::fprintf(out, "  ]\n}\n");
    if (std::fclose(out) != 0) {
        std::perror(path.c_str());
        return 1;
    }
    std::printf("generated %s: %zu tags, %zu distinct prefixes drawn, %zu listed\n", path.c_str(), all.size(),
                distinct, listed);
    return 0;
}

double peak_rss_mib() {
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    return static_cast<double>(usage.ru_maxrss) / 1024.0;  // Linux reports KiB
}

// What stays resident once freed memory is handed back: the loaded tags, without the JSON DOM the
// loader built and dropped. VmRSS from /proc/self/status, after malloc_trim.
double resident_mib() {
    malloc_trim(0);
    std::ifstream status("/proc/self/status");
    std::string line;
    while (std::getline(status, line)) {
        if (line.starts_with("VmRSS:")) return std::strtod(line.c_str() + 6, nullptr) / 1024.0;
    }
    return 0;
}

// Keeps the timed loops' results observable, so that the compiler cannot drop the lookups.
volatile std::size_t g_sink = 0;

double ms_since(Clock::time_point start) {
    return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

// An address inside `prefix`, the host bits random.
IpAddress inside(const Cidr& prefix, std::mt19937_64& rng) {
    const bool v4 = prefix.network().is_v4();
    const int bits = v4 ? 32 : 128;
    auto bytes = prefix.network().bytes();
    for (int bit = prefix.prefix_length(); bit < bits; ++bit) {
        if (rng() & 1) bytes[static_cast<std::size_t>(bit / 8)] |= static_cast<std::uint8_t>(0x80 >> (bit % 8));
    }
    return v4 ? IpAddress::v4({bytes[0], bytes[1], bytes[2], bytes[3]}) : IpAddress::v6(bytes);
}

// Anywhere in a family's public space: mostly misses, as most of the Internet is not Azure.
IpAddress anywhere(std::mt19937_64& rng) {
    std::array<std::uint8_t, 16> bytes{};
    for (auto& b : bytes) b = static_cast<std::uint8_t>(rng());
    if (rng() % 10 < 7) return IpAddress::v4({bytes[0], bytes[1], bytes[2], bytes[3]});
    bytes[0] = static_cast<std::uint8_t>(0x20 | (bytes[0] & 0x1f));  // 2000::/3
    return IpAddress::v6(bytes);
}

struct LookupFigures {
    double per_second;
    double hit_fraction;
};

LookupFigures time_lookups(const PrefixSet& set, const std::vector<IpAddress>& probes, int runs) {
    std::vector<double> rates;
    std::size_t hits = 0;
    for (int run = 0; run < runs; ++run) {
        hits = 0;
        std::size_t checksum = 0;
        const auto start = Clock::now();
        for (const auto& probe : probes) {
            if (const auto tag = set.tag_of(probe)) {
                ++hits;
                checksum += tag->size();
            }
        }
        const double seconds = ms_since(start) / 1000.0;
        g_sink = g_sink + checksum;
        rates.push_back(static_cast<double>(probes.size()) / seconds);
    }
    return {median(rates), static_cast<double>(hits) / static_cast<double>(probes.size())};
}

int measure(const std::string& path, std::size_t lookups, int runs) {
    const double rss_start = peak_rss_mib();
    std::vector<double> load_ms;
    ServiceTagsPtr tags;
    for (int run = 0; run < runs; ++run) {
        tags.reset();
        const auto start = Clock::now();
        auto loaded = ServiceTags::load(path);
        load_ms.push_back(ms_since(start));
        if (!loaded.tags) {
            std::fprintf(stderr, "%s\n", loaded.error.c_str());
            return 1;
        }
        tags = std::move(loaded.tags);
    }
    const double rss_loaded = peak_rss_mib();
    const double resident_loaded = resident_mib();

    // Where the load time goes: nlohmann's DOM parse alone, on the text already in memory.
    std::ifstream in(path, std::ios::binary);
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const auto file_bytes = static_cast<double>(text.size());
    std::vector<double> dom_ms;
    for (int run = 0; run < runs; ++run) {
        const auto start = Clock::now();
        const auto document = nlohmann::json::parse(text);
        dom_ms.push_back(ms_since(start));
        g_sink = g_sink + document.size();
    }

    struct Union {
        const char* label;
        std::vector<std::string> names;
    };
    std::vector<Union> unions{{"Storage.* (regional Storage tags)", {}}, {"every tag in the file", {}}};
    for (const auto& tag : tags->tags()) {
        if (tag.name.starts_with("Storage.")) unions[0].names.push_back(tag.name);
        unions[1].names.push_back(tag.name);
    }

    std::printf("\nfile: %.1f MB, %zu tags, %zu prefixes listed; %s, change %llu\n\n", file_bytes / 1e6,
                tags->tags().size(), tags->prefix_count(), std::string(tags->cloud()).c_str(),
                static_cast<unsigned long long>(tags->change_number()));
    std::printf("| what | figure |\n|---|---|\n");
    std::printf("| load (read + parse + validate), median of %d | %.0f ms (min %.0f) |\n", runs, median(load_ms),
                *std::min_element(load_ms.begin(), load_ms.end()));
    std::printf("| of which the JSON DOM parse alone (text in memory) | %.0f ms |\n", median(dom_ms));
    std::printf("| peak RSS before loading / after loading (the DOM at its largest) | %.1f MiB / %.1f MiB |\n",
                rss_start, rss_loaded);
    std::printf("| resident once loaded (DOM freed, malloc_trim) | %.1f MiB |\n", resident_loaded);

    std::mt19937_64 rng(42);
    for (const auto& u : unions) {
        std::vector<double> build_ms;
        PrefixSetPtr set;
        for (int run = 0; run < runs; ++run) {
            const auto start = Clock::now();
            auto resolution = tags->resolve(u.names);
            build_ms.push_back(ms_since(start));
            set = std::move(resolution.set);
        }
        std::vector<Cidr> members;
        for (const auto& name : u.names) {
            const auto* tag = tags->find(name);
            members.insert(members.end(), tag->prefixes.begin(), tag->prefixes.end());
        }
        if (members.empty()) {
            std::printf("| set: %s | no prefixes: skipped |\n", u.label);
            continue;
        }
        std::vector<IpAddress> hit_probes;
        std::vector<IpAddress> random_probes;
        hit_probes.reserve(lookups);
        random_probes.reserve(lookups);
        for (std::size_t i = 0; i < lookups; ++i) {
            hit_probes.push_back(inside(members[rng() % members.size()], rng));
            random_probes.push_back(anywhere(rng));
        }
        const auto hits = time_lookups(*set, hit_probes, runs);
        const auto random = time_lookups(*set, random_probes, runs);
        std::printf("| set: %s (%zu tags) | %zu distinct prefixes, %zu breakpoints, built in %.1f ms |\n", u.label,
                    u.names.size(), set->prefix_count(), set->boundary_count(), median(build_ms));
        std::printf("| lookups, addresses inside the set (%.0f%% hit) | %.1f M/s |\n", hits.hit_fraction * 100,
                    hits.per_second / 1e6);
        std::printf("| lookups, random public addresses (%.2f%% hit) | %.1f M/s |\n", random.hit_fraction * 100,
                    random.per_second / 1e6);
        if (&u == &unions[0]) {
            // For scale: the linear CidrSet the client allowlist uses, on the same prefixes.
            const CidrSet linear(members);
            const std::size_t sample = std::min<std::size_t>(lookups, 2000);
            std::size_t found = 0;
            const auto start = Clock::now();
            for (std::size_t i = 0; i < sample; ++i) found += linear.contains(random_probes[i]) ? 1 : 0;
            const double per_second = static_cast<double>(sample) / (ms_since(start) / 1000.0);
            std::printf("| for scale: linear CidrSet scan of the same %zu prefixes, random addresses | %.3f M/s |\n",
                        members.size(), per_second / 1e6);
            g_sink = g_sink + found;
        }
    }
    std::printf("| peak RSS at the end (file loaded, both sets, probe arrays) | %.1f MiB |\n", peak_rss_mib());
    return 0;
}

int usage() {
    std::fprintf(stderr,
                 "usage: prefix_bench generate FILE [--distinct N] [--seed N]\n"
                 "       prefix_bench measure FILE [--lookups N] [--runs N]\n");
    return 2;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 3) return usage();
    const std::string command = argv[1];
    const std::string path = argv[2];
    std::size_t distinct = 100000;
    std::uint64_t seed = 1;
    std::size_t lookups = 1000000;
    int runs = 5;
    for (int i = 3; i + 1 < argc; i += 2) {
        const std::string flag = argv[i];
        const unsigned long long value = std::strtoull(argv[i + 1], nullptr, 10);
        if (flag == "--distinct") distinct = value;
        else if (flag == "--seed") seed = value;
        else if (flag == "--lookups") lookups = value;
        else if (flag == "--runs") runs = static_cast<int>(std::min<unsigned long long>(value, 1000));
        else return usage();
    }
    // Bounded so that a typo cannot start a generator that never finishes redrawing repeats.
    constexpr std::size_t kMaxDistinct = 10'000'000;
    constexpr std::size_t kMaxLookups = 100'000'000;
    if ((argc - 3) % 2 != 0 || runs < 1 || runs > 100 || lookups < 1 || lookups > kMaxLookups ||
        distinct > kMaxDistinct) {
        return usage();
    }
    if (command == "generate") return generate(path, distinct, seed);
    if (command == "measure") return measure(path, lookups, runs);
    return usage();
}
