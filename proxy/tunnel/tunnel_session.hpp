#pragma once
// The CONNECT path: decide, dial, answer 200, inspect the tunnel's first bytes (the TLS
// ClientHello on tls_ports), then relay both ways until both directions end. A reset on either
// side ends the tunnel with a reset on the other.
#include <array>
#include <memory>

#include "http/message.hpp"
#include "policy/host.hpp"
#include "proxy/asio.hpp"
#include "proxy/tunnel/pump.hpp"
#include "proxy/tunnel/splice_pump.hpp"

namespace egressgate::proxy {

class ClientSession;

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
    void on_pump_end(Direction direction, PumpEnd end);

    ClientSession& session_;
    // Plain-TCP tunnels move bytes with splice(2), small reads by copy (not zeroed); a TLS
    // client's bytes pass through OpenSSL and a pair of buffers.
    SplicePipe up_pipe_;
    SplicePipe down_pipe_;
    std::array<char, kMessageChunkBytes> up_message_;
    std::array<char, kMessageChunkBytes> down_message_;
    std::unique_ptr<char[]> tls_buffers_;  // two kTunnelBufferBytes halves: up, down
};

}  // namespace egressgate::proxy
