#include "proxy/session.hpp"

#include <spdlog/spdlog.h>

#include "proxy/audit_writer.hpp"
#include "tls/client_hello.hpp"

namespace egressgate::proxy {

using std::chrono::steady_clock;

namespace {

// The policy's view of what the parser saw.
policy::TunnelStart tunnel_start_of(const tls::HelloParse& parse) {
    using Kind = policy::TunnelStart::Kind;
    if (parse.status == tls::HelloParse::Status::complete) return {Kind::client_hello, parse.hello.server_name};
    return {parse.error == tls::HelloError::not_tls ? Kind::not_tls : Kind::malformed_hello, std::nullopt};
}

std::string joined(const std::vector<std::string>& names) {
    std::string out;
    for (const auto& name : names) out += (out.empty() ? "" : ",") + name;
    return out;
}
}  // namespace

void WorkerContext::conclude(const audit::Record& record) {
    audit.write(audit::format_line(record));
    std::lock_guard lock(counters_mutex);
    counters.add(record);
}

audit::Record accepted_record(const config::Config& config, const tcp::endpoint& client, std::uint64_t connection_id) {
    audit::Record record;
    const auto ip = from_asio(client.address()).unmapped();
    record.connection_id = connection_id;
    record.client_ip = ip.to_string();
    record.client_port = client.port();
    auto vm = config.inventory.find(ip);
    record.vm = vm ? std::string(*vm) : record.client_ip;
    return record;
}

Session::Session(ClientStream client, std::shared_ptr<const config::Config> config, WorkerContext& context,
                 audit::Record record)
    : client_(std::move(client)),
      upstream_(client_.socket().get_executor()),
      config_(std::move(config)),
      context_(context),
      record_(std::move(record)),
      dialer_(context.resolver),
      up_pipe_(context.pipes),
      down_pipe_(context.pipes),
      upload_finished_(client_.socket().get_executor()) {}

void Session::end_after_exception(std::exception_ptr exception) {
    try {
        std::rethrow_exception(exception);
    } catch (const std::exception& e) {
        spdlog::error("connection {}: unexpected error: {}", record_.connection_id, e.what());
    } catch (...) {
        spdlog::error("connection {}: unexpected error", record_.connection_id);
    }
    if (record_.close_reason.empty()) record_.close_reason = audit::close_reason::internal_error;
    close_sockets();
    finish();
}

void Session::start() {
    context_.sessions.insert(this);
    ++context_.open_sessions;
    set_phase(Phase::handshaking, config_->timeouts.header);  // the head's deadline covers TLS too
    asio::co_spawn(client_.get_executor(), run(shared_from_this()), on_exit());
}

void Session::shutdown() {
    if (record_.close_reason.empty()) record_.close_reason = audit::close_reason::shutdown;
    dialer_.cancel();
    close_sockets();
}

awaitable<void> Session::run([[maybe_unused]] std::shared_ptr<Session> self) {
    const error_code handshake = co_await client_.handshake();
    if (handshake) {
        if (record_.close_reason.empty()) record_.close_reason = audit::close_reason::tls_handshake_failed;
        finish();
        co_return;
    }
    phase_ = Phase::reading_head;
    const bool have_head = co_await read_request_head();
    if (have_head) co_await handle_request(parser_.head());
    if (pumps_running_ == 0) finish();
}

// Parses the next request head from what the client already sent (pipelined_) and what it
// sends next. On success pipelined_ holds the bytes behind the head.
awaitable<bool> Session::read_request_head() {
    for (;;) {
        const auto status = parser_.feed(pipelined_);
        pipelined_.erase(0, parser_.consumed());
        if (status == http::MessageParser::Status::head_complete) co_return true;
        if (status == http::MessageParser::Status::message_complete) continue;  // the previous one's end
        if (status == http::MessageParser::Status::error) {
            const bool too_large = parser_.error() == http::HeadError::too_large;
            co_await reject(too_large ? http::Failure::head_too_large : http::Failure::malformed_request,
                            parser_.error_reason(), parser_.error_detail());
            co_return false;
        }
        error_code ec;
        const std::size_t n = co_await client_.async_read_some(asio::buffer(head_chunk_.get(), kHeadReadChunk), with_error(ec));
        if (n == 0) {
            if (record_.close_reason.empty()) record_.close_reason = audit::close_reason::client_closed;
            co_return false;
        }
        pipelined_.append(head_chunk_.get(), n);
    }
}

awaitable<void> Session::handle_request(const http::MessageHead& head) {
    record_.method = head.method;
    if (!head.is_connect()) {
        co_await forward_requests();
        co_return;
    }
    const auto target = policy::parse_authority(head.target);
    if (!target) {
        record_.host = head.target.substr(0, kMaxAuditedTargetBytes);
        co_await reject(http::Failure::invalid_target, policy::reason::invalid_host, "CONNECT needs host:port");
        co_return;
    }
    record_.host = target->host;
    record_.port = target->port;
    const auto decision = config_->egress.decide(*target);
    record_decision(decision);
    if (!decision.permits()) {
        co_await reject(http::Failure::denied, decision.reason, decision.rule);
        co_return;
    }
    const bool connected = co_await dial(*target);
    if (connected) co_await open_tunnel(*target);
}

awaitable<bool> Session::dial(const policy::Target& target) {
    const auto started = steady_clock::now();
    set_phase(Phase::resolving, config_->dns.timeout);
    const auto addresses = co_await dialer_.resolve(*config_, target);
    if (addresses.empty()) {
        co_await reject(timed_out_ ? http::Failure::resolve_timeout : http::Failure::resolve_failed,
                        timed_out_ ? http::reason::resolve_timeout : http::reason::resolve_failed);
        co_return false;
    }
    set_phase(Phase::connecting, config_->timeouts.connect);
    const auto result = co_await dialer_.connect(config_->egress, addresses, target.port, upstream_);
    record_.resolved = result.address;
    if (result.any_permitted) record_.connect_ms = elapsed_ms(started);
    if (result.connected) co_return true;
    if (!result.any_permitted) {
        record_decision(result.refusal);
        co_await reject(http::Failure::denied, result.refusal.reason, result.refusal.rule);
    } else {
        co_await reject(timed_out_ ? http::Failure::connect_timeout : http::Failure::connect_failed,
                        timed_out_ ? http::reason::connect_timeout : http::reason::connect_failed);
    }
    co_return false;
}

awaitable<void> Session::open_tunnel(const policy::Target& target) {
    set_phase(Phase::tunneling, config_->timeouts.idle);
    last_activity_ = steady_clock::now();
    error_code ec;
    co_await asio::async_write(client_, asio::buffer(http::kConnectEstablished), with_error(ec));
    if (ec) {
        record_.close_reason = audit::close_reason::client_reset;
        co_return;
    }
    record_.status = 200;
    if (config_->egress.inspects_tunnel(target.port)) {
        const bool permitted = co_await inspect_tunnel_start(target);
        if (!permitted) co_return;
        set_phase(Phase::tunneling, config_->timeouts.idle);
    }
    if (!pipelined_.empty()) {
        co_await asio::async_write(upstream_, asio::buffer(pipelined_), with_error(ec));
        if (ec) {
            record_.close_reason = audit::close_reason::upstream_reset;
            co_return;
        }
        record_.bytes_up += pipelined_.size();
    }
    std::string().swap(pipelined_);  // give the capacity back too
    // A TLS client's bytes must pass through OpenSSL; a plain one's go by splice or through the
    // worker's shared buffer, and the session's own read buffer is no longer needed.
    if (client_.is_tls()) {
        tunnel_buffers_ = std::make_unique<char[]>(2 * kTunnelBufferBytes);
    } else {
        head_chunk_.reset();
    }
    pumps_running_ = 2;
    const auto executor = client_.socket().get_executor();
    asio::co_spawn(executor, run_pump(shared_from_this(), Direction::up), on_exit());
    asio::co_spawn(executor, run_pump(shared_from_this(), Direction::down), on_exit());
}

// Reads the tunnel's first bytes until the ClientHello is complete (or proves not to be one)
// and lets the policy judge it. Nothing reaches the upstream before that; the peeked bytes are
// forwarded unchanged when the tunnel is allowed. Refusal closes the tunnel: the client already
// has its 200, so there is no status left to send.
awaitable<bool> Session::inspect_tunnel_start(const policy::Target& target) {
    set_phase(Phase::inspecting, config_->timeouts.header);
    const auto as_bytes = [this] {
        return std::span(reinterpret_cast<const std::uint8_t*>(pipelined_.data()), pipelined_.size());
    };
    tls::HelloParse parse = tls::parse_client_hello(as_bytes());
    while (parse.status == tls::HelloParse::Status::need_more) {
        error_code ec;
        const std::size_t n = co_await client_.async_read_some(asio::buffer(head_chunk_.get(), kHeadReadChunk), with_error(ec));
        if (n == 0) {
            if (!is_end_of_stream(ec)) co_return false;  // reset or our deadline: nothing to judge
            parse = tls::finish_at_eof(parse);
            break;
        }
        pipelined_.append(head_chunk_.get(), n);
        parse = tls::parse_client_hello(as_bytes());
    }
    if (parse.status == tls::HelloParse::Status::complete) {
        record_.sni = parse.hello.server_name.value_or("");
        record_.alpn = joined(parse.hello.alpn);
    }
    const policy::Decision verdict = config_->egress.check_tunnel_start(target, tunnel_start_of(parse));
    if (verdict.verdict == policy::Verdict::allow) co_return true;
    record_decision(verdict);
    if (verdict.permits()) co_return true;
    record_.close_reason = audit::close_reason::rejected;
    close_sockets();
    co_return false;
}

awaitable<void> Session::run_pump(std::shared_ptr<Session> self, Direction direction) {
    const bool up = direction == Direction::up;
    PumpEnd end;  // no co_await inside ?: (see asio.hpp)
    if (!client_.is_tls()) {
        if (up) {
            end = co_await splice_pump(client_.socket(), upstream_, up_pipe_, up_message_, record_.bytes_up,
                                       last_activity_);
        } else {
            end = co_await splice_pump(upstream_, client_.socket(), down_pipe_, down_message_, record_.bytes_down,
                                       last_activity_);
        }
    } else {
        std::span<char> buffer(tunnel_buffers_.get() + (up ? 0 : kTunnelBufferBytes), kTunnelBufferBytes);
        if (up) {
            end = co_await pump(client_, upstream_, buffer, record_.bytes_up, last_activity_);
        } else {
            end = co_await pump(upstream_, client_, buffer, record_.bytes_down, last_activity_);
        }
    }
    self->on_pump_end(direction, end);
}

// A reset on either side ends the tunnel; EOF only ends its own direction.
void Session::on_pump_end(Direction direction, PumpEnd end) {
    if (end != PumpEnd::eof) {
        const bool client_side = (direction == Direction::up) == (end == PumpEnd::read_error);
        if (record_.close_reason.empty()) {
            record_.close_reason = client_side ? audit::close_reason::client_reset : audit::close_reason::upstream_reset;
        }
        close_sockets();
    }
    if (--pumps_running_ == 0) finish();
}

awaitable<void> Session::reject(http::Failure failure, std::string_view reason, std::string_view detail) {
    record_.status = http::status_for(failure);
    record_.reason = reason;
    if (record_.decision.empty() || failure == http::Failure::denied) {
        record_.decision = policy::to_string(policy::Verdict::deny);
    }
    if (record_.close_reason.empty()) record_.close_reason = audit::close_reason::rejected;
    set_phase(Phase::rejecting, kRejectLinger);
    const std::string response = http::render_rejection(failure, reason, detail);
    error_code ec;
    co_await asio::async_write(client_, asio::buffer(response), with_error(ec));
    if (ec) co_return;
    // Read what the client still sends until it closes, so that closing with unread bytes does
    // not reset the connection before the client has read our answer.
    client_.shutdown_send();
    while (!ec) co_await client_.async_read_some(asio::buffer(head_chunk_.get(), kHeadReadChunk), with_error(ec));
}

void Session::record_decision(const policy::Decision& decision) {
    record_.decision = policy::to_string(decision.verdict);
    record_.reason = decision.reason;
    record_.rule = decision.rule;
}

// Every phase has a deadline (header, resolve, connect, idle, linger); the worker's sweep checks
// them, so moving from phase to phase costs no timer operation.
void Session::check_deadline(steady_clock::time_point now) {
    if (!finished_ && now >= current_deadline()) on_deadline();
}

void Session::set_phase(Phase phase, std::chrono::milliseconds budget) {
    phase_ = phase;
    phase_deadline_ = steady_clock::now() + budget;
}

steady_clock::time_point Session::current_deadline() const {
    if (phase_ == Phase::tunneling || phase_ == Phase::exchanging) return last_activity_ + config_->timeouts.idle;
    return phase_deadline_;
}

void Session::on_deadline() {
    const Phase expired = phase_;
    phase_ = Phase::closing;
    phase_deadline_ = steady_clock::time_point::max();
    timed_out_ = true;
    switch (expired) {
    case Phase::handshaking:
    case Phase::reading_head:
    case Phase::inspecting:
        record_.close_reason = audit::close_reason::header_timeout;
        close_sockets();
        break;
    case Phase::resolving: dialer_.cancel(); break;
    case Phase::connecting: {
        error_code ignored;
        upstream_.close(ignored);
        break;
    }
    case Phase::tunneling:
    case Phase::exchanging:
        record_.close_reason = audit::close_reason::idle_timeout;
        close_sockets();
        break;
    case Phase::rejecting:
    case Phase::closing: close_sockets(); break;
    }
}

void Session::close_sockets() {
    error_code ec;
    client_.socket().close(ec);
    upstream_.close(ec);
}

void Session::finish() {
    if (finished_) return;
    finished_ = true;
    close_sockets();
    context_.sessions.erase(this);
    if (record_open_) {
        if (record_.close_reason.empty()) record_.close_reason = audit::close_reason::completed;
        record_.duration_ms = elapsed_ms(request_started_);
        record_.time = std::chrono::system_clock::now();
        context_.conclude(record_);
    }
    --context_.open_sessions;
}

}  // namespace egressgate::proxy
