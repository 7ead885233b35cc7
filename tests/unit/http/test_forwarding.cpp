// Forwarding rules for absolute-form HTTP: targets, framing checks, rewritten heads, chunking.
#include <catch.hpp>

#include "http/forwarding.hpp"
#include "http/message.hpp"
#include "http/responses.hpp"

#include <variant>

using namespace egressgate::http;

namespace {
MessageHead parse_head(const std::string& bytes, MessageKind kind = MessageKind::request) {
    MessageParser parser(kind);
    REQUIRE(parser.feed(bytes) == MessageParser::Status::head_complete);
    return parser.head();
}
}  // namespace

TEST_CASE("request targets are classified", "[http][forward]") {
    struct Case {
        const char* name;
        const char* target;
        TargetForm form;
        const char* host;
        int port;
        const char* origin_form;
    };
    const Case cases[] = {
        {"plain http", "http://a.blob.core.windows.net/c/b?x=1", TargetForm::absolute_http, "a.blob.core.windows.net", 80, "/c/b?x=1"},
        {"scheme case and port", "HTTP://A.blob.core.windows.net:8080/", TargetForm::absolute_http, "a.blob.core.windows.net", 8080, "/"},
        {"no path", "http://a.example", TargetForm::absolute_http, "a.example", 80, "/"},
        {"query without path", "http://a.example?q", TargetForm::absolute_http, "a.example", 80, "/?q"},
        {"IPv6 literal", "http://[2001:db8::1]:81/x", TargetForm::absolute_http, "2001:db8::1", 81, "/x"},
        {"https", "https://a.example/", TargetForm::absolute_https, "", 0, ""},
        {"ftp", "ftp://a.example/", TargetForm::other_scheme, "", 0, ""},
        {"origin form", "/index.html", TargetForm::origin, "", 0, ""},
        {"asterisk", "*", TargetForm::origin, "", 0, ""},
        {"authority form", "a.example:443", TargetForm::authority, "", 0, ""},
        {"userinfo", "http://user@a.example/", TargetForm::invalid, "", 0, ""},
        {"fragment", "http://a.example/#frag", TargetForm::invalid, "", 0, ""},
        {"empty host", "http:///x", TargetForm::invalid, "", 0, ""},
        {"bad port", "http://a.example:99999/", TargetForm::invalid, "", 0, ""},
    };
    for (const auto& c : cases) {
        DYNAMIC_SECTION(c.name) {
            const auto classified = classify_target(c.target);
            CHECK(classified.form == c.form);
            if (c.form == TargetForm::absolute_http) {
                REQUIRE(classified.absolute);
                CHECK(classified.absolute->target.host == c.host);
                CHECK(classified.absolute->target.port == c.port);
                CHECK(classified.absolute->origin_form == c.origin_form);
            }
        }
    }
}

TEST_CASE("only a Transfer-Encoding of exactly chunked is forwarded", "[http][forward]") {
    CHECK_FALSE(request_framing_violation(parse_head("POST http://a/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")));
    CHECK_FALSE(request_framing_violation(parse_head("POST http://a/ HTTP/1.1\r\nContent-Length: 3\r\n\r\n")));
    CHECK(request_framing_violation(parse_head("POST http://a/ HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n")) ==
          Failure::unsupported_transfer_encoding);
    CHECK(request_framing_violation(parse_head("POST http://a/ HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n")) ==
          Failure::unsupported_transfer_encoding);
}

TEST_CASE("the upstream gets origin form, a Host from the URI and no hop-by-hop headers", "[http][forward]") {
    const auto head = parse_head(
        "GET http://a.example:8080/p?q HTTP/1.1\r\nHost: evil.example\r\nX-First: 1\r\nConnection: close, X-Secret\r\n"
        "X-Secret: s\r\nKeep-Alive: 5\r\nProxy-Connection: keep-alive\r\nProxy-Authorization: Basic x\r\nTE: trailers\r\n"
        "Upgrade: websocket\r\nVia: 1.0 other\r\nX-Last: 2\r\n\r\n");
    const auto target = classify_target(head.target).absolute;
    REQUIRE(target);
    const std::string out = upstream_request_head(head, *target, {"10.0.1.4", false});
    CHECK(out ==
          "GET /p?q HTTP/1.1\r\nHost: a.example:8080\r\nX-First: 1\r\nX-Last: 2\r\nVia: 1.0 other, 1.1 egressgate\r\n\r\n");
    const std::string with_xff = upstream_request_head(head, *target, {"10.0.1.4", true});
    CHECK(with_xff.find("X-Forwarded-For: 10.0.1.4\r\n") != std::string::npos);
}

TEST_CASE("a chunked request stays chunked; Content-Length stays as it was", "[http][forward]") {
    const auto chunked = parse_head("PUT http://a.example/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
    CHECK(upstream_request_head(chunked, *classify_target(chunked.target).absolute, {}) ==
          "PUT / HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\nVia: 1.1 egressgate\r\n\r\n");
    const auto sized = parse_head("PUT http://a.example/ HTTP/1.1\r\nContent-Length: 10\r\n\r\n");
    CHECK(upstream_request_head(sized, *classify_target(sized.target).absolute, {}) ==
          "PUT / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 10\r\nVia: 1.1 egressgate\r\n\r\n");
}

TEST_CASE("the client gets the response head with Via, and Connection: close when it will be closed", "[http][forward]") {
    const auto head = parse_head("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: keep-alive\r\nKeep-Alive: 5\r\nX-Ms: 1\r\n\r\n",
                                 MessageKind::response);
    CHECK(client_response_head(head, false, false) == "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-Ms: 1\r\nVia: 1.1 egressgate\r\n\r\n");
    CHECK(client_response_head(head, true, false) ==
          "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-Ms: 1\r\nVia: 1.1 egressgate\r\nConnection: close\r\n\r\n");
}

TEST_CASE("chunked framing never emits an empty chunk before the end", "[http][forward]") {
    std::string out;
    append_chunk(out, "");
    CHECK(out.empty());
    append_chunk(out, std::string(26, 'x'));
    CHECK(out == "1a\r\n" + std::string(26, 'x') + "\r\n");
}

TEST_CASE("the parser streams bodies and stops at each message's end", "[http][forward]") {
    MessageParser parser;
    std::string input = "POST http://a/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n"
                        "GET http://b/ HTTP/1.1\r\n\r\n";
    std::string_view rest = input;
    REQUIRE(parser.feed(rest) == MessageParser::Status::head_complete);
    CHECK(parser.head().framing == BodyFraming::chunked);
    rest.remove_prefix(parser.consumed());
    REQUIRE(parser.feed(rest) == MessageParser::Status::message_complete);
    CHECK(parser.body() == "hello");
    CHECK(parser.head().headers.size() == 1);  // the trailer is dropped
    rest.remove_prefix(parser.consumed());
    REQUIRE(parser.feed(rest) == MessageParser::Status::head_complete);
    CHECK(parser.head().target == "http://b/");
    rest.remove_prefix(parser.consumed());
    CHECK(parser.feed(rest) == MessageParser::Status::message_complete);  // no body: ends at once
}

TEST_CASE("responses: interim 1xx, bodies delimited by close, HEAD without body", "[http][forward]") {
    SECTION("100 Continue then the final response") {
        MessageParser parser(MessageKind::response);
        std::string input = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok";
        std::string_view rest = input;
        REQUIRE(parser.feed(rest) == MessageParser::Status::head_complete);
        CHECK(parser.head().status == 100);
        rest.remove_prefix(parser.consumed());
        REQUIRE(parser.feed(rest) == MessageParser::Status::message_complete);
        rest.remove_prefix(parser.consumed());
        REQUIRE(parser.feed(rest) == MessageParser::Status::head_complete);
        CHECK(parser.head().status == 201);
        rest.remove_prefix(parser.consumed());
        REQUIRE(parser.feed(rest) == MessageParser::Status::message_complete);
        CHECK(parser.body() == "ok");
    }
    SECTION("a body delimited by close ends at finish()") {
        MessageParser parser(MessageKind::response);
        std::string input = "HTTP/1.0 200 OK\r\n\r\nall of it";
        REQUIRE(parser.feed(input) == MessageParser::Status::head_complete);
        CHECK(parser.head().framing == BodyFraming::until_close);
        CHECK(parser.feed(std::string_view(input).substr(parser.consumed())) == MessageParser::Status::need_more);
        CHECK(parser.finish() == MessageParser::Status::message_complete);
        CHECK(parser.body() == "all of it");
    }
    SECTION("a cut-off body is an error at finish()") {
        MessageParser parser(MessageKind::response);
        std::string input = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort";
        REQUIRE(parser.feed(input) == MessageParser::Status::head_complete);
        CHECK(parser.feed(std::string_view(input).substr(parser.consumed())) == MessageParser::Status::need_more);
        CHECK(parser.finish() == MessageParser::Status::error);
    }
    SECTION("the response to HEAD has no body whatever it says") {
        MessageParser parser(MessageKind::response);
        REQUIRE(parser.feed("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n") == MessageParser::Status::head_complete);
        parser.skip_body();
        CHECK(parser.feed("") == MessageParser::Status::message_complete);
    }
}

TEST_CASE("request refusals carry their own reasons", "[http][forward]") {
    struct Case {
        const char* name;
        std::string bytes;
        Failure failure;
    };
    const Case cases[] = {
        {"CL with TE", "POST http://a/ HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
         Failure::content_length_with_transfer_encoding},
        {"two CL", "POST http://a/ HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", Failure::conflicting_content_length},
        {"bad CL", "POST http://a/ HTTP/1.1\r\nContent-Length: 1x\r\n\r\n", Failure::invalid_content_length},
        {"TE not final chunked", "POST http://a/ HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
         Failure::unsupported_transfer_encoding},
        {"folding", "GET http://a/ HTTP/1.1\r\nX: a\r\n b\r\n\r\n", Failure::obsolete_line_folding},
        {"bare LF in value", "GET http://a/ HTTP/1.1\r\nX: a\nY: b\r\n\r\n", Failure::invalid_header_value},
        {"space in name", "GET http://a/ HTTP/1.1\r\nX Y: z\r\n\r\n", Failure::invalid_header_name},
        {"space before colon", "GET http://a/ HTTP/1.1\r\nX : z\r\n\r\n", Failure::invalid_header_name},
        {"at sign in name", "GET http://a/ HTTP/1.1\r\nX@Y: z\r\n\r\n", Failure::invalid_header_name},
        {"empty name first", "GET http://a/ HTTP/1.1\r\n: x\r\n\r\n", Failure::invalid_header_name},
        {"empty name later", "GET http://a/ HTTP/1.1\r\nA: b\r\n: x\r\n\r\n", Failure::invalid_header_name},
        {"SOH in value", "GET http://a/ HTTP/1.1\r\nA: b\x01z\r\n\r\n", Failure::invalid_header_value},
        {"DEL in value", "GET http://a/ HTTP/1.1\r\nA: b\x7fz\r\n\r\n", Failure::invalid_header_value},
        {"TAB in target", "GET http://a/x\ty HTTP/1.1\r\n\r\n", Failure::invalid_request_target},
        {"byte >= 0x80 in target", "GET http://a/x\xffy HTTP/1.1\r\n\r\n", Failure::invalid_request_target},
        {"control in target", "GET http://a/x\x01y HTTP/1.1\r\n\r\n", Failure::invalid_request_target},
        {"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", Failure::http2_not_supported},
    };
    for (const auto& c : cases) {
        DYNAMIC_SECTION(c.name) {
            MessageParser parser;
            CHECK(parser.feed(c.bytes) == MessageParser::Status::error);
            CHECK(parser.failure() == c.failure);
            CHECK(status_of(parser.failure()) == 400);
        }
    }
}

TEST_CASE("field values keep TAB and obs-text", "[http][forward]") {
    const auto head = parse_head("GET http://a/ HTTP/1.1\r\nA: b\tc\r\nB: caf\xc3\xa9\r\n\r\n");
    CHECK(head.header("A") == std::string_view("b\tc"));
    CHECK(head.header("B") == std::string_view("caf\xc3\xa9"));
}

TEST_CASE("a forwarding connection refuses what is not HTTP/1.x to forward", "[http][forward]") {
    struct Case {
        const char* name;
        std::string bytes;
        Failure failure;
    };
    const Case cases[] = {
        {"h2c upgrade", "GET http://a/ HTTP/1.1\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n\r\n",
         Failure::upgrade_not_supported},
        {"websocket", "GET http://a/ws HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
         Failure::upgrade_not_supported},
        {"upgrade with a body", "POST http://a/ HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: x\r\nContent-Length: 2\r\n\r\nab",
         Failure::upgrade_not_supported},
        {"CONNECT", "CONNECT a:443 HTTP/1.1\r\n\r\n", Failure::connect_on_forwarding_connection},
        {"origin form", "GET / HTTP/1.1\r\n\r\n", Failure::origin_form_target},
        {"https", "GET https://a/ HTTP/1.1\r\n\r\n", Failure::use_connect_for_https},
        {"other scheme", "GET ws://a/ HTTP/1.1\r\n\r\n", Failure::unsupported_scheme},
        {"invalid host", "GET http://a..b/ HTTP/1.1\r\n\r\n", Failure::invalid_host},
        {"TE gzip", "POST http://a/ HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", Failure::unsupported_transfer_encoding},
    };
    for (const auto& c : cases) {
        DYNAMIC_SECTION(c.name) {
            MessageParser parser;
            REQUIRE(parser.feed(c.bytes) == MessageParser::Status::head_complete);
            const auto where = forwarding_target(parser.head());
            REQUIRE(std::holds_alternative<Refusal>(where));
            CHECK(std::get<Refusal>(where).failure() == c.failure);
        }
    }
    MessageParser parser;
    REQUIRE(parser.feed("GET http://a.example:8080/x HTTP/1.1\r\nConnection: keep-alive\r\n\r\n") ==
            MessageParser::Status::head_complete);
    const auto where = forwarding_target(parser.head());
    REQUIRE(std::holds_alternative<AbsoluteTarget>(where));
    CHECK(std::get<AbsoluteTarget>(where).target.port == 8080);
}

TEST_CASE("an upgrade head is the parser's last: what follows is not parsed", "[http]") {
    const std::string connect = "CONNECT a:443 HTTP/1.1\r\n\r\n\x16\x03\x01";
    MessageParser parser;
    REQUIRE(parser.feed(connect) == MessageParser::Status::head_complete);
    CHECK(parser.head().upgrade);
    CHECK(parser.consumed() == connect.size() - 3);
    // Fed again, it refuses rather than reporting the message's end over and over.
    CHECK(parser.feed(std::string_view(connect).substr(parser.consumed())) == MessageParser::Status::error);
    CHECK(parser.feed("") == MessageParser::Status::error);
}

TEST_CASE("a 101 response is never forwarded", "[http][forward]") {
    for (const char* response : {"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\nxx",
                                 "HTTP/1.1 101 Switching Protocols\r\n\r\n"}) {
        INFO(response);
        MessageParser parser(MessageKind::response);
        CHECK(parser.feed(response) == MessageParser::Status::error);
        CHECK(parser.failure() == Failure::unrequested_upgrade);
        CHECK(status_of(parser.failure()) == 502);
    }
}

TEST_CASE("a broken response is the upstream's failure", "[http][forward]") {
    MessageParser garbage(MessageKind::response);
    CHECK(garbage.feed("SSH-2.0-OpenSSH_9.2\r\n") == MessageParser::Status::error);
    CHECK(garbage.failure() == Failure::upstream_malformed);
    MessageParser cut(MessageKind::response);
    const std::string head = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc";
    REQUIRE(cut.feed(head) == MessageParser::Status::head_complete);
    CHECK(cut.feed(std::string_view(head).substr(cut.consumed())) == MessageParser::Status::need_more);
    CHECK(cut.finish() == MessageParser::Status::error);
    CHECK(cut.failure() == Failure::upstream_failed);
}

// Found by tests/fuzz/forwarding_fuzzer (tests/fuzz/regressions/forwarding/).
TEST_CASE("a Connection header cannot make the proxy drop the body's length", "[http][forward]") {
    const auto request = parse_head("POST http://a/ HTTP/1.1\r\nConnection: Content-Length\r\nContent-Length: 5\r\n\r\n");
    const std::string up = upstream_request_head(request, std::get<AbsoluteTarget>(forwarding_target(request)), {});
    CHECK(up.find("\r\nContent-Length: 5\r\n") != std::string::npos);
    const auto response = parse_head("HTTP/1.1 200 OK\r\nConnection: content-length, x\r\nContent-Length: 3\r\nX: 1\r\n\r\n",
                                     MessageKind::response);
    const std::string down = client_response_head(response, false, false);
    CHECK(down.find("\r\nContent-Length: 3\r\n") != std::string::npos);
    CHECK(down.find("\r\nX: 1\r\n") == std::string::npos);  // what Connection names otherwise goes
}

// Found by tests/fuzz/request_head_fuzzer (tests/fuzz/regressions/request_head/).
TEST_CASE("1xx, 204 and 304 responses have no body whatever their headers say", "[http][forward]") {
    const char* const responses[] = {
        "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n",
        "HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n",
        "HTTP/1.1 204 No Content\r\nTransfer-Encoding: gzip\r\n\r\n",
        "HTTP/1.1 100 Continue\r\nContent-Length: 7\r\n\r\n",
    };
    for (const char* response : responses) {
        INFO(response);
        const std::string next = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        const std::string input = std::string(response) + next;
        MessageParser parser(MessageKind::response);
        std::string_view rest = input;
        REQUIRE(parser.feed(rest) == MessageParser::Status::head_complete);
        CHECK(parser.head().framing == BodyFraming::none);
        rest.remove_prefix(parser.consumed());
        REQUIRE(parser.feed(rest) == MessageParser::Status::message_complete);  // at once, no bytes taken
        CHECK(parser.consumed() == 0);
        CHECK(parser.body().empty());
        REQUIRE(parser.feed(rest) == MessageParser::Status::head_complete);    // the next response is whole
        CHECK(parser.head().status == 200);
    }
}

TEST_CASE("statuses below 100 and version-less request lines are refused", "[http][forward]") {
    for (const char* response : {"HTTP/1.1 20 OK\r\n\r\nbody", "HTTP/1.1 020 OK\r\nContent-Length: 1\r\n\r\nx"}) {
        INFO(response);
        MessageParser parser(MessageKind::response);
        CHECK(parser.feed(response) == MessageParser::Status::error);
        CHECK(parser.failure() == Failure::upstream_malformed);
    }
    for (const char* request : {"CONNECT \r\n\r\n", "GET http://a/\r\n\r\n", "CONNECT  HTTP/1.1\r\n\r\n"}) {
        INFO(request);
        MessageParser parser;
        CHECK(parser.feed(request) == MessageParser::Status::error);
        CHECK(status_of(parser.failure()) == 400);
    }
}

TEST_CASE("the audit trail keeps a request's path, never its query values", "[http][forward]") {
    struct Case {
        const char* name;
        const char* origin_form;
        const char* audited;
    };
    const Case cases[] = {
        {"no query", "/c/blob.vhd", "/c/blob.vhd"},
        {"SAS token", "/c/b?sv=2021-08-06&se=2026-12-02T00%3A00Z&sp=r&sig=abc%2Bdef%3D",
         "/c/b?sv=REDACTED&se=REDACTED&sp=REDACTED&sig=REDACTED"},
        {"a name without a value", "/x?comp=list&restype", "/x?comp=REDACTED&restype"},
        {"empty values and pairs", "/x?a=&&b=1", "/x?a=&&b=REDACTED"},
        {"an empty query", "/x?", "/x?"},
        {"equals in a value", "/x?a=b=c", "/x?a=REDACTED"},
    };
    for (const auto& c : cases) {
        DYNAMIC_SECTION(c.name) { CHECK(audit_path(c.origin_form) == c.audited); }
    }
    const std::string long_path = "/" + std::string(5000, 'p');
    const std::string cut = audit_path(long_path);
    CHECK(cut.size() == kMaxAuditedPathBytes);
    CHECK(cut.ends_with("..."));
}

// The fields the proxy adds must not carry a head past what a client accepts: an origin's response
// at the most fields a peer may send, rewritten for the client, still parses with a 100-field
// limit (Python's http.client has one), and so does a client's request rewritten for the origin.
TEST_CASE("rewritten heads stay within the 100-field limit", "[http][forward]") {
    std::string fields;
    for (std::size_t i = 2; i < kMaxReceivedHeaderCount; ++i) fields += "X-Field-" + std::to_string(i) + ": v\r\n";
    const auto fits = [](const std::string& written, MessageKind kind) {
        MessageParser client(kind, kMaxHeaderCount);
        return client.feed(written) == MessageParser::Status::head_complete && client.consumed() == written.size();
    };
    SECTION("a response") {
        const MessageHead response = parse_head(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n" + fields + "\r\n",
            MessageKind::response);
        REQUIRE(response.headers.size() == kMaxReceivedHeaderCount);
        CHECK(fits(client_response_head(response, true, true), MessageKind::response));
        CHECK(fits(client_response_head(response, true, false), MessageKind::response));
    }
    SECTION("a request") {
        const MessageHead request = parse_head(
            "POST http://a.blob.core.windows.net/x HTTP/1.1\r\nTransfer-Encoding: chunked\r\nX-Pad: 1\r\n" + fields + "\r\n");
        REQUIRE(request.headers.size() == kMaxReceivedHeaderCount);
        const auto target = std::get<AbsoluteTarget>(forwarding_target(request));
        CHECK(fits(upstream_request_head(request, target, ForwardOptions{"10.0.0.4", true}), MessageKind::request));
    }
    SECTION("one field more is refused on receipt") {
        MessageParser parser(MessageKind::response);
        CHECK(parser.feed("HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\n" + fields + "\r\n") == MessageParser::Status::error);
    }
}
