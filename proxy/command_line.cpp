#include "proxy/command_line.hpp"

#include <iostream>

#include <CLI/CLI.hpp>

#include "policy/host.hpp"
#include "policy/ip_address.hpp"

namespace egressgate::proxy {

namespace {

// The status after a usage error, as getopt-style tools have it.
constexpr int kUsageError = 2;

// --since and --until: RFC 3339 or a date, said in the message when it is neither.
const CLI::Validator kReportTime(
    [](const std::string& text) -> std::string {
        if (audit::parse_report_time(text)) return "";
        return "not an RFC 3339 time (2026-12-01T10:00:00Z) or a date (2026-12-01): " + text;
    },
    "");

// --top: beyond this many destinations per VM, --top 0 (all of them) says it better.
constexpr std::size_t kMaxTopLimit = 1'000'000;

// `egressgate report`: its options, parsed into request. The strings are converted after parsing.
struct ReportOptions {
    CLI::App* command = nullptr;
    std::string since;
    std::string until;
    std::string format = "table";
    std::string on_bad_line = "skip";
};

// options and request are bound to the parser: they must outlive app.parse().
void add_report_command(CLI::App& app, ReportOptions& options, audit::ReportRequest& request) {
    options.command = app.add_subcommand(
        "report", "summarise audit files (plain or gzip): bytes, connections and denials per VM, top destinations, "
                  "storage accounts, destinations first seen, denials");
    CLI::App& report = *options.command;
    report.add_option("--since", options.since, "count records at or after T (RFC 3339, or a date: its midnight UTC)")
        ->type_name("T")
        ->check(kReportTime);
    report.add_option("--until", options.until, "count records before T")->type_name("T")->check(kReportTime);
    report.add_option("--vm", request.filter.vms, "only this VM's records (repeat for more)")
        ->type_name("NAME")
        ->allow_extra_args(false);
    report.add_option("--format", options.format, "table (the default), csv, json or html")
        ->type_name("FORMAT")
        ->check(CLI::IsMember({"table", "csv", "json", "html"}));
    report.add_option("--on-bad-line", options.on_bad_line,
                      "skip (the default: name the first ones, count them) or fail (exit 1 at the first)")
        ->type_name("ACTION")
        ->check(CLI::IsMember({"skip", "fail"}));
    report.add_option("--top", request.top_limit, "destinations shown per VM (0: all; default 10)")
        ->type_name("N")
        ->check(CLI::Range(std::size_t{0}, kMaxTopLimit));
    report.add_option("FILE", request.files, "audit files: the current one and rotated ones, .gz or not, in any order")
        ->required()
        ->type_name("FILE");
    report.footer("A record counts in the period by its time (a connection's end). docs/report.md explains every figure.");
}

// The report's strings as values: they were checked while parsing.
void finish_report_request(const ReportOptions& options, audit::ReportRequest& request) {
    if (!options.since.empty()) request.filter.since = audit::parse_report_time(options.since);
    if (!options.until.empty()) request.filter.until = audit::parse_report_time(options.until);
    request.format = *audit::parse_report_format(options.format);
    request.on_bad_line = options.on_bad_line == "fail" ? audit::BadLinePolicy::fail : audit::BadLinePolicy::skip;
}

// --client: an address, as the proxy sees a VM's connection.
const CLI::Validator kClientAddress(
    [](const std::string& text) -> std::string {
        if (policy::IpAddress::parse(text)) return "";
        return "not an IP address: " + text;
    },
    "");

CLI::App* add_catalogs_command(CLI::App& app, CommandLine& command) {
    CLI::App* catalogs = app.add_subcommand("catalogs", "list the built-in host catalogs, or show one's patterns and sources");
    catalogs->add_option("NAME", command.catalog, "the catalog to show");
    return catalogs;
}

CLI::App* add_explain_command(CLI::App& app, ExplainRequest& request) {
    CLI::App* explain = app.add_subcommand(
        "explain", "show, step by step, what the proxy would decide for a client and a target (no connection is made)");
    explain->add_option("--config", request.config_path, "the configuration to explain")->required()->type_name("FILE");
    explain->add_option("--client", request.client, "the VM's address")->required()->type_name("IP")->check(kClientAddress);
    explain->add_option("--target", request.target, "what it asks for, as in CONNECT")->required()->type_name("HOST:PORT");
    explain->add_flag("--resolve", request.resolve, "resolve the name as the proxy does and check each address");
    explain->add_option("--sni", request.sni, "the server name its ClientHello sends")->type_name("NAME");
    explain->footer("Exit status: 0 allowed (or let through in report mode), 1 denied, 2 usage or config error.");
    return explain;
}

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
    ReportOptions report;
    add_report_command(app, report, command.report);
    report.command->excludes(serve);
    report.command->excludes(check);
    CLI::App* catalogs = add_catalogs_command(app, command);
    CLI::App* explain = add_explain_command(app, command.explain);
    for (CLI::App* sub : {catalogs, explain}) {
        sub->excludes(serve);
        sub->excludes(check);
    }
    app.footer("SIGHUP reloads the configuration, SIGUSR1 reopens the audit file, SIGTERM drains and stops.");
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        const int status = app.exit(e, std::cout, std::cerr);
        return status == 0 ? 0 : kUsageError;
    }
    if (report.command->parsed()) {
        finish_report_request(report, command.report);
        const auto& filter = command.report.filter;
        if (filter.since && filter.until && *filter.since >= *filter.until) {
            std::cerr << "egressgate report: --since must be before --until\n"
                         "Run with report --help for more information.\n";
            return kUsageError;
        }
        command.action = CommandLine::Action::report;
        return command;
    }
    if (catalogs->parsed()) {
        command.action = CommandLine::Action::catalogs;
        return command;
    }
    if (explain->parsed()) {
        if (!policy::parse_authority(command.explain.target)) {
            std::cerr << "egressgate explain: --target " << command.explain.target
                      << ": expected HOST:PORT or [IPv6]:PORT\nRun with explain --help for more information.\n";
            return kUsageError;
        }
        command.action = CommandLine::Action::explain;
        return command;
    }
    if (serve->count() == 0 && check->count() == 0) {
        std::cerr << "egressgate: give --config FILE to run the proxy, --check-config FILE, report FILE..., "
                     "catalogs or explain\n"
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
