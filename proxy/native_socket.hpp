#pragma once
// TCP sockets made non-blocking by the call that creates them (accept4, socket with
// SOCK_NONBLOCK) and handed to Asio without the system calls Asio 1.74 adds to sockets it did
// not make itself: an ioctl(FIONBIO) before the first asynchronous operation, and for an
// assigned descriptor an EPOLL_CTL_DEL before close (it might be a dup, whose close would leave
// it in epoll). Neither applies to a descriptor fresh from the kernel that nothing duplicates.
#include "proxy/asio.hpp"

namespace egressgate::proxy {

// A worker's listening socket on `endpoint`: SO_REUSEADDR, SO_REUSEPORT (one listener per worker),
// non-blocking (for accept_nonblocking), and TCP_NODELAY, which Linux copies to every connection
// accepted from it, so that no client's socket needs a setsockopt of its own.
tcp_acceptor open_listener(asio::io_context& io, const tcp::endpoint& endpoint);

// Accepts the next connection on `listener` (non-blocking itself) into `socket` (closed) with
// accept4, non-blocking and close-on-exec; `peer` is the client's address. would_block: none is
// waiting.
error_code accept_nonblocking(tcp_acceptor& listener, tcp_socket& socket, tcp::endpoint& peer);

// Opens `socket` (closed) for `protocol`, non-blocking and close-on-exec from the start.
error_code open_nonblocking(tcp_socket& socket, const tcp& protocol);

}  // namespace egressgate::proxy
