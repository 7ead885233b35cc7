#include "audit/report.hpp"

#include <algorithm>
#include <deque>
#include <functional>
#include <unordered_map>
#include <unordered_set>

namespace egressgate::audit {
namespace {

char ascii_lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

bool iends_with(std::string_view text, std::string_view lower_suffix) {
    if (text.size() < lower_suffix.size()) return false;
    const std::string_view tail = text.substr(text.size() - lower_suffix.size());
    return std::equal(tail.begin(), tail.end(), lower_suffix.begin(),
                      [](char a, char b) { return ascii_lower(a) == b; });
}

std::string lowercase(std::string_view text) {
    std::string out(text);
    for (char& c : out) c = ascii_lower(c);
    return out;
}

struct TransparentHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

// Interned strings with dense ids. A deque never moves its elements, so the views the index
// holds stay valid.
class StringTable {
public:
    std::uint32_t intern(std::string_view text) {
        if (const auto it = ids_.find(text); it != ids_.end()) return it->second;
        const auto id = static_cast<std::uint32_t>(texts_.size());
        texts_.emplace_back(text);
        ids_.emplace(texts_.back(), id);
        return id;
    }
    const std::string& text(std::uint32_t id) const { return texts_[id]; }
    std::size_t size() const { return texts_.size(); }

private:
    std::deque<std::string> texts_;
    std::unordered_map<std::string_view, std::uint32_t> ids_;
};

// host id and port in one key
using DestinationKey = std::uint64_t;
DestinationKey destination_key(std::uint32_t host, std::uint16_t port) { return (std::uint64_t{host} << 16) | port; }
std::uint32_t host_of(DestinationKey key) { return static_cast<std::uint32_t>(key >> 16); }
std::uint16_t port_of(DestinationKey key) { return static_cast<std::uint16_t>(key & 0xffff); }

// account id and the cloud (as first_endpoint_of_cloud) in one key
using AccountKey = std::uint64_t;

struct DenialKey {
    std::uint32_t vm;
    std::uint32_t reason;
    std::uint32_t host;
    std::uint16_t port;
    Verdict verdict;
    bool operator==(const DenialKey&) const = default;
};

struct DenialKeyHash {
    std::size_t operator()(const DenialKey& k) const {
        const std::uint64_t a = (std::uint64_t{k.vm} << 32) | k.reason;
        const std::uint64_t b = (std::uint64_t{k.host} << 32) | (std::uint64_t{k.port} << 8) | static_cast<std::uint8_t>(k.verdict);
        return std::hash<std::uint64_t>{}(a * 0x9e3779b97f4a7c15ULL ^ b);
    }
};

struct DenialState {
    std::uint64_t count = 0;
    UnixMillis first = 0;
    UnixMillis last = 0;
};

struct AccountState {
    Traffic traffic;
    std::uint32_t endpoints = 0;  // bit i: kStorageEndpoints[i]
};

struct VmState {
    Traffic traffic;
    std::uint64_t denied = 0;
    std::uint64_t reported = 0;
    std::unordered_map<std::uint32_t, std::uint64_t> denials_by_reason;
};

// A VM and a destination it reached: the one map every counted line of traffic touches (per-VM
// destinations, storage accounts and the traffic of new destinations all come from it at the end).
struct PairKey {
    DestinationKey destination;
    std::uint32_t vm;
    bool operator==(const PairKey&) const = default;
};

struct PairKeyHash {
    std::size_t operator()(const PairKey& k) const {
        return std::hash<std::uint64_t>{}((k.destination * 0x9e3779b97f4a7c15ULL) ^ k.vm);
    }
};

// A record reduced to interned ids: what a pending connection keeps of its last progress line.
struct Entry {
    UnixMillis time = 0;
    std::uint32_t vm = 0;
    std::uint32_t host = 0;
    std::uint32_t reason = 0;
    std::uint16_t port = 0;
    Verdict verdict = Verdict::allow;
    std::uint64_t bytes_up = 0;
    std::uint64_t bytes_down = 0;
};

struct FirstSeen {
    UnixMillis time = 0;
    std::uint32_t vm = 0;
};

// What a host says about storage: its account (an id in the account table) and endpoint.
struct HostStorage {
    bool known = false;
    bool is_account = false;
    std::uint32_t account = 0;
    std::uint8_t endpoint = 0;
};

constexpr std::size_t kEndpointCount = std::size(kStorageEndpoints);
static_assert(kEndpointCount <= 32, "AccountState::endpoints is a 32-bit mask");

// An account is named per cloud: keyed by the first endpoint of its cloud in the table.
std::uint8_t first_endpoint_of_cloud(std::string_view cloud) {
    for (std::size_t i = 0; i < kEndpointCount; ++i) {
        if (kStorageEndpoints[i].cloud == cloud) return static_cast<std::uint8_t>(i);
    }
    return 0;
}

}  // namespace

std::optional<StorageAccountName> storage_account_of(std::string_view host) {
    for (const auto& endpoint : kStorageEndpoints) {
        if (host.size() <= endpoint.suffix.size() || !iends_with(host, endpoint.suffix)) continue;
        const std::string_view account = host.substr(0, host.find('.'));
        if (account.empty()) return std::nullopt;
        return StorageAccountName{account, &endpoint};
    }
    return std::nullopt;
}

std::vector<std::string_view> StorageAccountTraffic::endpoint_names() const {
    std::vector<std::string_view> names;
    for (std::size_t i = 0; i < kEndpointCount; ++i) {
        if (endpoints & (1u << i)) names.push_back(kStorageEndpoints[i].suffix.substr(1));
    }
    return names;
}

struct Aggregator::State {
    ReportFilter filter;
    std::size_t top_limit;
    std::unordered_set<std::string, TransparentHash, std::equal_to<>> wanted_vms;
    ReportCounts counts;
    std::optional<UnixMillis> first_record;
    std::optional<UnixMillis> last_record;

    StringTable vm_names;
    StringTable hosts;
    StringTable reasons;
    StringTable accounts;  // lower-cased first labels
    std::vector<VmState> vms;               // by vm id
    std::vector<HostStorage> host_storage;  // by host id, filled at the end
    std::unordered_map<PairKey, Traffic, PairKeyHash> pairs;  // in the period
    std::unordered_map<DestinationKey, FirstSeen> first_seen;  // every time
    std::unordered_map<DenialKey, DenialState, DenialKeyHash> denials;
    std::unordered_map<std::string, Entry, TransparentHash, std::equal_to<>> pending;  // by connection id

    Entry entry_of(const AuditLine& line) {
        Entry e;
        e.time = line.time;
        e.vm = vm_names.intern(line.vm);
        if (e.vm == vms.size()) vms.emplace_back();
        e.host = hosts.intern(line.host);
        e.reason = reasons.intern(line.reason);
        e.port = line.port;
        e.verdict = line.verdict;
        e.bytes_up = line.bytes_up;
        e.bytes_down = line.bytes_down;
        return e;
    }

    const HostStorage& storage_of(std::uint32_t host) {
        if (host >= host_storage.size()) host_storage.resize(hosts.size());
        HostStorage& s = host_storage[host];
        if (!s.known) {
            s.known = true;
            if (const auto name = storage_account_of(hosts.text(host))) {
                s.is_account = true;
                s.account = accounts.intern(lowercase(name->account));
                s.endpoint = static_cast<std::uint8_t>(name->endpoint - kStorageEndpoints);
            }
        }
        return s;
    }

    bool reached(const Entry& e) const { return e.verdict != Verdict::deny && !hosts.text(e.host).empty(); }

    // Every line of a destination that was reached, progress lines included: a long tunnel's
    // destination was first seen when its first line was written, not when it closed.
    void note_seen(const Entry& e) {
        if (!reached(e)) return;
        const auto [it, inserted] = first_seen.try_emplace(destination_key(e.host, e.port), FirstSeen{e.time, e.vm});
        if (!inserted && (e.time < it->second.time ||
                          (e.time == it->second.time && vm_names.text(e.vm) < vm_names.text(it->second.vm)))) {
            it->second = FirstSeen{e.time, e.vm};
        }
    }

    void count(const Entry& e) {
        const DestinationKey destination = destination_key(e.host, e.port);
        if (!filter.in_period(e.time)) {
            ++counts.outside_period;
            return;
        }
        ++counts.records;
        if (!first_record || e.time < *first_record) first_record = e.time;
        if (!last_record || e.time > *last_record) last_record = e.time;
        VmState& vm = vms[e.vm];
        vm.traffic.add(e.bytes_up, e.bytes_down);
        if (e.verdict == Verdict::deny) {
            ++vm.denied;
            ++vm.denials_by_reason[e.reason];
        }
        if (e.verdict == Verdict::report) ++vm.reported;
        if (e.verdict != Verdict::allow) {
            DenialState& d = denials[DenialKey{e.vm, e.reason, e.host, e.port, e.verdict}];
            if (d.count == 0 || e.time < d.first) d.first = e.time;
            if (d.count == 0 || e.time > d.last) d.last = e.time;
            ++d.count;
        }
        if (reached(e)) pairs[PairKey{destination, e.vm}].add(e.bytes_up, e.bytes_down);
    }

    // The destinations a VM reached, with their traffic: from `pairs`, at the end.
    struct VmDestinations {
        std::vector<std::pair<DestinationKey, Traffic>> reached;
    };

    VmReport vm_report(std::uint32_t id, const VmDestinations& destinations) {
        const VmState& state = vms[id];
        VmReport out;
        out.vm = vm_names.text(id);
        out.traffic = state.traffic;
        out.denied = state.denied;
        out.reported = state.reported;
        for (const auto& [reason, count] : state.denials_by_reason) out.denials_by_reason.push_back({reasons.text(reason), count});
        std::sort(out.denials_by_reason.begin(), out.denials_by_reason.end(), [](const auto& a, const auto& b) {
            return a.count != b.count ? a.count > b.count : a.reason < b.reason;
        });
        out.destinations = destinations.reached.size();
        std::vector<std::pair<DestinationKey, Traffic>> all = destinations.reached;
        const auto by_volume = [this](const auto& a, const auto& b) {
            if (a.second.bytes() != b.second.bytes()) return a.second.bytes() > b.second.bytes();
            if (a.second.connections != b.second.connections) return a.second.connections > b.second.connections;
            const std::string& host_a = hosts.text(host_of(a.first));
            const std::string& host_b = hosts.text(host_of(b.first));
            return host_a != host_b ? host_a < host_b : port_of(a.first) < port_of(b.first);
        };
        const std::size_t shown = top_limit == 0 ? all.size() : std::min(top_limit, all.size());
        std::partial_sort(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(shown), all.end(), by_volume);
        for (std::size_t i = 0; i < shown; ++i) {
            out.top_destinations.push_back({hosts.text(host_of(all[i].first)), port_of(all[i].first), all[i].second});
        }
        std::unordered_map<AccountKey, AccountState> reached_accounts;
        for (const auto& [destination, traffic] : destinations.reached) {
            const HostStorage& storage = storage_of(host_of(destination));
            if (!storage.is_account) continue;
            const auto cloud = first_endpoint_of_cloud(kStorageEndpoints[storage.endpoint].cloud);
            AccountState& account = reached_accounts[(AccountKey{storage.account} << 8) | cloud];
            account.traffic.add(traffic);
            account.endpoints |= 1u << storage.endpoint;
        }
        for (const auto& [key, account] : reached_accounts) {
            StorageAccountTraffic a;
            a.account = accounts.text(static_cast<std::uint32_t>(key >> 8));
            a.cloud = kStorageEndpoints[key & 0xff].cloud;
            a.endpoints = account.endpoints;
            a.traffic = account.traffic;
            out.storage_accounts.push_back(std::move(a));
        }
        std::sort(out.storage_accounts.begin(), out.storage_accounts.end(), [](const auto& a, const auto& b) {
            if (a.traffic.bytes() != b.traffic.bytes()) return a.traffic.bytes() > b.traffic.bytes();
            return a.account != b.account ? a.account < b.account : a.cloud < b.cloud;
        });
        return out;
    }
};

Aggregator::Aggregator(ReportFilter filter, std::size_t top_limit) : state_(std::make_unique<State>()) {
    state_->filter = std::move(filter);
    state_->top_limit = top_limit;
    state_->wanted_vms.insert(state_->filter.vms.begin(), state_->filter.vms.end());
}

Aggregator::~Aggregator() = default;

std::size_t Aggregator::pending_connections() const { return state_->pending.size(); }

void Aggregator::count_bad_line() {
    ++state_->counts.lines;
    ++state_->counts.bad_lines;
}

void Aggregator::add(const AuditLine& line) {
    State& s = *state_;
    ++s.counts.lines;
    if (!s.wanted_vms.empty() && !s.wanted_vms.contains(line.vm)) {
        ++s.counts.other_vms;
        return;
    }
    if (line.kind == RecordKind::progress) {
        // Bytes are cumulative: only the latest progress line of a connection matters.
        ++s.counts.progress_lines;
        const Entry e = s.entry_of(line);
        s.note_seen(e);
        if (const auto it = s.pending.find(line.connection_id); it != s.pending.end()) {
            if (e.time >= it->second.time) it->second = e;
        } else {
            s.pending.emplace(std::string(line.connection_id), e);
        }
        return;
    }
    if (!s.pending.empty()) {
        if (const auto it = s.pending.find(line.connection_id); it != s.pending.end()) s.pending.erase(it);
    }
    const Entry e = s.entry_of(line);
    s.note_seen(e);
    s.count(e);
}

Report Aggregator::finish(std::vector<std::string> files) {
    State& s = *state_;
    for (const auto& [id, entry] : s.pending) {
        ++s.counts.unfinished;
        s.count(entry);
    }
    s.pending.clear();

    Report report;
    report.filter = s.filter;
    report.top_limit = s.top_limit;
    report.files = std::move(files);
    report.counts = s.counts;
    report.first_record = s.first_record;
    report.last_record = s.last_record;

    std::vector<State::VmDestinations> by_vm(s.vms.size());
    std::unordered_map<DestinationKey, Traffic> destinations;  // every VM's
    for (const auto& [key, traffic] : s.pairs) {
        by_vm[key.vm].reached.emplace_back(key.destination, traffic);
        destinations[key.destination].add(traffic);
    }
    decltype(s.pairs)().swap(s.pairs);  // its memory goes to the report
    std::vector<std::uint32_t> vm_ids;
    for (std::uint32_t id = 0; id < s.vms.size(); ++id) {
        if (s.vms[id].traffic.connections > 0) vm_ids.push_back(id);
    }
    std::sort(vm_ids.begin(), vm_ids.end(),
              [&s](std::uint32_t a, std::uint32_t b) { return s.vm_names.text(a) < s.vm_names.text(b); });
    for (const std::uint32_t id : vm_ids) {
        report.vms.push_back(s.vm_report(id, by_vm[id]));
        by_vm[id] = {};
    }

    for (const auto& [key, seen] : s.first_seen) {
        if (!s.filter.in_period(seen.time)) continue;
        NewDestination d;
        d.host = s.hosts.text(host_of(key));
        d.port = port_of(key);
        d.first_seen = seen.time;
        d.first_vm = s.vm_names.text(seen.vm);
        if (const auto it = destinations.find(key); it != destinations.end()) d.traffic = it->second;
        report.new_destinations.push_back(std::move(d));
    }
    std::sort(report.new_destinations.begin(), report.new_destinations.end(), [](const auto& a, const auto& b) {
        if (a.first_seen != b.first_seen) return a.first_seen < b.first_seen;
        return a.host != b.host ? a.host < b.host : a.port < b.port;
    });

    for (const auto& [key, state] : s.denials) {
        report.denials.push_back(Denial{s.vm_names.text(key.vm), key.verdict, s.reasons.text(key.reason),
                                        s.hosts.text(key.host), key.port, state.count, state.first, state.last});
    }
    std::sort(report.denials.begin(), report.denials.end(), [](const Denial& a, const Denial& b) {
        if (a.vm != b.vm) return a.vm < b.vm;
        if (a.count != b.count) return a.count > b.count;
        if (a.verdict != b.verdict) return a.verdict < b.verdict;
        if (a.reason != b.reason) return a.reason < b.reason;
        return a.host != b.host ? a.host < b.host : a.port < b.port;
    });
    return report;
}

}  // namespace egressgate::audit
