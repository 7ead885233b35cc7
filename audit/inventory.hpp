#pragma once
// The VM inventory: which VM owns a private IP, so the audit trail says "web-01", not "10.0.1.4".
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "policy/ip_address.hpp"

namespace egressgate::audit {

class Inventory {
public:
    // Later entries for the same IP replace earlier ones ([[vm]] is applied after az_vm_list).
    // IPv4-mapped IPv6 is unmapped here too, so both forms name the same VM.
    void add(const policy::IpAddress& ip, std::string vm_name);
    // The VM name for an address (IPv4-mapped IPv6 is unmapped first), or nullopt.
    std::optional<std::string_view> find(const policy::IpAddress& ip) const;
    // Whether some address carries this VM name (config checks; a scan).
    bool has_name(std::string_view vm_name) const;
    std::size_t size() const { return names_.size(); }

private:
    std::unordered_map<policy::IpAddress, std::string, policy::IpAddressHash> names_;  // unmapped address -> VM name
};

struct VmAddress {
    std::string name;
    policy::IpAddress ip;
};

// Parses the JSON printed by `az vm list-ip-addresses -o json`:
// [{"virtualMachine": {"name": "...", "network": {"privateIpAddresses": ["10.0.0.4"], ...}}}].
// Other fields (resourceGroup, publicIpAddresses, whatever newer az versions add) are ignored.
// On malformed input returns an error message (what and where in the document, e.g.
// "[2].virtualMachine.network.privateIpAddresses[0]: \"10.0.0.x\" is not an IP address") and no vms.
struct AzVmListResult {
    std::vector<VmAddress> vms;
    std::string error;  // empty on success
};
AzVmListResult parse_az_vm_list(std::string_view json_text);

}  // namespace egressgate::audit
