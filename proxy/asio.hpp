#pragma once
// The one place proxy/ includes Asio from. Boost 1.74's awaitable.hpp uses std::exchange without
// including <utility>, so it must come first.
#include <utility>

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
template <typename T = void>
using awaitable = asio::awaitable<T>;
using asio::use_awaitable;

// GCC 12 miscompiles `if (co_await f())` and `co_return co_await f();` in Asio coroutines (the
// awaited frame is destroyed twice and the session crashes). Await into a local first, and keep
// co_await out of conditional expressions too (a ?: arm once dialled a garbage address).
// tests/lint_coroutine_forms.sh fails the build's tests on any of these forms.

// Completion token for the data path: errors come back as values, never as exceptions.
inline auto with_error(error_code& ec) { return asio::redirect_error(use_awaitable, ec); }
}  // namespace egressgate::proxy
