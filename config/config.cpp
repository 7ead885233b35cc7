#include "config/config.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <initializer_list>
#include <optional>
#include <sstream>
#include <tuple>
#include <utility>

#include <toml++/toml.h>

#include "policy/authority.hpp"
#include "policy/catalog.hpp"

namespace egressgate::config {

namespace {

// Named limits. Upper bounds catch unit mistakes (seconds typed into a *_ms key is harmless;
// minutes typed as hours are not) without second-guessing deliberate choices.
constexpr std::int64_t kMaxWorkers = 1024;
constexpr std::int64_t kMaxDnsTimeoutMs = 60'000;
constexpr std::int64_t kMaxHeaderTimeoutMs = 3'600'000;      // one hour
constexpr std::int64_t kMaxConnectTimeoutMs = 3'600'000;     // one hour
constexpr std::int64_t kMaxIdleTimeoutMs = 7 * 86'400'000LL; // seven days: long backups stay up
constexpr std::int64_t kMaxDrainTimeoutMs = 3'600'000;       // one hour
constexpr std::int64_t kMaxConnections = 10'000'000;
constexpr std::int64_t kMaxConnectionRate = 1'000'000;       // new connections per second per IP
constexpr std::int64_t kMaxProgressIntervalS = 86'400;       // a day
constexpr std::int64_t kMaxPort = policy::kMaxPort;
constexpr std::uint16_t kDefaultDnsPort = 53;
constexpr std::size_t kMaxEchoedValueLength = 80;            // longer values are cut in messages
constexpr std::size_t kMaxFileBytes = 64 * 1024 * 1024;      // az_vm_list of a large subscription

const char* const kDefaultListen = "0.0.0.0:3128";
const std::initializer_list<std::uint16_t> kDefaultPorts = {443, 8443, 80};
const std::initializer_list<std::string_view> kDefaultCatalogs = {"azure-backup"};

// ---------------------------------------------------------------------------------------------
// Reading files: config and az_vm_list. Errors carry strerror so that the admin sees
// "Permission denied" rather than a generic failure.

struct FileText {
    std::string text;
    std::string error;  // empty on success
};

FileText read_text_file(const std::string& path) {
    FileText result;
    std::unique_ptr<std::FILE, int (*)(std::FILE*)> file(std::fopen(path.c_str(), "rb"), &std::fclose);
    if (!file) {
        result.error = std::strerror(errno);
        return result;
    }
    char buffer[64 * 1024];
    while (std::size_t n = std::fread(buffer, 1, sizeof buffer, file.get())) {
        result.text.append(buffer, n);
        if (result.text.size() > kMaxFileBytes) {
            result.error = "larger than " + std::to_string(kMaxFileBytes) + " bytes";
            return result;
        }
    }
    if (std::ferror(file.get())) result.error = std::strerror(errno);  // e.g. EISDIR
    return result;
}

// ---------------------------------------------------------------------------------------------
// Key paths and value echoes for messages.

bool is_bare_key(std::string_view key) {
    return !key.empty() && std::all_of(key.begin(), key.end(), [](unsigned char c) {
        return std::isalnum(c) || c == '_' || c == '-';
    });
}

// Appends a key the way TOML would spell it: dns.hosts."x.example".
std::string child_path(std::string_view parent, std::string_view key) {
    std::string path(parent);
    if (!path.empty()) path += '.';
    if (is_bare_key(key)) return path + std::string(key);
    path += '"';
    for (char c : key) {
        if (c == '"' || c == '\\') path += '\\';
        path += c;
    }
    return path + '"';
}

std::string element_path(std::string_view array_path, std::size_t index) {
    return std::string(array_path) + "[" + std::to_string(index) + "]";
}

std::string double_quoted(std::string_view text) {
    std::string out = "\"";
    for (char c : text) {
        if (c == '"' || c == '\\') {
            out += '\\';
            out += c;
        } else if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
            char escaped[8];
            std::snprintf(escaped, sizeof escaped, "\\u%04x", static_cast<unsigned>(c));
            out += escaped;
        } else {
            out += c;
        }
    }
    return out + '"';
}

std::string echo_unbounded(const toml::node& node) {
    if (const auto* s = node.as_string()) return double_quoted(s->get());
    if (const auto* a = node.as_array()) {
        std::string out = "[";
        for (std::size_t i = 0; i < a->size(); ++i) out += (i ? ", " : "") + echo_unbounded(*a->get(i));
        return out + "]";
    }
    if (node.is_table()) return "{...}";
    std::ostringstream out;
    node.visit([&out](const auto& value) { out << value; });
    return out.str();
}

// The value the way an admin writes it ("10.0.0.1/16" in double quotes, 70000 bare), cut to a
// readable length. Tables are not echoed: their keys get their own messages.
std::string echo(const toml::node& node) {
    if (node.is_table()) return {};
    std::string text = echo_unbounded(node);
    if (text.size() > kMaxEchoedValueLength) text = text.substr(0, kMaxEchoedValueLength) + "...";
    return text;
}

std::string_view type_name(toml::node_type type) {
    switch (type) {
        case toml::node_type::string: return "a string";
        case toml::node_type::integer: return "an integer";
        case toml::node_type::floating_point: return "a floating-point number";
        case toml::node_type::boolean: return "a boolean";
        case toml::node_type::date: return "a date";
        case toml::node_type::time: return "a time";
        case toml::node_type::date_time: return "a date-time";
        case toml::node_type::array: return "an array";
        case toml::node_type::table: return "a table";
        case toml::node_type::none: break;
    }
    return "nothing";
}

// ---------------------------------------------------------------------------------------------
// Socket addresses: "ip:port", "[v6]:port", and for DNS servers a bare address.

struct AddressParse {
    std::optional<ListenAddress> address;
    std::string problem;  // set when address is not
};

// "ip:port" or "[v6]:port" through the one authority parser; default_port: the port a bare
// address gets (DNS servers), nullopt when a port is required. Names are not resolved here.
AddressParse parse_socket_address(std::string_view text, std::optional<std::uint16_t> default_port,
                                  std::int64_t min_port) {
    constexpr std::string_view kShape = "expected \"ip:port\" or \"[ipv6]:port\"";
    if (default_port) {
        if (auto bare = policy::IpAddress::parse(text)) return {ListenAddress{*bare, *default_port}, {}};
    }
    const auto parsed = policy::split_authority(text);
    if (!parsed.authority) {
        if (parsed.problem == policy::AuthorityProblem::bad_port) {
            return {std::nullopt, "port must be a number from " + std::to_string(min_port) + " to 65535"};
        }
        return {std::nullopt, std::string(policy::describe(parsed.problem))};
    }
    const policy::Authority& authority = *parsed.authority;
    const auto ip = policy::IpAddress::parse(authority.host);
    if (authority.bracketed && (!ip || ip->is_v4())) return {std::nullopt, "not an IPv6 address inside the brackets"};
    if (!ip) return {std::nullopt, "not an IP address (names are not resolved here)"};
    if (!authority.port) {
        if (default_port) return {ListenAddress{*ip, *default_port}, {}};
        return {std::nullopt, std::string(kShape)};
    }
    if (*authority.port < min_port) {
        return {std::nullopt, "port must be a number from " + std::to_string(min_port) + " to 65535"};
    }
    return {ListenAddress{*ip, *authority.port}, {}};
}

// ---------------------------------------------------------------------------------------------
// Validation: walks the parsed TOML once, reports every problem, and fills a Config.

class ConfigBuilder {
public:
    ConfigBuilder(std::string source_name, std::filesystem::path base_dir)
        : source_(std::move(source_name)), base_dir_(std::move(base_dir)) {}

    LoadResult build(const toml::table& root);
    void error(std::string key, std::string value, const toml::source_region& where, std::string message);

private:
    // Sections, in file order of the contract.
    void proxy_section(const toml::table& t);
    void proxy_tls(const toml::table& t);
    void clients_section(const toml::table* t);
    void egress_section(const toml::table* t);
    void egress_ports(const toml::node* ports);
    void add_catalogs(const toml::node* node, const std::string& path);
    void add_catalog(std::string_view name, const toml::node* at, const std::string& path);
    void add_host_patterns(const toml::array& hosts, const std::string& path);
    void dns_section(const toml::table& t);
    void dns_static_hosts(const toml::table& t, const std::string& path);
    void timeouts_section(const toml::table& t);
    void audit_section(const toml::table& t);
    void inventory_section(const toml::table& t);
    void vm_entries(const toml::node& node);
    void vm_entry(const toml::node& node, const std::string& path);
    void admin_section(const toml::table& t);

    // Typed access. Each reports a wrong type at the node and returns nothing.
    const toml::table* table_at(const toml::table& parent, std::string_view key, const std::string& path);
    const toml::array* array_of(const toml::node& node, const std::string& path, std::string_view what);
    std::optional<std::string> string_of(const toml::node& node, const std::string& path);
    std::optional<std::int64_t> integer_in(const toml::node& node, const std::string& path,
                                           std::int64_t min, std::int64_t max);
    std::optional<std::chrono::milliseconds> milliseconds_in(const toml::table& t, std::string_view key,
                                                             const std::string& parent, std::int64_t max);
    template <typename Fn>
    void for_each_string(const toml::array& array, const std::string& path, Fn&& fn);
    std::optional<ListenAddress> socket_address(const toml::node& node, const std::string& path,
                                                std::optional<std::uint16_t> default_port,
                                                std::int64_t min_port);
    std::optional<policy::CidrSet> cidr_list(const toml::node& node, const std::string& path,
                                             bool must_be_non_empty);
    void check_known_keys(const toml::table& t, const std::string& path,
                          std::initializer_list<std::string_view> known);
    void require(const std::string& key, const toml::source_region& where, std::string message);
    void remember_position(const std::string& key, const toml::node& node) {
        const auto& begin = node.source().begin;
        config_->positions[key] = KeyPosition{static_cast<int>(begin.line), static_cast<int>(begin.column)};
    }

    std::string source_;
    std::filesystem::path base_dir_;
    std::vector<ConfigError> errors_;
    std::shared_ptr<Config> config_ = std::make_shared<Config>();
    policy::EgressRules rules_;
};

void ConfigBuilder::error(std::string key, std::string value, const toml::source_region& where,
                          std::string message) {
    // Nodes made by the parser always have a position; 1:1 stands for "the file as a whole".
    const int line = where.begin.line > 0 ? static_cast<int>(where.begin.line) : 1;
    const int column = where.begin.column > 0 ? static_cast<int>(where.begin.column) : 1;
    errors_.push_back(ConfigError{source_, std::move(key), std::move(value), line, column, std::move(message)});
}

void ConfigBuilder::require(const std::string& key, const toml::source_region& where, std::string message) {
    error(key, {}, where, "required: " + std::move(message));
}

void ConfigBuilder::check_known_keys(const toml::table& t, const std::string& path,
                                     std::initializer_list<std::string_view> known) {
    for (const auto& [key, node] : t) {
        if (std::find(known.begin(), known.end(), key.str()) != known.end()) continue;
        error(child_path(path, key.str()), echo(node), key.source(), "unknown key");
    }
}

const toml::table* ConfigBuilder::table_at(const toml::table& parent, std::string_view key,
                                           const std::string& path) {
    const toml::node* node = parent.get(key);
    if (node == nullptr) return nullptr;
    if (const auto* t = node->as_table()) return t;
    error(path, echo(*node), node->source(), "expected a table, got " + std::string(type_name(node->type())));
    return nullptr;
}

const toml::array* ConfigBuilder::array_of(const toml::node& node, const std::string& path,
                                           std::string_view what) {
    if (const auto* a = node.as_array()) return a;
    error(path, echo(node), node.source(),
          "expected an array of " + std::string(what) + ", got " + std::string(type_name(node.type())));
    return nullptr;
}

std::optional<std::string> ConfigBuilder::string_of(const toml::node& node, const std::string& path) {
    if (const auto* s = node.as_string()) return s->get();
    error(path, echo(node), node.source(), "expected a string, got " + std::string(type_name(node.type())));
    return std::nullopt;
}

std::optional<std::int64_t> ConfigBuilder::integer_in(const toml::node& node, const std::string& path,
                                                      std::int64_t min, std::int64_t max) {
    const auto* i = node.as_integer();
    if (i == nullptr) {
        error(path, echo(node), node.source(), "expected an integer, got " + std::string(type_name(node.type())));
        return std::nullopt;
    }
    if (i->get() < min || i->get() > max) {
        error(path, echo(node), node.source(),
              "must be from " + std::to_string(min) + " to " + std::to_string(max));
        return std::nullopt;
    }
    return i->get();
}

std::optional<std::chrono::milliseconds> ConfigBuilder::milliseconds_in(const toml::table& t, std::string_view key,
                                                                        const std::string& parent,
                                                                        std::int64_t max) {
    const toml::node* node = t.get(key);
    if (node == nullptr) return std::nullopt;
    const auto value = integer_in(*node, child_path(parent, key), 1, max);
    if (!value) return std::nullopt;
    return std::chrono::milliseconds{*value};
}

template <typename Fn>
void ConfigBuilder::for_each_string(const toml::array& array, const std::string& path, Fn&& fn) {
    for (std::size_t i = 0; i < array.size(); ++i) {
        const toml::node& element = *array.get(i);
        const std::string where = element_path(path, i);
        if (auto text = string_of(element, where)) fn(*text, element, where);
    }
}

std::optional<ListenAddress> ConfigBuilder::socket_address(const toml::node& node, const std::string& path,
                                                           std::optional<std::uint16_t> default_port,
                                                           std::int64_t min_port) {
    const auto text = string_of(node, path);
    if (!text) return std::nullopt;
    auto parsed = parse_socket_address(*text, default_port, min_port);
    if (!parsed.address) error(path, echo(node), node.source(), std::string(parsed.problem));
    return parsed.address;
}

std::optional<policy::CidrSet> ConfigBuilder::cidr_list(const toml::node& node, const std::string& path,
                                                        bool must_be_non_empty) {
    const auto* array = array_of(node, path, "CIDRs");
    if (array == nullptr) return std::nullopt;
    if (must_be_non_empty && array->empty()) {
        error(path, echo(node), node.source(), "must list at least one CIDR");
        return std::nullopt;
    }
    // Elements in error are left out; any error discards the whole Config anyway.
    policy::CidrSet set;
    for_each_string(*array, path, [&](const std::string& text, const toml::node& element, const std::string& where) {
        if (auto cidr = policy::Cidr::parse(text)) set.add(*cidr);
        else error(where, echo(element), element.source(),
                   "not a CIDR (\"10.0.0.0/16\", \"fd00::/8\"; host bits below the prefix must be zero)");
    });
    return set;
}

// toml++ iterates tables in key order; messages that relate two entries ("same name as ...")
// must blame the later one in the file.
std::vector<std::pair<const toml::key*, const toml::node*>> in_file_order(const toml::table& t) {
    std::vector<std::pair<const toml::key*, const toml::node*>> entries;
    for (const auto& [key, node] : t) entries.emplace_back(&key, &node);
    std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) {
        const auto& pa = a.first->source().begin;
        const auto& pb = b.first->source().begin;
        return std::tie(pa.line, pa.column) < std::tie(pb.line, pb.column);
    });
    return entries;
}

// --- [proxy] ---------------------------------------------------------------------------------

void ConfigBuilder::proxy_section(const toml::table& t) {
    check_known_keys(t, "proxy", {"listen", "workers", "x_forwarded_for", "tls_listen", "tls_cert", "tls_key",
                                  "max_connections", "drain_timeout_ms"});
    if (const toml::node* listen = t.get("listen")) {
        config_->listen.clear();
        if (const auto* array = array_of(*listen, "proxy.listen", "\"ip:port\" strings")) {
            if (array->empty()) error("proxy.listen", echo(*listen), listen->source(), "must list at least one address");
            for (std::size_t i = 0; i < array->size(); ++i) {
                const auto address = socket_address(*array->get(i), element_path("proxy.listen", i), std::nullopt, 0);
                if (address) config_->listen.push_back(*address);
            }
        }
    }
    if (const toml::node* workers = t.get("workers")) {
        if (auto n = integer_in(*workers, "proxy.workers", 0, kMaxWorkers)) config_->workers = static_cast<unsigned>(*n);
    }
    if (const toml::node* max = t.get("max_connections")) {
        if (auto n = integer_in(*max, "proxy.max_connections", 0, kMaxConnections)) {
            config_->max_connections = static_cast<std::uint32_t>(*n);
        }
    }
    if (auto ms = milliseconds_in(t, "drain_timeout_ms", "proxy", kMaxDrainTimeoutMs)) config_->drain_timeout = *ms;
    if (const toml::node* xff = t.get("x_forwarded_for")) {
        if (xff->is_boolean()) {
            config_->x_forwarded_for = *xff->value<bool>();
        } else {
            error("proxy.x_forwarded_for", echo(*xff), xff->source(),
                  "expected true or false, got " + std::string(type_name(xff->type())));
        }
    }
    proxy_tls(t);
}

// The TLS listener needs its certificate and key; the files themselves are loaded (and their
// errors reported) by the proxy at start and on reload.
void ConfigBuilder::proxy_tls(const toml::table& t) {
    const toml::node* listen = t.get("tls_listen");
    if (listen == nullptr) return;
    if (const auto* array = array_of(*listen, "proxy.tls_listen", "\"ip:port\" strings")) {
        for (std::size_t i = 0; i < array->size(); ++i) {
            const auto address = socket_address(*array->get(i), element_path("proxy.tls_listen", i), std::nullopt, 0);
            if (address) config_->tls_listen.push_back(*address);
        }
    }
    for (auto [key, target] : {std::pair{"tls_cert", &config_->tls_cert}, std::pair{"tls_key", &config_->tls_key}}) {
        const std::string path = std::string("proxy.") + key;
        const toml::node* node = t.get(key);
        if (node == nullptr) {
            require(path, t.source(), "a PEM file, needed by proxy.tls_listen");
            continue;
        }
        if (const auto text = string_of(*node, path)) {
            std::filesystem::path file(*text);
            *target = (file.is_relative() ? base_dir_ / file : file).string();
            remember_position(path, *node);
        }
    }
}

// --- [clients] -------------------------------------------------------------------------------

void ConfigBuilder::clients_section(const toml::table* t) {
    // No default: a proxy open to every source address is not a safe thing to start by accident.
    constexpr const char* kWhat = "the virtual network's CIDRs";
    if (t == nullptr) {
        require("clients.allow", toml::source_region{}, kWhat);
        return;
    }
    check_known_keys(*t, "clients", {"allow", "max_connections_per_ip", "max_new_connections_per_second_per_ip"});
    ClientLimits& limits = config_->client_limits;
    if (const toml::node* max = t->get("max_connections_per_ip")) {
        if (auto n = integer_in(*max, "clients.max_connections_per_ip", 1, kMaxConnections)) {
            limits.max_connections_per_ip = static_cast<std::uint32_t>(*n);
        }
    }
    if (const toml::node* rate = t->get("max_new_connections_per_second_per_ip")) {
        if (auto n = integer_in(*rate, "clients.max_new_connections_per_second_per_ip", 1, kMaxConnectionRate)) {
            limits.max_new_connections_per_second_per_ip = static_cast<std::uint32_t>(*n);
        }
    }
    const toml::node* allow = t->get("allow");
    if (allow == nullptr) {
        require("clients.allow", t->source(), kWhat);
        return;
    }
    if (auto set = cidr_list(*allow, "clients.allow", true)) config_->clients = std::move(*set);
}

// --- [egress] --------------------------------------------------------------------------------

void ConfigBuilder::egress_section(const toml::table* t) {
    static const toml::table kEmpty;
    const toml::table& egress = t != nullptr ? *t : kEmpty;
    check_known_keys(egress, "egress", {"mode", "ports", "catalogs", "hosts", "allow_addresses", "sni", "tls_ports"});

    if (const toml::node* mode = egress.get("mode")) {
        if (const auto text = string_of(*mode, "egress.mode")) {
            if (*text == "enforce") rules_.mode = policy::EgressMode::enforce;
            else if (*text == "report") rules_.mode = policy::EgressMode::report;
            else error("egress.mode", echo(*mode), mode->source(), "expected \"enforce\" or \"report\"");
        }
    }

    if (const toml::node* sni = egress.get("sni")) {
        if (const auto text = string_of(*sni, "egress.sni")) {
            if (*text == "match") rules_.sni = policy::SniMode::match;
            else if (*text == "log") rules_.sni = policy::SniMode::log;
            else if (*text == "off") rules_.sni = policy::SniMode::off;
            else error("egress.sni", echo(*sni), sni->source(), "expected \"match\", \"log\" or \"off\"");
        }
    }
    if (const toml::node* tls_ports = egress.get("tls_ports")) {
        if (const auto* array = array_of(*tls_ports, "egress.tls_ports", "port numbers")) {
            rules_.tls_ports.clear();
            for (std::size_t i = 0; i < array->size(); ++i) {
                if (auto port = integer_in(*array->get(i), element_path("egress.tls_ports", i), 1, kMaxPort)) {
                    rules_.tls_ports.push_back(static_cast<std::uint16_t>(*port));
                }
            }
        }
    }
    egress_ports(egress.get("ports"));
    add_catalogs(egress.get("catalogs"), "egress.catalogs");
    if (const toml::node* hosts = egress.get("hosts")) {
        if (const auto* array = array_of(*hosts, "egress.hosts", "host patterns")) add_host_patterns(*array, "egress.hosts");
    }
    if (const toml::node* allow = egress.get("allow_addresses")) {
        if (auto set = cidr_list(*allow, "egress.allow_addresses", false)) rules_.allow_addresses = std::move(*set);
    }
}

void ConfigBuilder::egress_ports(const toml::node* ports) {
    if (ports == nullptr) {
        rules_.ports.assign(kDefaultPorts.begin(), kDefaultPorts.end());
        return;
    }
    const auto* array = array_of(*ports, "egress.ports", "port numbers");
    if (array == nullptr) return;
    // An empty list would deny everything: almost certainly not what the admin meant.
    if (array->empty()) error("egress.ports", echo(*ports), ports->source(), "must list at least one port");
    for (std::size_t i = 0; i < array->size(); ++i) {
        if (auto port = integer_in(*array->get(i), element_path("egress.ports", i), 1, kMaxPort)) {
            rules_.ports.push_back(static_cast<std::uint16_t>(*port));
        }
    }
}

std::string catalog_choices() {
    std::string choices;
    for (std::string_view name : policy::catalog_names()) {
        if (!choices.empty()) choices += ", ";
        choices += name;
    }
    return choices;
}

// Expands one catalog into host patterns. `at` is where the name was written, or null for the
// default catalogs (a missing default is a bug here, reported at the top of the file).
void ConfigBuilder::add_catalog(std::string_view name, const toml::node* at, const std::string& path) {
    const toml::source_region where = at != nullptr ? at->source() : toml::source_region{};
    const std::string value = at != nullptr ? echo(*at) : std::string{};
    const auto patterns = policy::catalog_patterns(name);
    if (!patterns) {
        error(path, value, where, "unknown catalog; choices: " + catalog_choices());
        return;
    }
    const std::string origin = "catalog:" + std::string(name);
    for (std::string_view text : *patterns) {
        // A built-in pattern that does not parse must not silently shrink the rule.
        if (auto pattern = policy::HostPattern::parse(text)) rules_.hosts.add(*pattern, origin);
        else error(path, value, where, "built-in pattern \"" + std::string(text) + "\" is invalid");
    }
}

void ConfigBuilder::add_catalogs(const toml::node* node, const std::string& path) {
    if (node == nullptr) {
        for (std::string_view name : kDefaultCatalogs) add_catalog(name, nullptr, path);
        return;
    }
    if (const auto* array = array_of(*node, path, "catalog names")) {
        for_each_string(*array, path, [&](const std::string& name, const toml::node& element, const std::string& where) {
            add_catalog(name, &element, where);
        });
    }
}

void ConfigBuilder::add_host_patterns(const toml::array& hosts, const std::string& path) {
    for_each_string(hosts, path, [&](const std::string& text, const toml::node& element, const std::string& where) {
        if (auto pattern = policy::HostPattern::parse(text)) {
            rules_.hosts.add(*pattern, "egress.hosts");
            return;
        }
        error(where, echo(element), element.source(),
              "not a host pattern: expected \"name.example\" or \"*.example\" (punycode for IDNs)");
    });
}

// --- [dns] -----------------------------------------------------------------------------------

void ConfigBuilder::dns_section(const toml::table& t) {
    check_known_keys(t, "dns", {"servers", "timeout_ms", "hosts"});
    if (const toml::node* servers = t.get("servers")) {
        if (const auto* array = array_of(*servers, "dns.servers", "\"ip\" or \"ip:port\" strings")) {
            for (std::size_t i = 0; i < array->size(); ++i) {
                auto server = socket_address(*array->get(i), element_path("dns.servers", i), kDefaultDnsPort, 1);
                if (server) config_->dns.servers.push_back(*server);
            }
        }
    }
    if (auto timeout = milliseconds_in(t, "timeout_ms", "dns", kMaxDnsTimeoutMs)) config_->dns.timeout = *timeout;
    if (const auto* hosts = table_at(t, "hosts", "dns.hosts")) dns_static_hosts(*hosts, "dns.hosts");
}

void ConfigBuilder::dns_static_hosts(const toml::table& t, const std::string& path) {
    std::unordered_map<std::string, std::string> written_as;  // normalised name -> key path
    for (const auto& [key_ptr, node_ptr] : in_file_order(t)) {
        const toml::key& key = *key_ptr;
        const toml::node& node = *node_ptr;
        const std::string where = child_path(path, key.str());
        const auto name = policy::normalize_host(key.str());
        if (!name) {
            error(where, echo(node), key.source(), "not a valid DNS name");
            continue;
        }
        if (const auto [it, inserted] = written_as.emplace(*name, where); !inserted) {
            error(where, echo(node), key.source(), "same name as " + it->second);
            continue;
        }
        std::vector<policy::IpAddress> addresses;
        auto add_address = [&](const std::string& text, const toml::node& at, const std::string& at_path) {
            if (auto ip = policy::IpAddress::parse(text)) addresses.push_back(*ip);
            else error(at_path, echo(at), at.source(), "not an IP address");
        };
        if (node.is_string()) {
            add_address(node.as_string()->get(), node, where);
        } else if (const auto* array = array_of(node, where, "IP addresses (or one address)")) {
            if (array->empty()) error(where, echo(node), node.source(), "must list at least one address");
            for_each_string(*array, where, add_address);
        }
        if (!addresses.empty()) config_->dns.static_hosts[*name] = std::move(addresses);
    }
}

// --- [timeouts], [audit], [admin] ------------------------------------------------------------

void ConfigBuilder::timeouts_section(const toml::table& t) {
    check_known_keys(t, "timeouts", {"header_ms", "connect_ms", "idle_ms"});
    Timeouts& timeouts = config_->timeouts;
    if (auto ms = milliseconds_in(t, "header_ms", "timeouts", kMaxHeaderTimeoutMs)) timeouts.header = *ms;
    if (auto ms = milliseconds_in(t, "connect_ms", "timeouts", kMaxConnectTimeoutMs)) timeouts.connect = *ms;
    if (auto ms = milliseconds_in(t, "idle_ms", "timeouts", kMaxIdleTimeoutMs)) timeouts.idle = *ms;
}

void ConfigBuilder::audit_section(const toml::table& t) {
    check_known_keys(t, "audit", {"path", "progress_interval_s"});
    if (const toml::node* interval = t.get("progress_interval_s")) {
        if (auto n = integer_in(*interval, "audit.progress_interval_s", 1, kMaxProgressIntervalS)) {
            config_->audit_progress_interval = std::chrono::seconds{*n};
        }
    }
    const toml::node* path = t.get("path");
    if (path == nullptr) return;
    const auto text = string_of(*path, "audit.path");
    if (!text) return;
    if (text->empty()) {
        error("audit.path", echo(*path), path->source(), "must not be empty (\"-\" = stdout)");
    } else {
        config_->audit_path = *text;
        remember_position("audit.path", *path);
    }
}

void ConfigBuilder::admin_section(const toml::table& t) {
    check_known_keys(t, "admin", {"listen", "max_client_series"});
    if (const toml::node* max = t.get("max_client_series")) {
        if (auto n = integer_in(*max, "admin.max_client_series", 0, kMaxConnections)) {
            config_->max_client_series = static_cast<std::uint32_t>(*n);
        }
    }
    if (const toml::node* listen = t.get("listen")) {
        if (auto address = socket_address(*listen, "admin.listen", std::nullopt, 0)) config_->admin_listen = *address;
    }
}

// --- [inventory] and [[vm]] ------------------------------------------------------------------

void ConfigBuilder::inventory_section(const toml::table& t) {
    check_known_keys(t, "inventory", {"az_vm_list"});
    const toml::node* node = t.get("az_vm_list");
    if (node == nullptr) return;
    const auto text = string_of(*node, "inventory.az_vm_list");
    if (!text) return;
    // TOML has no include base: a relative path is taken from the config file's directory, so the
    // same file works whatever directory the service (or a test) starts in.
    std::filesystem::path path(*text);
    if (path.is_relative()) path = base_dir_ / path;
    const FileText file = read_text_file(path.string());
    if (!file.error.empty()) {
        error("inventory.az_vm_list", echo(*node), node->source(), "cannot read " + path.string() + ": " + file.error);
        return;
    }
    const audit::AzVmListResult parsed = audit::parse_az_vm_list(file.text);
    if (!parsed.error.empty()) {
        error("inventory.az_vm_list", echo(*node), node->source(), path.string() + ": " + parsed.error);
        return;
    }
    for (const auto& vm : parsed.vms) config_->inventory.add(vm.ip, vm.name);
}

void ConfigBuilder::vm_entries(const toml::node& node) {
    const auto* array = node.as_array();
    if (array == nullptr || !array->is_array_of_tables()) {
        error("vm", echo(node), node.source(),
              "expected an array of tables ([[vm]] with name and ip), got " + std::string(type_name(node.type())));
        return;
    }
    for (std::size_t i = 0; i < array->size(); ++i) vm_entry(*array->get(i), element_path("vm", i));
}

void ConfigBuilder::vm_entry(const toml::node& node, const std::string& path) {
    const toml::table& vm = *node.as_table();
    check_known_keys(vm, path, {"name", "ip"});
    std::optional<std::string> name;
    std::optional<policy::IpAddress> ip;
    if (const toml::node* n = vm.get("name")) {
        name = string_of(*n, path + ".name");
        if (name && name->empty()) {
            error(path + ".name", echo(*n), n->source(), "must not be empty");
            name.reset();
        }
    } else {
        require(path + ".name", vm.source(), "the VM's name");
    }
    if (const toml::node* a = vm.get("ip")) {
        if (auto text = string_of(*a, path + ".ip")) {
            ip = policy::IpAddress::parse(*text);
            if (!ip) error(path + ".ip", echo(*a), a->source(), "not an IP address");
        }
    } else {
        require(path + ".ip", vm.source(), "the VM's private IP address");
    }
    if (name && ip) config_->inventory.add(*ip, std::move(*name));
}

// --- the whole document ----------------------------------------------------------------------

LoadResult ConfigBuilder::build(const toml::table& root) {
    check_known_keys(root, "", {"proxy", "clients", "egress", "dns", "timeouts", "audit", "vm", "inventory", "admin"});
    config_->listen = {*parse_socket_address(kDefaultListen, std::nullopt, 0).address};

    if (const auto* t = table_at(root, "proxy", "proxy")) proxy_section(*t);
    if (root.get("clients") == nullptr) clients_section(nullptr);
    else if (const auto* t = table_at(root, "clients", "clients")) clients_section(t);
    egress_section(table_at(root, "egress", "egress"));
    if (const auto* t = table_at(root, "dns", "dns")) dns_section(*t);
    if (const auto* t = table_at(root, "timeouts", "timeouts")) timeouts_section(*t);
    if (const auto* t = table_at(root, "audit", "audit")) audit_section(*t);
    // az_vm_list first, then [[vm]]: hand-written entries win over the exported list.
    if (const auto* t = table_at(root, "inventory", "inventory")) inventory_section(*t);
    if (const toml::node* vms = root.get("vm")) vm_entries(*vms);
    if (const auto* t = table_at(root, "admin", "admin")) admin_section(*t);

    LoadResult result;
    if (errors_.empty()) {
        config_->source = source_;
        config_->egress = policy::EgressPolicy(std::move(rules_));
        result.config = std::move(config_);
        return result;
    }
    std::stable_sort(errors_.begin(), errors_.end(), [](const ConfigError& a, const ConfigError& b) {
        return std::tie(a.line, a.column) < std::tie(b.line, b.column);
    });
    result.errors = std::move(errors_);
    return result;
}

}  // namespace

std::string ListenAddress::to_string() const {
    const std::string ip = address.to_string();
    return (address.is_v4() ? ip : "[" + ip + "]") + ":" + std::to_string(port);
}

std::string ConfigError::to_string() const {
    std::string out = source;
    if (line > 0) out += ":" + std::to_string(line) + ":" + std::to_string(column);
    out += ": ";
    if (!key.empty()) {
        out += key;
        if (!value.empty()) out += " = " + value;
        out += ": ";
    }
    return out + message;
}

LoadResult parse_config(std::string_view toml_text, std::string_view source_name) {
    const std::filesystem::path base_dir = std::filesystem::path(source_name).parent_path();
    toml::table root;
    try {
        root = toml::parse(toml_text, source_name);
    } catch (const toml::parse_error& e) {
        const auto& begin = e.source().begin;
        LoadResult result;
        result.errors.push_back(ConfigError{std::string(source_name), {}, {}, static_cast<int>(begin.line),
                                            static_cast<int>(begin.column), std::string(e.description())});
        return result;
    }
    return ConfigBuilder(std::string(source_name), base_dir).build(root);
}

LoadResult load_config_file(const std::string& path) {
    const FileText file = read_text_file(path);
    if (file.error.empty()) return parse_config(file.text, path);
    LoadResult result;
    result.errors.push_back(ConfigError{path, {}, {}, 0, 0, "cannot read config file: " + file.error});
    return result;
}

}  // namespace egressgate::config
