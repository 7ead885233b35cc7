// The request head parser: what llhttp accepts, where the head ends, and the named limits.
#include <catch.hpp>

#include <string>

#include "http/message.hpp"
#include "http/responses.hpp"

using egressgate::http::Failure;
using egressgate::http::MessageParser;
using Status = MessageParser::Status;

TEST_CASE("CONNECT heads clients send are parsed", "[http]") {
    struct Case {
        const char* name;
        std::string bytes;
        std::string target;
        int minor;
        const char* host_header;  // nullptr: none
    };
    const Case cases[] = {
        {"python 3.11 http.client: HTTP/1.0, no Host", "CONNECT x.blob.core.windows.net:443 HTTP/1.0\r\n\r\n",
         "x.blob.core.windows.net:443", 0, nullptr},
        {"python 3.12 and curl: HTTP/1.1 with Host",
         "CONNECT x.blob.core.windows.net:443 HTTP/1.1\r\nHost: x.blob.core.windows.net:443\r\n\r\n",
         "x.blob.core.windows.net:443", 1, "x.blob.core.windows.net:443"},
        {"windows: proxy headers", "CONNECT a.b:443 HTTP/1.1\r\nHost: a.b:443\r\nProxy-Connection: keep-alive\r\n\r\n",
         "a.b:443", 1, "a.b:443"},
        {"bracketed IPv6 authority", "CONNECT [2001:db8::1]:443 HTTP/1.1\r\n\r\n", "[2001:db8::1]:443", 1, nullptr},
    };
    for (const auto& c : cases) {
        DYNAMIC_SECTION(c.name) {
            MessageParser parser;
            REQUIRE(parser.feed(c.bytes) == Status::head_complete);
            CHECK(parser.head().is_connect());
            CHECK(parser.head().target == c.target);
            CHECK(parser.head().version_minor == c.minor);
            CHECK(parser.consumed() == c.bytes.size());
            if (c.host_header) {
                CHECK(parser.head().header("host") == std::string_view(c.host_header));
            } else {
                CHECK_FALSE(parser.head().header("Host"));
            }
        }
    }
}

TEST_CASE("bytes behind the head are left for the tunnel", "[http]") {
    const std::string head = "CONNECT a.blob.core.windows.net:443 HTTP/1.1\r\n\r\n";
    const std::string hello("\x16\x03\x01\x02\x00\x01\x00\x01\xfc", 9);
    MessageParser parser;
    REQUIRE(parser.feed(head + hello) == Status::head_complete);
    CHECK(parser.consumed() == head.size());
}

TEST_CASE("a head split across reads completes at its end", "[http]") {
    const std::string head = "CONNECT a.blob.core.windows.net:443 HTTP/1.1\r\nHost: a.blob.core.windows.net:443\r\n\r\nXY";
    MessageParser parser;
    Status status = Status::need_more;
    std::size_t fed = 0;
    for (; fed < head.size() && status == Status::need_more; ++fed) status = parser.feed(head.substr(fed, 1));
    REQUIRE(status == Status::head_complete);
    CHECK(fed == head.size() - 2);  // stopped at the byte that ended the head
    CHECK(parser.consumed() == 1);
    CHECK(parser.head().header("host") == std::string_view("a.blob.core.windows.net:443"));
}

TEST_CASE("a header value split across reads is not mistaken for line folding", "[http]") {
    const std::string head = "CONNECT a.b:443 HTTP/1.1\r\nUser-Agent: curl/7.88 extra words\r\n\r\n";
    for (std::size_t split = 1; split < head.size(); ++split) {
        INFO("split at " << split);
        MessageParser parser;
        Status status = parser.feed(head.substr(0, split));
        if (status == Status::need_more) status = parser.feed(head.substr(split));
        REQUIRE(status == Status::head_complete);
        CHECK(parser.head().header("user-agent") == std::string_view("curl/7.88 extra words"));
    }
}

TEST_CASE("line folding is refused wherever the reads split it", "[http]") {
    const std::string head = "CONNECT a.b:443 HTTP/1.1\r\nX: a\r\n b\r\n\r\n";
    for (std::size_t split = 1; split < head.size(); ++split) {
        INFO("split at " << split);
        MessageParser parser;
        Status status = parser.feed(head.substr(0, split));
        if (status == Status::need_more) status = parser.feed(head.substr(split));
        CHECK(status == Status::error);
    }
}

// The proxy reads every chunk of a head into the same buffer: pieces fed from one address must
// not be taken for one another's continuation. Every split of a head into three reads.
namespace {
Status feed_in_three_reads_at_one_address(MessageParser& parser, std::string_view head, std::size_t i, std::size_t j) {
    std::string buffer(head.size(), '\0');  // one read buffer, as a session's head chunk
    Status status = Status::need_more;
    for (const auto piece : {head.substr(0, i), head.substr(i, j - i), head.substr(j)}) {
        if (status != Status::need_more) break;
        piece.copy(buffer.data(), piece.size());
        status = parser.feed(std::string_view(buffer.data(), piece.size()));
    }
    return status;
}
}  // namespace

TEST_CASE("line folding is refused when every read lands in the same buffer", "[http]") {
    const std::string folded = "CONNECT a.b:443 HTTP/1.1\r\nX: a\r\n b\r\n\r\n";
    const std::string plain = "CONNECT a.b:443 HTTP/1.1\r\nX: a b\r\n\r\n";
    for (std::size_t i = 1; i < folded.size(); ++i) {
        for (std::size_t j = i + 1; j < folded.size(); ++j) {
            INFO("reads split at " << i << " and " << j);
            MessageParser parser;
            CHECK(feed_in_three_reads_at_one_address(parser, folded, i, j) == Status::error);
        }
    }
    for (std::size_t i = 1; i < plain.size(); ++i) {
        for (std::size_t j = i + 1; j < plain.size(); ++j) {
            INFO("reads split at " << i << " and " << j);
            MessageParser parser;
            REQUIRE(feed_in_three_reads_at_one_address(parser, plain, i, j) == Status::head_complete);
            CHECK(parser.head().header("x") == std::string_view("a b"));
        }
    }
}

TEST_CASE("malformed heads are refused", "[http]") {
    struct Case {
        const char* name;
        std::string bytes;
    };
    const Case cases[] = {
        {"not HTTP", "\x16\x03\x01\x00\x05hello\r\n\r\n"},
        {"unknown method", "BREW pot:443 HTTP/1.1\r\n\r\n"},
        {"space in header name", "CONNECT a:443 HTTP/1.1\r\nBad Name: x\r\n\r\n"},
        {"NUL in header value", std::string("CONNECT a:443 HTTP/1.1\r\nX: a") + '\0' + "b\r\n\r\n"},
        {"obsolete line folding", "CONNECT a:443 HTTP/1.1\r\nX: a\r\n b\r\n\r\n"},
        {"bad version", "CONNECT a:443 HTTP/2.7\r\n\r\n"},
        {"bare LF inside the request line", "CONNECT a:443\nHTTP/1.1\r\n\r\n"},
    };
    for (const auto& c : cases) {
        DYNAMIC_SECTION(c.name) {
            MessageParser parser;
            CHECK(parser.feed(c.bytes) == Status::error);
            CHECK(egressgate::http::status_of(parser.failure()) == 400);
            CHECK_FALSE(parser.error_detail().empty());
        }
    }
}

TEST_CASE("heads over the named limits are refused as too large", "[http]") {
    SECTION("bytes") {
        MessageParser parser;
        const std::string line = "X-Filler: " + std::string(1000, 'a') + "\r\n";
        Status status = parser.feed("CONNECT a.b:443 HTTP/1.1\r\n");
        for (int i = 0; i < 20 && status == Status::need_more; ++i) status = parser.feed(line);
        CHECK(status == Status::error);
        CHECK(parser.failure() == Failure::request_head_too_large);
    }
    SECTION("header count") {
        std::string head = "CONNECT a.b:443 HTTP/1.1\r\n";
        for (std::size_t i = 0; i <= egressgate::http::kMaxReceivedHeaderCount; ++i) head += "X: y\r\n";
        MessageParser parser;
        CHECK(parser.feed(head + "\r\n") == Status::error);
        CHECK(parser.failure() == Failure::request_head_too_large);
    }
}

TEST_CASE("every failure maps to one status and carries its own reason", "[http]") {
    using egressgate::http::Refusal;
    struct Case {
        Failure failure;
        int status;
        std::string_view reason;
    };
    const Case cases[] = {
        {Failure::malformed_request, 400, "malformed_request"},
        {Failure::invalid_host, 400, "invalid_host"},
        {Failure::upgrade_not_supported, 400, "upgrade_not_supported"},
        {Failure::connect_on_forwarding_connection, 400, "connect_on_forwarding_connection"},
        {Failure::invalid_request_target, 400, "invalid_request_target"},
        {Failure::client_connection_limit, 429, "client_connection_limit"},
        {Failure::client_rate_limit, 429, "client_rate_limit"},
        {Failure::request_head_too_large, 431, "request_head_too_large"},
        {Failure::resolve_failed, 502, "resolve_failed"},
        {Failure::connect_failed, 502, "connect_failed"},
        {Failure::upstream_failed, 502, "upstream_failed"},
        {Failure::unrequested_upgrade, 502, "unrequested_upgrade"},
        {Failure::proxy_connection_limit, 503, "proxy_connection_limit"},
        {Failure::resource_exhausted, 503, "resource_exhausted"},
        {Failure::source_ports_exhausted, 503, "source_ports_exhausted"},
        {Failure::resolve_timeout, 504, "resolve_timeout"},
        {Failure::connect_timeout, 504, "connect_timeout"},
        {Failure::upstream_timeout, 504, "upstream_timeout"},
    };
    for (const auto& c : cases) {
        INFO(c.reason);
        const Refusal refusal(c.failure, "rule\r\nX: y");
        CHECK(refusal.status() == c.status);
        CHECK(refusal.reason() == c.reason);
        const std::string response = egressgate::http::render(refusal);
        CHECK(response.rfind("HTTP/1.1 " + std::to_string(c.status) + " ", 0) == 0);
        CHECK(response.find("\r\nX-Egressgate-Reason: " + std::string(c.reason) + "\r\n") != std::string::npos);
        CHECK(response.find("rule??X: y") != std::string::npos);  // no header injection through detail
        const auto body_at = response.find("\r\n\r\n") + 4;
        const auto length_at = response.find("Content-Length: ") + 16;
        CHECK(std::stoul(response.substr(length_at)) == response.size() - body_at);
    }
}

TEST_CASE("a policy denial is a 403 with the decision's reason and rule", "[http]") {
    egressgate::policy::Decision decision;
    decision.verdict = egressgate::policy::Verdict::deny;
    decision.reason = egressgate::policy::reason::host_not_allowed;
    decision.rule = egressgate::policy::RuleText::fixed("egress.hosts");
    const auto refusal = egressgate::http::Refusal::denied(decision);
    CHECK(refusal.status() == 403);
    CHECK(refusal.reason() == "host_not_allowed");
    CHECK(egressgate::http::render(refusal).find("(egress.hosts)") != std::string::npos);
}

// The worker pools request parsers: one reset after any stream must read the next stream as a
// new parser would, whatever the last one left behind (an error, half a head, an upgrade, a body),
// and keep no buffer past the kept sizes.
TEST_CASE("a reset parser reads a new stream as a new parser does", "[http]") {
    const std::string next = "CONNECT next.blob.core.windows.net:443 HTTP/1.0\r\n\r\n";
    // A target, header slots and a body past what a reset keeps, in a head within the limit.
    using egressgate::http::kMaxKeptHeadBufferBytes;
    using egressgate::http::kMaxKeptHeaderSlots;
    const std::string long_path(2 * kMaxKeptHeadBufferBytes, 'p');
    const std::string body(2 * kMaxKeptHeadBufferBytes, 'b');
    std::string large = "POST http://a.example/" + long_path + " HTTP/1.1\r\nHost: a.example\r\n";
    for (std::size_t i = 0; i < 2 * kMaxKeptHeaderSlots; ++i) large += "X-" + std::to_string(i) + ": v\r\n";
    large += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
    REQUIRE(large.size() - body.size() < egressgate::http::kMaxRequestHeadBytes);
    const struct {
        const char* name;
        std::string before;
    } cases[] = {
        {"after a refused head", "GET / HTTP/1.1\r\nBad Header: x\r\n\r\n"},
        {"in the middle of a head", "CONNECT half.example:443 HTTP/1.1\r\nHost: half"},
        {"after a CONNECT head (upgraded)", "CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n"},
        {"after a long target, many headers and a body", large},
    };
    for (const auto& c : cases) {
        SECTION(c.name) {
            MessageParser parser;
            const auto status = parser.feed(c.before);
            if (c.before == large) {
                REQUIRE(status == Status::head_complete);
                REQUIRE(parser.head().headers.size() > kMaxKeptHeaderSlots);
                REQUIRE(parser.feed(std::string_view(c.before).substr(parser.consumed())) == Status::message_complete);
                REQUIRE(parser.body() == body);
            }
            parser.reset();
            CHECK(parser.head().method.empty());
            CHECK(parser.head().target.empty());
            CHECK(parser.head().headers.empty());
            CHECK(parser.head().target.capacity() <= kMaxKeptHeadBufferBytes);
            CHECK(parser.head().headers.capacity() <= kMaxKeptHeaderSlots);
            CHECK(parser.body().capacity() <= kMaxKeptHeadBufferBytes);
            REQUIRE(parser.feed(next) == Status::head_complete);
            CHECK(parser.consumed() == next.size());
            const auto& head = parser.head();
            CHECK(head.method == "CONNECT");
            CHECK(head.target == "next.blob.core.windows.net:443");
            CHECK(head.version_minor == 0);
            CHECK(head.headers.empty());
            CHECK(head.framing == egressgate::http::BodyFraming::none);
            CHECK_FALSE(head.keep_alive);
            CHECK(head.upgrade);
            CHECK(parser.body().empty());
            CHECK(parser.error_detail().empty());
        }
    }
}

TEST_CASE("a reset parser refuses for the new stream's reason, not the last one's", "[http]") {
    MessageParser parser;
    REQUIRE(parser.feed("CONNECT a.example:443 HTTP/1.1\r\nHost: a\r\n x\r\n\r\n") == Status::error);
    REQUIRE(parser.failure() == Failure::obsolete_line_folding);
    parser.reset();
    REQUIRE(parser.feed("G@T / HTTP/1.1\r\n\r\n") == Status::error);  // llhttp's own refusal
    CHECK(parser.failure() == Failure::malformed_request);
}
