// [proxy] drain_notice_ms and drain_timeout_ms: the two stages of a stop (issue 13, scale-out).
#include <catch.hpp>

#include <chrono>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "config_test_support.hpp"

namespace cfg = egressgate::config;
using config_test_support::describe;
using std::chrono::milliseconds;

namespace {

constexpr const char* kSource = "drain.toml";
// Two lines, so that the [proxy] table starts on line 3 and its first key is on line 4.
const std::string kClients = "[clients]\nallow = [\"10.0.0.0/16\"]\n";

struct BadDrainValue {
    const char* name;
    std::string line;  // the one key under [proxy]
    std::string key;
    std::string value;
    std::string message;  // substring
    int column;
};

const std::vector<BadDrainValue> kBadDrainValues = {
    {"drain_notice_ms negative", "drain_notice_ms = -1", "proxy.drain_notice_ms", "-1", "must be from 0 to 600000", 19},
    {"drain_notice_ms over ten minutes", "drain_notice_ms = 600001", "proxy.drain_notice_ms", "600001",
     "must be from 0 to 600000", 19},
    {"drain_notice_ms with a unit", "drain_notice_ms = \"1500ms\"", "proxy.drain_notice_ms", "\"1500ms\"",
     "expected an integer, got a string", 19},
    {"drain_notice_ms a float", "drain_notice_ms = 1.5", "proxy.drain_notice_ms", "1.5",
     "expected an integer, got a floating-point number", 19},
    {"drain_timeout_ms zero", "drain_timeout_ms = 0", "proxy.drain_timeout_ms", "0", "must be from 1 to 3600000", 20},
    {"drain_timeout_ms over an hour", "drain_timeout_ms = 3600001", "proxy.drain_timeout_ms", "3600001",
     "must be from 1 to 3600000", 20},
};

std::string proxy_table(const std::string& lines) { return kClients + "[proxy]\n" + lines + "\n"; }

}  // namespace

TEST_CASE("drain keys out of range or of the wrong type name the key, the value and line:column", "[config]") {
    for (const auto& bad : kBadDrainValues) {
        DYNAMIC_SECTION(bad.name) {
            const auto result = cfg::parse_config(proxy_table(bad.line), kSource);
            INFO(describe(result));
            CHECK_FALSE(result.config);
            REQUIRE(result.errors.size() == 1);
            const auto& error = result.errors[0];
            CHECK(error.source == kSource);
            CHECK(error.key == bad.key);
            CHECK(error.value == bad.value);
            CHECK_THAT(error.message, Catch::Contains(bad.message));
            CHECK(error.line == 4);
            CHECK(error.column == bad.column);
        }
    }
}

TEST_CASE("drain_notice_ms defaults to 0: SIGTERM closes the listeners at once, as before", "[config]") {
    const auto result = cfg::parse_config(kClients, kSource);
    INFO(describe(result));
    REQUIRE(result.config);
    CHECK(result.config->drain_notice == milliseconds{0});
    CHECK(result.config->drain_timeout == milliseconds{10000});
}

struct GoodDrainValues {
    const char* name;
    std::string lines;
    milliseconds notice;
    milliseconds timeout;
};

TEST_CASE("drain_notice_ms and drain_timeout_ms are read in milliseconds, edges included", "[config]") {
    const std::vector<GoodDrainValues> cases = {
        {"notice off, written out", "drain_notice_ms = 0", milliseconds{0}, milliseconds{10000}},
        {"a notice longer than two 5 s probes", "drain_notice_ms = 15000\ndrain_timeout_ms = 30000",
         milliseconds{15000}, milliseconds{30000}},
        {"the largest notice", "drain_notice_ms = 600000", milliseconds{600000}, milliseconds{10000}},
        {"the shortest drain", "drain_timeout_ms = 1", milliseconds{0}, milliseconds{1}},
    };
    for (const auto& good : cases) {
        DYNAMIC_SECTION(good.name) {
            const auto result = cfg::parse_config(proxy_table(good.lines), kSource);
            INFO(describe(result));
            REQUIRE(result.config);
            CHECK(result.config->drain_notice == good.notice);
            CHECK(result.config->drain_timeout == good.timeout);
        }
    }
}
