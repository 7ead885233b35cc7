#pragma once
// How the fuzz targets here report a broken promise: the condition and where it is written go to
// stderr, then the abort makes libFuzzer report a crash and save the input that caused it.
#include <cstdio>
#include <cstdlib>

#define FUZZ_REQUIRE(condition) ::egressgate::fuzz::require((condition), #condition, __FILE__, __LINE__)

namespace egressgate::fuzz {

inline void require(bool ok, const char* condition, const char* file, int line) {
    if (ok) return;
    std::fprintf(stderr, "%s:%d: broken promise: %s\n", file, line, condition);
    std::abort();
}

}  // namespace egressgate::fuzz
