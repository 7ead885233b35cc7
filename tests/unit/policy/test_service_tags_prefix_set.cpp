// The prefix set behind service tags: longest match across nested prefixes, the /0 and host-prefix
// edges, duplicates across tags, and a randomized comparison with a plain scan of the same prefixes.
#include <catch.hpp>

#include <random>
#include <string>
#include <vector>

#include "policy/prefix_set.hpp"

using namespace egressgate::policy;

namespace {

Cidr cidr(const char* text) {
    const auto c = Cidr::parse(text);
    REQUIRE(c.has_value());
    return *c;
}

IpAddress ip(const char* text) {
    const auto a = IpAddress::parse(text);
    REQUIRE(a.has_value());
    return *a;
}

struct Entry {
    const char* tag;
    const char* prefix;
};

PrefixSetPtr build(const std::vector<Entry>& entries) {
    PrefixSet::Builder builder;
    for (const auto& e : entries) builder.add(e.tag, cidr(e.prefix));
    return std::move(builder).build();
}

struct LookupCase {
    const char* name;
    const char* address;
    const char* tag;  // nullptr: no match
    const char* prefix;
};

void check_lookups(const PrefixSet& set, const std::vector<LookupCase>& cases) {
    for (const auto& c : cases) {
        DYNAMIC_SECTION(c.name << " " << c.address) {
            const auto found = set.find(ip(c.address));
            if (c.tag == nullptr) {
                CHECK_FALSE(found.has_value());
                CHECK_FALSE(set.contains(ip(c.address)));
            } else {
                REQUIRE(found.has_value());
                CHECK(std::string(found->tag) == c.tag);
                CHECK(found->prefix.to_string() == c.prefix);
                CHECK(set.contains(ip(c.address)));
            }
        }
    }
}

}  // namespace

TEST_CASE("PrefixSet: the empty set contains nothing", "[service_tags]") {
    const PrefixSet empty;
    CHECK(empty.empty());
    CHECK_FALSE(empty.contains(ip("0.0.0.0")));
    CHECK_FALSE(empty.contains(ip("::")));
    const auto built = PrefixSet::Builder{}.build();
    CHECK(built->empty());
    CHECK(built->boundary_count() == 0);
    CHECK_FALSE(built->contains(ip("255.255.255.255")));
}

TEST_CASE("PrefixSet: /0 in each family covers that family only", "[service_tags]") {
    const auto v4_all = build({{"any4", "0.0.0.0/0"}});
    check_lookups(*v4_all, {
        {"v4 lowest", "0.0.0.0", "any4", "0.0.0.0/0"},
        {"v4 highest", "255.255.255.255", "any4", "0.0.0.0/0"},
        {"v4-mapped", "::ffff:1.2.3.4", "any4", "0.0.0.0/0"},
        {"v6 lowest", "::", nullptr, nullptr},
        {"v6 highest", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", nullptr, nullptr},
    });
    const auto v6_all = build({{"any6", "::/0"}});
    check_lookups(*v6_all, {
        {"v6 lowest", "::", "any6", "::/0"},
        {"v6 highest", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "any6", "::/0"},
        {"v4 lowest", "0.0.0.0", nullptr, nullptr},
        {"v4 highest", "255.255.255.255", nullptr, nullptr},
        // A mapped address is looked up as IPv4, so ::/0 does not cover it: v4 needs a v4 prefix.
        {"v4-mapped", "::ffff:1.2.3.4", nullptr, nullptr},
    });
}

TEST_CASE("PrefixSet: host prefixes at the very ends of the address space", "[service_tags]") {
    const auto set = build({
        {"low4", "0.0.0.0/32"},
        {"high4", "255.255.255.255/32"},
        {"low6", "::/128"},
        {"high6", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128"},
    });
    CHECK(set->prefix_count() == 4);
    check_lookups(*set, {
        {"v4 lowest", "0.0.0.0", "low4", "0.0.0.0/32"},
        {"v4 second", "0.0.0.1", nullptr, nullptr},
        {"v4 before highest", "255.255.255.254", nullptr, nullptr},
        {"v4 highest", "255.255.255.255", "high4", "255.255.255.255/32"},
        {"v6 lowest", "::", "low6", "::/128"},
        {"v6 second", "::1", nullptr, nullptr},
        {"v6 before highest", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", nullptr, nullptr},
        {"v6 highest", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "high6", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128"},
    });
}

TEST_CASE("PrefixSet: nested prefixes give the longest match, the parent on both sides", "[service_tags]") {
    // Added out of order and with the outer prefix last: the builder sorts.
    const auto set = build({
        {"host", "20.60.26.7/32"},
        {"region", "20.60.26.0/23"},
        {"edge-inner", "20.60.0.0/24"},
        {"cloud", "20.32.0.0/11"},
        {"any", "0.0.0.0/0"},
        {"last", "20.63.255.255/32"},
        {"v6-inner", "2603:1020:205::/48"},
        {"v6-outer", "2603:1000::/24"},
        {"v6-host", "2603:1020:205::1/128"},
    });
    check_lookups(*set, {
        {"host", "20.60.26.7", "host", "20.60.26.7/32"},
        {"before host", "20.60.26.6", "region", "20.60.26.0/23"},
        {"after host", "20.60.26.8", "region", "20.60.26.0/23"},
        {"region end", "20.60.27.255", "region", "20.60.26.0/23"},
        {"cloud resumes", "20.60.28.0", "cloud", "20.32.0.0/11"},
        {"cloud before region", "20.60.25.255", "cloud", "20.32.0.0/11"},
        {"inner at cloud's edge", "20.60.0.0", "edge-inner", "20.60.0.0/24"},
        {"cloud start", "20.32.0.0", "cloud", "20.32.0.0/11"},
        {"cloud's last is its own host prefix", "20.63.255.255", "last", "20.63.255.255/32"},
        {"any after cloud", "20.64.0.0", "any", "0.0.0.0/0"},
        {"any before cloud", "20.31.255.255", "any", "0.0.0.0/0"},
        {"any at the top", "255.255.255.255", "any", "0.0.0.0/0"},
        {"v6 host", "2603:1020:205::1", "v6-host", "2603:1020:205::1/128"},
        {"v6 inner", "2603:1020:205::2", "v6-inner", "2603:1020:205::/48"},
        {"v6 inner start", "2603:1020:205::", "v6-inner", "2603:1020:205::/48"},
        {"v6 outer after inner", "2603:1020:206::", "v6-outer", "2603:1000::/24"},
        {"v6 outside", "2603:1100::", nullptr, nullptr},
    });
}

TEST_CASE("PrefixSet: the same prefix under several tags matches as the first added", "[service_tags]") {
    const auto set = build({
        {"Storage.WestEurope", "20.60.26.0/23"},
        {"Storage", "20.60.26.0/23"},
        {"Storage", "20.60.40.0/23"},
        {"AzureCloud", "20.60.40.0/23"},
        {"AzureCloud", "20.60.26.0/23"},
    });
    CHECK(set->prefix_count() == 2);
    CHECK(set->tag_of(ip("20.60.26.1")) == std::optional<std::string_view>("Storage.WestEurope"));
    CHECK(set->tag_of(ip("20.60.41.255")) == std::optional<std::string_view>("Storage"));
}

TEST_CASE("PrefixSet: adjacent prefixes leave no gap and each keeps its own prefix", "[service_tags]") {
    const auto set = build({
        {"a", "10.0.0.0/25"}, {"a", "10.0.0.128/25"}, {"a", "10.0.1.0/24"}, {"b", "10.0.2.0/24"},
    });
    // One breakpoint where each prefix starts and one after the last: adjacent prefixes are not
    // merged, so that a match can name the prefix the file listed.
    CHECK(set->boundary_count() == 5);
    check_lookups(*set, {
        {"first half", "10.0.0.127", "a", "10.0.0.0/25"},
        {"second half", "10.0.0.128", "a", "10.0.0.128/25"},
        {"next /24", "10.0.1.0", "a", "10.0.1.0/24"},
        {"other tag", "10.0.2.255", "b", "10.0.2.0/24"},
        {"after", "10.0.3.0", nullptr, nullptr},
    });
}

// Random prefixes, many nested and duplicated, against the obvious answer: scan all prefixes for
// the longest that contains the address, the first added among equals. Fixed seeds: reproducible.
TEST_CASE("PrefixSet: agrees with a linear longest-match scan on random prefixes", "[service_tags]") {
    for (const unsigned seed : {1u, 2u, 3u, 4u}) {
        DYNAMIC_SECTION("seed " << seed) {
            std::mt19937_64 rng(seed);
            // A narrow space (first byte 20, second 0..3) so prefixes nest and addresses hit.
            const auto random_address = [&](bool v4) {
                std::array<std::uint8_t, 16> b{};
                for (auto& byte : b) byte = static_cast<std::uint8_t>(rng());
                b[0] = 20;
                b[1] = static_cast<std::uint8_t>(b[1] & 3);
                if (v4) return IpAddress::v4({b[0], b[1], b[2], b[3]});
                return IpAddress::v6(b);
            };
            const auto random_prefix = [&](bool v4) {
                const int bits = v4 ? 32 : 128;
                const int length = 8 + static_cast<int>(rng() % static_cast<unsigned>(bits - 7));
                IpAddress a = random_address(v4);
                auto bytes = a.bytes();
                for (int bit = length; bit < bits; ++bit) bytes[bit / 8] &= static_cast<std::uint8_t>(~(0x80 >> (bit % 8)));
                a = v4 ? IpAddress::v4({bytes[0], bytes[1], bytes[2], bytes[3]}) : IpAddress::v6(bytes);
                return Cidr(a, length);
            };
            struct Added {
                std::string tag;
                Cidr prefix;
            };
            std::vector<Added> added;
            PrefixSet::Builder builder;
            for (int i = 0; i < 600; ++i) {
                const bool v4 = rng() % 3 != 0;
                const std::string tag = "tag" + std::to_string(rng() % 40);
                const Cidr prefix = (i > 0 && rng() % 8 == 0) ? added[rng() % added.size()].prefix : random_prefix(v4);
                added.push_back({tag, prefix});
                builder.add(tag, prefix);
            }
            const auto set = std::move(builder).build();
            int hits = 0;
            for (int i = 0; i < 20000; ++i) {
                // Half the probes are addresses inside a random added prefix, half anywhere nearby.
                IpAddress probe = random_address(rng() % 2 == 0);
                if (i % 2 == 0) {
                    const Cidr& p = added[rng() % added.size()].prefix;
                    auto bytes = probe.bytes();
                    const auto& net = p.network().bytes();
                    for (int bit = 0; bit < p.prefix_length(); ++bit) {
                        const auto mask = static_cast<std::uint8_t>(0x80 >> (bit % 8));
                        bytes[bit / 8] = static_cast<std::uint8_t>((bytes[bit / 8] & ~mask) | (net[bit / 8] & mask));
                    }
                    probe = p.network().is_v4() ? IpAddress::v4({bytes[0], bytes[1], bytes[2], bytes[3]})
                                                : IpAddress::v6(bytes);
                }
                const Added* best = nullptr;
                for (const auto& a : added) {
                    if (a.prefix.contains(probe) && (best == nullptr || a.prefix.prefix_length() > best->prefix.prefix_length())) {
                        best = &a;
                    }
                }
                const auto found = set->find(probe);
                INFO("probe " << probe.to_string());
                REQUIRE(found.has_value() == (best != nullptr));
                if (best != nullptr) {
                    ++hits;
                    REQUIRE(found->prefix.to_string() == best->prefix.to_string());
                    REQUIRE(std::string(found->tag) == best->tag);
                }
            }
            CHECK(hits > 10000);  // the comparison exercised matches, not just misses
        }
    }
}
