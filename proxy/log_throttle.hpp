#pragma once
// At most one log line per interval for a condition that can repeat many times a second (accept
// failing while descriptors are exhausted, a full disk): the next line says how many it held back.
#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>

namespace egressgate::proxy {

inline constexpr std::chrono::seconds kLogThrottleInterval{10};

class LogThrottle {
public:
    explicit LogThrottle(std::chrono::steady_clock::duration interval = kLogThrottleInterval) : interval_(interval) {}

    // Thread-safe. Returns how many occurrences were held back since the last logged one when
    // this one should be logged, nothing when it should be held back.
    std::optional<std::uint64_t> admit() {
        const auto now = std::chrono::steady_clock::now();
        std::lock_guard lock(mutex_);
        if (logged_once_ && now - last_logged_ < interval_) {
            ++held_back_;
            return std::nullopt;
        }
        logged_once_ = true;
        last_logged_ = now;
        const std::uint64_t held = held_back_;
        held_back_ = 0;
        return held;
    }

private:
    std::chrono::steady_clock::duration interval_;
    std::mutex mutex_;
    std::chrono::steady_clock::time_point last_logged_;
    bool logged_once_ = false;
    std::uint64_t held_back_ = 0;
};

}  // namespace egressgate::proxy
