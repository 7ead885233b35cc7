#pragma once
// The one place proxy/ includes Asio from. Boost 1.74's awaitable.hpp uses std::exchange without
// including <utility>, so it must come first.
#include <utility>

#include <chrono>

#include <boost/asio.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace egressgate::proxy {
namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;

// Every socket, timer and coroutine runs on an io_context, and says so in its type. Asio's default,
// the type-erased any_io_executor, wraps every completion in an allocated function object and
// copies the executor through a table of function pointers on every operation.
using io_executor = asio::io_context::executor_type;
using tcp_socket = asio::basic_stream_socket<tcp, io_executor>;
using tcp_acceptor = asio::basic_socket_acceptor<tcp, io_executor>;
using steady_timer = asio::basic_waitable_timer<std::chrono::steady_clock,
                                                asio::wait_traits<std::chrono::steady_clock>, io_executor>;
using stream_descriptor = asio::posix::basic_stream_descriptor<io_executor>;
template <typename T = void>
using awaitable = asio::awaitable<T, io_executor>;
inline constexpr asio::use_awaitable_t<io_executor> use_awaitable;

// GCC 12 miscompiles `if (co_await f())` and `co_return co_await f();` in Asio coroutines (the
// awaited frame is destroyed twice and the session crashes). Await into a local first, and keep
// co_await out of conditional expressions too (a ?: arm once dialled a garbage address).
// tests/lint_coroutine_forms.sh fails the build's tests on any of these forms.

// Completion token for the data path: errors come back as values, never as exceptions.
inline auto with_error(error_code& ec) { return asio::redirect_error(use_awaitable, ec); }
}  // namespace egressgate::proxy
