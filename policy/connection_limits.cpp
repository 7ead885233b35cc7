#include "policy/connection_limits.hpp"

#include <algorithm>
#include <optional>

namespace egressgate::policy {

double ConnectionLedger::capacity() const {
    return static_cast<double>(settings_.new_per_second_per_ip) * static_cast<double>(kConnectionBurst.count());
}

// A token bucket: new_per_second_per_ip tokens a second, up to a burst's worth.
void ConnectionLedger::refill(Client& client, Clock::time_point now) const {
    const std::chrono::duration<double> elapsed = now - client.refilled;
    if (elapsed.count() <= 0) return;
    client.tokens = std::min(capacity(), client.tokens + elapsed.count() * settings_.new_per_second_per_ip);
    client.refilled = now;
}

// A client not seen lately starts with a full bucket, in a spare entry when there is one.
ConnectionLedger::Clients::iterator ConnectionLedger::track(const IpAddress& address, Clock::time_point now) {
    const Client fresh{0, 0, capacity(), now};
    if (spare_.empty()) return clients_.try_emplace(address, fresh).first;
    Clients::node_type entry = std::move(spare_.back());
    spare_.pop_back();
    entry.key() = address;
    entry.mapped() = fresh;
    return clients_.insert(std::move(entry)).position;
}

// A client with nothing open and a full bucket is the same as one never seen: forget it, so
// the ledger holds only clients that are active or were just now.
void ConnectionLedger::forget(Clients::iterator it) noexcept {
    if (spare_.size() < kMaxSpareClientEntries) spare_.push_back(clients_.extract(it));  // within the reserved room
    else clients_.erase(it);
}

AdmissionDecision ConnectionLedger::admit(const IpAddress& address, Clock::time_point now) {
    auto it = clients_.find(address);
    if (it == clients_.end()) it = track(address, now);
    else refill(it->second, now);
    Client& client = it->second;
    std::optional<Admission> refusal;
    if (settings_.max_total != 0 && open_total_ >= settings_.max_total) refusal = Admission::over_proxy_connections;
    else if (client.open >= settings_.max_per_ip) refusal = Admission::over_client_connections;
    else if (client.tokens < 1) refusal = Admission::over_client_rate;
    if (!refusal) {
        client.tokens -= 1;
        ++client.open;
        ++open_total_;
        return {Admission::admit, true};
    }
    if (client.refusing >= kMaxRefusalsInFlightPerIp || refusing_total_ >= kMaxRefusalsInFlight) {
        if (client.open == 0 && client.refusing == 0 && client.tokens >= capacity()) forget(it);
        return {*refusal, false};
    }
    ++client.refusing;
    ++refusing_total_;
    return {*refusal, true};
}

void ConnectionLedger::release(const IpAddress& address, bool refused, Clock::time_point now) {
    const auto it = clients_.find(address);
    if (it == clients_.end()) return;
    Client& client = it->second;
    if (refused) {
        client.refusing -= std::min(client.refusing, 1u);
        refusing_total_ -= std::min(refusing_total_, 1u);
    } else {
        client.open -= std::min(client.open, 1u);
        open_total_ -= std::min(open_total_, 1u);
    }
    refill(client, now);
    if (client.open == 0 && client.refusing == 0 && client.tokens >= capacity()) forget(it);
}

}  // namespace egressgate::policy
