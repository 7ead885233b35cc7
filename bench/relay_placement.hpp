#pragma once
// The bench relays' listeners, steered as egressgate steers its workers' (proxy/cpu_placement.hpp):
// with one thread per CPU the relay may run on, the listeners' reuseport group hands each new
// connection to thread i when the i-th of those CPUs took it. With any other thread count the
// kernel's hash picks, as it does for egressgate's `workers = N`.
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "proxy/cpu_placement.hpp"

namespace egb {

// `listeners` joined their group in thread order. Exits if the group cannot steer: the relay
// would not be the floor it claims.
inline void steer_relay(const std::vector<int>& listeners, const char* tool) {
    namespace placement = egressgate::proxy;
    const std::vector<unsigned> cpus = placement::worker_cpus(0, placement::allowed_cpus());
    if (cpus.size() != listeners.size()) return;
    if (const std::error_code ec = placement::steer_by_cpu(listeners.front(), cpus)) {
        std::fprintf(stderr, "%s: cannot steer connections by CPU: %s\n", tool, ec.message().c_str());
        std::exit(1);
    }
}

}  // namespace egb
