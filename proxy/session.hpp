#pragma once
// One client connection: read the request head, decide, dial; for CONNECT inspect the tunnel's
// first bytes and relay until both directions end, for absolute-form http forward request after
// request. A session lives on one worker's single-threaded io_context, so its state needs no
// locks.
#include <array>
#include <atomic>
#include <chrono>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_set>

#include "audit/audit_record.hpp"
#include "audit/traffic_counters.hpp"
#include "config/config.hpp"
#include "proxy/asio.hpp"
#include "proxy/client_stream.hpp"
#include "proxy/dialer.hpp"
#include "proxy/forwarding.hpp"
#include "proxy/http_message.hpp"
#include "proxy/responses.hpp"
#include "proxy/splice_pump.hpp"
#include "proxy/tunnel.hpp"

namespace egressgate::proxy {

class AuditWriter;

// How long a rejected client may take to read our answer before the connection is closed.
inline constexpr std::chrono::milliseconds kRejectLinger{2000};
// Bytes read from the client per read while the head is incomplete.
inline constexpr std::size_t kHeadReadChunk = 4096;
// Bytes of an unusable request target that are kept for the audit line.
inline constexpr std::size_t kMaxAuditedTargetBytes = 512;

class Session;

// The sessions of one worker, so that shutdown can reach the ones still open.
using SessionRegistry = std::unordered_set<Session*>;

struct WorkerContext {
    AuditWriter& audit;
    DnsResolver& resolver;
    PipePool& pipes;
    SessionRegistry sessions;                   // touched only on the worker's thread
    std::atomic<std::size_t> open_sessions{0};  // read by the stopping thread
    std::mutex counters_mutex;                  // the admin thread reads the counters
    audit::TrafficCounters counters;

    // A connection or request has ended: its one audit line, and its counters.
    void conclude(const audit::Record& record);
};

inline std::int64_t elapsed_ms(std::chrono::steady_clock::time_point since) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - since).count();
}

// The audit record of a connection as known at accept: who, from where.
audit::Record accepted_record(const config::Config& config, const tcp::endpoint& client, std::uint64_t connection_id);

class Session : public std::enable_shared_from_this<Session> {
public:
    Session(ClientStream client, std::shared_ptr<const config::Config> config, WorkerContext& context,
            audit::Record record);
    void start();
    // The proxy is stopping and the drain deadline passed: end now, audited as "shutdown".
    void shutdown();
    // Called by the worker's deadline sweep: ends the current phase if its deadline has passed.
    void check_deadline(std::chrono::steady_clock::time_point now);

private:
    enum class Phase {
        handshaking, reading_head, resolving, connecting, inspecting, tunneling, exchanging, rejecting, closing
    };
    enum class Direction { up, down };
    enum class ResponseEnd { complete, client_failed, upstream_failed, stale_upstream };

    // Each spawned coroutine holds `self`, so the session lives as long as any of them runs.
    awaitable<void> run(std::shared_ptr<Session> self);
    awaitable<bool> read_request_head();
    awaitable<void> handle_request(const http::MessageHead& head);
    awaitable<bool> dial(const policy::Target& target);
    awaitable<void> open_tunnel(const policy::Target& target);
    awaitable<bool> inspect_tunnel_start(const policy::Target& target);
    awaitable<void> run_pump(std::shared_ptr<Session> self, Direction direction);
    awaitable<void> reject(http::Failure failure, std::string_view reason, std::string_view detail = {});

    // Absolute-form HTTP forwarding (session_http.cpp): one request after the other on the
    // client connection, each decided, forwarded and audited on its own.
    awaitable<void> forward_requests();
    awaitable<bool> forward_request(const http::MessageHead& head);
    awaitable<bool> reach_upstream(const policy::Target& target, bool& reused);
    awaitable<ResponseEnd> exchange(const http::MessageHead& head, const http::AbsoluteTarget& target, bool may_retry);
    awaitable<bool> conclude_exchange(const http::MessageHead& head, ResponseEnd end);
    void drop_upstream();
    awaitable<void> upload_body(std::shared_ptr<Session> self);
    awaitable<ResponseEnd> relay_response(const http::MessageHead& request, bool may_retry);
    awaitable<bool> write_to_client(std::string_view bytes);
    void audit_request();

    // Completion of a spawned coroutine: an exception escaping one is a bug, but the connection
    // still ends, is audited, and leaves the worker's registry.
    struct ExitHandler {
        std::shared_ptr<Session> self;
        void operator()(std::exception_ptr exception) const {
            if (exception) self->end_after_exception(exception);
        }
    };
    ExitHandler on_exit() { return ExitHandler{shared_from_this()}; }
    void end_after_exception(std::exception_ptr exception);

    void record_decision(const policy::Decision& decision);
    void set_phase(Phase phase, std::chrono::milliseconds budget);
    std::chrono::steady_clock::time_point current_deadline() const;
    void on_deadline();
    void on_pump_end(Direction direction, PumpEnd end);
    void close_sockets();
    void finish();

    ClientStream client_;
    tcp::socket upstream_;
    std::shared_ptr<const config::Config> config_;
    WorkerContext& context_;
    audit::Record record_;
    Dialer dialer_;
    const std::chrono::steady_clock::time_point accepted_at_ = std::chrono::steady_clock::now();
    std::chrono::steady_clock::time_point phase_deadline_;
    std::chrono::steady_clock::time_point last_activity_;
    Phase phase_ = Phase::reading_head;
    bool timed_out_ = false;
    bool finished_ = false;
    int pumps_running_ = 0;
    http::MessageParser parser_;
    // Client reads before the tunnel (head, ClientHello, linger). Freed once bytes flow by splice:
    // an idle tunnel should cost a few KiB, not this buffer.
    std::unique_ptr<char[]> head_chunk_ = std::make_unique_for_overwrite<char[]>(kHeadReadChunk);
    std::string pipelined_;  // bytes the client sent behind the CONNECT head, then the ClientHello
    std::unique_ptr<char[]> tunnel_buffers_;  // two kTunnelBufferBytes halves: up, down
    SplicePipe up_pipe_;                      // plain-TCP tunnels move bytes with splice(2)
    SplicePipe down_pipe_;
    std::array<char, kMessageChunkBytes> up_message_;  // and small reads by copy (not zeroed)
    std::array<char, kMessageChunkBytes> down_message_;

    // HTTP forwarding state, kept across the requests of one client connection.
    std::string upstream_authority_;  // "host:port" the upstream socket is connected to
    std::unique_ptr<http::MessageParser> response_parser_;
    std::string response_pending_;    // upstream bytes not parsed yet
    std::string outbound_;            // framed bytes on their way to a peer
    bool upload_running_ = false;
    bool upload_failed_ = false;
    bool request_sent_ = false;        // the whole request body went up (reset per request)
    bool close_client_after_ = false;  // the response was delimited by close, or the client asked
    bool upstream_spent_ = false;      // the upstream connection cannot carry another request
    asio::steady_timer upload_finished_;
    std::chrono::steady_clock::time_point request_started_ = accepted_at_;
    bool record_open_ = true;  // record_ describes a request (or connection) not audited yet
};

}  // namespace egressgate::proxy
