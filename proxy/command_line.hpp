#pragma once
// The command line: `egressgate --config FILE`, `--check-config FILE`, `--help`, `--version`,
// `egressgate report [OPTIONS] FILE...`, `egressgate catalogs [NAME]` and
// `egressgate explain --config FILE --client IP --target HOST:PORT [--resolve] [--sni NAME]` (CLI11: --config=FILE and --config FILE both work,
// and errors name the option).
#include <optional>
#include <string>
#include <variant>

#include "audit/report_command.hpp"
#include "proxy/explain.hpp"

namespace egressgate::proxy {

// The version this binary was built as (CMake's project version), for --version and /metrics.
inline constexpr const char* kVersion = EGRESSGATE_VERSION;

struct CommandLine {
    enum class Action { serve, check_config, report, catalogs, explain };
    Action action = Action::serve;
    std::string config_path;
    audit::ReportRequest report;  // Action::report (show_progress is for the caller to set)
    std::optional<std::string> catalog;  // Action::catalogs: the one to show, else all
    ExplainRequest explain;  // Action::explain
};

// A command line to act on, or the exit status of one already handled: 0 after --help or
// --version (printed to stdout), 2 after a usage error (printed to stderr with the usage).
std::variant<CommandLine, int> parse_command_line(int argc, char** argv);

}  // namespace egressgate::proxy
