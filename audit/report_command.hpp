#pragma once
// `egressgate report`: the audit files named, read oldest first, into one report on a stream.
// Reads only those files; writes only to the streams it is given.
#include <cstddef>
#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "audit/report.hpp"
#include "audit/report_format.hpp"

namespace egressgate::audit {

enum class BadLinePolicy : std::uint8_t { skip, fail };

// Progress on a terminal: a line per this much text read.
inline constexpr std::uint64_t kProgressEveryBytes = std::uint64_t{64} << 20;
// Bad lines named one by one on stderr; after these, only their count.
inline constexpr std::size_t kBadLinesNamed = 10;
// Lines looked at, at most, for the time a file starts at (to read the files oldest first).
inline constexpr std::size_t kOrderingLines = 1000;

struct ReportRequest {
    std::vector<std::string> files;
    ReportFilter filter;
    ReportFormat format = ReportFormat::table;
    BadLinePolicy on_bad_line = BadLinePolicy::skip;
    std::size_t top_limit = kDefaultTopDestinations;  // 0: every destination
    bool show_progress = false;                       // stderr is a terminal
};

// Files are read in the order of the time of their first good line (rotated files come in any
// order: audit.jsonl, audit.jsonl.1, audit.jsonl.2.gz), files without one last, so that a
// connection's progress lines come before its final line. A bad line is named on err as
// "FILE:LINE: what" and skipped, or ends the run under BadLinePolicy::fail.
//
// 0: the report is on out. 1: a file could not be read, a bad line under BadLinePolicy::fail,
// or out could not be written (each said on err).
int run_report(const ReportRequest& request, std::ostream& out, std::ostream& err);

}  // namespace egressgate::audit
