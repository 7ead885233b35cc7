// libFuzzer target for audit::parse_az_vm_list: the output of `az vm list-ip-addresses` is read
// at start and on every reload, so a file that az, an admin or a truncated copy left behind must
// give either an error (and no VMs) or VMs that name an address the inventory can look up.
//
// Input: the JSON text.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "audit/inventory.hpp"
#include "fuzz_check.hpp"
#include "policy/ip_address.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    namespace audit = egressgate::audit;
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    const audit::AzVmListResult result = audit::parse_az_vm_list(text);
    if (!result.error.empty()) {
        FUZZ_REQUIRE(result.vms.empty());
        return 0;
    }
    audit::Inventory inventory;
    for (const auto& vm : result.vms) {
        FUZZ_REQUIRE(!vm.name.empty());
        const auto again = egressgate::policy::IpAddress::parse(vm.ip.to_string());
        FUZZ_REQUIRE(again && *again == vm.ip);
        inventory.add(vm.ip, vm.name);
    }
    // Later entries win, so every address finds the last VM that listed it.
    for (const auto& vm : result.vms) FUZZ_REQUIRE(inventory.find(vm.ip).has_value());
    FUZZ_REQUIRE(inventory.size() <= result.vms.size());
    return 0;
}
