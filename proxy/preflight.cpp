#include "proxy/preflight.hpp"

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

}  // namespace

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
