#include "audit/inventory.hpp"

#include <algorithm>
#include <string>
#include <utility>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace egressgate::audit {

// Keys are unmapped addresses, so that a dual-stack listener that sees ::ffff:10.0.0.4 finds the
// VM registered as 10.0.0.4, whichever form either side used.
void Inventory::add(const policy::IpAddress& ip, std::string vm_name) {
    names_[ip.unmapped()] = std::move(vm_name);
}

bool Inventory::has_name(std::string_view vm_name) const {
    return std::any_of(names_.begin(), names_.end(), [&](const auto& entry) { return entry.second == vm_name; });
}

std::optional<std::string_view> Inventory::find(const policy::IpAddress& ip) const {
    const auto it = names_.find(ip.unmapped());
    if (it == names_.end()) return std::nullopt;
    return std::string_view{it->second};
}

namespace {

using nlohmann::json;

// Thrown only inside this file: the first malformed element ends parsing, and its message says
// what was expected and where, e.g. "[2].virtualMachine.name: expected a string, got number".
struct AzVmListError {
    std::string message;
};

[[noreturn]] void fail(const std::string& where, const std::string& what) {
    throw AzVmListError{where + ": " + what};
}

std::string type_mismatch(std::string_view expected, const json& got) {
    return "expected " + std::string(expected) + ", got " + got.type_name();
}

// The member `key` of `object`, which must be there and of the expected type.
const json& required_member(const json& object, const std::string& where, const char* key,
                            json::value_t type, std::string_view type_name) {
    const auto it = object.find(key);
    if (it == object.end()) fail(where, std::string("missing \"") + key + "\"");
    if (it->type() != type) fail(where + "." + key, type_mismatch(type_name, *it));
    return *it;
}

void parse_private_addresses(const json& network, const std::string& where, const std::string& vm_name,
                             std::vector<VmAddress>& out) {
    const json& addresses = required_member(network, where, "privateIpAddresses", json::value_t::array,
                                            "an array of IP addresses");
    for (std::size_t i = 0; i < addresses.size(); ++i) {
        const std::string element = fmt::format("{}.privateIpAddresses[{}]", where, i);
        const json& text = addresses[i];
        if (!text.is_string()) fail(element, type_mismatch("a string", text));
        const auto ip = policy::IpAddress::parse(text.get_ref<const std::string&>());
        if (!ip) fail(element, text.dump() + " is not an IP address");
        out.push_back(VmAddress{vm_name, *ip});
    }
}

// One element of the top-level array: {"virtualMachine": {"name", "network": {...}}}. Fields this
// program does not need (resourceGroup, publicIpAddresses, anything newer az versions add) are
// ignored: the proxy only ever sees the private addresses of the virtual network.
void parse_vm_entry(const json& entry, const std::string& where, std::vector<VmAddress>& out) {
    if (!entry.is_object()) fail(where, type_mismatch("an object", entry));
    const std::string vm_where = where + ".virtualMachine";
    const json& vm = required_member(entry, where, "virtualMachine", json::value_t::object, "an object");
    const json& name = required_member(vm, vm_where, "name", json::value_t::string, "a string");
    if (name.get_ref<const std::string&>().empty()) fail(vm_where + ".name", "is empty");
    const json& network = required_member(vm, vm_where, "network", json::value_t::object, "an object");
    parse_private_addresses(network, vm_where + ".network", name.get<std::string>(), out);
}

// "[json.exception.parse_error.101] parse error at ..." -> "parse error at ...": the id is for
// programmers, the admin reading a start-up error needs the rest.
std::string without_exception_id(std::string what) {
    constexpr std::string_view kIdPrefix = "[json.exception.";
    const auto end_of_id = what.find("] ");
    if (what.starts_with(kIdPrefix) && end_of_id != std::string::npos) what.erase(0, end_of_id + 2);
    return what;
}

}  // namespace

AzVmListResult parse_az_vm_list(std::string_view json_text) {
    AzVmListResult result;
    try {
        const json document = json::parse(json_text);
        if (!document.is_array()) {
            fail("document", type_mismatch("an array of {\"virtualMachine\": ...} objects", document));
        }
        for (std::size_t i = 0; i < document.size(); ++i) {
            parse_vm_entry(document[i], fmt::format("[{}]", i), result.vms);
        }
    } catch (const json::parse_error& e) {
        // e.what() already carries line and column; the byte offset helps with one-line files.
        result.error = "invalid JSON at byte " + std::to_string(e.byte) + ": " + without_exception_id(e.what());
    } catch (const json::exception& e) {
        // A value JSON allows that nlohmann cannot hold (a number like 1e999) is not a parse error.
        result.error = "unusable JSON: " + without_exception_id(e.what());
    } catch (const AzVmListError& e) {
        result.error = e.message;
    }
    if (!result.error.empty()) result.vms.clear();
    return result;
}

}  // namespace egressgate::audit
