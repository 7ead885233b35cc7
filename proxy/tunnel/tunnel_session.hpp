#pragma once
// The CONNECT path: decide, dial, answer 200, inspect the tunnel's first bytes (the TLS
// ClientHello on tls_ports), then relay both ways until both directions end. A reset on either
// side ends the tunnel with a reset on the other.
#include <array>
#include <chrono>
#include <memory>

#include "http/message.hpp"
#include "policy/host.hpp"
#include "proxy/asio.hpp"
#include "proxy/tunnel/pump.hpp"
#include "proxy/tunnel/splice_pump.hpp"

namespace egressgate::proxy {

class ClientSession;
class TaskGroup;

// How long a TLS tunnel holds its client's FIN for the server to close first. A TLS client that
// closes says so in a close_notify before its FIN, and HTTPS servers answer it by closing their
// side; passing the FIN on after the server's leaves the TIME_WAIT with the server rather than
// with the proxy's upstream leg, so that many short tunnels to one storage account do not use up
// the proxy's ephemeral ports toward it. A server that waits for the FIN gets it this much later.
inline constexpr std::chrono::milliseconds kUpstreamCloseGrace{500};

class TunnelSession {
public:
    explicit TunnelSession(ClientSession& session);
    // Returns when the tunnel is over (refused, failed, or both directions ended).
    awaitable<void> run(const http::MessageHead& head);

private:
    enum class Direction { up, down };

    awaitable<bool> establish(const http::MessageHead& head);
    awaitable<bool> open(const policy::Target& target);
    awaitable<bool> inspect_start(const policy::Target& target);
    awaitable<bool> forward_pipelined();
    awaitable<void> relay();
    // The pump of one direction, not started yet (a plain function: no frame of its own).
    awaitable<PumpEnd> transfer(Direction direction);
    // A clean end shuts the sink's sending side (see hold_client_fin); a failure resets both.
    void on_pump_end(Direction direction, PumpEnd end, TaskGroup& pumps);
    // The client's FIN on a TLS tunnel: passed on once the server has closed, or after
    // kUpstreamCloseGrace. A task of the tunnel's pumps, only while it waits.
    awaitable<void> hold_client_fin();

    ClientSession& session_;
    // Plain-TCP tunnels move bytes with splice(2), small reads by copy through the worker's
    // message buffer; a TLS client's bytes pass through OpenSSL and a pair of buffers.
    SplicePipe up_pipe_;
    SplicePipe down_pipe_;
    std::unique_ptr<char[]> tls_buffers_;  // two kTunnelBufferBytes halves: up, down
    bool carries_tls_ = false;             // the first bytes were a complete ClientHello
    bool upstream_ended_ = false;          // the down direction is over
    std::unique_ptr<asio::steady_timer> fin_hold_;  // only while the client's FIN waits
};

}  // namespace egressgate::proxy
