#include "audit/status_page.hpp"

#include "audit/report_format.hpp"  // human_bytes: one way to write sizes for people

#include <algorithm>
#include <ctime>
#include <iterator>

#include <fmt/format.h>

namespace egressgate::audit {
namespace {

constexpr int kChartWidth = 720;
constexpr int kChartHeight = 200;
constexpr int kChartMargin = 40;
// One colour per charted VM, readable on white.
constexpr const char* kPalette[kStatusChartedVms] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd",
                                                     "#ff7f0e", "#17becf", "#8c564b", "#e377c2"};

// VM names, destinations and reasons come from the config and from clients: escaped for HTML.
std::string escaped(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (const char c : text) {
        switch (c) {
        case '&': out += "&amp;"; break;
        case '<': out += "&lt;"; break;
        case '>': out += "&gt;"; break;
        case '"': out += "&quot;"; break;
        case '\'': out += "&#39;"; break;
        default: out += c;
        }
    }
    return out;
}

std::string human_age(std::int64_t ms) {
    const std::int64_t s = ms / 1000;
    if (s < 60) return fmt::format("{} s", s);
    if (s < 3600) return fmt::format("{} min {} s", s / 60, s % 60);
    return fmt::format("{} h {} min", s / 3600, (s % 3600) / 60);
}

std::string clock_utc(std::chrono::system_clock::time_point tp) {
    const std::time_t t = std::chrono::system_clock::to_time_t(tp);
    std::tm tm{};
    gmtime_r(&t, &tm);
    return fmt::format("{:02}:{:02}:{:02}", tm.tm_hour, tm.tm_min, tm.tm_sec);
}

void health_section(std::string& out, const ProxyHealth& h) {
    const bool healthy = h.accepting && h.stalled_workers.empty() && !h.audit_failing;
    fmt::format_to(std::back_inserter(out), "<h2>Health: <span class=\"{}\">{}</span></h2>\n<table>\n",
                   healthy ? "ok" : "bad", healthy ? "ready" : "not ready");
    const auto row = [&out](std::string_view name, const std::string& value) {
        fmt::format_to(std::back_inserter(out), "<tr><th>{}</th><td>{}</td></tr>\n", name, value);
    };
    row("version", escaped(h.version));
    row("uptime", human_age(h.uptime_s * 1000));
    std::string stalled;
    for (const auto& w : h.stalled_workers) stalled += (stalled.empty() ? "" : ", ") + escaped(w);
    row("workers", fmt::format("{}{}", h.workers, stalled.empty() ? "" : " (stalled: " + stalled + ")"));
    row("accepting", h.accepting ? "yes" : "no (stopping)");
    row("open connections", std::to_string(h.open_connections));
    row("descriptors", fmt::format("{} of {}", h.descriptors_open, h.descriptor_limit));
    row("reloads", fmt::format("{} applied, {} rejected", h.reloads_applied, h.reloads_rejected));
    row("audit lines", fmt::format("{} written, {} dropped{}", h.audit_lines_written, h.audit_lines_dropped,
                                   h.audit_failing ? ": <span class=\"bad\">" + escaped(*h.audit_failing) + "</span>" : ""));
    out += "</table>\n";
}

void open_section(std::string& out, const StatusSnapshot& s) {
    out += "<h2>Open connections per VM</h2>\n";
    if (s.open_by_vm.empty()) {
        out += "<p>none</p>\n";
    } else {
        out += "<table id=\"open-by-vm\">\n<tr><th>VM</th><th>open</th><th>up</th><th>down</th><th>oldest</th></tr>\n";
        for (const auto& [vm, o] : s.open_by_vm) {
            fmt::format_to(std::back_inserter(out),
                           "<tr data-vm=\"{0}\"><td>{0}</td><td>{1}</td><td>{2}</td><td>{3}</td><td>{4}</td></tr>\n",
                           escaped(vm), o.connections, human_bytes(o.bytes_up), human_bytes(o.bytes_down),
                           human_age(o.oldest_ms));
        }
        out += "</table>\n";
    }
    if (s.largest_open.empty()) return;
    out += "<h3>Largest open transfers</h3>\n<table>\n<tr><th>VM</th><th>destination</th><th>up</th><th>down</th><th>age</th></tr>\n";
    for (const auto& t : s.largest_open) {
        fmt::format_to(std::back_inserter(out), "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                       escaped(t.vm), escaped(t.destination), human_bytes(t.bytes_up), human_bytes(t.bytes_down),
                       human_age(t.age_ms));
    }
    out += "</table>\n";
}

// Bytes per second each VM moved (both directions) between consecutive samples, for the VMs
// that moved the most over the window.
void traffic_chart(std::string& out, const std::vector<TrafficSample>& history) {
    out += "<h2>Traffic, last minutes (bytes/s per VM)</h2>\n";
    if (history.size() < 2) {
        out += "<p>collecting samples...</p>\n";
        return;
    }
    std::map<std::string, std::vector<double>> rates;
    std::map<std::string, double> moved;
    for (std::size_t i = 1; i < history.size(); ++i) {
        const double seconds = std::max(
            0.001, std::chrono::duration<double>(history[i].time - history[i - 1].time).count());
        for (const auto& [vm, now] : history[i].bytes_by_vm) {
            const auto before = history[i - 1].bytes_by_vm.find(vm);
            const std::uint64_t previous =
                before == history[i - 1].bytes_by_vm.end() ? 0 : before->second.first + before->second.second;
            const std::uint64_t current = now.first + now.second;
            const double rate = current >= previous ? static_cast<double>(current - previous) / seconds : 0;
            auto& series = rates[vm];
            series.resize(i - 1, 0);
            series.push_back(rate);
            moved[vm] += rate * seconds;
        }
    }
    std::vector<std::pair<double, std::string>> ranked;
    for (const auto& [vm, total] : moved) ranked.emplace_back(-total, vm);
    std::sort(ranked.begin(), ranked.end());
    if (ranked.size() > kStatusChartedVms) ranked.resize(kStatusChartedVms);
    double peak = 1;
    for (const auto& [_, vm] : ranked) {
        auto& series = rates[vm];
        series.resize(history.size() - 1, 0);
        peak = std::max(peak, *std::max_element(series.begin(), series.end()));
    }
    const int plot_w = kChartWidth - 2 * kChartMargin;
    const int plot_h = kChartHeight - 2 * kChartMargin;
    fmt::format_to(std::back_inserter(out),
                   "<svg id=\"traffic\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\" role=\"img\">\n"
                   "<rect x=\"{2}\" y=\"{2}\" width=\"{3}\" height=\"{4}\" fill=\"none\" stroke=\"#999\"/>\n"
                   "<text x=\"{2}\" y=\"{5}\" font-size=\"11\">{6}/s</text>\n",
                   kChartWidth, kChartHeight, kChartMargin, plot_w, plot_h, kChartMargin - 6,
                   human_bytes(static_cast<std::uint64_t>(peak)));
    const std::size_t points = history.size() - 1;
    for (std::size_t k = 0; k < ranked.size(); ++k) {
        const auto& series = rates[ranked[k].second];
        std::string polyline;
        for (std::size_t i = 0; i < points; ++i) {
            const double x = kChartMargin + (points == 1 ? plot_w : plot_w * static_cast<double>(i) / (points - 1));
            const double y = kChartMargin + plot_h - plot_h * series[i] / peak;
            fmt::format_to(std::back_inserter(polyline), "{}{:.1f},{:.1f}", polyline.empty() ? "" : " ", x, y);
        }
        fmt::format_to(std::back_inserter(out),
                       "<polyline fill=\"none\" stroke=\"{0}\" stroke-width=\"2\" points=\"{1}\"/>\n"
                       "<text x=\"{2}\" y=\"{3}\" font-size=\"11\" fill=\"{0}\">{4}</text>\n",
                       kPalette[k], polyline, kChartMargin + 110 * static_cast<int>(k % 6),
                       kChartHeight - kChartMargin + 16 + 14 * static_cast<int>(k / 6), escaped(ranked[k].second));
    }
    out += "</svg>\n";
}

void denials_section(std::string& out, const std::vector<DenialNote>& denials) {
    out += "<h2>Latest denials</h2>\n";
    if (denials.empty()) {
        out += "<p>none</p>\n";
        return;
    }
    out += "<table id=\"denials\">\n<tr><th>time (UTC)</th><th>VM</th><th>destination</th><th>reason</th></tr>\n";
    for (const auto& d : denials) {
        fmt::format_to(std::back_inserter(out), "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                       clock_utc(d.time), escaped(d.vm), escaped(d.destination), escaped(d.reason));
    }
    out += "</table>\n";
}

}  // namespace

std::string render_status_page(const StatusSnapshot& snapshot, std::chrono::system_clock::time_point now) {
    std::string out;
    fmt::format_to(std::back_inserter(out),
                   "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
                   "<meta http-equiv=\"refresh\" content=\"{}\">\n<title>egressgate status</title>\n"
                   "<style>body{{font-family:sans-serif;margin:1.5em;color:#222}}"
                   "table{{border-collapse:collapse;margin-bottom:1em}}"
                   "th,td{{border:1px solid #ccc;padding:3px 8px;text-align:left}}"
                   ".ok{{color:#2a7d2a}}.bad{{color:#b00}}</style></head><body>\n"
                   "<h1>egressgate</h1>\n<p>at {} UTC; this page refreshes every {} s</p>\n",
                   kStatusRefresh.count(), clock_utc(now), kStatusRefresh.count());
    health_section(out, snapshot.health);
    open_section(out, snapshot);
    traffic_chart(out, snapshot.history);
    denials_section(out, snapshot.recent_denials);
    out += "</body></html>\n";
    return out;
}

}  // namespace egressgate::audit
