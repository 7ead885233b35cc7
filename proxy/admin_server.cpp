#include "proxy/admin_server.hpp"

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <spdlog/spdlog.h>

namespace egressgate::proxy {

namespace beast = boost::beast;
namespace http = beast::http;

namespace {

http::response<http::string_body> answer(const http::request<http::string_body>& request, http::status status,
                                         std::string body, std::string_view content_type) {
    http::response<http::string_body> response{status, request.version()};
    response.set(http::field::server, "egressgate");
    response.set(http::field::content_type, beast::string_view(content_type.data(), content_type.size()));
    response.keep_alive(false);
    response.body() = request.method() == http::verb::head ? std::string() : std::move(body);
    response.prepare_payload();
    return response;
}

}  // namespace

AdminServer::AdminServer(asio::io_context& io, const config::ListenAddress& listen, MetricsSource metrics,
                         ReadySource ready, StatusSource status)
    : acceptor_(io), metrics_(std::move(metrics)), ready_(std::move(ready)), status_(std::move(status)) {
    const tcp::endpoint endpoint(asio::ip::make_address(listen.address.to_string()), listen.port);
    acceptor_.open(endpoint.protocol());
    acceptor_.set_option(tcp_acceptor::reuse_address(true));
    acceptor_.bind(endpoint);
    acceptor_.listen();
    const auto bound = acceptor_.local_endpoint();
    spdlog::info("admin endpoint on {}:{} (/metrics, /status, /healthz, /readyz)", bound.address().to_string(),
                 bound.port());
}

void AdminServer::start() { asio::co_spawn(acceptor_.get_executor(), accept_loop(), asio::detached); }

void AdminServer::stop() {
    error_code ignored;
    acceptor_.close(ignored);
}

awaitable<void> AdminServer::accept_loop() {
    while (acceptor_.is_open()) {
        error_code ec;
        tcp_socket socket = co_await acceptor_.async_accept(with_error(ec));
        if (ec == asio::error::operation_aborted) co_return;
        if (ec) {
            // Out of descriptors: the pending scrape stays in the backlog; retrying at once would
            // spin on a listener that stays readable.
            steady_timer pause(acceptor_.get_executor(), kAdminAcceptRetryDelay);
            co_await pause.async_wait(with_error(ec));
            continue;
        }
        asio::co_spawn(acceptor_.get_executor(), serve(std::move(socket)), asio::detached);
    }
}

// One request per connection: scrapers and health checks do not need more.
awaitable<void> AdminServer::serve(tcp_socket socket) {
    beast::tcp_stream stream(std::move(socket));
    stream.expires_after(kAdminRequestTimeout);
    beast::flat_buffer buffer(kMaxAdminRequestBytes);
    http::request_parser<http::string_body> parser;
    parser.header_limit(kMaxAdminRequestBytes);
    parser.body_limit(0);
    error_code ec;
    co_await http::async_read(stream, buffer, parser, with_error(ec));
    if (ec) co_return;
    const auto& request = parser.get();
    http::response<http::string_body> response;
    if (request.method() != http::verb::get && request.method() != http::verb::head) {
        response = answer(request, http::status::method_not_allowed, "GET only\n", "text/plain");
        response.set(http::field::allow, "GET, HEAD");
    } else if (request.target() == "/metrics") {
        response = answer(request, http::status::ok, metrics_(), "text/plain; version=0.0.4");
    } else if (request.target() == "/status") {
        response = answer(request, http::status::ok, status_(), "text/html; charset=utf-8");
        response.set(http::field::cache_control, "no-store");
    } else if (request.target() == "/healthz") {
        response = answer(request, http::status::ok, "ok\n", "text/plain");
    } else if (request.target() == "/readyz") {
        const auto problem = ready_();
        response = answer(request, problem ? http::status::service_unavailable : http::status::ok,
                          problem ? *problem + "\n" : "ready\n", "text/plain");
    } else {
        response = answer(request, http::status::not_found, "/metrics, /status, /healthz, /readyz\n", "text/plain");
    }
    co_await http::async_write(stream, response, with_error(ec));
    stream.socket().shutdown(tcp_socket::shutdown_send, ec);
}

}  // namespace egressgate::proxy
