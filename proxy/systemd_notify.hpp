#pragma once
// Service state for systemd (Type=notify): ready once every listener accepts, reloading on
// SIGHUP, stopping on SIGTERM. Does nothing when systemd did not ask ($NOTIFY_SOCKET unset).
#include <string_view>

namespace egressgate::proxy {

// state: "READY=1", "RELOADING=1", "STOPPING=1", optionally with "\nSTATUS=..." lines.
void notify_systemd(std::string_view state);

}  // namespace egressgate::proxy
