#include "proxy/dns/dns_cache.hpp"

#include <algorithm>

namespace egressgate::dns {

std::optional<std::vector<policy::IpAddress>> DnsCache::find(const std::string& name, Clock::time_point now) const {
    const auto it = entries_.find(name);
    if (it == entries_.end() || it->second.expires <= now) return std::nullopt;
    return it->second.addresses;
}

void DnsCache::store(const std::string& name, std::vector<policy::IpAddress> addresses, std::chrono::seconds ttl,
                     Clock::time_point now) {
    const auto lifetime = addresses.empty() ? kNegativeTtl : std::min(ttl, kMaxAnswerTtl);
    if (lifetime <= std::chrono::seconds::zero() || max_entries_ == 0) return;
    if (!entries_.contains(name)) make_room(now);
    entries_[name] = Entry{std::move(addresses), now + lifetime};
}

// Drops expired entries first; if the cache is still full, drops an arbitrary one. A miss only
// costs a lookup, so the simplest bound is enough.
void DnsCache::make_room(Clock::time_point now) {
    if (entries_.size() < max_entries_) return;
    std::erase_if(entries_, [now](const auto& entry) { return entry.second.expires <= now; });
    if (entries_.size() >= max_entries_) entries_.erase(entries_.begin());
}

}  // namespace egressgate::dns
