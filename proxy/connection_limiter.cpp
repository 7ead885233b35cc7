#include "proxy/connection_limiter.hpp"

#include <sys/resource.h>

#include <algorithm>
#include <limits>

namespace egressgate::proxy {

std::uint32_t derived_max_connections() {
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) {
        return std::numeric_limits<std::uint32_t>::max();
    }
    const std::uint64_t descriptors = limit.rlim_cur;
    if (descriptors <= kReservedDescriptors + kDescriptorsPerConnection) return 1;
    const std::uint64_t room = (descriptors - kReservedDescriptors) / kDescriptorsPerConnection;
    return static_cast<std::uint32_t>(std::min<std::uint64_t>(room, std::numeric_limits<std::uint32_t>::max()));
}

}  // namespace egressgate::proxy
