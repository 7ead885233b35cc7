#pragma once
// The connection ledger shared by every worker: one lock per accept and per close.
#include <mutex>

#include "policy/connection_limits.hpp"

namespace egressgate::proxy {

// Descriptors kept back from the derived [proxy] max_connections (listeners, the resolver's
// sockets, the audit file, the admin endpoint), and descriptors one connection may hold: its
// client and upstream sockets and a splice pipe's two ends while bytes are in flight.
inline constexpr std::uint64_t kReservedDescriptors = 32;
inline constexpr std::uint64_t kDescriptorsPerConnection = 4;

// [proxy] max_connections = 0: as many as the descriptor limit (RLIMIT_NOFILE) leaves room for.
std::uint32_t derived_max_connections();

class ConnectionLimiter {
public:
    explicit ConnectionLimiter(policy::ConnectionLimitSettings settings) : ledger_(settings) {}

    policy::AdmissionDecision admit(const policy::IpAddress& client) {
        std::lock_guard lock(mutex_);
        return ledger_.admit(client, policy::ConnectionLedger::Clock::now());
    }
    void release(const policy::IpAddress& client, bool refused) {
        std::lock_guard lock(mutex_);
        ledger_.release(client, refused, policy::ConnectionLedger::Clock::now());
    }
    // A reload may change the limits; connections already counted stay counted.
    void update(policy::ConnectionLimitSettings settings) {
        std::lock_guard lock(mutex_);
        ledger_.update(settings);
    }

private:
    std::mutex mutex_;
    policy::ConnectionLedger ledger_;
};

}  // namespace egressgate::proxy
