#include "proxy/session.hpp"

#include <sys/socket.h>

#include <cerrno>

#include <spdlog/spdlog.h>

#include "proxy/connection_limiter.hpp"
#include "proxy/forward/forward_session.hpp"
#include "proxy/tunnel/tunnel_session.hpp"

namespace egressgate::proxy {

using audit::CloseReason;
using std::chrono::steady_clock;

audit::Record accepted_record(const config::Config& config, const tcp::endpoint& client, std::string connection_id) {
    audit::Record record;
    const auto ip = from_asio(client.address()).unmapped();
    record.connection_id = std::move(connection_id);
    record.client_ip = ip.to_string();
    record.client_port = client.port();
    auto vm = config.inventory.find(ip);
    record.vm = vm ? std::string(*vm) : record.client_ip;
    return record;
}

ClientSession::ClientSession(ClientStream client, std::shared_ptr<const config::Config> config, WorkerContext& worker,
                             audit::Record&& record, policy::IpAddress client_ip,
                             std::optional<http::Failure> admission)
    : client_(std::move(client)),
      upstream_(client_.socket().get_executor()),
      config_(std::move(config)),
      worker_(worker),
      record_(std::move(record)),
      client_ip_(client_ip),
      admission_(admission),
      dialer_(worker.resolver, worker.source_turn),
      parser_(worker.request_parsers.take()) {}

ClientSession::~ClientSession() {
    release_head_buffer();
    release_request_parser();
}

// The coroutine is made first (it runs on the worker's next turn): if there is no memory for its
// frames, the session has not yet been registered or counted, and nothing after it throws.
void ClientSession::start() {
    asio::co_spawn(client_.get_executor(), run(shared_from_this()), ExitHandler{shared_from_this()});
    worker_.sessions.push_back(*this);
    ++worker_.open_sessions;
    enter(Phase::handshaking, config_->timeouts.header);  // the head's deadline covers TLS too
}

// Bytes in flight are cut off: both peers are told by a reset, so that neither takes what it
// got for the whole transfer.
void ClientSession::shutdown() {
    dialer_.cancel();
    reset_both(CloseReason::shutdown);
}

awaitable<void> ClientSession::run([[maybe_unused]] std::shared_ptr<ClientSession> self) {
    error_code handshake;
    if (client_.is_tls()) handshake = co_await client_.handshake();
    if (handshake) {
        end_with(CloseReason::tls_handshake_failed);
        finish();
        co_return;
    }
    phase_ = Phase::reading_head;
    const bool have_head = co_await read_request_head(HeadArrival::likely_in);
    if (have_head) co_await dispatch(parser_->head());
    if (!relay_hold_) finish();  // a relay that runs on finishes the session itself
}

void ClientSession::relay_ended() {
    finish();
    // Released from a handler of its own: the relay that calls this is a part of the session.
    asio::post(client_.get_executor(), [self = std::move(relay_hold_)] {});
}

// Over a limit: refused once the head is in. Otherwise the head says which path serves it.
// Not a coroutine itself: it hands back the path's coroutine, so that an idle tunnel does not
// keep a suspended frame of this step too.
awaitable<void> ClientSession::dispatch(const http::MessageHead& head) {
    record_.method = head.method;
    if (admission_) {
        record_.host = head.target.substr(0, kMaxAuditedTargetBytes);
        return refuse_over_limit();
    }
    if (head.is_connect()) return serve_tunnel(head);
    return serve_forward();
}

awaitable<void> ClientSession::refuse_over_limit() { co_await reject(http::Refusal(*admission_)); }

awaitable<void> ClientSession::serve_tunnel(const http::MessageHead& head) {
    tunnel_ = std::make_unique<TunnelSession>(*this);
    return tunnel_->run(head);
}

awaitable<void> ClientSession::serve_forward() {
    ForwardSession forward(*this);
    co_await forward.run();
}

// Parses the next request head from what the client already sent (pipelined_) and what it
// sends next. On success pipelined_ holds the bytes behind the head. A read is parsed where it
// landed, in the head chunk: only what the parser leaves of it is copied into pipelined_ (a
// head that arrives whole, the usual case, leaves nothing). The parser promises progress: each
// step consumed bytes, moved to the next message, or asks for a read.
awaitable<bool> ClientSession::read_request_head(HeadArrival arrival) {
    std::string_view unparsed = pipelined_;
    bool in_chunk = false;  // unparsed lies in the head chunk, not in pipelined_
    for (;;) {
        const auto status = parser_->feed(unparsed);
        unparsed.remove_prefix(parser_->consumed());
        switch (status) {
        case http::MessageParser::Status::head_complete: keep_pipelined(unparsed, in_chunk); co_return true;
        case http::MessageParser::Status::message_complete: continue;  // the previous request's end
        case http::MessageParser::Status::error:
            pipelined_.clear();  // nothing reads on after a refusal
            co_await reject(http::Refusal(parser_->failure(), parser_->error_detail()));
            co_return false;
        case http::MessageParser::Status::need_more: break;
        }
        keep_pipelined(unparsed, in_chunk);  // before the chunk is read into again
        if (!head_chunk_) head_chunk_ = worker_.head_buffers.take();
        error_code ec;
        // A head likely in is read at once: Asio's read would find it too, but would queue its
        // completion behind a poll of all the worker's descriptors. Otherwise Asio's read: it too
        // reads at once, and waits only if nothing is there, with no readiness wait to arm.
        std::size_t n = 0;
        if (arrival == HeadArrival::likely_in) n = client_.receive_now(head_chunk_.get(), kHeadReadChunk, ec);
        arrival = HeadArrival::awaited;  // what the client sends next comes as it comes
        if (n == 0 && !ec) {
            n = co_await client_.async_read_some(asio::buffer(head_chunk_.get(), kHeadReadChunk), with_error(ec));
        }
        if (n == 0) {
            end_with(is_end_of_stream(ec) ? CloseReason::client_closed : CloseReason::client_reset);
            co_return false;
        }
        in_chunk = pipelined_.empty();
        if (!in_chunk) pipelined_.append(head_chunk_.get(), n);
        unparsed = in_chunk ? std::string_view(head_chunk_.get(), n) : std::string_view(pipelined_);
    }
}

// pipelined_ becomes `rest`: bytes of the head chunk, or pipelined_'s own tail.
void ClientSession::keep_pipelined(std::string_view rest, bool in_chunk) {
    if (in_chunk) pipelined_.assign(rest);
    else pipelined_.erase(0, pipelined_.size() - rest.size());
}

policy::Client ClientSession::client_identity() const {
    const auto vm = config_->inventory.find(client_ip_);
    return {client_ip_, vm ? std::optional<std::string>(std::string(*vm)) : std::nullopt};
}

awaitable<bool> ClientSession::dial(const policy::Target& target, const policy::Decision& decision) {
    const auto started = steady_clock::now();
    // A TLS client is not watched: cancelling a read inside OpenSSL could cut a record it is
    // writing (session tickets go out during reads), and such clients are few.
    watching_client_ = !client_.is_tls();
    if (watching_client_) watch_client();
    enter(Phase::resolving, config_->dns.timeout);
    // No co_await inside ?: here: GCC 12 mishandles the temporaries of such an expression.
    std::optional<Resolution> known = Dialer::resolve_at_once(*config_, target);
    if (!known) known = co_await dialer_.look_up(target.host);
    const Resolution& resolution = *known;
    ConnectResult result;
    if (!resolution.addresses.empty() && !client_left_) {
        enter(Phase::connecting, config_->timeouts.connect);
        result = co_await dialer_.connect(*config_, decision, resolution.addresses, target.port, upstream_);
        record_.resolved = result.address;
        if (result.any_permitted) record_.connect_ms = elapsed_ms(started);
    }
    stop_watching_client();
    if (client_left_) {
        // Nobody is left to answer: the upstream leg (if it got that far) goes too.
        end_with(*client_left_);
        close_sockets();
        co_return false;
    }
    if (result.connected) {
        upstream_finding_ = std::move(result.reported);
        record_upstream_finding();
        co_return true;
    }
    if (resolution.addresses.empty()) {
        const bool late = timed_out_ || resolution.outcome == DnsOutcome::timed_out;
        co_await reject(http::Refusal(late ? http::Failure::resolve_timeout : http::Failure::resolve_failed));
        co_return false;
    }
    co_await refuse_dial(result);
    co_return false;
}

awaitable<void> ClientSession::refuse_dial(const ConnectResult& result) {
    if (result.out_of_resources) {
        co_await reject(http::Refusal(http::Failure::resource_exhausted, "no descriptor for the upstream connection"));
    } else if (result.out_of_ports) {
        co_await reject(http::Refusal(http::Failure::source_ports_exhausted,
                                      "no local port left toward " + result.address + " ([proxy] source_addresses adds more)"));
    } else if (!result.any_permitted && result.refusal) {
        record_decision(*result.refusal);
        co_await reject(http::Refusal::denied(*result.refusal));
    } else {
        co_await reject(http::Refusal(timed_out_ ? http::Failure::connect_timeout : http::Failure::connect_failed));
    }
}

// While the proxy resolves and connects, the client may leave (an agent that gave up after
// its own timeout): its socket turning readable is the only way to know, so what it sends
// meanwhile is kept for the upstream, up to kMaxPipelinedBytes. A readiness wait rather than a
// read: a completion still queued when the dial ends holds no bytes, so the dial goes on
// without waiting for it, and the watch costs no coroutine. Without memory for the wait the
// dial goes on unwatched.
void ClientSession::watch_client() {
    if (pipelined_.size() >= kMaxPipelinedBytes) return;  // no more is taken: nor watched
    try {
        client_.socket().async_wait(tcp_socket::wait_read,
                                    [self = shared_from_this(), generation = watch_generation_](const error_code& ec) {
                                        self->on_client_readable(ec, generation);
                                    });
    } catch (const std::bad_alloc&) {
        watching_client_ = false;
    }
}

void ClientSession::on_client_readable(const error_code& ec, std::uint64_t generation) {
    if (!watching_client_ || generation != watch_generation_) return;  // that dial is over
    // An error here is the socket closed under the wait (a deadline or shutdown): the client is
    // as good as gone. Bytes read and then not kept (no memory) would leave a gap in the
    // client's stream, so that ends the dial too.
    try {
        client_left_ = ec ? std::optional(CloseReason::client_reset) : take_bytes_sent_during_dial();
    } catch (const std::bad_alloc&) {
        client_left_ = CloseReason::resource_exhausted;
    }
    if (!client_left_) return watch_client();
    watching_client_ = false;
    dialer_.cancel();
    error_code ignored;
    upstream_.close(ignored);  // ends a connect in progress
}

// Reads what the client has sent so far into pipelined_. A value: the client closed or reset.
std::optional<CloseReason> ClientSession::take_bytes_sent_during_dial() {
    auto& scratch = worker_.head_scratch;
    while (pipelined_.size() < kMaxPipelinedBytes) {
        const ssize_t n = ::recv(client_.socket().native_handle(), scratch.data(), scratch.size(), MSG_DONTWAIT);
        if (n == 0) return CloseReason::client_closed;
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) return std::nullopt;
        if (n < 0) return CloseReason::client_reset;
        pipelined_.append(scratch.data(), static_cast<std::size_t>(n));
        if (static_cast<std::size_t>(n) < scratch.size()) return std::nullopt;  // drained: the next bytes raise an edge
    }
    return std::nullopt;
}

void ClientSession::stop_watching_client() {
    if (!watching_client_) return;
    watching_client_ = false;
    ++watch_generation_;
    error_code ignored;
    client_.socket().cancel(ignored);
}

awaitable<void> ClientSession::reject(const http::Refusal& refusal) {
    record_open_ = true;  // a refusal is always audited, between requests too
    record_.reason = refusal.reason();
    if (record_.decision.empty() || refusal.failure() == http::Failure::denied) {
        record_.decision = policy::to_string(policy::Verdict::deny);
    }
    end_with(CloseReason::rejected);
    enter(Phase::rejecting, kRejectLinger);
    const std::string response = http::render(refusal);
    error_code ec;
    co_await asio::async_write(client_, asio::buffer(response), with_error(ec));
    if (ec) co_return;  // nothing was sent: the status stays 0
    record_.status = refusal.status();
    co_await linger_then_close();
}

// Reads what the client still sends until it closes (or kRejectLinger passes), so that closing
// with unread bytes does not reset the connection before the client has read our answer.
awaitable<void> ClientSession::linger_then_close() {
    if (phase_ != Phase::rejecting) enter(Phase::rejecting, kRejectLinger);
    client_.shutdown_send();
    if (!head_chunk_) head_chunk_ = worker_.head_buffers.take();
    error_code ec;
    while (!ec) co_await client_.async_read_some(asio::buffer(head_chunk_.get(), kHeadReadChunk), with_error(ec));
    close_sockets();
}

void ClientSession::record_decision(const policy::Decision& decision) {
    record_.decision = policy::to_string(decision.verdict);
    record_.reason = decision.reason;
    record_.rule = decision.rule.view();
    record_.policy_rule = decision.rule_name;
}

void ClientSession::end_with(CloseReason reason) {
    if (record_.close_reason == CloseReason::open) record_.close_reason = reason;
}

void ClientSession::reset_both(CloseReason reason) {
    end_with(reason);
    error_code ignored;
    const asio::socket_base::linger abort_on_close(true, 0);
    if (client_.socket().is_open()) client_.socket().set_option(abort_on_close, ignored);
    if (upstream_.is_open()) upstream_.set_option(abort_on_close, ignored);
    close_sockets();
}

void ClientSession::close_sockets() {
    error_code ignored;
    client_.socket().close(ignored);
    upstream_.close(ignored);
}

// Every phase has a deadline (header, resolve, connect, idle, linger); the worker's sweep checks
// them, so moving from phase to phase costs no timer operation.
void ClientSession::enter(Phase phase, std::chrono::milliseconds budget) noexcept {
    const auto now = steady_clock::now();
    phase_ = phase;
    timed_out_ = false;  // a new phase, a new deadline
    phase_deadline_ = now + budget;
    const bool long_lived = phase == Phase::tunneling || phase == Phase::exchanging;
    if (long_lived && next_progress_ == steady_clock::time_point::max()) {
        next_progress_ = now + config_->audit_progress_interval;
    }
}

void ClientSession::check_deadline(steady_clock::time_point now) {
    if (finished_) return;
    const bool idle_phase =
        phase_ == Phase::tunneling || phase_ == Phase::exchanging || phase_ == Phase::awaiting_response;
    const auto deadline = idle_phase ? last_activity_ + config_->timeouts.idle : phase_deadline_;
    if (now >= deadline) {
        on_deadline();
    } else if (now >= next_progress_) {
        write_progress(now);
    }
}

void ClientSession::on_deadline() {
    const Phase expired = phase_;
    phase_ = Phase::closing;
    phase_deadline_ = steady_clock::time_point::max();
    timed_out_ = true;
    error_code ignored;
    switch (expired) {
    case Phase::handshaking:
    case Phase::reading_head:
    case Phase::inspecting:
        end_with(CloseReason::header_timeout);
        close_sockets();
        break;
    case Phase::resolving: dialer_.cancel(); break;
    // The upstream is late: the client is still there to be told so (504).
    case Phase::connecting:
    case Phase::awaiting_response: upstream_.close(ignored); break;
    case Phase::tunneling:
        end_with(CloseReason::idle_timeout);
        close_sockets();
        break;
    // A response cut off mid-body must not look complete (a body delimited by close would).
    case Phase::exchanging: reset_both(CloseReason::idle_timeout); break;
    case Phase::rejecting:
    case Phase::closing: close_sockets(); break;
    }
}

void ClientSession::observe(LiveCollector& live, steady_clock::time_point now) {
    if (finished_ || !record_open_) return;
    const std::uint64_t up = record_.bytes_up - std::min(counted_.up, record_.bytes_up);
    const std::uint64_t down = record_.bytes_down - std::min(counted_.down, record_.bytes_down);
    if (up > 0 || down > 0) {
        live.moved(record_.series, up, down);
        counted_ = {record_.bytes_up, record_.bytes_down};
    }
    const bool transferring =
        phase_ == Phase::tunneling || phase_ == Phase::exchanging || phase_ == Phase::awaiting_response;
    if (transferring) {
        const auto age = std::chrono::duration_cast<std::chrono::milliseconds>(now - request_started_).count();
        live.open(record_.series, record_.host, record_.port, record_.bytes_up, record_.bytes_down, age);
    }
}

// A long tunnel says how far it got, so that a crash loses at most one interval of its record.
void ClientSession::write_progress(steady_clock::time_point now) {
    next_progress_ = now + config_->audit_progress_interval;
    audit::Record progress = record_;
    progress.kind = audit::RecordKind::progress;
    progress.close_reason = CloseReason::open;
    progress.time = std::chrono::system_clock::now();
    progress.duration_ms = elapsed_ms(request_started_);
    worker_.conclude(progress, counted_);
    counted_ = {record_.bytes_up, record_.bytes_down};
}

void ClientSession::conclude_request() {
    record_.duration_ms = elapsed_ms(request_started_);
    record_.time = std::chrono::system_clock::now();
    end_with(CloseReason::completed);
    worker_.conclude(record_, counted_);
    audit::Record next;
    next.connection_id = record_.connection_id;
    next.vm = record_.vm;
    next.client_ip = record_.client_ip;
    next.client_port = record_.client_port;
    next.series = record_.series;
    record_ = std::move(next);
    request_started_ = steady_clock::now();
    record_open_ = false;
    counted_ = {};
    next_progress_ = steady_clock::time_point::max();
}

void ClientSession::begin_request() { record_open_ = true; }

void ClientSession::end_after_exception(std::exception_ptr exception) {
    try {
        std::rethrow_exception(exception);
    } catch (const std::exception& e) {
        spdlog::error("connection {}: unexpected error: {}", record_.connection_id, e.what());
    } catch (...) {
        spdlog::error("connection {}: unexpected error", record_.connection_id);
    }
    end_with(CloseReason::internal_error);
    close_sockets();
    finish();
}

void ClientSession::finish() {
    if (finished_) return;
    finished_ = true;
    close_sockets();
    unlink();  // from worker_.sessions
    // Before the record: counting it may find no memory, and the client's places must go back.
    worker_.limits.release(client_ip_, admission_.has_value());
    --worker_.open_sessions;
    if (record_open_) {
        end_with(CloseReason::completed);
        record_.duration_ms = elapsed_ms(request_started_);
        record_.time = std::chrono::system_clock::now();
        worker_.conclude(record_, counted_);
    }
}

}  // namespace egressgate::proxy
