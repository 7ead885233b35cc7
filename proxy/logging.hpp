#pragma once
// The proxy's own log (not the audit trail): stderr, coloured on a terminal; under systemd's
// journal (JOURNAL_STREAM set) each line starts with its syslog priority ("<3>" for errors), so
// that `journalctl -p warning` finds warnings, and carries no timestamp of its own.
namespace egressgate::proxy {

void set_up_logging();

}  // namespace egressgate::proxy
