#pragma once
// The label a client's traffic counts under in /metrics. A VM of the inventory is named by its
// name; another allowed client by its address while fewer than [admin] max_client_series
// addresses have one, and by "other" after that: a /16 of short-lived clients cannot grow
// /metrics without bound. Shared by the workers: one lock per accept.
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_set>

#include "policy/ip_address.hpp"

namespace egressgate::proxy {

inline constexpr std::string_view kOtherClientsSeries = "other";

class ClientSeries {
public:
    std::string label(const policy::IpAddress& address, const std::string& vm, bool named, std::uint32_t max_series) {
        if (named) return vm;
        std::lock_guard lock(mutex_);
        if (addresses_.contains(address)) return vm;
        if (addresses_.size() >= max_series) return std::string(kOtherClientsSeries);
        addresses_.insert(address);
        return vm;
    }

private:
    std::mutex mutex_;
    std::unordered_set<policy::IpAddress, policy::IpAddressHash> addresses_;
};

}  // namespace egressgate::proxy
