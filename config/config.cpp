#include "config/config.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <initializer_list>
#include <optional>
#include <set>
#include <sstream>
#include <tuple>
#include <utility>

#include <toml++/toml.h>

#include "policy/address_class.hpp"
#include "policy/authority.hpp"
#include "policy/catalog.hpp"
#include "policy/public_suffix.hpp"
#include "policy/service_tags.hpp"

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
constexpr std::size_t kMaxSourceAddresses = 64;               // [proxy] source_addresses: more than a NIC holds
// A load balancer's probe interval times its unhealthy threshold, with room to spare.
constexpr std::int64_t kMaxDrainNoticeMs = 600'000;          // ten minutes
constexpr std::int64_t kMaxConnections = 10'000'000;
constexpr std::int64_t kMaxConnectionRate = 1'000'000;       // new connections per second per IP
constexpr std::int64_t kMaxProgressIntervalS = 86'400;       // a day
constexpr std::int64_t kMaxPort = policy::kMaxPort;
constexpr std::uint16_t kDefaultDnsPort = 53;
constexpr std::size_t kMaxEchoedValueLength = 80;            // longer values are cut in messages
constexpr std::size_t kMaxFileBytes = 64 * 1024 * 1024;      // az_vm_list of a large subscription

const char* const kDefaultListen = "0.0.0.0:3128";
const std::initializer_list<std::uint16_t> kDefaultPorts = {443, 8443, 80};
// [[egress.rule]] name: a /metrics label and an audit field, so short and plain.
constexpr std::size_t kMaxRuleNameLength = 64;
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
    void proxy_source_addresses(const toml::table& t);
    void clients_section(const toml::table* t);
    void egress_section(const toml::table* t);
    std::vector<std::uint16_t> port_list(const toml::node* ports, const std::string& path);
    void add_catalogs(const toml::node* node, const std::string& path, policy::HostPatternSet& into);
    void add_catalog(std::string_view name, const toml::node* at, const std::string& path,
                     policy::HostPatternSet& into);
    void add_host_patterns(const toml::node& hosts, const std::string& path, policy::HostPatternSet& into,
                           const std::string& origin, bool allow_list);
    void service_tags_file(const toml::node& node);
    policy::PrefixSetPtr service_tag_set(const toml::node& node, const std::string& path);
    void egress_rules(const toml::node& node);
    void egress_rule(const toml::table& t, const std::string& path);
    void rule_clients(const toml::node& node, const std::string& path, policy::ClientSelector& into);
    void check_rule_vm_names();
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
    // min 0 for keys where 0 means "off" (proxy.drain_notice_ms).
    std::optional<std::chrono::milliseconds> milliseconds_in(const toml::table& t, std::string_view key,
                                                             const std::string& parent, std::int64_t max,
                                                             std::int64_t min = 1);
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
    // VM names that rules' clients name, checked against the inventory once it is read.
    struct VmReference {
        std::string name;
        std::string key;
        std::string value;
        toml::source_region where;
    };
    std::vector<VmReference> rule_vm_names_;
    std::set<std::string> rule_names_;
    // [egress] service_tags_file was written, whether or not it loaded: when it did not, its own
    // error says why, and the tag names have nothing to be checked against.
    bool service_tags_file_set_ = false;
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
                                                                        std::int64_t max, std::int64_t min) {
    const toml::node* node = t.get(key);
    if (node == nullptr) return std::nullopt;
    const auto value = integer_in(*node, child_path(parent, key), min, max);
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
                                  "max_connections", "drain_timeout_ms", "drain_notice_ms",
                                  "source_addresses"});
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
    if (auto ms = milliseconds_in(t, "drain_notice_ms", "proxy", kMaxDrainNoticeMs, 0)) config_->drain_notice = *ms;
    if (const toml::node* xff = t.get("x_forwarded_for")) {
        if (xff->is_boolean()) {
            config_->x_forwarded_for = *xff->value<bool>();
        } else {
            error("proxy.x_forwarded_for", echo(*xff), xff->source(),
                  "expected true or false, got " + std::string(type_name(xff->type())));
        }
    }
    proxy_tls(t);
    proxy_source_addresses(t);
}

// Addresses of this machine to dial from: literal, specific (not 0.0.0.0 or ::), each once.
// Whether they are assigned to an interface is checked by --check-config, where it runs.
void ConfigBuilder::proxy_source_addresses(const toml::table& t) {
    const toml::node* node = t.get("source_addresses");
    if (node == nullptr) return;
    const auto* array = array_of(*node, "proxy.source_addresses", "IP address strings");
    if (array == nullptr) return;
    if (array->size() > kMaxSourceAddresses) {
        error("proxy.source_addresses", echo(*node), node->source(),
              "lists " + std::to_string(array->size()) + " addresses; at most " + std::to_string(kMaxSourceAddresses));
        return;
    }
    for (std::size_t i = 0; i < array->size(); ++i) {
        const toml::node& element = *array->get(i);
        const std::string path = element_path("proxy.source_addresses", i);
        const auto* text = element.as_string();
        if (text == nullptr) {
            error(path, echo(element), element.source(), "expected an IP address string");
            continue;
        }
        const auto ip = policy::IpAddress::parse(text->get());
        if (!ip) {
            error(path, echo(element), element.source(), "not an IP address (an address of this machine, such as \"10.0.0.4\")");
            continue;
        }
        if (policy::classify_address(*ip) == policy::AddressClass::unspecified) {
            error(path, echo(element), element.source(), "not an address of any interface; leave the key out to let the kernel pick");
            continue;
        }
        if (std::find(config_->source_addresses.begin(), config_->source_addresses.end(), *ip) !=
            config_->source_addresses.end()) {
            error(path, echo(element), element.source(), "listed twice");
            continue;
        }
        remember_position(path, element);
        config_->source_addresses.push_back(*ip);
    }
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
    check_known_keys(egress, "egress", {"mode", "ports", "catalogs", "hosts", "allow_addresses", "sni", "tls_ports",
                                        "deny_hosts", "service_tags_file", "service_tags", "require_service_tag",
                                        "rule"});

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
    rules_.ports = port_list(egress.get("ports"), "egress.ports");
    if (rules_.ports.empty() && egress.get("ports") == nullptr) rules_.ports.assign(kDefaultPorts.begin(), kDefaultPorts.end());
    add_catalogs(egress.get("catalogs"), "egress.catalogs", rules_.hosts);
    if (const toml::node* hosts = egress.get("hosts")) add_host_patterns(*hosts, "egress.hosts", rules_.hosts, "egress.hosts", true);
    if (const toml::node* deny = egress.get("deny_hosts")) {
        add_host_patterns(*deny, "egress.deny_hosts", rules_.deny_hosts, "egress.deny_hosts", false);
    }
    if (const toml::node* allow = egress.get("allow_addresses")) {
        if (auto set = cidr_list(*allow, "egress.allow_addresses", false)) rules_.allow_addresses = std::move(*set);
    }
    if (const toml::node* file = egress.get("service_tags_file")) service_tags_file(*file);
    if (const toml::node* tags = egress.get("service_tags")) rules_.service_tags = service_tag_set(*tags, "egress.service_tags");
    if (const toml::node* rules = egress.get("rule")) egress_rules(*rules);
    if (const toml::node* require = egress.get("require_service_tag")) {
        if (!require->is_boolean()) {
            error("egress.require_service_tag", echo(*require), require->source(),
                  "expected true or false, got " + std::string(type_name(require->type())));
        } else {
            rules_.require_service_tag = *require->value<bool>();
            // Every allowed name must then lie in some tags: without [egress] service_tags, names
            // the global list or a rule without tags allows would all be refused. Tags that are
            // written but did not resolve (a bad file, unknown names) have their own errors.
            if (rules_.require_service_tag && egress.get("service_tags") == nullptr) {
                error("egress.require_service_tag", echo(*require), require->source(),
                      "needs [egress] service_tags: the tags that every allowed name's addresses must lie in");
            }
        }
    }
}

// [egress] service_tags_file: a ServiceTags_*.json, relative to the config file's directory.
// Read with the config, so SIGHUP re-reads it and the new prefixes swap in with the new Config.
void ConfigBuilder::service_tags_file(const toml::node& node) {
    service_tags_file_set_ = true;
    const auto text = string_of(node, "egress.service_tags_file");
    if (!text) return;
    std::filesystem::path path(*text);
    if (path.is_relative()) path = base_dir_ / path;
    auto loaded = policy::ServiceTags::load(path);
    if (!loaded.tags) {
        error("egress.service_tags_file", echo(node), node.source(), loaded.error);
        return;
    }
    config_->service_tags = std::move(loaded.tags);
}

// Tag names -> the union of their prefixes. Each unknown name is an error at its element, with
// the closest names the file has.
policy::PrefixSetPtr ConfigBuilder::service_tag_set(const toml::node& node, const std::string& path) {
    const auto* array = array_of(node, path, "service tag names");
    if (array == nullptr) return nullptr;
    if (array->empty()) {
        error(path, echo(node), node.source(), "must list at least one service tag");
        return nullptr;
    }
    const policy::ServiceTags* tags = config_->service_tags.get();
    std::vector<std::string> names;
    for_each_string(*array, path, [&](const std::string& name, const toml::node& element, const std::string& where) {
        if (tags == nullptr) {
            if (!service_tags_file_set_) {
                error(where, echo(element), element.source(), "needs [egress] service_tags_file, the file that defines the tags");
            }
        } else if (tags->find(name) == nullptr) {
            error(where, echo(element), element.source(),
                  policy::describe(policy::UnknownServiceTag{name, tags->suggestions(name)}));
        } else {
            names.push_back(name);
        }
    });
    if (tags == nullptr || names.empty()) return nullptr;
    return tags->resolve(names).set;
}

std::vector<std::uint16_t> ConfigBuilder::port_list(const toml::node* ports, const std::string& path) {
    std::vector<std::uint16_t> list;
    if (ports == nullptr) return list;
    const auto* array = array_of(*ports, path, "port numbers");
    if (array == nullptr) return list;
    // An empty list would deny everything: almost certainly not what the admin meant.
    if (array->empty()) error(path, echo(*ports), ports->source(), "must list at least one port");
    for (std::size_t i = 0; i < array->size(); ++i) {
        if (auto port = integer_in(*array->get(i), element_path(path, i), 1, kMaxPort)) {
            list.push_back(static_cast<std::uint16_t>(*port));
        }
    }
    return list;
}

// Expands one catalog into host patterns. `at` is where the name was written, or null for the
// default catalogs (a missing default is a bug here, reported at the top of the file).
void ConfigBuilder::add_catalog(std::string_view name, const toml::node* at, const std::string& path,
                                policy::HostPatternSet& into) {
    const toml::source_region where = at != nullptr ? at->source() : toml::source_region{};
    const std::string value = at != nullptr ? echo(*at) : std::string{};
    const auto patterns = policy::catalog_patterns(name);
    if (!patterns) {
        error(path, value, where, "unknown catalog; choices: " + policy::catalog_choices());
        return;
    }
    const std::string origin = "catalog:" + std::string(name);
    for (std::string_view text : *patterns) {
        // A built-in pattern that does not parse must not silently shrink the rule.
        if (auto pattern = policy::HostPattern::parse(text)) into.add(*pattern, origin);
        else error(path, value, where, "built-in pattern \"" + std::string(text) + "\" is invalid");
    }
}

// `node` null: [egress] without catalogs, which means the default ones.
void ConfigBuilder::add_catalogs(const toml::node* node, const std::string& path, policy::HostPatternSet& into) {
    if (node == nullptr) {
        for (std::string_view name : kDefaultCatalogs) add_catalog(name, nullptr, path, into);
        return;
    }
    if (const auto* array = array_of(*node, path, "catalog names")) {
        for_each_string(*array, path, [&](const std::string& name, const toml::node& element, const std::string& where) {
            add_catalog(name, &element, where, into);
        });
    }
}

// An allow list refuses wildcards over a public suffix ("*.com"); a deny list may be as wide as
// the admin likes.
void ConfigBuilder::add_host_patterns(const toml::node& hosts, const std::string& path, policy::HostPatternSet& into,
                                      const std::string& origin, bool allow_list) {
    const auto* array = array_of(hosts, path, "host patterns");
    if (array == nullptr) return;
    for_each_string(*array, path, [&](const std::string& text, const toml::node& element, const std::string& where) {
        const auto pattern = policy::HostPattern::parse(text);
        if (!pattern) {
            error(where, echo(element), element.source(),
                  "not a host pattern: expected \"name.example\" or \"*.example\" (punycode for IDNs)");
            return;
        }
        if (allow_list) {
            if (const auto problem = policy::public_suffix_problem(*pattern)) {
                error(where, echo(element), element.source(), *problem);
                return;
            }
        }
        into.add(*pattern, origin);
    });
}

// --- [[egress.rule]] -------------------------------------------------------------------------

void ConfigBuilder::egress_rules(const toml::node& node) {
    const auto* array = node.as_array();
    if (array == nullptr || !array->is_array_of_tables()) {
        error("egress.rule", echo(node), node.source(),
              "expected an array of tables ([[egress.rule]] with a name), got " + std::string(type_name(node.type())));
        return;
    }
    for (std::size_t i = 0; i < array->size(); ++i) egress_rule(*array->get(i)->as_table(), element_path("egress.rule", i));
}

void ConfigBuilder::egress_rule(const toml::table& t, const std::string& path) {
    check_known_keys(t, path, {"name", "clients", "hosts", "catalogs", "ports", "service_tags", "action", "mode"});
    policy::EgressRule rule;
    if (const toml::node* name = t.get("name")) {
        if (const auto text = string_of(*name, path + ".name")) {
            // Names label /metrics series and audit lines: kept to a plain, printable alphabet.
            const bool plain = !text->empty() && text->size() <= kMaxRuleNameLength &&
                               std::all_of(text->begin(), text->end(), [](unsigned char c) {
                                   return std::isalnum(c) != 0 || c == '-' || c == '_' || c == '.';
                               });
            if (!plain) {
                error(path + ".name", echo(*name), name->source(),
                      "expected 1 to " + std::to_string(kMaxRuleNameLength) + " letters, digits, '-', '_' or '.'");
            } else if (!rule_names_.insert(*text).second) {
                error(path + ".name", echo(*name), name->source(), "another [[egress.rule]] has this name");
            }
            rule.name = *text;
        }
    } else {
        require(path + ".name", t.source(), "the rule's name, for audit lines and /metrics");
    }
    if (const toml::node* clients = t.get("clients")) rule_clients(*clients, path + ".clients", rule.clients);
    // An empty list would read as "no destinations listed", which is every destination.
    for (const char* key : {"hosts", "catalogs"}) {
        const toml::node* list = t.get(key);
        const auto* array = list != nullptr ? list->as_array() : nullptr;
        if (array != nullptr && array->empty()) {
            error(path + "." + key, echo(*list), list->source(),
                  "must not be empty (leave it out: a rule that lists no destinations is for every destination)");
        }
    }
    if (const toml::node* hosts = t.get("hosts")) add_host_patterns(*hosts, path + ".hosts", rule.hosts, "hosts", true);
    if (const toml::node* catalogs = t.get("catalogs")) add_catalogs(catalogs, path + ".catalogs", rule.hosts);
    rule.ports = port_list(t.get("ports"), path + ".ports");
    if (const toml::node* tags = t.get("service_tags")) rule.service_tags = service_tag_set(*tags, path + ".service_tags");
    if (const toml::node* action = t.get("action")) {
        if (const auto text = string_of(*action, path + ".action")) {
            if (*text == "allow") rule.action = policy::RuleAction::allow;
            else if (*text == "deny") rule.action = policy::RuleAction::deny;
            else error(path + ".action", echo(*action), action->source(), "expected \"allow\" or \"deny\"");
        }
    }
    if (const toml::node* mode = t.get("mode")) {
        if (const auto text = string_of(*mode, path + ".mode")) {
            if (*text == "enforce") rule.mode = policy::EgressMode::enforce;
            else if (*text == "report") rule.mode = policy::EgressMode::report;
            else error(path + ".mode", echo(*mode), mode->source(), "expected \"enforce\" or \"report\"");
        }
    }
    // Service tags say where a rule's names may go; a deny rule cannot say "not there".
    if (rule.action == policy::RuleAction::deny && rule.service_tags) {
        const toml::node* tags = t.get("service_tags");
        error(path + ".service_tags", echo(*tags), tags->source(),
              "a rule with action = \"deny\" denies by hosts and catalogs; service_tags only allow");
    }
    rules_.rules.push_back(std::move(rule));
}

// Each entry is a CIDR, a single address (a /32 or /128), or the name of a VM in the inventory.
void ConfigBuilder::rule_clients(const toml::node& node, const std::string& path, policy::ClientSelector& into) {
    const auto* array = array_of(node, path, "CIDRs or VM names");
    if (array == nullptr) return;
    if (array->empty()) {
        error(path, echo(node), node.source(), "must list at least one CIDR or VM name (leave it out for every client)");
        return;
    }
    for_each_string(*array, path, [&](const std::string& text, const toml::node& element, const std::string& where) {
        if (auto cidr = policy::Cidr::parse(text)) {
            into.cidrs.add(*cidr);
        } else if (auto ip = policy::IpAddress::parse(text)) {
            into.cidrs.add(*policy::Cidr::parse(text + (ip->is_v4() ? "/32" : "/128")));
        } else if (text.find_first_of("/:") != std::string::npos || text.empty()) {
            error(where, echo(element), element.source(), "not a CIDR, an IP address or a VM name");
        } else {
            into.vm_names.push_back(text);
            rule_vm_names_.push_back({text, where, echo(element), element.source()});
        }
    });
}

// A VM name the inventory does not know would silently match nobody.
void ConfigBuilder::check_rule_vm_names() {
    for (const auto& ref : rule_vm_names_) {
        if (!config_->inventory.has_name(ref.name)) {
            error(ref.key, ref.value, ref.where, "no VM of this name in the inventory ([[vm]] or [inventory] az_vm_list)");
        }
    }
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
    check_rule_vm_names();

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
