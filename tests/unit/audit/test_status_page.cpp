// /status as HTML: self-contained, escaped, with the traffic chart drawn from the samples.
#include <catch.hpp>

#include "audit/status_page.hpp"

using namespace egressgate::audit;
using std::chrono::seconds;
using std::chrono::system_clock;

namespace {
StatusSnapshot sample_snapshot() {
    StatusSnapshot s;
    s.health.version = "0.2.0";
    s.health.workers = 2;
    s.open_by_vm["vm-a"] = OpenByVm{2, 3 * 1024 * 1024, 1024, 65'000};
    s.open_by_vm["<b>x</b>"] = OpenByVm{1, 1, 1, 1};
    s.largest_open.push_back({"vm-a", "acct.blob.core.windows.net:443", 3 * 1024 * 1024, 1024, 65'000});
    s.recent_denials.push_back({system_clock::time_point(seconds(1'800'000'000)), "vm-b", "evil.example.com:443",
                                "host_not_allowed"});
    const auto t0 = system_clock::time_point(seconds(1'800'000'000));
    s.history.push_back({t0, {{"vm-a", {0, 0}}}});
    s.history.push_back({t0 + seconds(10), {{"vm-a", {10'240, 0}}, {"vm-b", {0, 0}}}});
    s.history.push_back({t0 + seconds(20), {{"vm-a", {20'480, 0}}, {"vm-b", {5'120, 0}}}});
    return s;
}
}  // namespace

TEST_CASE("the status page is self-contained and escapes what it shows", "[audit][status]") {
    const std::string page = render_status_page(sample_snapshot(), system_clock::time_point(seconds(1'800'000'060)));
    CHECK(page.rfind("<!DOCTYPE html>", 0) == 0);
    CHECK(page.find("<script") == std::string::npos);
    CHECK(page.find("http://") == std::string::npos);
    CHECK(page.find("https://") == std::string::npos);
    CHECK(page.find("<meta http-equiv=\"refresh\" content=\"5\">") != std::string::npos);
    CHECK(page.find("&lt;b&gt;x&lt;/b&gt;") != std::string::npos);
    CHECK(page.find("<b>x</b>") == std::string::npos);
    CHECK(page.find("<tr data-vm=\"vm-a\"><td>vm-a</td><td>2</td><td>3.0 MiB</td><td>1.0 KiB</td><td>1 min 5 s</td></tr>") !=
          std::string::npos);
    CHECK(page.find("host_not_allowed") != std::string::npos);
}

TEST_CASE("the traffic chart draws one line per VM that moved, scaled to the peak rate", "[audit][status]") {
    const std::string page = render_status_page(sample_snapshot(), system_clock::now());
    REQUIRE(page.find("<svg id=\"traffic\"") != std::string::npos);
    CHECK(page.find("1.0 KiB/s") != std::string::npos);  // vm-a: 10 KiB per 10 s
    std::size_t lines = 0;
    for (auto at = page.find("<polyline"); at != std::string::npos; at = page.find("<polyline", at + 1)) ++lines;
    CHECK(lines == 2);
}
