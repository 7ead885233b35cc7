#pragma once
// The CONNECT path: decide, dial, answer 200, inspect the tunnel's first bytes (the TLS
// ClientHello on tls_ports), then relay both ways until both directions end. A reset on either
// side ends the tunnel with a reset on the other.
#include <array>
#include <chrono>
#include <memory>
#include <optional>

#include "http/message.hpp"
#include "policy/host.hpp"
#include "proxy/asio.hpp"
#include "proxy/tunnel/pump.hpp"
#include "proxy/tunnel/splice_pump.hpp"

namespace egressgate::proxy {

class ClientSession;

// How long a TLS tunnel holds its client's FIN for the server to close first. A TLS client that
// closes says so in a close_notify before its FIN, and HTTPS servers answer it by closing their
// side; passing the FIN on after the server's leaves the TIME_WAIT with the server rather than
// with the proxy's upstream leg, so that many short tunnels to one storage account do not use up
// the proxy's ephemeral ports toward it. A server that waits for the FIN gets it this much later.
inline constexpr std::chrono::milliseconds kUpstreamCloseGrace{500};

// Owned by its ClientSession. The steps up to the relay run on the session's coroutine; the
// relay itself runs on completion handlers, so that an idle tunnel holds no coroutine frames:
// the session's coroutine ends once bytes flow, and the relay keeps the session alive until
// both directions have ended.
class TunnelSession {
public:
    explicit TunnelSession(ClientSession& session);
    TunnelSession(const TunnelSession&) = delete;
    TunnelSession& operator=(const TunnelSession&) = delete;
    // Returns when the tunnel was refused or failed, or once the relay has started.
    awaitable<void> run(const http::MessageHead& head);

private:
    enum class Direction { up, down };

    awaitable<bool> open(const policy::Target& target, const policy::Decision& connect);
    awaitable<bool> inspect_start(const policy::Target& target, const policy::Decision& connect);
    awaitable<bool> forward_pipelined();
    void start_relay();
    PumpEndHandler when_ends(Direction direction);
    void on_pump_end(Direction direction, PumpEnd end);
    // A clean end shuts the sink's sending side (see hold_client_fin); a failure resets both.
    void pass_on(Direction direction, PumpEnd end);
    // The client's FIN on a TLS tunnel: passed on once the server has closed, or after
    // kUpstreamCloseGrace. The relay counts the hold as running while it waits.
    void hold_client_fin();
    void release_client_fin();
    void task_ended();

    // Plain-TCP tunnels move bytes with splice(2), small reads by copy through the worker's
    // message buffer.
    struct PlainPumps {
        PlainPumps(ClientSession& session, SplicePipe& up_pipe, SplicePipe& down_pipe);
        SplicePump up;
        SplicePump down;
    };
    // A TLS client's bytes pass through OpenSSL and a pair of buffers.
    struct TlsClientPumps {
        explicit TlsClientPumps(ClientSession& session);
        std::unique_ptr<char[]> buffers;  // two kTunnelBufferBytes halves: up, down
        CopyPump<ClientStream, tcp_socket> up;
        CopyPump<tcp_socket, ClientStream> down;
    };

    ClientSession& session_;
    SplicePipe up_pipe_;
    SplicePipe down_pipe_;
    std::optional<PlainPumps> plain_;
    std::unique_ptr<TlsClientPumps> tls_client_;
    int running_ = 0;                       // pumps, and the FIN hold, not ended yet
    bool carries_tls_ = false;              // the first bytes were a complete ClientHello
    bool upstream_ended_ = false;           // the down direction is over
    std::unique_ptr<steady_timer> fin_hold_;  // only while the client's FIN waits
};

}  // namespace egressgate::proxy
