#pragma once
// The bench relays' threads, placed as egressgate places its workers (proxy/cpu_placement.hpp):
// with one thread per CPU the relay may run on, thread i stays on the i-th of those CPUs and the
// listeners' reuseport group hands each new connection to the thread on the CPU that took it.
// With any other thread count the kernel places them, as it places egressgate's `workers = N`.
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

#include "proxy/cpu_placement.hpp"

namespace egb {

// The CPU of each relay thread (empty: the kernel places them). `listeners` joined their group
// in thread order. Exits if the group cannot steer: the relay would not be the floor it claims.
inline std::vector<unsigned> place_relay(const std::vector<int>& listeners, const char* tool) {
    namespace placement = egressgate::proxy;
    std::vector<unsigned> cpus = placement::worker_cpus(0, placement::allowed_cpus());
    if (cpus.size() != listeners.size()) return {};
    if (const std::error_code ec = placement::steer_by_cpu(listeners.front(), cpus)) {
        std::fprintf(stderr, "%s: cannot steer connections by CPU: %s\n", tool, ec.message().c_str());
        std::exit(1);
    }
    return cpus;
}

inline void pin_relay_thread(std::thread& thread, const std::vector<unsigned>& cpus, std::size_t index) {
    if (index < cpus.size()) (void)egressgate::proxy::pin_to_cpu(thread.native_handle(), cpus[index]);
}

}  // namespace egb
