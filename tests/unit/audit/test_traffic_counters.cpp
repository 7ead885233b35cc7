// Per-VM and per-outcome counters, merged across workers and exposed as Prometheus text.
#include <catch.hpp>

#include "audit/traffic_counters.hpp"

using egressgate::audit::Record;
using egressgate::audit::TrafficCounters;

namespace {
Record record(std::string vm, std::string_view decision, std::string_view reason, std::uint64_t up, std::uint64_t down) {
    Record r;
    r.vm = std::move(vm);
    r.decision = decision;
    r.reason = reason;
    r.close_reason = reason == "client_denied"   ? egressgate::audit::CloseReason::client_denied
                     : decision == "deny"        ? egressgate::audit::CloseReason::rejected
                                                 : egressgate::audit::CloseReason::completed;
    r.bytes_up = up;
    r.bytes_down = down;
    return r;
}
}  // namespace

TEST_CASE("counters add up per VM and per outcome, across workers", "[audit][metrics]") {
    TrafficCounters worker1;
    TrafficCounters worker2;
    worker1.add(record("web-01", "allow", "host_allowed", 100, 2000));
    worker1.add(record("web-01", "deny", "host_not_allowed", 0, 0));
    worker2.add(record("web-01", "allow", "host_allowed", 5, 7));
    worker2.add(record("10.0.1.9", "deny", "client_denied", 0, 0));
    worker1.merge(worker2);

    const auto& vm = worker1.by_vm().at("web-01");
    CHECK(vm.connections == 3);
    CHECK(vm.denied == 1);
    CHECK(vm.bytes_up == 105);
    CHECK(vm.bytes_down == 2007);
    CHECK(worker1.by_outcome().at({"allow", "host_allowed"}) == 2);
    CHECK(worker1.by_outcome().at({"deny", "client_denied"}) == 1);
    CHECK(worker1.closed(egressgate::audit::CloseReason::rejected) == 1);
    CHECK(worker1.closed(egressgate::audit::CloseReason::client_denied) == 1);
    CHECK(worker1.closed(egressgate::audit::CloseReason::completed) == 2);  // one from each worker
    CHECK(worker1.clients_denied() == 1);
    CHECK(worker1.by_vm().count("10.0.1.9") == 0);  // outsiders get no series of their own

    const std::string text = worker1.prometheus_text({{"egressgate_open_connections", "Open client connections", 3}});
    CHECK(text.find("egressgate_open_connections 3\n") != std::string::npos);
    CHECK(text.find("egressgate_connections_total{decision=\"allow\",reason=\"host_allowed\"} 2\n") != std::string::npos);
    CHECK(text.find("egressgate_vm_bytes_total{vm=\"web-01\",direction=\"down\"} 2007\n") != std::string::npos);
    CHECK(text.find("egressgate_vm_denied_total{vm=\"web-01\"} 1\n") != std::string::npos);
    CHECK(text.find("egressgate_clients_denied_total 1\n") != std::string::npos);
    CHECK(text.find("egressgate_closed_total{close_reason=\"completed\"} 2\n") != std::string::npos);
    CHECK(text.find("egressgate_closed_total{close_reason=\"rejected\"} 1\n") != std::string::npos);
    CHECK(text.find("close_reason=\"idle_timeout\"") == std::string::npos);  // only the reasons seen
    CHECK(text.find("10.0.1.9") == std::string::npos);
    CHECK(text.find("# TYPE egressgate_vm_bytes_total counter\n") != std::string::npos);
}

TEST_CASE("label values cannot break the exposition format", "[audit][metrics]") {
    TrafficCounters counters;
    counters.add(record("a\"b\\c\nd", "allow", "host_allowed", 1, 1));
    const std::string text = counters.prometheus_text();
    CHECK(text.find("vm=\"a\\\"b\\\\c\\nd\"") != std::string::npos);
}

TEST_CASE("refused outsiders are one series however many addresses they come from", "[audit][metrics]") {
    TrafficCounters counters;
    for (int i = 0; i < 20000; ++i) {
        counters.add(record("10." + std::to_string(i / 256) + "." + std::to_string(i % 256) + ".9", "deny",
                            "client_denied", 0, 0));
    }
    CHECK(counters.clients_denied() == 20000);
    CHECK(counters.by_vm().empty());
    CHECK(counters.prometheus_text().size() < 4096);
}

TEST_CASE("progress records count bytes once, and the connection once at its end", "[audit][metrics]") {
    TrafficCounters counters;
    Record progress = record("web-01", "allow", "host_allowed", 100, 1000);
    progress.kind = egressgate::audit::RecordKind::progress;
    counters.add(progress);
    Record later = record("web-01", "allow", "host_allowed", 150, 4000);
    later.kind = egressgate::audit::RecordKind::progress;
    counters.add(later, {100, 1000});
    counters.add(record("web-01", "allow", "host_allowed", 200, 5000), {150, 4000});
    const auto& vm = counters.by_vm().at("web-01");
    CHECK(vm.connections == 1);
    CHECK(vm.bytes_up == 200);
    CHECK(vm.bytes_down == 5000);
    CHECK(counters.by_outcome().at({"allow", "host_allowed"}) == 1);
}

TEST_CASE("refusals by a connection limit are counted per limit", "[audit][metrics]") {
    TrafficCounters counters;
    counters.add(record("web-01", "deny", "client_connection_limit", 0, 0));
    counters.add(record("web-01", "deny", "client_connection_limit", 0, 0));
    counters.add(record("web-01", "deny", "client_rate_limit", 0, 0));
    CHECK(counters.limit_refusals(egressgate::audit::Limit::client_connections) == 2);
    CHECK(counters.limit_refusals(egressgate::audit::Limit::client_rate) == 1);
    CHECK(counters.limit_refusals(egressgate::audit::Limit::proxy_connections) == 0);
    const std::string text = counters.prometheus_text();
    CHECK(text.find("egressgate_limit_refusals_total{limit=\"client_connections\"} 2\n") != std::string::npos);
}
