#include <catch.hpp>

#include "policy/connection_limits.hpp"

using namespace egressgate::policy;
using namespace std::chrono_literals;

namespace {

const ConnectionLedger::Clock::time_point kStart{};

IpAddress address(const char* text) { return *IpAddress::parse(text); }

}  // namespace

TEST_CASE("the ledger limits a client's open connections and its rate of new ones", "[policy][limits]") {
    const auto a = address("10.0.0.4");
    SECTION("open connections") {
        ConnectionLedger ledger({.max_per_ip = 2, .new_per_second_per_ip = 100, .max_total = 0});
        CHECK(ledger.admit(a, kStart).admission == Admission::admit);
        CHECK(ledger.admit(a, kStart).admission == Admission::admit);
        CHECK(ledger.admit(a, kStart).admission == Admission::over_client_connections);
        ledger.release(a, true, kStart);   // the refusal's place
        ledger.release(a, false, kStart);  // one connection
        CHECK(ledger.admit(a, kStart).admission == Admission::admit);
    }
    SECTION("new connections a second") {
        ConnectionLedger ledger({.max_per_ip = 100, .new_per_second_per_ip = 3, .max_total = 0});
        for (int i = 0; i < 3; ++i) CHECK(ledger.admit(a, kStart).admission == Admission::admit);
        CHECK(ledger.admit(a, kStart).admission == Admission::over_client_rate);
        CHECK(ledger.admit(a, kStart + 1s).admission == Admission::admit);
    }
    SECTION("the proxy's total") {
        ConnectionLedger ledger({.max_per_ip = 100, .new_per_second_per_ip = 100, .max_total = 1});
        CHECK(ledger.admit(a, kStart).admission == Admission::admit);
        CHECK(ledger.admit(address("10.0.0.5"), kStart).admission == Admission::over_proxy_connections);
    }
}

TEST_CASE("a client with nothing open and a full bucket is forgotten", "[policy][limits]") {
    ConnectionLedger ledger({.max_per_ip = 4, .new_per_second_per_ip = 2, .max_total = 0});
    const auto a = address("10.0.0.4");
    REQUIRE(ledger.admit(a, kStart).admission == Admission::admit);
    ledger.release(a, false, kStart);
    CHECK(ledger.tracked_clients() == 1);  // its bucket is not full yet
    REQUIRE(ledger.admit(a, kStart + 1s).admission == Admission::admit);
    ledger.release(a, false, kStart + 2s);
    CHECK(ledger.tracked_clients() == 0);
    CHECK(ledger.open_total() == 0);
}

TEST_CASE("a forgotten client's entry serves the next new client as a new one", "[policy][limits]") {
    ConnectionLedger ledger({.max_per_ip = 1, .new_per_second_per_ip = 1, .max_total = 0});
    const auto a = address("10.0.0.4");
    const auto b = address("2001:db8::7");
    REQUIRE(ledger.admit(a, kStart).admission == Admission::admit);
    ledger.release(a, false, kStart + 1s);
    REQUIRE(ledger.tracked_clients() == 0);
    REQUIRE(ledger.spare_entries() == 1);

    // b takes the spare entry: under its own address, with a full bucket and nothing open.
    CHECK(ledger.admit(b, kStart + 1s).admission == Admission::admit);
    CHECK(ledger.spare_entries() == 0);
    CHECK(ledger.admit(b, kStart + 1s).admission == Admission::over_client_connections);
    CHECK(ledger.admit(a, kStart + 1s).admission == Admission::admit);  // a is new again, and apart
    CHECK(ledger.tracked_clients() == 2);
    ledger.release(b, true, kStart + 1s);
    ledger.release(b, false, kStart + 1s);
    CHECK(ledger.admit(b, kStart + 1s).admission == Admission::over_client_rate);  // b's own bucket
}

TEST_CASE("the ledger keeps at most kMaxSpareClientEntries spare entries", "[policy][limits]") {
    ConnectionLedger ledger({.max_per_ip = 4, .new_per_second_per_ip = 1, .max_total = 0});
    constexpr std::size_t kClients = kMaxSpareClientEntries + 6;
    std::vector<IpAddress> clients;
    for (std::size_t i = 0; i < kClients; ++i) {
        clients.push_back(*IpAddress::parse("10.1." + std::to_string(i / 200) + "." + std::to_string(i % 200)));
        REQUIRE(ledger.admit(clients.back(), kStart).admission == Admission::admit);
    }
    for (const auto& client : clients) ledger.release(client, false, kStart + 1s);
    CHECK(ledger.tracked_clients() == 0);
    CHECK(ledger.spare_entries() == kMaxSpareClientEntries);
    for (const auto& client : clients) REQUIRE(ledger.admit(client, kStart + 1s).admission == Admission::admit);
    CHECK(ledger.spare_entries() == 0);
    CHECK(ledger.tracked_clients() == kClients);
    CHECK(ledger.open_total() == kClients);
}
