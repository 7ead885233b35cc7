#include "proxy/native_socket.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <new>

#include <boost/version.hpp>

// The socket state bits below are Asio's own (boost/asio/detail/socket_ops.hpp): check them, and
// whether a socket Asio is given still needs them, before building with another Boost.
static_assert(BOOST_VERSION / 100 == 1074, "native_socket.cpp knows Boost 1.74's Asio socket state");

namespace egressgate::proxy {
namespace {

error_code last_error() { return error_code(errno, asio::error::get_system_category()); }

using reuse_port = asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;

// basic_socket keeps its implementation protected; a derived class may name it.
struct SocketState : tcp_socket {
    static asio::detail::socket_ops::state_type& of(tcp_socket& socket) {
        return (socket.*&SocketState::impl_).get_implementation().state_;
    }
};

// Gives `fd` (non-blocking, no dup of it anywhere) to `socket`, or closes it. Registering it
// with the reactor may need memory (a descriptor state past those the reactor keeps for reuse).
error_code adopt(tcp_socket& socket, const tcp& protocol, int fd) {
    error_code ec;
    try {
        socket.assign(protocol, fd, ec);
    } catch (const std::bad_alloc&) {
        ec = error_code(ENOMEM, asio::error::get_system_category());
    }
    if (ec) {
        ::close(fd);
        return ec;
    }
    namespace ops = asio::detail::socket_ops;
    auto& state = SocketState::of(socket);
    state = static_cast<ops::state_type>((state | ops::internal_non_blocking) & ~ops::possible_dup);
    return {};
}

}  // namespace

error_code accept_nonblocking(tcp_acceptor& listener, tcp_socket& socket, tcp::endpoint& peer) {
    for (;;) {
        socklen_t length = static_cast<socklen_t>(peer.capacity());
        const int fd = ::accept4(listener.native_handle(), peer.data(), &length, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            peer.resize(length);
            return adopt(socket, peer.protocol(), fd);
        }
        if (errno != EINTR) return last_error();
    }
}

tcp_acceptor open_listener(asio::io_context& io, const tcp::endpoint& endpoint) {
    tcp_acceptor listener(io);
    listener.open(endpoint.protocol());
    listener.set_option(tcp_acceptor::reuse_address(true));
    listener.set_option(reuse_port(true));
    listener.set_option(tcp::no_delay(true));
    listener.bind(endpoint);
    listener.listen(asio::socket_base::max_listen_connections);
    listener.non_blocking(true);
    return listener;
}

error_code open_nonblocking(tcp_socket& socket, const tcp& protocol) {
    const int fd = ::socket(protocol.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol.protocol());
    if (fd < 0) return last_error();
    return adopt(socket, protocol, fd);
}

}  // namespace egressgate::proxy
