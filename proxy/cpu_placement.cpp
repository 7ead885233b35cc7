#include "proxy/cpu_placement.hpp"

#include <sched.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <limits>
#include <thread>

namespace egressgate::proxy {

namespace {

// What steering_program returns for a CPU with no worker: past any group's last listener.
constexpr __u32 kNoWorker = std::numeric_limits<__u32>::max();

std::error_code system_error(int error) { return std::error_code(error, std::system_category()); }

}  // namespace

std::vector<unsigned> allowed_cpus() {
    cpu_set_t set;
    CPU_ZERO(&set);
    std::vector<unsigned> cpus;
    if (::sched_getaffinity(0, sizeof set, &set) != 0) {
        for (unsigned cpu = 0; cpu < std::thread::hardware_concurrency(); ++cpu) cpus.push_back(cpu);
        return cpus;
    }
    for (unsigned cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
        if (CPU_ISSET(cpu, &set)) cpus.push_back(cpu);
    }
    return cpus;
}

unsigned worker_count(unsigned configured, const std::vector<unsigned>& allowed) {
    if (configured != 0) return configured;
    return std::max<unsigned>(1, static_cast<unsigned>(std::min(allowed.size(), kMaxSteeredWorkers)));
}

std::vector<unsigned> worker_cpus(unsigned configured, const std::vector<unsigned>& allowed) {
    if (configured != 0 || allowed.size() < 2 || allowed.size() > kMaxSteeredWorkers) return {};
    return allowed;
}

// A = the CPU that took the packet; then for each worker i, "A == cpus[i]: return i".
std::vector<sock_filter> steering_program(const std::vector<unsigned>& cpus) {
    std::vector<sock_filter> program;
    program.reserve(2 * cpus.size() + 2);
    program.push_back(sock_filter{BPF_LD | BPF_W | BPF_ABS, 0, 0, static_cast<__u32>(SKF_AD_OFF + SKF_AD_CPU)});
    for (std::size_t i = 0; i < cpus.size(); ++i) {
        program.push_back(sock_filter{BPF_JMP | BPF_JEQ | BPF_K, 0, 1, cpus[i]});  // no: skip the return
        program.push_back(sock_filter{BPF_RET | BPF_K, 0, 0, static_cast<__u32>(i)});
    }
    program.push_back(sock_filter{BPF_RET | BPF_K, 0, 0, kNoWorker});
    return program;
}

std::error_code steer_by_cpu(int listener, const std::vector<unsigned>& cpus) {
    if (cpus.empty() || cpus.size() > kMaxSteeredWorkers) return system_error(EINVAL);
    std::vector<sock_filter> program = steering_program(cpus);
    const sock_fprog attached{static_cast<unsigned short>(program.size()), program.data()};
    if (::setsockopt(listener, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &attached, sizeof attached) != 0) {
        return system_error(errno);
    }
    return {};
}

}  // namespace egressgate::proxy
