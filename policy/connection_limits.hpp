#pragma once
// Admission of client connections: how many one client IP may hold open, how fast it may open
// new ones, and how many the proxy holds in all. Pure: the caller passes the clock and does the
// locking; no sockets.
//
// A refused connection is still answered (429 or 503 with its reason) once its request head is
// in, so refusals take room too: they are counted until released, and when too many refusals
// are already in flight the next connection is closed at accept without an answer.
#include <chrono>
#include <cstdint>
#include <unordered_map>
#include <vector>

#include "policy/ip_address.hpp"

namespace egressgate::policy {

// Refusals being answered at once, per client IP and in all; past them a connection is closed
// at accept (an answer each would cost more than the flood is worth).
inline constexpr std::uint32_t kMaxRefusalsInFlightPerIp = 16;
inline constexpr std::uint32_t kMaxRefusalsInFlight = 256;
// The rate limit's bucket holds this many seconds' worth of new connections: an agent's burst
// of reconnects after a network blip passes, a sustained flood does not.
inline constexpr std::chrono::seconds kConnectionBurst{1};
// Entries of clients just forgotten that the ledger keeps for the next new ones: a VM whose
// connections come and go one at a time then costs no allocation per connection.
inline constexpr std::size_t kMaxSpareClientEntries = 64;

struct ConnectionLimitSettings {
    std::uint32_t max_per_ip = 512;
    std::uint32_t new_per_second_per_ip = 200;
    std::uint32_t max_total = 0;  // 0: no global limit
};

enum class Admission {
    admit,
    over_client_connections,  // 429 client_connection_limit
    over_client_rate,         // 429 client_rate_limit
    over_proxy_connections,   // 503 proxy_connection_limit
};

struct AdmissionDecision {
    Admission admission = Admission::admit;
    // false: too many refusals are in flight already; the connection is closed at accept,
    // unanswered, and takes no place.
    bool answered = true;
};

class ConnectionLedger {
public:
    using Clock = std::chrono::steady_clock;
    explicit ConnectionLedger(ConnectionLimitSettings settings) : settings_(settings) {
        spare_.reserve(kMaxSpareClientEntries);  // forget() then never allocates
    }

    // Every answered outcome takes a place that release() gives back.
    AdmissionDecision admit(const IpAddress& client, Clock::time_point now);
    // `refused`: the connection was admitted as a refusal (anything but admit).
    void release(const IpAddress& client, bool refused, Clock::time_point now);

    void update(ConnectionLimitSettings settings) { settings_ = settings; }
    std::uint32_t open_total() const { return open_total_; }
    std::size_t tracked_clients() const { return clients_.size(); }
    std::size_t spare_entries() const { return spare_.size(); }

private:
    struct Client {
        std::uint32_t open = 0;      // admitted and not released
        std::uint32_t refusing = 0;  // refusals being answered
        double tokens = 0;           // new connections it may still open now
        Clock::time_point refilled;
    };
    using Clients = std::unordered_map<IpAddress, Client, IpAddressHash>;
    void refill(Client& client, Clock::time_point now) const;
    double capacity() const;
    Clients::iterator track(const IpAddress& address, Clock::time_point now);
    void forget(Clients::iterator it) noexcept;

    ConnectionLimitSettings settings_;
    Clients clients_;
    std::vector<Clients::node_type> spare_;  // kMaxSpareClientEntries at most
    std::uint32_t open_total_ = 0;
    std::uint32_t refusing_total_ = 0;
};

}  // namespace egressgate::policy
