#pragma once
// Test-side helpers shared by the config unit tests.
#include <string>

#include "config/config.hpp"

namespace config_test_support {

// Every error of a load, one per line, for Catch2's INFO: a failing case then shows what the
// loader actually said instead of only that the count or the message differed.
inline std::string describe(const egressgate::config::LoadResult& result) {
    std::string text;
    for (const auto& e : result.errors) text += e.to_string() + "\n";
    return text;
}

}  // namespace config_test_support
