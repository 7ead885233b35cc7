#pragma once
// Service state for systemd (Type=notify): ready once every listener accepts, reloading on
// SIGHUP, stopping on SIGTERM, and the watchdog while every worker is alive. Does nothing when
// systemd did not ask ($NOTIFY_SOCKET unset).
#include <chrono>
#include <optional>
#include <string_view>

namespace egressgate::proxy {

// state: "READY=1", "RELOADING=1", "STOPPING=1", "WATCHDOG=1", optionally with "\nSTATUS=..." lines.
void notify_systemd(std::string_view state);

// How often to send WATCHDOG=1: half of $WATCHDOG_USEC (WatchdogSec= in the unit), when it is set
// for this process ($WATCHDOG_PID, if set, names it).
std::optional<std::chrono::microseconds> watchdog_interval();

}  // namespace egressgate::proxy
