#pragma once
// What the sessions of one worker share: its resolver, pipe pool, audit writer, counters and the
// registry the deadline sweep walks. A worker is one thread with one io_context, so everything
// here but the counters (read by the admin thread) and the open count (read at shutdown) is
// touched by that thread only.
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <boost/intrusive/list.hpp>

#include "audit/audit_record.hpp"
#include "audit/status_page.hpp"
#include "audit/traffic_counters.hpp"
#include "http/message.hpp"

namespace egressgate::proxy {

class AuditWriter;
class ConnectionLimiter;
class DnsResolver;
class PipePool;
class ClientSession;

// The sessions of one worker, so that the deadline sweep and shutdown can reach the open ones:
// linked through the sessions themselves, so that joining and leaving allocate nothing. A
// session is in it from start() to finish(), and its hook takes it out should it be destroyed
// before it finished.
using SessionRegistryHook =
    boost::intrusive::list_base_hook<boost::intrusive::link_mode<boost::intrusive::auto_unlink>>;
using SessionRegistry = boost::intrusive::list<ClientSession, boost::intrusive::base_hook<SessionRegistryHook>,
                                               boost::intrusive::constant_time_size<false>>;

// How often the sweep counts the bytes open connections moved into /metrics and refreshes what
// /status shows of them.
inline constexpr std::chrono::seconds kLiveInterval{1};

// What the sweep learns from the open sessions, gathered without the counters' lock and applied
// under it once: the bytes each moved since the last look, and who is transferring what.
class LiveCollector {
public:
    void moved(const std::string& series, std::uint64_t up, std::uint64_t down) {
        moved_.push_back({series, up, down});
    }
    void open(const std::string& series, const std::string& host, std::uint16_t port, std::uint64_t up,
              std::uint64_t down, std::int64_t age_ms);
    // Under the worker's counters lock.
    void apply(audit::TrafficCounters& counters, std::map<std::string, audit::OpenByVm>& open_by_vm,
               std::vector<audit::OpenTransfer>& largest_open);

private:
    struct Moved {
        std::string series;
        std::uint64_t up;
        std::uint64_t down;
    };
    std::vector<Moved> moved_;
    std::map<std::string, audit::OpenByVm> open_by_vm_;
    std::vector<audit::OpenTransfer> largest_;  // a min-heap by bytes, at most kStatusLargestTransfers
};

// Bytes a session reads from its client at a time while the request head is incomplete, and
// while it dials.
inline constexpr std::size_t kHeadReadChunk = 4096;
// Head buffers a worker keeps for the next sessions (kHeadReadChunk each).
inline constexpr std::size_t kMaxPooledHeadBuffers = 64;

// Request-head buffers, reused from session to session: every connection needs one until its
// head is in, and a 4 KiB block is past the size malloc keeps per thread.
class HeadBufferPool {
public:
    HeadBufferPool() { free_.reserve(kMaxPooledHeadBuffers); }  // give() then never allocates
    std::unique_ptr<char[]> take() {
        if (free_.empty()) return std::make_unique_for_overwrite<char[]>(kHeadReadChunk);
        auto buffer = std::move(free_.back());
        free_.pop_back();
        return buffer;
    }
    // Runs in a session's destructor: within the reserved room it cannot throw.
    void give(std::unique_ptr<char[]> buffer) noexcept {
        if (buffer && free_.size() < kMaxPooledHeadBuffers) free_.push_back(std::move(buffer));
    }

private:
    std::vector<std::unique_ptr<char[]>> free_;
};

// Request parsers a worker keeps for the next sessions: llhttp's state and a small head's
// buffers, reset on the way back. Bounded, as the head buffers are.
inline constexpr std::size_t kMaxPooledRequestParsers = 64;

class RequestParserPool {
public:
    RequestParserPool() { free_.reserve(kMaxPooledRequestParsers); }  // give() then never allocates
    std::unique_ptr<http::MessageParser> take() {
        if (free_.empty()) return std::make_unique<http::MessageParser>();
        auto parser = std::move(free_.back());
        free_.pop_back();
        return parser;
    }
    // As HeadBufferPool::give: never allocates, so a session's destructor may call it.
    void give(std::unique_ptr<http::MessageParser> parser) noexcept {
        if (!parser || free_.size() == kMaxPooledRequestParsers) return;
        parser->reset();
        free_.push_back(std::move(parser));
    }

private:
    std::vector<std::unique_ptr<http::MessageParser>> free_;
};

struct WorkerContext {
    unsigned index;
    AuditWriter& audit;
    DnsResolver& resolver;
    PipePool& pipes;
    ConnectionLimiter& limits;                  // shared by all workers (it locks)
    SessionRegistry sessions;                   // touched only on the worker's thread
    std::uint32_t source_turn = 0;              // the next [proxy] source_addresses entry; worker thread only
    std::atomic<std::size_t> open_sessions{0};  // read by the stopping thread
    std::mutex counters_mutex;                  // the admin thread reads what it guards:
    audit::TrafficCounters counters;
    std::map<std::string, audit::OpenByVm> open_by_vm;       // as of the last live sweep
    std::vector<audit::OpenTransfer> largest_open;           // most bytes first
    std::deque<audit::DenialNote> recent_denials;            // newest last, kStatusRecentDenials at most
    HeadBufferPool head_buffers;                             // worker thread only
    RequestParserPool request_parsers;                       // worker thread only
    // Bytes a client sends while the proxy dials are read into this and appended to the
    // session's own at once: it holds nothing across a wait.
    std::array<char, kHeadReadChunk> head_scratch;

    // An audit line, and its counters: the final line of a connection or request, or a progress
    // line of a long one (`counted`: its bytes that earlier progress lines already counted).
    void conclude(const audit::Record& record, audit::CountedBytes counted = {});
};

inline std::int64_t elapsed_ms(std::chrono::steady_clock::time_point since) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - since).count();
}

}  // namespace egressgate::proxy
