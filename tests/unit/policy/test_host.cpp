// Host names, authorities and patterns: the bypass tricks a client can try against a name check.
#include <catch.hpp>

#include <algorithm>
#include <optional>
#include <string>

#include "policy/catalog.hpp"
#include "policy/host.hpp"

using namespace egressgate::policy;
using namespace std::string_literals;

namespace {

const std::string kLabel63(63, 'a');
const std::string kLabel64(64, 'a');
// 4 labels of 63 plus 3 dots = 255 bytes; trimmed versions give exactly 253 and 254.
const std::string kName253 = kLabel63 + "." + kLabel63 + "." + kLabel63 + "." + std::string(61, 'a');
const std::string kName254 = kName253 + "a";

}  // namespace

TEST_CASE("normalize_host lower-cases, drops one trailing dot and validates", "[policy][host]") {
    struct Case {
        const char* name;
        std::string input;
        std::optional<std::string> expected;  // nullopt: refused
    };
    const Case cases[] = {
        {"plain", "x.blob.core.windows.net", "x.blob.core.windows.net"},
        {"mixed case", "X.BLOB.Core.Windows.NET", "x.blob.core.windows.net"},
        {"one trailing dot", "x.blob.core.windows.net.", "x.blob.core.windows.net"},
        {"single label", "localhost", "localhost"},
        {"digits and hyphens", "md-1x2.z23.blob.storage.azure.net", "md-1x2.z23.blob.storage.azure.net"},
        {"punycode idn", "xn--bcher-kva.example", "xn--bcher-kva.example"},
        {"label of 63", kLabel63 + ".com", kLabel63 + ".com"},
        {"hyphens inside", "a--b.x-y.example", "a--b.x-y.example"},
        {"last label of 63", "a." + kLabel63, "a." + kLabel63},
        {"name of 253", kName253, kName253},
        {"name of 253 plus trailing dot", kName253 + ".", kName253},
        {"numeric label not last", "1.2.3.example", "1.2.3.example"},
        {"two trailing dots", "x.blob.core.windows.net..", std::nullopt},
        {"dot dot", "..", std::nullopt},
        {"lone dot", ".", std::nullopt},
        {"empty", "", std::nullopt},
        {"leading dot", ".blob.core.windows.net", std::nullopt},
        {"empty label", "a..b", std::nullopt},
        {"label of 64", kLabel64 + ".com", std::nullopt},
        {"name of 254", kName254, std::nullopt},
        {"leading hyphen", "-a.example", std::nullopt},
        {"trailing hyphen", "a-.example", std::nullopt},
        {"trailing hyphen in the last label", "a.example-", std::nullopt},
        {"hyphen alone", "a.-.example", std::nullopt},
        {"last label of 64", "a." + kLabel64, std::nullopt},
        {"underscore", "_dmarc.example", std::nullopt},
        {"percent", "evil.com%2e.blob.core.windows.net", std::nullopt},
        {"percent NUL", "evil.com%00.blob.core.windows.net", std::nullopt},
        {"at sign", "user@x.blob.core.windows.net", std::nullopt},
        {"colon", "x.blob.core.windows.net:443", std::nullopt},
        {"space", "x.blob.core.windows.net ", std::nullopt},
        {"tab", "x\t.example", std::nullopt},
        {"embedded NUL", "evil.com\0.blob.core.windows.net"s, std::nullopt},
        {"non-ascii utf-8", "b\xc3\xbc" "cher.example", std::nullopt},
        {"non-ascii latin-1", "b\xfc" "cher.example", std::nullopt},
        {"fullwidth dot", "evil\xef\xbc\x8e" "com", std::nullopt},
        {"asterisk", "*.example", std::nullopt},
        {"slash", "a/b.example", std::nullopt},
        {"backslash", "a\\b.example", std::nullopt},
        {"brackets", "[::1]", std::nullopt},
        {"dotted quad", "127.0.0.1", std::nullopt},
        {"short ipv4 form", "127.1", std::nullopt},
        {"octal ipv4 form", "010.0.0.1", std::nullopt},
        {"hex ipv4 form", "0x7f.0.0.1", std::nullopt},
        {"hex integer", "0x7f000001", std::nullopt},
        {"decimal integer", "2130706433", std::nullopt},
        {"dotted quad with trailing dot", "1.2.3.4.", std::nullopt},
    };
    for (const auto& c : cases) {
        DYNAMIC_SECTION(c.name) {
            CHECK(normalize_host(c.input) == c.expected);
            // The policy's shortcut: a host in normal form is used as it is, nothing else is.
            CHECK(is_normalized_host(c.input) == (c.expected == c.input));
        }
    }
}

TEST_CASE("parse_authority splits host and port and refuses tricks", "[policy][host]") {
    struct Expected {
        std::string host;
        std::uint16_t port;
        bool literal;
    };
    struct Case {
        const char* name;
        std::string input;
        std::uint16_t default_port;
        std::optional<Expected> expected;  // nullopt: refused
    };
    const Case cases[] = {
        {"host and port", "x.blob.core.windows.net:443", 0, Expected{"x.blob.core.windows.net", 443, false}},
        {"upper case host", "X.BLOB.Core.Windows.NET:443", 0, Expected{"x.blob.core.windows.net", 443, false}},
        {"trailing dot", "x.blob.core.windows.net.:443", 0, Expected{"x.blob.core.windows.net", 443, false}},
        {"default port", "x.blob.core.windows.net", 80, Expected{"x.blob.core.windows.net", 80, false}},
        {"explicit port wins", "x.blob.core.windows.net:8443", 80, Expected{"x.blob.core.windows.net", 8443, false}},
        {"max port", "a.example:65535", 0, Expected{"a.example", 65535, false}},
        {"port 1", "a.example:1", 0, Expected{"a.example", 1, false}},
        {"ipv4 literal", "20.60.1.2:443", 0, Expected{"20.60.1.2", 443, true}},
        {"ipv4 literal default port", "168.63.129.16", 80, Expected{"168.63.129.16", 80, true}},
        {"v6 literal", "[::1]:443", 0, Expected{"::1", 443, true}},
        {"v6 literal canonical", "[2001:0DB8:0:0::1]:443", 0, Expected{"2001:db8::1", 443, true}},
        {"v6 literal default port", "[fe80::1]", 80, Expected{"fe80::1", 80, true}},
        {"v6 mapped literal", "[::ffff:169.254.169.254]:80", 0, Expected{"::ffff:169.254.169.254", 80, true}},
        {"no port, no default", "a.example", 0, std::nullopt},
        {"v6 no port, no default", "[::1]", 0, std::nullopt},
        {"userinfo", "user@x.blob.core.windows.net:443", 0, std::nullopt},
        {"userinfo with password", "u:p@x.blob.core.windows.net:443", 0, std::nullopt},
        {"at after port", "x.blob.core.windows.net:443@evil.com", 0, std::nullopt},
        {"at after host", "x.blob.core.windows.net@evil.com:443", 0, std::nullopt},
        {"unbracketed v6", "::1", 443, std::nullopt},
        {"unbracketed v6 with port", "2001:db8::1:443", 0, std::nullopt},
        {"bracketed ipv4", "[127.0.0.1]:443", 0, std::nullopt},
        {"bracketed name", "[x.blob.core.windows.net]:443", 0, std::nullopt},
        {"unclosed bracket", "[::1:443", 0, std::nullopt},
        {"garbage after bracket", "[::1]x:443", 0, std::nullopt},
        {"zone id", "[fe80::1%25eth0]:443", 0, std::nullopt},
        {"port 0", "a.example:0", 0, std::nullopt},
        {"port above 65535", "a.example:65536", 0, std::nullopt},
        {"huge port", "a.example:4294967739", 0, std::nullopt},
        {"leading zero port", "a.example:0443", 0, std::nullopt},
        {"plus port", "a.example:+443", 0, std::nullopt},
        {"negative port", "a.example:-443", 0, std::nullopt},
        {"hex port", "a.example:0x1bb", 0, std::nullopt},
        {"empty port", "a.example:", 443, std::nullopt},
        {"port with space", "a.example:443 ", 0, std::nullopt},
        {"two ports", "a.example:443:80", 0, std::nullopt},
        {"empty host", ":443", 0, std::nullopt},
        {"empty", "", 443, std::nullopt},
        {"percent NUL", "evil.com%00.blob.core.windows.net:443", 0, std::nullopt},
        {"embedded NUL", "evil.com\0.blob.core.windows.net:443"s, 0, std::nullopt},
        {"double trailing dot", "x.blob.core.windows.net..:443", 0, std::nullopt},
        {"short ipv4", "127.1:80", 0, std::nullopt},
        {"octal ipv4", "0177.0.0.1:80", 0, std::nullopt},
        {"hex ipv4", "0x7f.0.0.1:80", 0, std::nullopt},
        {"non-ascii", "x.blob.core.windows.n\xc3\xa9t:443", 0, std::nullopt},
    };
    for (const auto& c : cases) {
        DYNAMIC_SECTION(c.name) {
            const auto t = parse_authority(c.input, c.default_port);
            REQUIRE(t.has_value() == c.expected.has_value());
            if (!t) continue;
            CHECK(t->host == c.expected->host);
            CHECK(t->port == c.expected->port);
            CHECK(t->parsed);
            REQUIRE(t->literal.has_value() == c.expected->literal);
            if (t->literal) CHECK(t->literal->to_string() == t->host);
        }
    }
}

TEST_CASE("HostPattern::parse normalises and refuses malformed wildcards", "[policy][host]") {
    struct Case {
        const char* name;
        std::string_view input;
        std::optional<std::string> expected;  // to_string() of the pattern; nullopt: refused
    };
    const Case cases[] = {
        {"exact", "login.microsoftonline.com", "login.microsoftonline.com"},
        {"wildcard", "*.blob.core.windows.net", "*.blob.core.windows.net"},
        {"upper case", "*.BLOB.core.windows.NET", "*.blob.core.windows.net"},
        {"trailing dot", "*.blob.core.windows.net.", "*.blob.core.windows.net"},
        {"exact trailing dot", "Login.MicrosoftOnline.com.", "login.microsoftonline.com"},
        {"bare star", "*", std::nullopt},
        {"star dot", "*.", std::nullopt},
        {"star dot dot", "*..", std::nullopt},
        {"inner star", "a.*.b", std::nullopt},
        {"double star", "**.x", std::nullopt},
        {"star prefix without dot", "*x.com", std::nullopt},
        {"trailing star", "x.*", std::nullopt},
        {"two wildcards", "*.*.x", std::nullopt},
        {"empty", "", std::nullopt},
        {"double trailing dot", "*.x..", std::nullopt},
        {"with port", "*.x.com:443", std::nullopt},
        {"ip address", "168.63.129.16", std::nullopt},
        {"wildcard of ip", "*.16", std::nullopt},
        {"space", "*. x.com", std::nullopt},
    };
    for (const auto& c : cases) {
        DYNAMIC_SECTION(c.name) {
            const auto p = HostPattern::parse(c.input);
            REQUIRE(p.has_value() == c.expected.has_value());
            if (p) CHECK(p->to_string() == *c.expected);
        }
    }
}

TEST_CASE("HostPattern::matches: wildcards match strictly below the suffix", "[policy][host]") {
    const auto wildcard = *HostPattern::parse("*.blob.core.windows.net");
    const auto exact = *HostPattern::parse("login.microsoftonline.com");
    struct Case {
        const char* name;
        std::string_view host;
        bool wildcard_matches;
        bool exact_matches;
    };
    const Case cases[] = {
        {"one label below", "x.blob.core.windows.net", true, false},
        {"two labels below", "a.b.blob.core.windows.net", true, false},
        {"the suffix itself", "blob.core.windows.net", false, false},
        {"suffix glued to a label", "xblob.core.windows.net", false, false},
        {"suffix glued to a long label", "attacker-blob.core.windows.net", false, false},
        {"suffix inside a longer name", "a.blob.core.windows.net.evil.com", false, false},
        {"parent of the suffix", "core.windows.net", false, false},
        {"exact name", "login.microsoftonline.com", false, true},
        {"below the exact name", "x.login.microsoftonline.com", false, false},
        {"exact name glued", "evillogin.microsoftonline.com", false, false},
    };
    for (const auto& c : cases) {
        DYNAMIC_SECTION(c.name) {
            CHECK(wildcard.matches(c.host) == c.wildcard_matches);
            CHECK(exact.matches(c.host) == c.exact_matches);
        }
    }
    CHECK(wildcard.is_wildcard());
    CHECK(wildcard.suffix() == "blob.core.windows.net");
    CHECK_FALSE(exact.is_wildcard());
}

TEST_CASE("HostPatternSet::find: exact first, then the most specific suffix", "[policy][host]") {
    HostPatternSet set;
    set.add(*HostPattern::parse("*.windows.net"), "egress.hosts");
    set.add(*HostPattern::parse("*.blob.core.windows.net"), "catalog:azure-backup");
    set.add(*HostPattern::parse("special.blob.core.windows.net"), "egress.hosts");
    set.add(*HostPattern::parse("*.blob.core.windows.net"), "egress.hosts");  // first origin stays
    CHECK(set.size() == 3);

    struct Case {
        const char* name;
        std::string_view host;
        std::optional<std::string> pattern;
        std::string origin;
    };
    const Case cases[] = {
        {"most specific suffix", "x.blob.core.windows.net", "*.blob.core.windows.net", "catalog:azure-backup"},
        {"deep name", "a.b.c.blob.core.windows.net", "*.blob.core.windows.net", "catalog:azure-backup"},
        {"exact beats wildcard", "special.blob.core.windows.net", "special.blob.core.windows.net", "egress.hosts"},
        {"shorter suffix", "x.queue.core.windows.net", "*.windows.net", "egress.hosts"},
        {"bare suffix falls to parent wildcard", "blob.core.windows.net", "*.windows.net", "egress.hosts"},
        {"bare top suffix", "windows.net", std::nullopt, ""},
        {"glued label", "xwindows.net", std::nullopt, ""},
        {"suffix then more labels", "a.blob.core.windows.net.evil.com", std::nullopt, ""},
        {"unrelated", "evil.com", std::nullopt, ""},
        {"empty", "", std::nullopt, ""},
    };
    for (const auto& c : cases) {
        DYNAMIC_SECTION(c.name) {
            const auto m = set.find(c.host);
            REQUIRE(m.has_value() == c.pattern.has_value());
            if (!m) continue;
            CHECK(m->pattern == *c.pattern);
            CHECK(m->origin == c.origin);
        }
    }
}
