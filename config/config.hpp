#pragma once
// egressgate's configuration: TOML text -> validated, immutable Config. No sockets, no Asio.
// Sessions hold a std::shared_ptr<const Config> for their whole life; reload swaps the pointer.
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "audit/inventory.hpp"
#include "policy/egress_policy.hpp"
#include "policy/ip_address.hpp"
#include "policy/service_tags.hpp"

namespace egressgate::config {

// An address to listen on: "0.0.0.0:3128", "[::]:3128". Port 0 asks the kernel for one (tests).
struct ListenAddress {
    policy::IpAddress address;
    std::uint16_t port = 0;
    std::string to_string() const;
};

struct DnsSettings {
    std::vector<ListenAddress> servers;  // empty: the system resolver; port defaults to 53
    std::chrono::milliseconds timeout{5000};
    // [dns.hosts]: static answers, normalised name -> addresses (a value is one address or a list)
    std::unordered_map<std::string, std::vector<policy::IpAddress>> static_hosts;
};

struct Timeouts {
    std::chrono::milliseconds header{10000};
    std::chrono::milliseconds connect{10000};
    std::chrono::milliseconds idle{300000};
};

// [clients] limits: one VM cannot take the proxy from the others.
struct ClientLimits {
    std::uint32_t max_connections_per_ip = 512;                 // open at once
    std::uint32_t max_new_connections_per_second_per_ip = 200;  // sustained; a second's worth may come at once
};

// Where a key's value was written, for errors found after the config was read: the files it
// names (audit.path, proxy.tls_cert, proxy.tls_key) are checked by the proxy.
struct KeyPosition {
    int line = 1;
    int column = 1;
};

struct Config {
    std::string source;                 // the file it was read from
    std::unordered_map<std::string, KeyPosition> positions;  // "audit.path", "proxy.tls_cert", ...
    std::vector<ListenAddress> listen;  // [proxy] listen, at least one
    unsigned workers = 0;               // [proxy] workers; 0 = one per allowed CPU, steered (proxy/cpu_placement.hpp)
    // [proxy] max_connections: client connections open at once; 0 = derived from the descriptor
    // limit at start, leaving room for every connection's upstream leg and splice pipes.
    std::uint32_t max_connections = 0;
    // [proxy] drain_timeout_ms: how long open connections may take to finish once told to stop.
    std::chrono::milliseconds drain_timeout{10000};
    // [proxy] drain_notice_ms: after SIGTERM, how long /readyz answers 503 "draining" while the
    // proxy still accepts, so that a load balancer's health probe takes this VM out of rotation
    // before its listeners close. 0 = close them at once.
    std::chrono::milliseconds drain_notice{0};
    bool x_forwarded_for = false;       // [proxy] x_forwarded_for: tell origins the client's IP
    // [proxy] source_addresses: local addresses the upstream connections leave from, taken in
    // turn. Each brings its own ephemeral ports toward a destination, so N addresses lift the
    // TIME_WAIT cap on new connections to one storage account's IP:port N times. A destination
    // of a family none of them has, and every destination when empty: the kernel picks the
    // address of the route.
    std::vector<policy::IpAddress> source_addresses;
    // [proxy] tls_listen: listeners for clients that speak TLS to the proxy itself
    // (curl --proxy https://...). tls_cert and tls_key (PEM paths, relative to the config file's
    // directory) are required when it is set; they are loaded at start and on reload.
    std::vector<ListenAddress> tls_listen;
    std::string tls_cert;
    std::string tls_key;
    policy::ClientAllowList clients;    // [clients] allow, at least one prefix
    ClientLimits client_limits;         // [clients] max_connections_per_ip, max_new_connections_per_second_per_ip
    policy::EgressPolicy egress{policy::EgressRules{}};
    // [egress] service_tags_file, loaded with the config (so a reload re-reads it); null if unset.
    policy::ServiceTagsPtr service_tags;
    DnsSettings dns;
    Timeouts timeouts;
    std::string audit_path = "/var/log/egressgate/audit.jsonl";  // "-" = stdout
    // [audit] progress_interval_s: a tunnel open this long writes a progress record with its bytes
    // so far, and again each interval, so that a crash loses at most one interval of its record.
    std::chrono::seconds audit_progress_interval{300};
    audit::Inventory inventory;         // [[vm]] plus [inventory] az_vm_list
    ListenAddress admin_listen{*policy::IpAddress::parse("127.0.0.1"), 9090};
    // [admin] max_client_series: allowed clients outside the inventory that get a /metrics series
    // of their own (by address); the rest count as "other".
    std::uint32_t max_client_series = 1000;
};

// One validation failure: where (key path and line:column in the file), what was there, and why.
struct ConfigError {
    std::string source;  // file path
    std::string key;     // "egress.ports[1]", "dns.hosts.\"x.example\""; empty for TOML syntax errors
    // The offending value as written: strings in double quotes ("\"10.0.0.1/16\""), numbers bare
    // ("70000"), arrays as "[...]", long values cut after 80 characters. Empty for a missing key
    // and for tables.
    std::string value;
    int line = 0;    // 1-based; a required key missing from the whole file is reported at 1:1
    int column = 0;  // 0:0 only when the file could not be read at all
    std::string message;
    // "FILE:LINE:COLUMN: KEY = VALUE: MESSAGE"; " = VALUE" is left out when value is empty,
    // "KEY: " when key is empty (syntax errors), ":LINE:COLUMN" when line is 0 (unreadable file).
    std::string to_string() const;
};

struct LoadResult {
    std::shared_ptr<const Config> config;  // null when errors is not empty
    std::vector<ConfigError> errors;
};

// Parses and validates. Reports every error it can find, not only the first, sorted by position;
// unknown keys and wrong types are errors. [clients] allow is required (no open-proxy default).
// source_name is the file path: a relative [inventory] az_vm_list is resolved against its
// directory (TOML has no include base), so a config works whatever the working directory.
// [inventory] az_vm_list is read here; [[vm]] entries are applied after it and win.
LoadResult parse_config(std::string_view toml_text, std::string_view source_name);
// Reads the file, then parse_config(). An unreadable file is one error naming the path.
LoadResult load_config_file(const std::string& path);

}  // namespace egressgate::config
