#include "audit/report_command.hpp"

#include <algorithm>
#include <limits>
#include <optional>

#include <fmt/format.h>

#include "audit/report_input.hpp"
#include "audit/report_line.hpp"

namespace egressgate::audit {
namespace {

constexpr std::string_view kPrefix = "egressgate report: ";
// How often (in lines) the progress check looks at the byte count.
constexpr std::uint64_t kProgressCheckLines = 4096;

struct InputFile {
    std::string path;
    std::optional<UnixMillis> starts;  // the time of its first good line
};

// The time of the first good line among the first kOrderingLines, or nullopt; an error when
// the file cannot be opened or read.
std::optional<UnixMillis> first_time(const std::string& path, std::string& error) {
    AuditFileReader reader(path);
    AuditLineParser parser;
    AuditLine line;
    AuditFileReader::Line l;
    while (reader.lines_read() < kOrderingLines && reader.next(l)) {
        if (!l.too_long && parser.parse(l.text, line)) return line.time;
    }
    if (!reader.data_error()) error = reader.error();
    return std::nullopt;
}

class BadLines {
public:
    BadLines(BadLinePolicy policy, std::ostream& err) : policy_(policy), err_(err) {}

    // True when the run goes on.
    bool add(const std::string& file, std::uint64_t line, std::string_view what) {
        ++count_;
        if (policy_ == BadLinePolicy::fail || count_ <= kBadLinesNamed) {
            err_ << terminal_safe(file) << ':' << line << ": " << terminal_safe(what) << '\n';
        }
        return policy_ == BadLinePolicy::skip;
    }
    void summary() const {
        if (count_ == 0) return;
        err_ << kPrefix << count_ << (count_ == 1 ? " bad line" : " bad lines") << " skipped";
        if (count_ > kBadLinesNamed) err_ << " (the first " << kBadLinesNamed << " named above)";
        err_ << '\n';
    }

private:
    BadLinePolicy policy_;
    std::ostream& err_;
    std::uint64_t count_ = 0;
};

class Progress {
public:
    Progress(bool enabled, std::ostream& err) : enabled_(enabled), err_(err) {}

    void file_done(std::uint64_t bytes) { done_ += bytes; }
    void update(const std::string& file, const AuditFileReader& reader) {
        if (!enabled_ || reader.lines_read() % kProgressCheckLines != 0) return;
        const std::uint64_t total = done_ + reader.bytes_read();
        if (total < next_) return;
        next_ = (total / kProgressEveryBytes + 1) * kProgressEveryBytes;
        err_ << kPrefix << terminal_safe(file) << ": " << human_bytes(reader.bytes_read()) << ", " << reader.lines_read()
             << " lines (" << human_bytes(total) << " in all)\n";
    }

private:
    bool enabled_;
    std::ostream& err_;
    std::uint64_t done_ = 0;
    std::uint64_t next_ = kProgressEveryBytes;
};

}  // namespace

int run_report(const ReportRequest& request, std::ostream& out, std::ostream& err) {
    std::vector<InputFile> files;
    for (const auto& path : request.files) {
        std::string error;
        const auto starts = first_time(path, error);
        if (!error.empty()) {
            err << kPrefix << terminal_safe(path) << ": " << error << '\n';
            return 1;
        }
        files.push_back({path, starts});
    }
    std::stable_sort(files.begin(), files.end(), [](const InputFile& a, const InputFile& b) {
        return a.starts.value_or(std::numeric_limits<UnixMillis>::max()) < b.starts.value_or(std::numeric_limits<UnixMillis>::max());
    });

    Aggregator aggregator(request.filter, request.top_limit);
    AuditLineParser parser;
    AuditLine line;
    BadLines bad(request.on_bad_line, err);
    Progress progress(request.show_progress, err);
    std::vector<std::string> read_order;
    for (const auto& file : files) {
        read_order.push_back(file.path);
        AuditFileReader reader(file.path);
        AuditFileReader::Line l;
        while (reader.next(l)) {
            if (l.too_long) {
                aggregator.count_bad_line();
                if (!bad.add(file.path, l.number, fmt::format("line longer than {} bytes", kMaxAuditLineBytes))) return 1;
            } else if (parser.parse(l.text, line)) {
                aggregator.add(line);
            } else {
                aggregator.count_bad_line();
                if (!bad.add(file.path, l.number, parser.error())) return 1;
            }
            progress.update(file.path, reader);
        }
        if (!reader.error().empty()) {
            if (!reader.data_error()) {
                err << kPrefix << terminal_safe(file.path) << ": " << reader.error() << '\n';
                return 1;
            }
            // Corrupt or cut-short gzip: what came before it counts, like the lines of a file
            // that a crash cut short.
            aggregator.count_bad_line();
            if (!bad.add(file.path, reader.lines_read() + 1, reader.error())) return 1;
        }
        progress.file_done(reader.bytes_read());
    }
    bad.summary();

    const Report report = aggregator.finish(std::move(read_order));
    write_report(report, request.format, out);
    out.flush();
    if (!out) {
        err << kPrefix << "could not write the report\n";
        return 1;
    }
    return 0;
}

}  // namespace egressgate::audit
