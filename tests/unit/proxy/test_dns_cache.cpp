// The DNS cache honours answer TTLs, remembers failures briefly, and stays bounded.
#include <catch.hpp>

#include "proxy/dns/dns_cache.hpp"

using egressgate::dns::Clock;
using egressgate::dns::DnsCache;
using egressgate::policy::IpAddress;
using namespace std::chrono_literals;

namespace {
const Clock::time_point t0{};
std::vector<IpAddress> answer(const char* ip) { return {*IpAddress::parse(ip)}; }
}  // namespace

TEST_CASE("an answer is served until its TTL runs out", "[dns]") {
    DnsCache cache;
    cache.store("a.blob.core.windows.net", answer("20.60.1.1"), 30s, t0);
    CHECK(cache.find("a.blob.core.windows.net", t0 + 29s) == answer("20.60.1.1"));
    CHECK_FALSE(cache.find("a.blob.core.windows.net", t0 + 30s));
    CHECK_FALSE(cache.find("b.blob.core.windows.net", t0));
}

TEST_CASE("a TTL of zero is not cached and long TTLs are capped", "[dns]") {
    DnsCache cache;
    cache.store("zero.example", answer("20.60.1.1"), 0s, t0);
    CHECK_FALSE(cache.find("zero.example", t0));
    cache.store("long.example", answer("20.60.1.2"), 86400s, t0);
    CHECK(cache.find("long.example", t0 + egressgate::dns::kMaxAnswerTtl - 1s));
    CHECK_FALSE(cache.find("long.example", t0 + egressgate::dns::kMaxAnswerTtl));
}

TEST_CASE("a failure is remembered for the negative TTL only", "[dns]") {
    DnsCache cache;
    cache.store("nx.example", {}, 3600s, t0);
    const auto hit = cache.find("nx.example", t0 + egressgate::dns::kNegativeTtl - 1s);
    REQUIRE(hit);
    CHECK(hit->empty());
    CHECK_FALSE(cache.find("nx.example", t0 + egressgate::dns::kNegativeTtl));
}

TEST_CASE("the cache never grows past its bound, expired entries go first", "[dns]") {
    DnsCache cache(3);
    cache.store("old.example", answer("20.60.1.1"), 1s, t0);
    cache.store("b.example", answer("20.60.1.2"), 60s, t0);
    cache.store("c.example", answer("20.60.1.3"), 60s, t0);
    cache.store("d.example", answer("20.60.1.4"), 60s, t0 + 2s);
    CHECK(cache.size() == 3);
    CHECK(cache.find("b.example", t0 + 2s));
    CHECK(cache.find("c.example", t0 + 2s));
    CHECK(cache.find("d.example", t0 + 2s));
    for (int i = 0; i < 100; ++i) cache.store(std::to_string(i).append(".n.example"), answer("20.60.1.5"), 60s, t0 + 2s);
    CHECK(cache.size() == 3);
}
