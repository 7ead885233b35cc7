#pragma once
// Where the workers run. With `workers = 0` there is one worker per CPU this process may run on
// (its affinity mask, which systemd's CPUAffinity= or a cpuset narrows), worker i stays on the
// i-th of those CPUs, and each listener's SO_REUSEPORT group hands a new connection to the
// worker on the CPU whose softirq took its SYN. A connection's packets and its worker then meet
// on one CPU: waking a worker never crosses CPUs, and a worker finds more to do per wake-up
// (docs/performance.md measures what that saves). With an explicit `workers = N` the kernel
// places the workers and the group picks a listener by its hash.
#include <linux/filter.h>
#include <pthread.h>

#include <cstddef>
#include <system_error>
#include <vector>

namespace egressgate::proxy {

// The most workers placed on CPUs: the steering program takes two instructions per CPU, and
// the kernel runs programs of at most BPF_MAXINSNS (4096) instructions.
inline constexpr std::size_t kMaxPlacedWorkers = 1024;

// The CPUs this process may run on, in increasing order (sched_getaffinity); empty when the
// kernel does not say.
std::vector<unsigned> allowed_cpus();

// How many workers: `configured`, or with 0 one per allowed CPU (one if none is known).
unsigned worker_count(unsigned configured, const std::vector<unsigned>& allowed);

// The CPU of each worker, worker i on entry i: the allowed CPUs for `workers = 0` when there are
// two to kMaxPlacedWorkers of them; empty (the kernel places the workers) otherwise.
std::vector<unsigned> worker_cpus(unsigned configured, const std::vector<unsigned>& allowed);

// The classic BPF program a reuseport group runs to pick a listener for a new connection: the
// index of the worker on the CPU that took the SYN, or for a CPU with no worker an index past
// the last, for which the kernel picks by its hash.
std::vector<sock_filter> steering_program(const std::vector<unsigned>& cpus);

// Has the reuseport group that `listener` belongs to (any member will do) run
// steering_program(cpus); listener i of the group must belong to the worker on cpus[i].
std::error_code steer_by_cpu(int listener, const std::vector<unsigned>& cpus);

// Keeps `thread` on `cpu`.
std::error_code pin_to_cpu(pthread_t thread, unsigned cpu);

}  // namespace egressgate::proxy
