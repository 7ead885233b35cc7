#pragma once
// What --check-config checks beyond the file itself: that the files it names can be used by this
// process. Under systemd, ExecStartPre and ExecReload run it as the service's own user, so
// "writable by this process" is "writable by the service".
#include <vector>

#include "config/config.hpp"

namespace egressgate::proxy {

// Each problem is reported at the key that named the file: the audit file (or, when it does not
// exist yet, its directory) must be writable; the TLS listener's certificate and key must load
// and match.
std::vector<config::ConfigError> check_named_files(const config::Config& config);

// Each [proxy] source_addresses entry must be an address of this machine: one that a socket can
// bind to (without taking a port).
std::vector<config::ConfigError> check_source_addresses(const config::Config& config);

}  // namespace egressgate::proxy
