#pragma once
// A Report as text: aligned tables for a terminal, CSV and JSON for tools, one self-contained
// HTML page for a person (docs/report.md shows each). No I/O beyond the stream given.
//
// Every string from the audit trail is escaped for where it goes: control characters never
// reach a terminal (terminal_safe), CSV cells are quoted (RFC 4180) and a text cell that a
// spreadsheet would run as a formula (= + - @ first) gets a leading ', HTML is escaped.
#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>

#include "audit/report.hpp"

namespace egressgate::audit {

enum class ReportFormat : std::uint8_t { table, csv, json, html };

inline constexpr std::string_view kReportFormatNames[] = {"table", "csv", "json", "html"};

std::optional<ReportFormat> parse_report_format(std::string_view name);

void write_report(const Report& report, ReportFormat format, std::ostream& out);
void write_table(const Report& report, std::ostream& out);
void write_csv(const Report& report, std::ostream& out);
void write_json(const Report& report, std::ostream& out);
void write_html(const Report& report, std::ostream& out);

// "2026-12-01T00:00:00.000Z .. 2026-12-02T00:00:00.000Z (exclusive)", or "every record".
std::string period_text(const ReportFilter& filter);

// Bytes in binary units, one decimal from KiB up: "512 B", "1.5 KiB", "3.0 GiB".
std::string human_bytes(std::uint64_t bytes);

// "host:port", "[v6]:port" for an IPv6 literal, "-" for no host (refused at accept).
std::string destination_text(std::string_view host, std::uint16_t port);

// Text for a terminal: control characters (C0, DEL, C1) and bytes that are not UTF-8 become
// "\xHH"; everything else passes.
std::string terminal_safe(std::string_view text);

// How many columns text takes on a terminal (one per code point: no East Asian widths).
std::size_t display_width(std::string_view text);

}  // namespace egressgate::audit
