#include "proxy/preflight.hpp"

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>

#include "proxy/tls_context.hpp"

namespace egressgate::proxy {

namespace {

std::string quoted(const std::string& text) { return "\"" + text + "\""; }

config::ConfigError error_at(const config::Config& config, const std::string& key, const std::string& value,
                             std::string message) {
    const auto at = config.positions.find(key);
    const config::KeyPosition position = at != config.positions.end() ? at->second : config::KeyPosition{};
    return config::ConfigError{config.source, key, quoted(value), position.line, position.column, std::move(message)};
}

std::string who() { return "this user (uid " + std::to_string(::geteuid()) + ")"; }

// Why lines cannot be appended to `path`, if they cannot.
std::optional<std::string> audit_path_problem(const std::string& path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0) {
        if (!S_ISREG(st.st_mode)) return "not a regular file";
        if (::access(path.c_str(), W_OK) != 0) return "not writable by " + who() + ": " + std::strerror(errno);
        return std::nullopt;
    }
    const std::filesystem::path parent = std::filesystem::path(path).parent_path();
    const std::string directory = parent.empty() ? "." : parent.string();
    if (::stat(directory.c_str(), &st) != 0) return "directory " + directory + ": " + std::strerror(errno);
    if (!S_ISDIR(st.st_mode)) return directory + " is not a directory";
    if (::access(directory.c_str(), W_OK | X_OK) != 0) {
        return "cannot create the file: directory " + directory + " is not writable by " + who() + ": " +
               std::strerror(errno);
    }
    return std::nullopt;
}

std::optional<std::string> unreadable(const std::string& path) {
    std::ifstream file(path);
    if (file) return std::nullopt;
    return "cannot read " + path + ": " + std::strerror(errno);
}

// Why no upstream connection could leave from `address`, if none could.
std::optional<std::string> source_address_problem(const policy::IpAddress& address) {
    sockaddr_storage storage{};
    socklen_t length = 0;
    const auto& bytes = address.bytes();
    if (address.is_v4()) {
        auto& v4 = reinterpret_cast<sockaddr_in&>(storage);
        v4.sin_family = AF_INET;
        std::memcpy(&v4.sin_addr, bytes.data(), 4);
        length = sizeof v4;
    } else {
        auto& v6 = reinterpret_cast<sockaddr_in6&>(storage);
        v6.sin6_family = AF_INET6;
        std::memcpy(&v6.sin6_addr, bytes.data(), 16);
        length = sizeof v6;
    }
    const int fd = ::socket(storage.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return std::string("socket: ") + std::strerror(errno);
    const int on = 1;
    ::setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &on, sizeof on);
    const int rc = ::bind(fd, reinterpret_cast<const sockaddr*>(&storage), length);
    const int error = errno;
    ::close(fd);
    if (rc == 0) return std::nullopt;
    if (error == EADDRNOTAVAIL) return "not an address of this machine (assign it to a NIC, or remove it)";
    return std::string("cannot bind to it: ") + std::strerror(error);
}

}  // namespace

std::vector<config::ConfigError> check_source_addresses(const config::Config& config) {
    std::vector<config::ConfigError> errors;
    for (std::size_t i = 0; i < config.source_addresses.size(); ++i) {
        const auto& address = config.source_addresses[i];
        if (auto problem = source_address_problem(address)) {
            const std::string key = "proxy.source_addresses[" + std::to_string(i) + "]";
            errors.push_back(error_at(config, key, address.to_string(), *problem));
        }
    }
    return errors;
}

std::vector<config::ConfigError> check_named_files(const config::Config& config) {
    std::vector<config::ConfigError> errors;
    if (config.audit_path != "-") {
        if (auto problem = audit_path_problem(config.audit_path)) {
            errors.push_back(error_at(config, "audit.path", config.audit_path, "the audit file: " + *problem));
        }
    }
    if (config.tls_listen.empty()) return errors;
    const auto cert = unreadable(config.tls_cert);
    const auto key = unreadable(config.tls_key);
    if (cert) errors.push_back(error_at(config, "proxy.tls_cert", config.tls_cert, *cert));
    if (key) errors.push_back(error_at(config, "proxy.tls_key", config.tls_key, *key));
    if (cert || key) return errors;
    try {
        load_tls_context(config.tls_cert, config.tls_key);
    } catch (const std::exception& e) {
        // load_tls_context names the key that failed first: "proxy.tls_key: ... does not match".
        std::string message = e.what();
        const bool about_key = message.starts_with("proxy.tls_key: ");
        const std::string prefix = about_key ? "proxy.tls_key: " : "proxy.tls_cert: ";
        if (message.starts_with(prefix)) message.erase(0, prefix.size());
        errors.push_back(about_key ? error_at(config, "proxy.tls_key", config.tls_key, message)
                                   : error_at(config, "proxy.tls_cert", config.tls_cert, message));
    }
    return errors;
}

}  // namespace egressgate::proxy
