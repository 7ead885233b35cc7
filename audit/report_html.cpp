// The HTML report: one page that carries everything it shows (styles inline, charts as inline
// SVG, no script), so it opens on an appliance with no internet and can be mailed as it is. Its
// Content-Security-Policy forbids loading anything, so a browser would refuse it even if a
// string from the audit trail managed to ask.
#include <algorithm>
#include <vector>

#include <fmt/format.h>

#include "audit/report_format.hpp"

namespace egressgate::audit {
namespace {

// Bars per chart: the largest, the rest are in the tables below it.
constexpr std::size_t kChartBars = 40;
// Characters of a VM name in a chart label (the tables have it whole).
constexpr std::size_t kChartLabelChars = 24;

constexpr int kChartWidth = 760;
constexpr int kChartLabelWidth = 180;
constexpr int kChartValueWidth = 90;
constexpr int kChartRow = 24;
constexpr int kChartBar = 16;
constexpr int kChartTop = 28;  // room for the legend

std::string html(std::string_view text) {
    const std::string safe = terminal_safe(text);  // control characters as \xHH
    std::string out;
    out.reserve(safe.size());
    for (const char c : safe) {
        switch (c) {
        case '&': out += "&amp;"; break;
        case '<': out += "&lt;"; break;
        case '>': out += "&gt;"; break;
        case '"': out += "&quot;"; break;
        case '\'': out += "&#39;"; break;
        default: out.push_back(c);
        }
    }
    return out;
}

std::string shortened(std::string_view text) {
    std::string out;
    std::size_t chars = 0;
    for (std::size_t i = 0; i < text.size(); ++i) {
        const bool starts_char = (static_cast<unsigned char>(text[i]) & 0xc0) != 0x80;
        if (starts_char && ++chars > kChartLabelChars) return out + "\u2026";
        out.push_back(text[i]);
    }
    return out;
}

constexpr std::string_view kStyle = R"(body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em;color:#1f2328;background:#fff;max-width:1100px}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.2em;margin-top:1.8em;border-bottom:1px solid #d0d7de;padding-bottom:.2em}
dl.meta{display:grid;grid-template-columns:max-content auto;gap:.2em 1em;color:#59636e}dl.meta dt{font-weight:600}dl.meta dd{margin:0}
table{border-collapse:collapse;margin:.4em 0 1em;font-size:.92em}th,td{padding:.25em .7em;border-bottom:1px solid #d8dee4;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}td.more{color:#59636e;font-style:italic}
p.none{color:#59636e;font-style:italic}svg text{font:12px system-ui,sans-serif;fill:#1f2328}
.up{fill:#0969da}.down{fill:#54aeff}.deny{fill:#cf222e}.report{fill:#e16f24})";

class Page {
public:
    explicit Page(std::ostream& out) : out_(out) {}

    void raw(std::string_view text) { out_ << text; }
    void text(std::string_view text) { out_ << html(text); }

    void table_start(std::string_view id, std::initializer_list<std::pair<std::string_view, bool>> columns) {
        out_ << "<table id=\"" << id << "\"><thead><tr>";
        for (const auto& [title, numeric] : columns) out_ << (numeric ? "<th class=\"n\">" : "<th>") << title << "</th>";
        out_ << "</tr></thead><tbody>\n";
    }
    void row_start(std::string_view vm = {}) {
        if (vm.empty()) out_ << "<tr>";
        else out_ << "<tr data-vm=\"" << html(vm) << "\">";
    }
    void cell(std::string_view value) { out_ << "<td>" << html(value) << "</td>"; }
    void count(std::uint64_t value) { out_ << "<td class=\"n\" data-value=\"" << value << "\">" << value << "</td>"; }
    void bytes(std::uint64_t value) {
        out_ << "<td class=\"n\" data-value=\"" << value << "\" title=\"" << value << " bytes\">" << human_bytes(value) << "</td>";
    }
    void row_end() { out_ << "</tr>\n"; }
    void table_end() { out_ << "</tbody></table>\n"; }
    void none() { out_ << "<p class=\"none\">none</p>\n"; }

private:
    std::ostream& out_;
};

struct Bar {
    std::string label;
    std::uint64_t first = 0;   // drawn first (up, or denied)
    std::uint64_t second = 0;  // stacked after it (down, or reported)
};

// A horizontal stacked bar chart, one row per bar, scaled to the largest.
void bar_chart(std::ostream& out, std::string_view id, std::string_view title, const std::vector<Bar>& bars,
               std::pair<std::string_view, std::string_view> classes, std::pair<std::string_view, std::string_view> legend,
               bool in_bytes) {
    const int height = kChartTop + static_cast<int>(bars.size()) * kChartRow + 4;
    const int area = kChartWidth - kChartLabelWidth - kChartValueWidth;
    std::uint64_t largest = 0;
    for (const auto& bar : bars) largest = std::max(largest, bar.first + bar.second);
    const auto width_of = [&](std::uint64_t value) {
        if (value == 0 || largest == 0) return 0.0;
        return std::max(1.0, static_cast<double>(value) / static_cast<double>(largest) * area);
    };
    const auto amount = [in_bytes](std::uint64_t v) { return in_bytes ? human_bytes(v) : std::to_string(v); };
    out << fmt::format("<svg id=\"{}\" width=\"{}\" height=\"{}\" viewBox=\"0 0 {} {}\" role=\"img\" aria-label=\"{}\">\n",
                       id, kChartWidth, height, kChartWidth, height, html(title));
    out << "<title>" << html(title) << "</title>\n";
    out << fmt::format("<rect class=\"{}\" x=\"{}\" y=\"6\" width=\"12\" height=\"12\"/><text x=\"{}\" y=\"16\">{}</text>\n",
                       classes.first, kChartLabelWidth, kChartLabelWidth + 16, legend.first);
    out << fmt::format("<rect class=\"{}\" x=\"{}\" y=\"6\" width=\"12\" height=\"12\"/><text x=\"{}\" y=\"16\">{}</text>\n",
                       classes.second, kChartLabelWidth + 110, kChartLabelWidth + 126, legend.second);
    int y = kChartTop;
    for (const auto& bar : bars) {
        const double w1 = width_of(bar.first);
        const double w2 = width_of(bar.second);
        const std::string label = html(bar.label);
        out << fmt::format("<g data-vm=\"{}\"><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>", label,
                           kChartLabelWidth - 8, y + kChartBar - 4, html(shortened(bar.label)));
        out << fmt::format("<rect class=\"{}\" x=\"{}\" y=\"{}\" width=\"{:.1f}\" height=\"{}\"><title>{} {}: {}</title></rect>",
                           classes.first, kChartLabelWidth, y, w1, kChartBar, label, legend.first, amount(bar.first));
        out << fmt::format("<rect class=\"{}\" x=\"{:.1f}\" y=\"{}\" width=\"{:.1f}\" height=\"{}\"><title>{} {}: {}</title></rect>",
                           classes.second, kChartLabelWidth + w1, y, w2, kChartBar, label, legend.second, amount(bar.second));
        out << fmt::format("<text x=\"{:.1f}\" y=\"{}\">{}</text></g>\n", kChartLabelWidth + w1 + w2 + 6, y + kChartBar - 4,
                           amount(bar.first + bar.second));
        y += kChartRow;
    }
    out << "</svg>\n";
}

// The largest kChartBars, largest first.
std::vector<Bar> largest_bars(std::vector<Bar> bars) {
    std::stable_sort(bars.begin(), bars.end(), [](const Bar& a, const Bar& b) { return a.first + a.second > b.first + b.second; });
    if (bars.size() > kChartBars) bars.resize(kChartBars);
    return bars;
}

}  // namespace

void write_html(const Report& r, std::ostream& out) {
    Page page(out);
    page.raw("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
             "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
             "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n"
             "<title>egressgate report</title>\n<style>");
    page.raw(kStyle);
    page.raw("</style>\n</head>\n<body>\n<h1>egressgate report</h1>\n<dl class=\"meta\">\n");
    page.raw("<dt>period</dt><dd id=\"period\">");
    page.text(period_text(r.filter));
    page.raw("</dd>\n");
    if (!r.filter.vms.empty()) {
        page.raw("<dt>VMs</dt><dd>");
        std::string list;
        for (const auto& vm : r.filter.vms) list += (list.empty() ? "" : ", ") + vm;
        page.text(list);
        page.raw("</dd>\n");
    }
    page.raw("<dt>records</dt><dd>");
    std::string records = fmt::format("{} counted", r.counts.records);
    if (r.first_record) records += fmt::format(", {} .. {}", format_report_time(*r.first_record), format_report_time(*r.last_record));
    page.text(records);
    page.raw("</dd>\n<dt>input</dt><dd>");
    std::string input = fmt::format("{} lines in", r.counts.lines);
    for (const auto& file : r.files) input += " " + file;
    if (r.counts.bad_lines > 0) input += fmt::format("; {} bad lines skipped", r.counts.bad_lines);
    if (r.counts.unfinished > 0) {
        input += fmt::format("; {} connections without a final line, counted at their last progress line", r.counts.unfinished);
    }
    page.text(input);
    page.raw("</dd>\n</dl>\n");

    page.raw("<section id=\"bytes-per-vm\">\n<h2>Bytes per VM</h2>\n");
    std::vector<Bar> traffic;
    for (const auto& vm : r.vms) traffic.push_back({vm.vm, vm.traffic.bytes_up, vm.traffic.bytes_down});
    if (traffic.empty()) {
        page.none();
    } else {
        bar_chart(out, "bytes-chart", "Bytes per VM (up and down)", largest_bars(std::move(traffic)), {"up", "down"},
                  {"up", "down"}, true);
        if (r.vms.size() > kChartBars) page.text(fmt::format("The {} VMs with the most bytes of {}.", kChartBars, r.vms.size()));
    }
    page.raw("</section>\n");

    std::vector<Bar> refused;
    for (const auto& vm : r.vms) {
        if (vm.denied + vm.reported > 0) refused.push_back({vm.vm, vm.denied, vm.reported});
    }
    if (!refused.empty()) {
        page.raw("<section id=\"denials-per-vm\">\n<h2>Denials per VM</h2>\n");
        bar_chart(out, "denials-chart", "Denials per VM (denied, and reported in report mode)", largest_bars(std::move(refused)),
                  {"deny", "report"}, {"denied", "reported"}, false);
        page.raw("</section>\n");
    }

    page.raw("<section>\n<h2>Totals per VM</h2>\n");
    if (r.vms.empty()) {
        page.none();
    } else {
        page.table_start("vm-totals", {{"VM", false}, {"Connections", true}, {"Denied", true}, {"Reported", true},
                                       {"Up", true}, {"Down", true}, {"Total", true}});
        for (const auto& vm : r.vms) {
            page.row_start(vm.vm);
            page.cell(vm.vm);
            page.count(vm.traffic.connections);
            page.count(vm.denied);
            page.count(vm.reported);
            page.bytes(vm.traffic.bytes_up);
            page.bytes(vm.traffic.bytes_down);
            page.bytes(vm.traffic.bytes());
            page.row_end();
        }
        page.table_end();
    }
    page.raw("</section>\n<section>\n<h2>Denials by reason</h2>\n");
    bool any = false;
    for (const auto& vm : r.vms) any = any || !vm.denials_by_reason.empty();
    if (!any) {
        page.none();
    } else {
        page.table_start("denials-by-reason", {{"VM", false}, {"Reason", false}, {"Denied", true}});
        for (const auto& vm : r.vms) {
            for (const auto& reason : vm.denials_by_reason) {
                page.row_start(vm.vm);
                page.cell(vm.vm);
                page.cell(reason.reason);
                page.count(reason.count);
                page.row_end();
            }
        }
        page.table_end();
    }

    page.raw("</section>\n<section>\n<h2>");
    page.text(r.top_limit == 0 ? std::string("Destinations per VM") : fmt::format("Top destinations per VM (at most {})", r.top_limit));
    page.raw("</h2>\n");
    any = false;
    for (const auto& vm : r.vms) any = any || !vm.top_destinations.empty();
    if (!any) {
        page.none();
    } else {
        page.table_start("top-destinations", {{"VM", false}, {"Destination", false}, {"Connections", true},
                                              {"Up", true}, {"Down", true}, {"Total", true}});
        for (const auto& vm : r.vms) {
            for (const auto& d : vm.top_destinations) {
                page.row_start(vm.vm);
                page.cell(vm.vm);
                page.cell(destination_text(d.host, d.port));
                page.count(d.traffic.connections);
                page.bytes(d.traffic.bytes_up);
                page.bytes(d.traffic.bytes_down);
                page.bytes(d.traffic.bytes());
                page.row_end();
            }
            if (vm.destinations > vm.top_destinations.size()) {
                page.row_start(vm.vm);
                page.cell(vm.vm);
                page.raw(fmt::format("<td class=\"more\" colspan=\"5\">{} more</td>", vm.destinations - vm.top_destinations.size()));
                page.row_end();
            }
        }
        page.table_end();
    }

    page.raw("</section>\n<section>\n<h2>Storage accounts reached</h2>\n");
    any = false;
    for (const auto& vm : r.vms) any = any || !vm.storage_accounts.empty();
    if (!any) {
        page.none();
    } else {
        page.table_start("storage-accounts", {{"VM", false}, {"Account", false}, {"Cloud", false}, {"Endpoints", false},
                                              {"Connections", true}, {"Up", true}, {"Down", true}});
        for (const auto& vm : r.vms) {
            for (const auto& a : vm.storage_accounts) {
                page.row_start(vm.vm);
                page.cell(vm.vm);
                page.cell(a.account);
                page.cell(a.cloud);
                std::string endpoints;
                for (const auto e : a.endpoint_names()) {
                    if (!endpoints.empty()) endpoints += ' ';
                    endpoints += e;
                }
                page.cell(endpoints);
                page.count(a.traffic.connections);
                page.bytes(a.traffic.bytes_up);
                page.bytes(a.traffic.bytes_down);
                page.row_end();
            }
        }
        page.table_end();
    }

    page.raw("</section>\n<section>\n<h2>");
    page.text(r.filter.since ? "Destinations first seen in the period" : "Destinations first seen (no start given: all of them)");
    page.raw("</h2>\n");
    if (r.new_destinations.empty()) {
        page.none();
    } else {
        page.table_start("new-destinations", {{"First seen", false}, {"Destination", false}, {"VM", false},
                                              {"Connections", true}, {"Up", true}, {"Down", true}});
        for (const auto& d : r.new_destinations) {
            page.row_start(d.first_vm);
            page.cell(format_report_time(d.first_seen));
            page.cell(destination_text(d.host, d.port));
            page.cell(d.first_vm);
            page.count(d.traffic.connections);
            page.bytes(d.traffic.bytes_up);
            page.bytes(d.traffic.bytes_down);
            page.row_end();
        }
        page.table_end();
    }

    page.raw("</section>\n<section>\n<h2>Denials</h2>\n");
    if (r.denials.empty()) {
        page.none();
    } else {
        page.table_start("denials", {{"VM", false}, {"Decision", false}, {"Reason", false}, {"Destination", false},
                                     {"Count", true}, {"First", false}, {"Last", false}});
        for (const auto& d : r.denials) {
            page.row_start(d.vm);
            page.cell(d.vm);
            page.cell(to_string(d.verdict));
            page.cell(d.reason);
            page.cell(destination_text(d.host, d.port));
            page.count(d.count);
            page.cell(format_report_time(d.first));
            page.cell(format_report_time(d.last));
            page.row_end();
        }
        page.table_end();
    }
    page.raw("</section>\n</body>\n</html>\n");
}

}  // namespace egressgate::audit
