#pragma once
// One client connection: the pieces both paths share. ClientSession reads the request head,
// then hands the connection to the path it asked for: a TunnelSession (CONNECT) or a
// ForwardSession (absolute-form http). Deadlines, dialing, refusals, resets and the audit record
// live here, so each path holds only what its own job needs. A session lives on one worker's
// single-threaded io_context, so its state needs no locks.
#include <chrono>
#include <exception>
#include <memory>
#include <optional>
#include <string>

#include "audit/audit_record.hpp"
#include "config/config.hpp"
#include "http/message.hpp"
#include "http/responses.hpp"
#include "policy/decision.hpp"
#include "policy/host.hpp"
#include "proxy/asio.hpp"
#include "proxy/client_stream.hpp"
#include "proxy/dns/dialer.hpp"
#include "proxy/worker_context.hpp"

namespace egressgate::proxy {

// How long a refused client may take to read our answer before the connection is closed.
inline constexpr std::chrono::milliseconds kRejectLinger{2000};
// Client bytes held while the proxy dials (a pipelined ClientHello or request body): beyond
// this the proxy stops reading the client until the upstream is there (backpressure).
inline constexpr std::size_t kMaxPipelinedBytes = 64 * 1024;
// Bytes of an unusable request target that are kept for the audit line.
inline constexpr std::size_t kMaxAuditedTargetBytes = 512;

// What a connection is doing now; each phase has its deadline (see ClientSession::enter).
enum class Phase {
    handshaking,        // TLS listener: the client's handshake (header_ms)
    reading_head,       // header_ms
    resolving,          // dns.timeout_ms
    connecting,         // connect_ms
    inspecting,         // the tunnel's ClientHello (header_ms)
    tunneling,          // idle_ms since the last byte either way
    awaiting_response,  // forwarding: the request went up, no response head yet (idle_ms)
    exchanging,         // forwarding: the response streams (idle_ms since the last byte)
    rejecting,          // kRejectLinger for the client to read the refusal
    closing,
};

// The audit record of a connection as known at accept: who, from where.
audit::Record accepted_record(const config::Config& config, const tcp::endpoint& client, std::string connection_id);

class TunnelSession;

class ClientSession : public std::enable_shared_from_this<ClientSession>, public SessionRegistryHook {
public:
    // `admission`: the limit this connection is over, if any: it is answered with that refusal
    // once its request head is in (so that the answer is well-formed and audited).
    ClientSession(ClientStream client, std::shared_ptr<const config::Config> config, WorkerContext& worker,
                  audit::Record&& record, policy::IpAddress client_ip, std::optional<http::Failure> admission);
    ~ClientSession();
    ClientSession(const ClientSession&) = delete;
    ClientSession& operator=(const ClientSession&) = delete;

    void start();
    // The proxy is stopping and the drain deadline passed: end now, audited as "shutdown".
    void shutdown();
    // The worker's sweep: ends the current phase if its deadline has passed, and writes a
    // progress record for a long tunnel or exchange.
    void check_deadline(std::chrono::steady_clock::time_point now);
    // The live sweep: bytes moved since the last look go to the counters, and an open transfer is
    // shown on /status.
    void observe(LiveCollector& live, std::chrono::steady_clock::time_point now);

    // --- for the paths ----------------------------------------------------------------------
    const config::Config& config() const { return *config_; }
    WorkerContext& worker() { return worker_; }
    ClientStream& client() { return client_; }
    tcp_socket& upstream() { return upstream_; }
    audit::Record& record() { return record_; }
    http::MessageParser& parser() { return *parser_; }
    // Client bytes read and not yet parsed or forwarded.
    std::string& pipelined() { return pipelined_; }
    std::chrono::steady_clock::time_point& last_activity() { return last_activity_; }
    bool timed_out() const { return timed_out_; }

    // The next request head into parser(); false when there is none (the client left, or was
    // refused: the record says which). A connection's first head is usually in by the time its
    // session runs (the client sends it right behind the handshake); a keep-alive client's next
    // one comes after our response.
    enum class HeadArrival { likely_in, awaited };
    awaitable<bool> read_request_head(HeadArrival arrival = HeadArrival::awaited);
    // Resolves, checks each address and connects, while watching the client: a client that
    // leaves cancels the dial. False: refused, failed or abandoned (already answered and recorded).
    awaitable<bool> dial(const policy::Target& target, const policy::Decision& decision);
    // Who asks, as the policy sees it: the address, and the VM's name when the inventory has it.
    policy::Client client_identity() const;
    // Answers with the refusal, lingers for the client to read it, and records what was sent.
    awaitable<void> reject(const http::Refusal& refusal);
    // Half-closes the client and reads what it still sends for up to kRejectLinger, then closes.
    awaitable<void> linger_then_close();
    void record_decision(const policy::Decision& decision);
    // A request over an upstream connection dial() made: the audit line says what that dial
    // found (a report-mode finding about its address), as the first request's did.
    void record_upstream_finding() {
        if (upstream_finding_) record_decision(*upstream_finding_);
    }
    void enter(Phase phase, std::chrono::milliseconds budget) noexcept;
    // Sets why the connection ends, unless something else already did.
    void end_with(audit::CloseReason reason);
    // One side failed: the other is told by a reset (SO_LINGER 0), never by a clean FIN.
    void reset_both(audit::CloseReason reason);
    void close_sockets();
    // Forwarding: this request's line is written; the next request starts a fresh record.
    void conclude_request();
    // The next request on the connection begins: its record is open again.
    void begin_request();
    // Gives the head buffer back to the worker's pool once a tunnel no longer needs it.
    void release_head_buffer() { worker_.head_buffers.give(std::move(head_chunk_)); }
    // A tunnel reads no more requests: its parser (llhttp state, the head's strings) goes back
    // to the worker, so that an idle tunnel does not hold it for hours.
    void release_request_parser() { worker_.request_parsers.give(std::move(parser_)); }
    // A tunnel's relay runs on completion handlers once the session's coroutine has ended: it
    // holds the session until relay_ended(), which audits and closes it.
    void hold_for_relay() { relay_hold_ = shared_from_this(); }
    void relay_ended();

private:
    awaitable<void> run(std::shared_ptr<ClientSession> self);
    void keep_pipelined(std::string_view rest, bool in_chunk);
    awaitable<void> dispatch(const http::MessageHead& head);
    // One per path, so that a tunnel does not hold a ForwardSession too. serve_tunnel is no
    // coroutine itself: it hands back the session-owned tunnel's run().
    awaitable<void> serve_tunnel(const http::MessageHead& head);
    awaitable<void> serve_forward();
    awaitable<void> refuse_over_limit();
    void watch_client();
    void on_client_readable(const error_code& ec, std::uint64_t generation);
    std::optional<audit::CloseReason> take_bytes_sent_during_dial();
    void stop_watching_client();
    awaitable<void> refuse_dial(const ConnectResult& result);
    void on_deadline();
    void write_progress(std::chrono::steady_clock::time_point now);
    void finish();

    struct ExitHandler {
        std::shared_ptr<ClientSession> self;
        void operator()(std::exception_ptr exception) const {
            if (exception) self->end_after_exception(exception);
        }
    };
    void end_after_exception(std::exception_ptr exception);

    ClientStream client_;
    tcp_socket upstream_;
    std::shared_ptr<const config::Config> config_;
    WorkerContext& worker_;
    audit::Record record_;
    policy::IpAddress client_ip_;
    std::optional<http::Failure> admission_;
    Dialer dialer_;
    std::unique_ptr<http::MessageParser> parser_;  // from worker_.request_parsers
    std::string pipelined_;
    std::unique_ptr<char[]> head_chunk_;  // from worker_.head_buffers, taken at the first read

    const std::chrono::steady_clock::time_point accepted_at_ = std::chrono::steady_clock::now();
    std::chrono::steady_clock::time_point request_started_ = accepted_at_;
    std::chrono::steady_clock::time_point phase_deadline_;
    std::chrono::steady_clock::time_point last_activity_ = accepted_at_;
    std::chrono::steady_clock::time_point next_progress_ = std::chrono::steady_clock::time_point::max();
    Phase phase_ = Phase::handshaking;
    bool timed_out_ = false;
    bool finished_ = false;
    bool record_open_ = true;  // record_ describes a connection or request not audited yet
    audit::CountedBytes counted_;  // bytes of record_ that progress lines counted

    // The client watch while dialing. Each dial's watch has a generation of its own: a
    // completion queued when its dial ended finds a newer one and does nothing.
    bool watching_client_ = false;
    std::uint64_t watch_generation_ = 0;
    std::optional<audit::CloseReason> client_left_;
    // What the last dial's address checks reported (ConnectResult::reported); rarely set.
    std::unique_ptr<policy::Decision> upstream_finding_;

    std::unique_ptr<TunnelSession> tunnel_;
    std::shared_ptr<ClientSession> relay_hold_;  // while a relay runs without the coroutine
};

}  // namespace egressgate::proxy
