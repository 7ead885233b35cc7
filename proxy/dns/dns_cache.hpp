#pragma once
// Answers kept for as long as their TTL says, failures for a short, fixed time. Pure: the caller
// passes the clock. One cache per worker, so no locks.
#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "policy/ip_address.hpp"

namespace egressgate::dns {

using Clock = std::chrono::steady_clock;

// Named limits: a record's TTL is trusted up to kMaxAnswerTtl; a failed lookup is remembered for
// kNegativeTtl so a VM retrying a dead name does not hammer the resolver; the cache holds at most
// kMaxCacheEntries names per worker.
inline constexpr std::chrono::seconds kMaxAnswerTtl{3600};
inline constexpr std::chrono::seconds kNegativeTtl{5};
inline constexpr std::size_t kMaxCacheEntries = 10000;

class DnsCache {
public:
    explicit DnsCache(std::size_t max_entries = kMaxCacheEntries) : max_entries_(max_entries) {}

    // nullopt: not cached (or expired). An empty vector: a cached failure.
    std::optional<std::vector<policy::IpAddress>> find(const std::string& name, Clock::time_point now) const;

    // Stores an answer for min(ttl, kMaxAnswerTtl); a TTL of 0 is not cached. An empty answer
    // is a failure and is kept for kNegativeTtl.
    void store(const std::string& name, std::vector<policy::IpAddress> addresses, std::chrono::seconds ttl,
               Clock::time_point now);

    std::size_t size() const { return entries_.size(); }

private:
    struct Entry {
        std::vector<policy::IpAddress> addresses;
        Clock::time_point expires;
    };
    void make_room(Clock::time_point now);

    std::size_t max_entries_;
    std::unordered_map<std::string, Entry> entries_;
};

}  // namespace egressgate::dns
