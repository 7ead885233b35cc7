#include "proxy/worker_context.hpp"

#include "proxy/audit_writer.hpp"

namespace egressgate::proxy {

void WorkerContext::conclude(const audit::Record& record, audit::CountedBytes counted) {
    audit.write(audit::format_line(record));
    std::lock_guard lock(counters_mutex);
    counters.add(record, counted);
}

}  // namespace egressgate::proxy
