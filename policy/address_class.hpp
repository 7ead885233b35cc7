#pragma once
// The destination address classifier: a pure function over a resolved address, run after DNS and
// before connect. Anything that is not plain public unicast is denied unless the admin exempts it.
#include <string_view>

#include "policy/ip_address.hpp"

namespace egressgate::policy {

enum class AddressClass {
    public_unicast,
    unspecified,     // 0.0.0.0/8, ::
    loopback,        // 127.0.0.0/8, ::1
    private_network, // 10/8, 172.16/12, 192.168/16
    shared_cgnat,    // 100.64.0.0/10
    link_local,      // 169.254/16 (except IMDS), fe80::/10
    wireserver,      // 168.63.129.16: the Azure host agent endpoint, answers as the proxy VM
    imds,            // 169.254.169.254: instance metadata, hands out the proxy VM's tokens
    multicast,       // 224/4, ff00::/8
    broadcast,       // 255.255.255.255
    reserved,        // 240/4, 192.0.0.0/24, documentation and benchmarking ranges, 64:ff9b:1::/48, ...
    unique_local,    // fc00::/7
};

// Classifies an address, looking through IPv6 forms that embed an IPv4 address
// (IPv4-mapped ::ffff:0:0/96, IPv4-compatible ::/96, NAT64 64:ff9b::/96, 6to4 2002::/16,
// Teredo 2001::/32 whose client address is stored inverted): the embedded address decides.
AddressClass classify_address(const IpAddress& address);

// Fixed names used in audit rules and responses, e.g. "imds", "private_network".
std::string_view to_string(AddressClass c);

}  // namespace egressgate::policy
