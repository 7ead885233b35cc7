#include "proxy/command_line.hpp"

#include <iostream>

#include <CLI/CLI.hpp>

namespace egressgate::proxy {

namespace {

// The status after a usage error, as getopt-style tools have it.
constexpr int kUsageError = 2;

}  // namespace

std::variant<CommandLine, int> parse_command_line(int argc, char** argv) {
    CLI::App app{"egressgate: the egress gateway of an Azure virtual network's proxy VM", "egressgate"};
    app.set_version_flag("--version", std::string("egressgate ") + kVersion);
    CommandLine command;
    std::string check_path;
    auto* serve = app.add_option("--config", command.config_path, "run the proxy with this configuration")
                      ->type_name("FILE");
    auto* check = app.add_option("--check-config", check_path,
                                 "validate FILE (and the files it names), print every error, exit 0 or 1")
                      ->type_name("FILE");
    serve->excludes(check);
    app.footer("SIGHUP reloads the configuration, SIGUSR1 reopens the audit file, SIGTERM drains and stops.");
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        const int status = app.exit(e, std::cout, std::cerr);
        return status == 0 ? 0 : kUsageError;
    }
    if (serve->count() == 0 && check->count() == 0) {
        std::cerr << "egressgate: give --config FILE to run the proxy, or --check-config FILE\n"
                     "Run with --help for more information.\n";
        return kUsageError;
    }
    if (check->count() > 0) {
        command.action = CommandLine::Action::check_config;
        command.config_path = check_path;
    }
    return command;
}

}  // namespace egressgate::proxy
