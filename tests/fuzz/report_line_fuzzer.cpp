// libFuzzer target for audit::AuditLineParser and what the report makes of a line: an audit
// file is whatever a crash, a disk or an admin left in it, and `egressgate report` reads it all.
//
// Input: one line (a '\n' in it is just whitespace to JSON).
// Promises:
// - a line the parser takes is JSON that nlohmann::json takes too, with the same values in the
//   fields the report reads (the parser is strict, never looser than a full JSON parser);
// - a refused line says why;
// - the report of that line, in every format, is well formed: JSON that parses, HTML and table
//   text without a control character or an unescaped '<' from the line.
#include <cstddef>
#include <cstdint>
#include <sstream>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "audit/report.hpp"
#include "audit/report_format.hpp"
#include "audit/report_line.hpp"
#include "fuzz_check.hpp"

namespace {

namespace audit = egressgate::audit;

// nlohmann's view of the line: nullopt where it refuses it (a number beyond a double's range
// is refused by nlohmann only: the parser skips unknown numbers without converting them).
std::optional<nlohmann::json> reference(std::string_view line) {
    try {
        return nlohmann::json::parse(line);
    } catch (const nlohmann::json::out_of_range&) {
        return nlohmann::json(nullptr);
    } catch (const nlohmann::json::parse_error&) {
        return std::nullopt;
    }
}

void check_same_fields(const nlohmann::json& j, const audit::AuditLine& line) {
    if (j.is_null()) return;  // nlohmann gave up on a number the parser only skipped
    FUZZ_REQUIRE(j.is_object());
    FUZZ_REQUIRE(j.at("vm").get<std::string>() == line.vm);
    FUZZ_REQUIRE(j.at("host").get<std::string>() == line.host);
    FUZZ_REQUIRE(j.at("reason").get<std::string>() == line.reason);
    FUZZ_REQUIRE(j.at("port").get<std::uint64_t>() == line.port);
    FUZZ_REQUIRE(j.at("bytes_up").get<std::uint64_t>() == line.bytes_up);
    FUZZ_REQUIRE(j.at("bytes_down").get<std::uint64_t>() == line.bytes_down);
    FUZZ_REQUIRE(j.at("decision").get<std::string>() == audit::to_string(line.verdict));
    FUZZ_REQUIRE(audit::parse_report_time(j.at("time").get<std::string>()) == line.time);
    if (j.contains("connection_id")) FUZZ_REQUIRE(j.at("connection_id").get<std::string>() == line.connection_id);
    if (j.contains("record")) {
        FUZZ_REQUIRE(j.at("record").get<std::string>() == (line.kind == audit::RecordKind::progress ? "progress" : "final"));
    }
}

std::string render(const audit::Report& report, audit::ReportFormat format) {
    std::ostringstream out;
    audit::write_report(report, format, out);
    return out.str();
}

bool has_control_character(std::string_view text) {
    for (const char c : text) {
        const auto b = static_cast<unsigned char>(c);
        if ((b < 0x20 && c != '\n') || b == 0x7f) return true;
    }
    return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    audit::AuditLineParser parser;
    audit::AuditLine line;
    if (!parser.parse(text, line)) {
        FUZZ_REQUIRE(!parser.error().empty());
        return 0;
    }
    const auto j = reference(text);
    FUZZ_REQUIRE(j.has_value());
    check_same_fields(*j, line);

    // Twice, as a progress line and its final line, and through every format.
    audit::Aggregator aggregator({});
    aggregator.add(line);
    line.kind = audit::RecordKind::final;
    aggregator.add(line);
    const audit::Report report = aggregator.finish({"fuzz.jsonl"});
    FUZZ_REQUIRE(report.counts.records >= 1);

    const auto json = nlohmann::json::parse(render(report, audit::ReportFormat::json));
    FUZZ_REQUIRE(json.at("vms").size() == 1);
    const std::string table = render(report, audit::ReportFormat::table);
    FUZZ_REQUIRE(!has_control_character(table));
    const std::string html = render(report, audit::ReportFormat::html);
    FUZZ_REQUIRE(!has_control_character(html));
    FUZZ_REQUIRE(html.find("<script") == std::string::npos);
    render(report, audit::ReportFormat::csv);
    return 0;
}
