#pragma once
// Which worker takes a new connection. With `workers = 0` there is one worker per CPU this
// process may run on (its affinity mask, which systemd's CPUAffinity= or a cpuset narrows), and
// each listener's SO_REUSEPORT group hands a new connection to worker i when the i-th of those
// CPUs took its SYN. Each worker is then woken from one CPU only, and the scheduler, which moves
// a thread towards the CPU that wakes it, keeps it there unless that CPU is busy with something
// else: fewer cross-CPU wake-ups, and more done per wake-up (docs/performance.md measures it;
// pinning the workers as well saves more at a low rate but loses rate when the CPUs are shared).
// With an explicit `workers = N` the group picks a listener by its hash.
#include <linux/filter.h>

#include <cstddef>
#include <system_error>
#include <vector>

namespace egressgate::proxy {

// The most workers steered by CPU: the steering program takes two instructions per CPU, and
// the kernel runs programs of at most BPF_MAXINSNS (4096) instructions.
inline constexpr std::size_t kMaxSteeredWorkers = 1024;

// The CPUs this process may run on, in increasing order (sched_getaffinity); when the kernel
// does not say (a mask wider than CPU_SETSIZE), every online CPU.
std::vector<unsigned> allowed_cpus();

// How many workers: `configured`, or with 0 one per allowed CPU (at least one, at most
// kMaxSteeredWorkers).
unsigned worker_count(unsigned configured, const std::vector<unsigned>& allowed);

// The CPU whose connections each worker takes, worker i's on entry i: the allowed CPUs for
// `workers = 0` when there are two to kMaxSteeredWorkers of them; empty (the hash picks) otherwise.
std::vector<unsigned> worker_cpus(unsigned configured, const std::vector<unsigned>& allowed);

// The classic BPF program a reuseport group runs to pick a listener for a new connection: the
// index of the worker on the CPU that took the SYN, or for a CPU with no worker an index past
// the last, for which the kernel picks by its hash.
std::vector<sock_filter> steering_program(const std::vector<unsigned>& cpus);

// Has the reuseport group that `listener` belongs to (any member will do) run
// steering_program(cpus); listener i of the group must belong to the worker that is to take
// cpus[i]'s connections.
std::error_code steer_by_cpu(int listener, const std::vector<unsigned>& cpus);

}  // namespace egressgate::proxy
