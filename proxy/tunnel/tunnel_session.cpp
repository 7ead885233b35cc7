#include "proxy/tunnel/tunnel_session.hpp"

#include <span>

#include "proxy/session.hpp"
#include "tls/client_hello.hpp"

namespace egressgate::proxy {

using audit::CloseReason;
using std::chrono::steady_clock;

namespace {

// The policy's view of what the parser saw.
policy::TunnelStart tunnel_start_of(const tls::HelloParse& parse) {
    using Kind = policy::TunnelStart::Kind;
    if (parse.status == tls::HelloParse::Status::complete) return {Kind::client_hello, parse.hello.server_name};
    return {parse.error == tls::HelloError::not_tls ? Kind::not_tls : Kind::malformed_hello, std::nullopt};
}

}  // namespace

TunnelSession::TunnelSession(ClientSession& session)
    : session_(session), up_pipe_(session.worker().pipes), down_pipe_(session.worker().pipes) {}

// Decides, dials, answers 200, sends what the client pipelined, and starts the relay. A refusal
// or failure is answered and recorded. These steps run on the session's coroutine: its frames
// (the target, the decision and their strings) are gone before the tunnel settles down to relay
// for hours.
awaitable<void> TunnelSession::run(const http::MessageHead& head) {
    auto& record = session_.record();
    const auto target = policy::parse_authority(head.target);
    if (!target) {
        record.host = head.target.substr(0, kMaxAuditedTargetBytes);
        co_await session_.reject(http::Refusal(http::Failure::invalid_host, "CONNECT needs host:port"));
        co_return;
    }
    record.host = target->host;
    record.port = target->port;
    const auto decision = session_.config().egress.decide(*target, session_.client_identity());
    session_.record_decision(decision);
    if (!decision.permits()) {
        co_await session_.reject(http::Refusal::denied(decision));
        co_return;
    }
    const bool connected = co_await session_.dial(*target, decision);
    if (!connected) co_return;
    const bool opened = co_await open(*target, decision);
    if (opened) start_relay();
}

// Answers 200, judges the first bytes where the policy asks for it, and sends what the client
// already wrote behind its request. False: the tunnel ended before bytes could flow.
awaitable<bool> TunnelSession::open(const policy::Target& target, const policy::Decision& connect) {
    const auto& config = session_.config();
    session_.enter(Phase::tunneling, config.timeouts.idle);
    session_.last_activity() = steady_clock::now();
    error_code ec;
    const std::size_t sent = session_.client().send_now(http::kConnectEstablished, ec);
    if (!ec && sent < http::kConnectEstablished.size()) {
        co_await asio::async_write(session_.client(), asio::buffer(http::kConnectEstablished.substr(sent)), with_error(ec));
    }
    if (ec) {
        session_.reset_both(CloseReason::client_reset);
        co_return false;
    }
    session_.record().status = 200;
    if (config.egress.inspects_tunnel(target.port)) {
        const bool permitted = co_await inspect_start(target, connect);
        if (!permitted) co_return false;
        session_.enter(Phase::tunneling, config.timeouts.idle);
    }
    // Bytes the client wrote ahead of the 200 go first; with none there is no step to take.
    bool forwarded = true;
    if (!session_.pipelined().empty()) forwarded = co_await forward_pipelined();
    std::string().swap(session_.pipelined());  // its capacity goes back too
    co_return forwarded;
}

// Reads the tunnel's first bytes until the ClientHello is complete (or proves not to be one)
// and lets the policy judge it. Nothing reaches the upstream before that; the peeked bytes are
// forwarded unchanged when the tunnel is allowed. Refusal closes the tunnel: the client already
// has its 200, so there is no status left to send.
awaitable<bool> TunnelSession::inspect_start(const policy::Target& target, const policy::Decision& connect) {
    auto& pipelined = session_.pipelined();
    auto& record = session_.record();
    session_.enter(Phase::inspecting, session_.config().timeouts.header);
    const auto as_bytes = [&pipelined] {
        return std::span(reinterpret_cast<const std::uint8_t*>(pipelined.data()), pipelined.size());
    };
    std::array<char, 4096> chunk;  // on the coroutine frame only while inspecting
    tls::HelloParse parse = tls::parse_client_hello(as_bytes());
    while (parse.status == tls::HelloParse::Status::need_more) {
        error_code ec;
        const std::size_t n = co_await session_.client().async_read_some(asio::buffer(chunk), with_error(ec));
        if (n == 0) {
            if (!is_end_of_stream(ec)) {
                session_.reset_both(CloseReason::client_reset);  // or our deadline, which came first
                co_return false;
            }
            parse = tls::finish_at_eof(parse);
            break;
        }
        pipelined.append(chunk.data(), n);
        parse = tls::parse_client_hello(as_bytes());
    }
    if (parse.status == tls::HelloParse::Status::complete) {
        record.sni = parse.hello.server_name.value_or("");
        record.alpn = parse.hello.alpn;
        carries_tls_ = true;
    }
    const policy::Decision verdict =
        session_.config().egress.check_tunnel_start(target, tunnel_start_of(parse), connect, session_.client_identity());
    if (verdict.verdict == policy::Verdict::allow) co_return true;
    session_.record_decision(verdict);
    if (verdict.permits()) co_return true;
    session_.end_with(CloseReason::rejected);
    session_.close_sockets();
    co_return false;
}

awaitable<bool> TunnelSession::forward_pipelined() {
    auto& pipelined = session_.pipelined();
    error_code ec;
    co_await asio::async_write(session_.upstream(), asio::buffer(pipelined), with_error(ec));
    if (ec) {
        session_.reset_both(CloseReason::upstream_reset);
        co_return false;
    }
    session_.record().bytes_up += pipelined.size();
    co_return true;
}

TunnelSession::PlainPumps::PlainPumps(ClientSession& session, SplicePipe& up_pipe, SplicePipe& down_pipe)
    : up(session.client().socket(), session.upstream(), up_pipe, session.record().bytes_up, session.last_activity()),
      down(session.upstream(), session.client().socket(), down_pipe, session.record().bytes_down,
           session.last_activity()) {}

TunnelSession::TlsClientPumps::TlsClientPumps(ClientSession& session)
    : buffers(std::make_unique<char[]>(2 * kTunnelBufferBytes)),
      up(session.client(), session.upstream(), std::span(buffers.get(), kTunnelBufferBytes), session.record().bytes_up,
         session.last_activity()),
      down(session.upstream(), session.client(), std::span(buffers.get() + kTunnelBufferBytes, kTunnelBufferBytes),
           session.record().bytes_down, session.last_activity()) {}

// Two one-way pumps; the tunnel is over when both (and a held FIN) have ended. Either may end
// before the other starts.
void TunnelSession::start_relay() {
    session_.hold_for_relay();
    session_.release_request_parser();
    running_ = 2;
    if (session_.client().is_tls()) {
        tls_client_ = std::make_unique<TlsClientPumps>(session_);
        tls_client_->up.start(when_ends(Direction::up));
        tls_client_->down.start(when_ends(Direction::down));
        return;
    }
    session_.release_head_buffer();  // a plain tunnel reads into the worker's buffer
    plain_.emplace(session_, up_pipe_, down_pipe_);
    plain_->up.start(when_ends(Direction::up));
    plain_->down.start(when_ends(Direction::down));
}

PumpEndHandler TunnelSession::when_ends(Direction direction) {
    return [this, direction](PumpEnd end) { on_pump_end(direction, end); };
}

void TunnelSession::on_pump_end(Direction direction, PumpEnd end) {
    pass_on(direction, end);
    task_ended();
}

// The last of the relay's tasks ends the session; nothing of the tunnel is touched after.
void TunnelSession::task_ended() {
    if (--running_ == 0) session_.relay_ended();
}

// EOF ends only its own direction: the sink's sending side is shut, the client's FIN on a TLS
// tunnel after the server's (hold_client_fin). A failure on either side is passed on to the other
// as a reset, so that neither peer mistakes a broken tunnel for a complete one.
void TunnelSession::pass_on(Direction direction, PumpEnd end) {
    const bool up = direction == Direction::up;
    if (end == PumpEnd::eof && !up) {
        upstream_ended_ = true;
        if (fin_hold_) fin_hold_->cancel();  // the server closed first: the client's FIN follows now
        end_sending(session_.client());
        return;
    }
    if (end == PumpEnd::eof) {
        if (!carries_tls_ || upstream_ended_) {
            end_sending(session_.upstream());
            return;
        }
        hold_client_fin();
        return;
    }
    if (fin_hold_) fin_hold_->cancel();  // both sides are reset: nothing is left to wait for
    switch (end) {
    case PumpEnd::eof: return;
    case PumpEnd::source_failed:
        session_.reset_both(up ? CloseReason::client_reset : CloseReason::upstream_reset);
        return;
    case PumpEnd::sink_failed:
        session_.reset_both(up ? CloseReason::upstream_reset : CloseReason::client_reset);
        return;
    case PumpEnd::resource_exhausted: session_.reset_both(CloseReason::resource_exhausted); return;
    }
}

// Without memory for the timer the FIN goes on at once: the tunnel still ends cleanly.
void TunnelSession::hold_client_fin() {
    try {
        fin_hold_ = std::make_unique<steady_timer>(session_.client().get_executor(), kUpstreamCloseGrace);
        fin_hold_->async_wait([this](const error_code&) { release_client_fin(); });
    } catch (const std::bad_alloc&) {
        fin_hold_.reset();
        end_sending(session_.upstream());
        return;
    }
    ++running_;
}

// The hold expired, or was cancelled because the server closed or the tunnel failed.
void TunnelSession::release_client_fin() {
    fin_hold_.reset();
    end_sending(session_.upstream());
    task_ended();
}

}  // namespace egressgate::proxy
