#include "audit/report_format.hpp"

#include <algorithm>
#include <array>
#include <functional>
#include <vector>

#include <fmt/format.h>

namespace egressgate::audit {
namespace {

void append_hex(std::string& out, unsigned char c) {
    constexpr char kHex[] = "0123456789abcdef";
    out += "\\x";
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 0xf]);
}

std::string vm_list(const std::vector<std::string>& vms) {
    std::string out;
    for (const auto& vm : vms) out += (out.empty() ? "" : ", ") + vm;
    return out;
}

std::string join(const std::vector<std::string_view>& parts, std::string_view separator) {
    std::string out;
    for (const auto part : parts) {
        if (!out.empty()) out += separator;
        out += part;
    }
    return out;
}

Traffic all_vms(const Report& report) {
    Traffic total;
    for (const auto& vm : report.vms) total.add(vm.traffic);
    return total;
}

// ---- table ----

// A table for a terminal: columns aligned by display width, every cell made terminal-safe.
// Rows are not kept (a report can have as many as it has denials): the section's rows are
// produced twice, once to measure the columns and once to print them.
class TextTable {
public:
    enum class Align : std::uint8_t { left, right };
    struct Column {
        std::string_view title;
        Align align;
    };
    using Cells = std::initializer_list<std::string>;
    // Calls row(cells) for every row; cells past the last given are empty.
    using Rows = std::function<void(const std::function<void(Cells)>& row)>;

    explicit TextTable(std::vector<Column> columns) : columns_(std::move(columns)) {}

    // The section: its title, then "(none)" or the header and the rows.
    void write(std::ostream& out, std::string_view title, const Rows& rows) const {
        out << '\n' << title << '\n';
        std::vector<std::size_t> widths(columns_.size());
        for (std::size_t c = 0; c < columns_.size(); ++c) widths[c] = columns_[c].title.size();
        std::size_t count = 0;
        rows([&](Cells cells) {
            std::size_t c = 0;
            for (const auto& cell : cells) {
                if (c < widths.size()) widths[c] = std::max(widths[c], display_width(terminal_safe(cell)));
                ++c;
            }
            ++count;
        });
        if (count == 0) {
            out << "(none)\n";
            return;
        }
        std::vector<std::string> cells;
        for (const auto& column : columns_) cells.emplace_back(column.title);
        write_row(out, cells, widths);
        rows([&](Cells row) {
            cells.assign(columns_.size(), std::string());
            std::size_t c = 0;
            for (const auto& cell : row) {
                if (c < cells.size()) cells[c] = terminal_safe(cell);
                ++c;
            }
            write_row(out, cells, widths);
        });
    }

private:
    void write_row(std::ostream& out, const std::vector<std::string>& cells, const std::vector<std::size_t>& widths) const {
        std::string line;
        for (std::size_t c = 0; c < cells.size(); ++c) {
            const std::size_t pad = widths[c] - display_width(cells[c]);
            const bool last = c + 1 == cells.size();
            if (c > 0) line += "  ";
            if (columns_[c].align == Align::right) line.append(pad, ' ');
            line += cells[c];
            if (columns_[c].align == Align::left && !last) line.append(pad, ' ');
        }
        while (!line.empty() && line.back() == ' ') line.pop_back();
        out << line << '\n';
    }

    std::vector<Column> columns_;
};

using Align = TextTable::Align;
using Row = std::function<void(TextTable::Cells)>;

std::string count_text(std::uint64_t n) { return std::to_string(n); }

std::string plural(std::uint64_t n, std::string_view noun) { return fmt::format("{} {}{}", n, noun, n == 1 ? "" : "s"); }

// ---- csv ----

// RFC 4180 cells, a section per table (docs/report.md): each row starts with its section's name.
class CsvWriter {
public:
    explicit CsvWriter(std::ostream& out) : out_(out) {}

    void section(std::string_view name, std::initializer_list<std::string_view> header) {
        if (sections_++ > 0) out_ << '\n';
        name_ = name;
        out_ << "section";
        for (const auto h : header) out_ << ',' << h;
        out_ << '\n';
    }
    CsvWriter& row() {
        out_ << name_;
        return *this;
    }
    CsvWriter& text(std::string_view value) {
        out_ << ',';
        std::string cell;
        // A spreadsheet runs a cell that starts like a formula: hosts and names come from clients.
        if (!value.empty() && (value[0] == '=' || value[0] == '+' || value[0] == '-' || value[0] == '@' ||
                               value[0] == '\t' || value[0] == '\r')) {
            cell = "'";
        }
        cell += value;
        if (cell.find_first_of(",\"\r\n") != std::string::npos || (!cell.empty() && (cell.front() == ' ' || cell.back() == ' '))) {
            out_ << '"';
            for (const char c : cell) {
                if (c == '"') out_ << '"';
                out_ << c;
            }
            out_ << '"';
        } else {
            out_ << cell;
        }
        return *this;
    }
    CsvWriter& number(std::uint64_t value) {
        out_ << ',' << value;
        return *this;
    }
    CsvWriter& time(std::optional<UnixMillis> value) {
        out_ << ',';
        if (value) out_ << format_report_time(*value);
        return *this;
    }
    void end() { out_ << '\n'; }

private:
    std::ostream& out_;
    std::string_view name_;
    int sections_ = 0;
};

// ---- json ----

// JSON written as it goes (a report can have hundreds of thousands of rows: no document is
// built). A row (begin_row: an object of one table row) and whatever it holds is written on one
// line; other containers get a line per member. Strings are valid UTF-8 on the way out: a byte
// that is not (in a file name from the command line) becomes U+FFFD.
class JsonWriter {
public:
    explicit JsonWriter(std::ostream& out) : out_(out) {}

    JsonWriter& begin_object() { return open('{', false); }
    JsonWriter& begin_row() { return open('{', true); }
    JsonWriter& end_object() { return close('}'); }
    JsonWriter& begin_array() { return open('[', false); }
    JsonWriter& end_array() { return close(']'); }
    JsonWriter& key(std::string_view name) {
        separate();
        string(name);
        out_ << ": ";
        after_key_ = true;
        return *this;
    }
    JsonWriter& value(std::string_view text) {
        separate();
        string(text);
        return *this;
    }
    JsonWriter& value(std::uint64_t number) {
        separate();
        out_ << number;
        return *this;
    }
    JsonWriter& time(std::optional<UnixMillis> time) {
        separate();
        if (time) string(format_report_time(*time));
        else out_ << "null";
        return *this;
    }
    JsonWriter& traffic(const Traffic& t) {
        key("connections").value(t.connections);
        key("bytes_up").value(t.bytes_up);
        return key("bytes_down").value(t.bytes_down);
    }
    JsonWriter& strings(const std::vector<std::string_view>& texts) {
        begin_array();
        for (const auto text : texts) value(text);
        return end_array();
    }

private:
    struct Container {
        bool empty = true;
        bool one_line = false;
    };

    void newline() {
        out_ << '\n';
        for (std::size_t i = 0; i < open_.size(); ++i) out_ << "  ";
    }
    // Before a member or an element: the comma, and the line it goes on.
    void separate() {
        if (after_key_) {
            after_key_ = false;
            return;
        }
        if (open_.empty()) return;
        Container& c = open_.back();
        if (!c.empty) out_ << ',';
        if (!c.one_line) newline();
        else if (!c.empty) out_ << ' ';
        c.empty = false;
    }
    JsonWriter& open(char bracket, bool row) {
        separate();
        const bool one_line = row || (!open_.empty() && open_.back().one_line);
        out_ << bracket;
        open_.push_back({true, one_line});
        return *this;
    }
    JsonWriter& close(char bracket) {
        const Container c = open_.back();
        open_.pop_back();
        if (!c.empty && !c.one_line) newline();
        out_ << bracket;
        if (open_.empty()) out_ << '\n';
        return *this;
    }
    void string(std::string_view text) {
        constexpr char kHex[] = "0123456789abcdef";
        out_ << '"';
        const char* p = text.data();
        const char* end = p + text.size();
        while (p < end) {
            const auto c = static_cast<unsigned char>(*p);
            if (c == '"' || c == '\\') {
                out_ << '\\' << static_cast<char>(c);
            } else if (c < 0x20) {
                out_ << "\\u00" << kHex[c >> 4] << kHex[c & 0xf];
            } else if (c < 0x80) {
                out_ << static_cast<char>(c);
            } else if (const std::size_t length = utf8_sequence_length(p, end)) {
                out_.write(p, static_cast<std::streamsize>(length));
                p += length;
                continue;
            } else {
                out_ << "\\ufffd";
            }
            ++p;
        }
        out_ << '"';
    }

    std::ostream& out_;
    std::vector<Container> open_;
    bool after_key_ = false;
};

}  // namespace

std::optional<ReportFormat> parse_report_format(std::string_view name) {
    for (std::size_t i = 0; i < std::size(kReportFormatNames); ++i) {
        if (kReportFormatNames[i] == name) return static_cast<ReportFormat>(i);
    }
    return std::nullopt;
}

std::string period_text(const ReportFilter& filter) {
    if (!filter.since && !filter.until) return "every record";
    return fmt::format("{} .. {}", filter.since ? format_report_time(*filter.since) : "(start)",
                       filter.until ? format_report_time(*filter.until) + " (exclusive)" : "(end)");
}

std::string human_bytes(std::uint64_t bytes) {
    constexpr std::array<std::string_view, 6> kUnits = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    if (bytes < 1024) return fmt::format("{} B", bytes);
    double value = static_cast<double>(bytes) / 1024;
    std::size_t unit = 0;
    // Move up while the rounded figure would read 1024.0 or more.
    while (value >= 1023.95 && unit + 1 < kUnits.size()) {
        value /= 1024;
        ++unit;
    }
    return fmt::format("{:.1f} {}", value, kUnits[unit]);
}

std::string destination_text(std::string_view host, std::uint16_t port) {
    if (host.empty()) return "-";
    if (host.find(':') != std::string_view::npos) return fmt::format("[{}]:{}", host, port);
    return fmt::format("{}:{}", host, port);
}

std::string terminal_safe(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    const char* p = text.data();
    const char* end = p + text.size();
    while (p < end) {
        const auto c = static_cast<unsigned char>(*p);
        if (c < 0x80) {
            if (c < 0x20 || c == 0x7f) append_hex(out, c);
            else out.push_back(static_cast<char>(c));
            ++p;
            continue;
        }
        const std::size_t length = utf8_sequence_length(p, end);
        // C1 controls (U+0080..U+009F, "\xc2\x80".."\xc2\x9f") act on some terminals.
        const bool c1 = length == 2 && c == 0xc2 && static_cast<unsigned char>(p[1]) < 0xa0;
        if (length == 0 || c1) {
            const std::size_t n = length == 0 ? 1 : length;
            for (std::size_t i = 0; i < n; ++i) append_hex(out, static_cast<unsigned char>(p[i]));
            p += n;
            continue;
        }
        out.append(p, length);
        p += length;
    }
    return out;
}

std::size_t display_width(std::string_view text) {
    return static_cast<std::size_t>(
        std::count_if(text.begin(), text.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xc0) != 0x80; }));
}

void write_table(const Report& r, std::ostream& out) {
    out << "egressgate report\n";
    out << "  period:  " << period_text(r.filter) << '\n';
    if (!r.filter.vms.empty()) out << "  vms:     " << terminal_safe(vm_list(r.filter.vms)) << '\n';
    out << "  records: " << r.counts.records << " counted";
    if (r.first_record) out << ", " << format_report_time(*r.first_record) << " .. " << format_report_time(*r.last_record);
    out << '\n';
    out << "  input:   " << plural(r.files.size(), "file") << ", " << plural(r.counts.lines, "line");
    if (r.counts.bad_lines > 0) out << ", " << plural(r.counts.bad_lines, "bad line") << " skipped";
    if (r.counts.unfinished > 0) {
        out << ", " << plural(r.counts.unfinished, "connection") << " without a final line (counted at the last progress line)";
    }
    out << '\n';

    TextTable({{"VM", Align::left}, {"CONNECTIONS", Align::right}, {"DENIED", Align::right}, {"REPORTED", Align::right},
               {"UP", Align::right}, {"DOWN", Align::right}, {"TOTAL", Align::right}})
        .write(out, "Totals per VM", [&r](const Row& row) {
            for (const auto& vm : r.vms) {
                row({vm.vm, count_text(vm.traffic.connections), count_text(vm.denied), count_text(vm.reported),
                     human_bytes(vm.traffic.bytes_up), human_bytes(vm.traffic.bytes_down), human_bytes(vm.traffic.bytes())});
            }
            if (r.vms.size() < 2) return;
            const Traffic all = all_vms(r);
            std::uint64_t denied = 0, reported = 0;
            for (const auto& vm : r.vms) {
                denied += vm.denied;
                reported += vm.reported;
            }
            row({"(all)", count_text(all.connections), count_text(denied), count_text(reported), human_bytes(all.bytes_up),
                 human_bytes(all.bytes_down), human_bytes(all.bytes())});
        });

    TextTable({{"VM", Align::left}, {"REASON", Align::left}, {"DENIED", Align::right}})
        .write(out, "Denials by reason", [&r](const Row& row) {
            for (const auto& vm : r.vms) {
                for (const auto& reason : vm.denials_by_reason) row({vm.vm, reason.reason, count_text(reason.count)});
            }
        });

    const std::string top_title = r.top_limit == 0 ? std::string("Destinations per VM, by bytes")
                                                   : fmt::format("Top destinations per VM (at most {}, by bytes)", r.top_limit);
    TextTable({{"VM", Align::left}, {"DESTINATION", Align::left}, {"CONNECTIONS", Align::right}, {"UP", Align::right},
               {"DOWN", Align::right}, {"TOTAL", Align::right}})
        .write(out, top_title, [&r](const Row& row) {
            for (const auto& vm : r.vms) {
                for (const auto& d : vm.top_destinations) {
                    row({vm.vm, destination_text(d.host, d.port), count_text(d.traffic.connections),
                         human_bytes(d.traffic.bytes_up), human_bytes(d.traffic.bytes_down), human_bytes(d.traffic.bytes())});
                }
                if (vm.destinations > vm.top_destinations.size()) {
                    row({vm.vm, fmt::format("({} more)", vm.destinations - vm.top_destinations.size())});
                }
            }
        });

    TextTable({{"VM", Align::left}, {"ACCOUNT", Align::left}, {"CLOUD", Align::left}, {"ENDPOINTS", Align::left},
               {"CONNECTIONS", Align::right}, {"UP", Align::right}, {"DOWN", Align::right}})
        .write(out, "Storage accounts reached", [&r](const Row& row) {
            for (const auto& vm : r.vms) {
                for (const auto& a : vm.storage_accounts) {
                    row({vm.vm, a.account, std::string(a.cloud), join(a.endpoint_names(), " "),
                         count_text(a.traffic.connections), human_bytes(a.traffic.bytes_up), human_bytes(a.traffic.bytes_down)});
                }
            }
        });

    TextTable({{"FIRST SEEN", Align::left}, {"DESTINATION", Align::left}, {"VM", Align::left}, {"CONNECTIONS", Align::right},
               {"UP", Align::right}, {"DOWN", Align::right}})
        .write(out,
               r.filter.since ? "Destinations first seen in the period" : "Destinations first seen (no --since: all of them)",
               [&r](const Row& row) {
                   for (const auto& d : r.new_destinations) {
                       row({format_report_time(d.first_seen), destination_text(d.host, d.port), d.first_vm,
                            count_text(d.traffic.connections), human_bytes(d.traffic.bytes_up),
                            human_bytes(d.traffic.bytes_down)});
                   }
               });

    TextTable({{"VM", Align::left}, {"DECISION", Align::left}, {"REASON", Align::left}, {"DESTINATION", Align::left},
               {"COUNT", Align::right}, {"FIRST", Align::left}, {"LAST", Align::left}})
        .write(out, "Denials", [&r](const Row& row) {
            for (const auto& d : r.denials) {
                row({d.vm, std::string(to_string(d.verdict)), d.reason, destination_text(d.host, d.port), count_text(d.count),
                     format_report_time(d.first), format_report_time(d.last)});
            }
        });
}

void write_csv(const Report& r, std::ostream& out) {
    CsvWriter csv(out);
    csv.section("report", {"since", "until", "vms", "files", "lines", "bad_lines", "records", "unfinished_connections",
                           "first_record", "last_record"});
    csv.row().time(r.filter.since).time(r.filter.until).text(vm_list(r.filter.vms)).number(r.files.size())
        .number(r.counts.lines).number(r.counts.bad_lines).number(r.counts.records).number(r.counts.unfinished)
        .time(r.first_record).time(r.last_record).end();

    csv.section("vm_totals", {"vm", "connections", "denied", "reported", "bytes_up", "bytes_down", "destinations"});
    for (const auto& vm : r.vms) {
        csv.row().text(vm.vm).number(vm.traffic.connections).number(vm.denied).number(vm.reported)
            .number(vm.traffic.bytes_up).number(vm.traffic.bytes_down).number(vm.destinations).end();
    }
    csv.section("denials_by_reason", {"vm", "reason", "count"});
    for (const auto& vm : r.vms) {
        for (const auto& reason : vm.denials_by_reason) csv.row().text(vm.vm).text(reason.reason).number(reason.count).end();
    }
    csv.section("top_destinations", {"vm", "rank", "host", "port", "connections", "bytes_up", "bytes_down"});
    for (const auto& vm : r.vms) {
        std::uint64_t rank = 0;
        for (const auto& d : vm.top_destinations) {
            csv.row().text(vm.vm).number(++rank).text(d.host).number(d.port).number(d.traffic.connections)
                .number(d.traffic.bytes_up).number(d.traffic.bytes_down).end();
        }
    }
    csv.section("storage_accounts", {"vm", "account", "cloud", "endpoints", "connections", "bytes_up", "bytes_down"});
    for (const auto& vm : r.vms) {
        for (const auto& a : vm.storage_accounts) {
            csv.row().text(vm.vm).text(a.account).text(a.cloud).text(join(a.endpoint_names(), " ")).number(a.traffic.connections)
                .number(a.traffic.bytes_up).number(a.traffic.bytes_down).end();
        }
    }
    csv.section("new_destinations", {"host", "port", "first_seen", "first_vm", "connections", "bytes_up", "bytes_down"});
    for (const auto& d : r.new_destinations) {
        csv.row().text(d.host).number(d.port).time(d.first_seen).text(d.first_vm).number(d.traffic.connections)
            .number(d.traffic.bytes_up).number(d.traffic.bytes_down).end();
    }
    csv.section("denials", {"vm", "decision", "reason", "host", "port", "count", "first", "last"});
    for (const auto& d : r.denials) {
        csv.row().text(d.vm).text(to_string(d.verdict)).text(d.reason).text(d.host).number(d.port).number(d.count)
            .time(d.first).time(d.last).end();
    }
}

void write_json(const Report& r, std::ostream& out) {
    JsonWriter j(out);
    j.begin_object();
    j.key("period").begin_row().key("since").time(r.filter.since).key("until").time(r.filter.until).end_object();
    j.key("vm_filter").begin_array();
    for (const auto& vm : r.filter.vms) j.value(vm);
    j.end_array();
    j.key("input").begin_object();
    j.key("files").begin_array();
    for (const auto& file : r.files) j.value(file);
    j.end_array();
    j.key("lines").value(r.counts.lines);
    j.key("bad_lines").value(r.counts.bad_lines);
    j.key("records").value(r.counts.records);
    j.key("progress_lines").value(r.counts.progress_lines);
    j.key("unfinished_connections").value(r.counts.unfinished);
    j.key("outside_period").value(r.counts.outside_period);
    j.key("other_vms").value(r.counts.other_vms);
    j.key("first_record").time(r.first_record);
    j.key("last_record").time(r.last_record);
    j.end_object();
    j.key("top_limit").value(r.top_limit);
    j.key("vms").begin_array();
    for (const auto& vm : r.vms) {
        j.begin_object().key("vm").value(vm.vm).traffic(vm.traffic);
        j.key("denied").value(vm.denied).key("reported").value(vm.reported);
        j.key("denials_by_reason").begin_object();
        for (const auto& reason : vm.denials_by_reason) j.key(reason.reason).value(reason.count);
        j.end_object();
        j.key("destinations").value(vm.destinations);
        j.key("top_destinations").begin_array();
        for (const auto& d : vm.top_destinations) {
            j.begin_row().key("host").value(d.host).key("port").value(d.port).traffic(d.traffic).end_object();
        }
        j.end_array();
        j.key("storage_accounts").begin_array();
        for (const auto& a : vm.storage_accounts) {
            j.begin_row().key("account").value(a.account).key("cloud").value(a.cloud).key("endpoints").strings(a.endpoint_names());
            j.traffic(a.traffic).end_object();
        }
        j.end_array();
        j.end_object();
    }
    j.end_array();
    j.key("new_destinations").begin_array();
    for (const auto& d : r.new_destinations) {
        j.begin_row().key("host").value(d.host).key("port").value(d.port);
        j.key("first_seen").time(d.first_seen).key("first_vm").value(d.first_vm).traffic(d.traffic).end_object();
    }
    j.end_array();
    j.key("denials").begin_array();
    for (const auto& d : r.denials) {
        j.begin_row().key("vm").value(d.vm).key("decision").value(to_string(d.verdict)).key("reason").value(d.reason);
        j.key("host").value(d.host).key("port").value(d.port).key("count").value(d.count);
        j.key("first").time(d.first).key("last").time(d.last).end_object();
    }
    j.end_array();
    j.end_object();
}

void write_report(const Report& report, ReportFormat format, std::ostream& out) {
    switch (format) {
    case ReportFormat::table: write_table(report, out); return;
    case ReportFormat::csv: write_csv(report, out); return;
    case ReportFormat::json: write_json(report, out); return;
    case ReportFormat::html: write_html(report, out); return;
    }
}

}  // namespace egressgate::audit
