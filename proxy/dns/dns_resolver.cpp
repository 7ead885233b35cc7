#include "proxy/dns/dns_resolver.hpp"

#include <stdexcept>

#include <fmt/format.h>
#include <netinet/in.h>

namespace egressgate::proxy {

awaitable<void> DnsLookup::wait() {
    if (done_) co_return;
    error_code ec;
    co_await signal_.async_wait(with_error(ec));
}

void DnsLookup::complete(DnsOutcome outcome, std::vector<policy::IpAddress> addresses) {
    if (done_) return;  // abandoned: the answer is late
    outcome_ = addresses.empty() && outcome == DnsOutcome::answered ? DnsOutcome::not_found : outcome;
    addresses_ = std::move(addresses);
    done_ = true;
    signal_.cancel();
}

void DnsLookup::abandon() {
    if (done_) return;
    outcome_ = DnsOutcome::abandoned;
    done_ = true;
    signal_.cancel();
}

// A c-ares socket seen through Asio. Asio only waits for readiness; c-ares owns the descriptor,
// so it is released, never closed, when c-ares is done with it.
struct DnsResolver::SocketWatch {
    SocketWatch(asio::io_context& io, ares_socket_t socket) : fd(socket), descriptor(io, socket) {}
    ares_socket_t fd;
    stream_descriptor descriptor;
    bool want_read = false;
    bool want_write = false;
    bool read_pending = false;
    bool write_pending = false;
    bool closed = false;
};

struct DnsResolver::PendingQuery {
    DnsResolver* resolver;
    std::string name;
    std::shared_ptr<DnsLookup> lookup;
};

namespace {

std::string server_list(const std::vector<config::ListenAddress>& servers) {
    std::string csv;
    for (const auto& server : servers) {
        if (!csv.empty()) csv += ',';
        csv += server.to_string();
    }
    return csv;
}

std::vector<policy::IpAddress> addresses_of(const ares_addrinfo* result, std::chrono::seconds& ttl) {
    std::vector<policy::IpAddress> addresses;
    ttl = dns::kMaxAnswerTtl;
    for (auto* node = result ? result->nodes : nullptr; node != nullptr; node = node->ai_next) {
        ttl = std::min(ttl, std::chrono::seconds(std::max(node->ai_ttl, 0)));
        std::optional<policy::IpAddress> address;
        if (node->ai_family == AF_INET) {
            const auto* in = reinterpret_cast<const sockaddr_in*>(node->ai_addr);
            std::array<std::uint8_t, 4> b;
            std::memcpy(b.data(), &in->sin_addr, 4);
            address = policy::IpAddress::v4(b);
        } else if (node->ai_family == AF_INET6) {
            const auto* in6 = reinterpret_cast<const sockaddr_in6*>(node->ai_addr);
            std::array<std::uint8_t, 16> b;
            std::memcpy(b.data(), &in6->sin6_addr, 16);
            address = policy::IpAddress::v6(b);
        }
        if (address && std::find(addresses.begin(), addresses.end(), *address) == addresses.end()) {
            addresses.push_back(*address);
        }
    }
    return addresses;
}

// Every status ares_getaddrinfo can hand to its callback, each in its own branch.
DnsOutcome outcome_of(int status) {
    switch (status) {
    case ARES_SUCCESS: return DnsOutcome::answered;
    case ARES_ENOTFOUND:
    case ARES_ENODATA:
    case ARES_ENONAME: return DnsOutcome::not_found;
    case ARES_ETIMEOUT: return DnsOutcome::timed_out;
    case ARES_EDESTRUCTION:
    case ARES_ECANCELLED: return DnsOutcome::abandoned;
    case ARES_EFORMERR:
    case ARES_ESERVFAIL:
    case ARES_ENOTIMP:
    case ARES_EREFUSED:
    case ARES_EBADQUERY:
    case ARES_EBADNAME:
    case ARES_EBADFAMILY:
    case ARES_EBADRESP:
    case ARES_ECONNREFUSED:
    case ARES_EOF:
    case ARES_EFILE:
    case ARES_ENOMEM:
    case ARES_EBADSTR:
    case ARES_EBADFLAGS:
    case ARES_EBADHINTS:
    case ARES_ENOTINITIALIZED:
    case ARES_ELOADIPHLPAPI:
    case ARES_EADDRGETNETWORKPARAMS:
    case ARES_ESERVICE: return DnsOutcome::failed;
    default: return DnsOutcome::failed;  // a status newer than this list: not an answer
    }
}

}  // namespace

DnsResolver::DnsResolver(asio::io_context& io, const config::DnsSettings& settings) : io_(io), timer_(io) {
    ares_options options{};
    options.sock_state_cb = &DnsResolver::on_socket_state;
    options.sock_state_cb_data = this;
    options.timeout = static_cast<int>(std::max<std::int64_t>(settings.timeout.count() / kDnsTries, 1));
    options.tries = kDnsTries;
    const int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES;
    if (int rc = ares_init_options(&channel_, &options, mask); rc != ARES_SUCCESS) {
        throw std::runtime_error(fmt::format("dns: cannot start the resolver: {}", ares_strerror(rc)));
    }
    if (!settings.servers.empty()) {
        const auto csv = server_list(settings.servers);
        if (int rc = ares_set_servers_ports_csv(channel_, csv.c_str()); rc != ARES_SUCCESS) {
            ares_destroy(channel_);
            throw std::runtime_error(fmt::format("dns.servers: \"{}\": {}", csv, ares_strerror(rc)));
        }
    }
}

DnsResolver::~DnsResolver() {
    ares_destroy(channel_);  // answers pending queries with ARES_EDESTRUCTION
    for (auto& [fd, socket] : sockets_) socket->descriptor.release();
}

std::shared_ptr<DnsLookup> DnsResolver::lookup(const std::string& name) {
    auto lookup = std::make_shared<DnsLookup>(io_.get_executor());
    if (auto cached = cache_.find(name, dns::Clock::now())) {
        const DnsOutcome outcome = cached->empty() ? DnsOutcome::not_found : DnsOutcome::answered;
        lookup->complete(outcome, std::move(*cached));
        return lookup;
    }
    ares_addrinfo_hints hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = ARES_AI_NOSORT;
    ares_getaddrinfo(channel_, name.c_str(), nullptr, &hints, &DnsResolver::on_answer,
                     new PendingQuery{this, name, lookup});
    arm_timer();
    return lookup;
}

// Answers and names that do not exist are cached (the latter for dns::kNegativeTtl); a resolver
// that failed or timed out is asked again next time.
void DnsResolver::shutdown() {
    ares_cancel(channel_);  // each pending query's callback runs now, with ARES_ECANCELLED
    timer_.cancel();
    for (auto& [fd, socket] : sockets_) {
        error_code ignored;
        socket->closed = true;
        socket->descriptor.cancel(ignored);
    }
}

void DnsResolver::on_answer(void* query, int status, int /*timeouts*/, ares_addrinfo* result) {
    std::unique_ptr<PendingQuery> pending(static_cast<PendingQuery*>(query));
    std::chrono::seconds ttl{0};
    const DnsOutcome outcome = outcome_of(status);
    auto addresses = outcome == DnsOutcome::answered ? addresses_of(result, ttl) : std::vector<policy::IpAddress>{};
    if (result) ares_freeaddrinfo(result);
    if (outcome == DnsOutcome::answered || outcome == DnsOutcome::not_found) {
        pending->resolver->cache_.store(pending->name, addresses, ttl, dns::Clock::now());
    }
    pending->lookup->complete(outcome, std::move(addresses));
}

void DnsResolver::on_socket_state(void* self, ares_socket_t fd, int readable, int writable) {
    auto& resolver = *static_cast<DnsResolver*>(self);
    auto& socket = resolver.sockets_[fd];
    if (!readable && !writable) {
        if (socket) {
            socket->closed = true;
            socket->descriptor.release();
        }
        resolver.sockets_.erase(fd);
        return;
    }
    if (!socket) socket = std::make_shared<SocketWatch>(resolver.io_, fd);
    socket->want_read = readable != 0;
    socket->want_write = writable != 0;
    resolver.watch(socket);
}

// Waits for readiness in the directions c-ares asked for; each wait is re-armed after c-ares has
// processed the socket, as long as c-ares still wants it.
void DnsResolver::watch(const std::shared_ptr<SocketWatch>& socket) {
    if (socket->want_read && !socket->read_pending) {
        socket->read_pending = true;
        socket->descriptor.async_wait(asio::posix::descriptor_base::wait_read, [this, socket](error_code ec) {
            socket->read_pending = false;
            if (ec || socket->closed) return;
            process(socket->fd, ARES_SOCKET_BAD);
            if (!socket->closed) watch(socket);
        });
    }
    if (socket->want_write && !socket->write_pending) {
        socket->write_pending = true;
        socket->descriptor.async_wait(asio::posix::descriptor_base::wait_write, [this, socket](error_code ec) {
            socket->write_pending = false;
            if (ec || socket->closed) return;
            process(ARES_SOCKET_BAD, socket->fd);
            if (!socket->closed) watch(socket);
        });
    }
}

void DnsResolver::process(ares_socket_t read_fd, ares_socket_t write_fd) {
    ares_process_fd(channel_, read_fd, write_fd);
    arm_timer();
}

// c-ares retransmits and gives up on its own clock: wake it when it says so.
void DnsResolver::arm_timer() {
    timeval buffer{};
    const timeval* next = ares_timeout(channel_, nullptr, &buffer);
    if (next == nullptr) {
        timer_.cancel();
        return;
    }
    timer_.expires_after(std::chrono::seconds(next->tv_sec) + std::chrono::microseconds(next->tv_usec));
    timer_.async_wait([this](error_code ec) {
        if (!ec) process(ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    });
}

}  // namespace egressgate::proxy
