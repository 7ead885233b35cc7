#pragma once
// What the sessions of one worker share: its resolver, pipe pool, audit writer, counters and the
// registry the deadline sweep walks. A worker is one thread with one io_context, so everything
// here but the counters (read by the admin thread) and the open count (read at shutdown) is
// touched by that thread only.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <unordered_set>

#include "audit/audit_record.hpp"
#include "audit/traffic_counters.hpp"

namespace egressgate::proxy {

class AuditWriter;
class ConnectionLimiter;
class DnsResolver;
class PipePool;
class ClientSession;

// The sessions of one worker, so that the deadline sweep and shutdown can reach the open ones.
using SessionRegistry = std::unordered_set<ClientSession*>;

struct WorkerContext {
    unsigned index;
    AuditWriter& audit;
    DnsResolver& resolver;
    PipePool& pipes;
    ConnectionLimiter& limits;                  // shared by all workers (it locks)
    SessionRegistry sessions;                   // touched only on the worker's thread
    std::atomic<std::size_t> open_sessions{0};  // read by the stopping thread
    std::mutex counters_mutex;                  // the admin thread reads the counters
    audit::TrafficCounters counters;

    // An audit line, and its counters: the final line of a connection or request, or a progress
    // line of a long one (`counted`: its bytes that earlier progress lines already counted).
    void conclude(const audit::Record& record, audit::CountedBytes counted = {});
};

inline std::int64_t elapsed_ms(std::chrono::steady_clock::time_point since) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - since).count();
}

}  // namespace egressgate::proxy
