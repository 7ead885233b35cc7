// Wildcards over a public suffix, decided with the Public Suffix List (ICANN section) via libpsl.
#include <catch.hpp>

#include <atomic>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "policy/host.hpp"
#include "policy/public_suffix.hpp"

using namespace egressgate::policy;

namespace {

std::optional<std::string> problem_of(const std::string& text) {
    const auto pattern = HostPattern::parse(text);
    REQUIRE(pattern.has_value());
    return public_suffix_problem(*pattern);
}

}  // namespace

TEST_CASE("a wildcard over a public suffix is too wide; one inside a domain is not",
          "[policy][public_suffix]") {
    struct Case {
        const char* name;
        const char* pattern;
        bool refused;
    };
    const Case cases[] = {
        // ICANN section: generic, country-code and second-level registries.
        {"gTLD", "*.com", true},
        {"ccTLD", "*.io", true},
        {"second-level ccTLD", "*.co.uk", true},
        {"government second level", "*.gov.uk", true},
        {"bare ccTLD", "*.uk", true},
        {"IDN ccTLD as punycode", "*.xn--p1ai", true},  // .рф
        {"below a wildcard rule", "*.foo.kawasaki.jp", true},  // *.kawasaki.jp
        {"exception to a wildcard rule", "*.city.kawasaki.jp", false},  // !city.kawasaki.jp
        // The list's default rule: an unlisted top-level label is a suffix of its own.
        {"unlisted TLD", "*.internal", true},
        {"reserved TLD", "*.example", true},
        {"below an unlisted TLD", "*.pkg.contoso.example", false},
        // Microsoft's names are domains, not suffixes: the catalogs' wildcards stay allowed.
        {"windows.net", "*.windows.net", false},
        {"core.windows.net", "*.core.windows.net", false},
        {"blob.core.windows.net", "*.blob.core.windows.net", false},
        {"blob.storage.azure.net", "*.blob.storage.azure.net", false},
        {"backup.windowsazure.com", "*.backup.windowsazure.com", false},
        {"usgovcloudapi.net", "*.usgovcloudapi.net", false},
        {"chinacloudapi.cn", "*.blob.core.chinacloudapi.cn", false},
        // PRIVATE section only: allowed, the ICANN section decides (public_suffix.cpp says why).
        {"private github.io", "*.github.io", false},
        {"private cloudapp.net", "*.cloudapp.net", false},
        {"private wildcard rule", "*.westeurope.azurecontainer.io", false},  // *.azurecontainer.io
        {"ordinary domain", "*.example.com", false},
        {"deep domain", "*.mirror.example.org", false},
        // Exact patterns name one host: refused only when the name is itself a public suffix.
        {"exact gTLD", "com", true},
        {"exact second-level", "co.uk", true},
        {"exact ccTLD", "io", true},
        {"exact host", "login.microsoftonline.com", false},
        {"exact host in a ccTLD", "www.gov.uk", false},
        {"exact private suffix", "github.io", false},
    };
    for (const auto& c : cases) {
        DYNAMIC_SECTION(c.name << ": " << c.pattern) {
            const auto problem = problem_of(c.pattern);
            CHECK(problem.has_value() == c.refused);
        }
    }
}

TEST_CASE("the public-suffix problem names the pattern and the suffix", "[policy][public_suffix]") {
    CHECK(problem_of("*.co.uk") ==
          "\"*.co.uk\" would allow every domain registered under \"co.uk\", a public suffix "
          "(ICANN section of the Public Suffix List)");
    CHECK(problem_of("*.COM.") ==  // as HostPattern normalises it
          "\"*.com\" would allow every domain registered under \"com\", a public suffix "
          "(ICANN section of the Public Suffix List)");
    CHECK(problem_of("com") ==
          "\"com\" is a public suffix (ICANN section of the Public Suffix List), not a host name");
}

TEST_CASE("is_public_suffix reads the ICANN section", "[policy][public_suffix]") {
    CHECK(is_public_suffix("com"));
    CHECK(is_public_suffix("co.uk"));
    CHECK(is_public_suffix("io"));
    CHECK_FALSE(is_public_suffix("github.io"));  // PRIVATE section
    CHECK_FALSE(is_public_suffix("windows.net"));
    CHECK_FALSE(is_public_suffix("blob.core.windows.net"));
    CHECK_FALSE(is_public_suffix("example.com"));
}

TEST_CASE("the list is shared by concurrent callers", "[policy][public_suffix]") {
    constexpr int kThreads = 8;
    constexpr int kRounds = 200;
    const auto wide = HostPattern::parse("*.co.uk");
    const auto narrow = HostPattern::parse("*.blob.core.windows.net");
    REQUIRE(wide);
    REQUIRE(narrow);
    std::atomic<int> wrong{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&] {
            for (int i = 0; i < kRounds; ++i) {
                if (!public_suffix_problem(*wide) || public_suffix_problem(*narrow)) ++wrong;
            }
        });
    }
    for (auto& thread : threads) thread.join();
    CHECK(wrong == 0);
}
