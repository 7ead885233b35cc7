// libFuzzer target for the forwarding rules (http/forwarding.hpp): what the proxy writes to an
// upstream or back to a client is parsed again by a fresh, strict MessageParser and must say
// what the received head said, minus the hop-by-hop headers, plus Host, Via (and
// X-Forwarded-For). Above all the body framing must survive: a head that the next hop frames
// differently from the proxy is request (or response) smuggling.
//
// Input: the bytes of a message head. They are parsed as a request and, separately, as a
// response; every head that parses is checked with each set of options the proxy can pass.
#include <strings.h>

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "fuzz_check.hpp"
#include "http/forwarding.hpp"
#include "http/message.hpp"
#include "message_checks.hpp"

namespace {

using egressgate::http::BodyFraming;
using egressgate::http::MessageHead;
using egressgate::http::MessageKind;
using egressgate::http::MessageParser;
using Headers = std::vector<std::pair<std::string, std::string>>;

constexpr std::string_view kClientIp = "10.0.0.4";
constexpr std::string_view kVia = "1.1 egressgate";

// Written here from RFC 9110 7.6.1, not taken from forwarding.cpp, so that the two can disagree.
constexpr std::string_view kHopByHop[] = {
    "Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authorization", "Proxy-Authenticate",
    "TE",         "Trailer",    "Upgrade",          "Transfer-Encoding",
};

bool iequals(std::string_view a, std::string_view b) {
    return a.size() == b.size() && strncasecmp(a.data(), b.data(), a.size()) == 0;
}

bool is_one_of(std::string_view name, std::initializer_list<std::string_view> names) {
    for (const auto n : names) {
        if (iequals(name, n)) return true;
    }
    return false;
}

std::string_view trim_ows(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

// A hop-by-hop header, or one that a Connection header of `head` names (RFC 9110 7.6.1) except
// Content-Length: it frames the body the proxy forwards as it came, so it always travels.
bool is_hop_by_hop(const MessageHead& head, std::string_view name) {
    for (const auto h : kHopByHop) {
        if (iequals(h, name)) return true;
    }
    if (iequals(name, "Content-Length")) return false;
    for (const auto& [field, value] : head.headers) {
        if (!iequals(field, "Connection")) continue;
        std::string_view options = value;
        for (;;) {
            const auto comma = options.find(',');
            if (iequals(trim_ows(options.substr(0, comma)), name)) return true;
            if (comma == std::string_view::npos) break;
            options.remove_prefix(comma + 1);
        }
    }
    return false;
}

// The headers of `head` without those the checks account for separately.
Headers headers_without(const MessageHead& head, bool drop_hop_by_hop, std::initializer_list<std::string_view> drop) {
    Headers kept;
    for (const auto& header : head.headers) {
        if (drop_hop_by_hop && is_hop_by_hop(head, header.first)) continue;
        if (is_one_of(header.first, drop)) continue;
        kept.push_back(header);
    }
    return kept;
}

std::optional<MessageHead> parse_head(MessageKind kind, std::string_view bytes) {
    MessageParser parser(kind);
    if (parser.feed(bytes) != MessageParser::Status::head_complete) return std::nullopt;
    egressgate::fuzz::check_head(parser.head(), kind);
    return parser.head();
}

// What the proxy wrote must be exactly one head, all of it, within what a client with the
// common 100-field limit accepts.
MessageHead reparse(MessageKind kind, const std::string& written) {
    MessageParser parser(kind, egressgate::http::kMaxHeaderCount);
    FUZZ_REQUIRE(parser.feed(written) == MessageParser::Status::head_complete);
    FUZZ_REQUIRE(parser.consumed() == written.size());
    const MessageHead& head = parser.head();
    egressgate::fuzz::check_head(head, kind);
    FUZZ_REQUIRE(head.version_major == 1 && head.version_minor == 1);
    FUZZ_REQUIRE(!head.upgrade);
    return head;
}

// `name` appears `count` times, each time with exactly `value`.
void require_only(const MessageHead& head, std::string_view name, std::size_t count, std::string_view value) {
    FUZZ_REQUIRE(head.header_count(name) == count);
    for (const auto& [n, v] : head.headers) {
        if (iequals(n, name)) FUZZ_REQUIRE(v == value);
    }
}

void require_no_hop_by_hop_but(const MessageHead& head, std::initializer_list<std::string_view> allowed) {
    for (const auto& [name, value] : head.headers) {
        for (const auto h : kHopByHop) {
            if (iequals(name, h)) FUZZ_REQUIRE(is_one_of(name, allowed));
        }
    }
}

void require_via(const MessageHead& head) {
    FUZZ_REQUIRE(head.header_count("Via") == 1);
    FUZZ_REQUIRE(head.header("Via")->ends_with(kVia));
}

std::string authority_of(const egressgate::policy::Target& target) {
    const bool v6 = target.literal && !target.literal->is_v4();
    const std::string host = v6 ? "[" + target.host + "]" : target.host;
    return target.port == 80 ? host : host + ":" + std::to_string(target.port);
}

void check_upstream_request(const MessageHead& client, const egressgate::http::AbsoluteTarget& target, bool xff) {
    const std::string written = egressgate::http::upstream_request_head(client, target, {kClientIp, xff});
    const MessageHead upstream = reparse(MessageKind::request, written);
    FUZZ_REQUIRE(upstream.method == client.method);
    FUZZ_REQUIRE(upstream.target == target.origin_form);
    require_only(upstream, "Host", 1, authority_of(target.target));
    const bool chunked = client.framing == BodyFraming::chunked;
    require_only(upstream, "Transfer-Encoding", chunked ? 1 : 0, "chunked");
    require_no_hop_by_hop_but(upstream, {"Transfer-Encoding"});
    require_via(upstream);
    if (xff) {
        FUZZ_REQUIRE(upstream.header_count("X-Forwarded-For") == 1);
        FUZZ_REQUIRE(upstream.header("X-Forwarded-For")->ends_with(kClientIp));
    }
    // Everything else travels end to end, in order, as it was.
    const Headers forwarded = xff ? headers_without(upstream, false, {"Host", "Via", "X-Forwarded-For", "Transfer-Encoding"})
                                  : headers_without(upstream, false, {"Host", "Via", "Transfer-Encoding"});
    const Headers expected = xff ? headers_without(client, true, {"Host", "Via", "X-Forwarded-For"})
                                 : headers_without(client, true, {"Host", "Via"});
    FUZZ_REQUIRE(forwarded == expected);
    FUZZ_REQUIRE(upstream.framing == client.framing);
    FUZZ_REQUIRE(upstream.content_length == client.content_length);
}

void check_request(const MessageHead& client) {
    auto where = egressgate::http::forwarding_target(client);
    const auto* target = std::get_if<egressgate::http::AbsoluteTarget>(&where);
    if (target == nullptr) return;
    FUZZ_REQUIRE(!client.is_connect() && !client.upgrade);
    FUZZ_REQUIRE(target->target.port != 0);
    FUZZ_REQUIRE(target->origin_form.starts_with('/'));
    FUZZ_REQUIRE(target->origin_form.find('#') == std::string::npos);
    check_upstream_request(client, *target, false);
    check_upstream_request(client, *target, true);
}

// How a client reads a response that has neither Content-Length nor Transfer-Encoding.
BodyFraming framing_without_length(int status) {
    return status / 100 == 1 || status == 204 || status == 304 ? BodyFraming::none : BodyFraming::until_close;
}

void check_client_response(const MessageHead& upstream, bool close_client, bool chunked_to_client) {
    const std::string written = egressgate::http::client_response_head(upstream, close_client, chunked_to_client);
    const MessageHead client = reparse(MessageKind::response, written);
    FUZZ_REQUIRE(client.status == upstream.status);
    FUZZ_REQUIRE(client.reason_phrase == upstream.reason_phrase);
    require_only(client, "Connection", close_client ? 1 : 0, "close");
    require_only(client, "Transfer-Encoding", chunked_to_client ? 1 : 0, "chunked");
    require_no_hop_by_hop_but(client, {"Connection", "Transfer-Encoding"});
    require_via(client);
    FUZZ_REQUIRE(headers_without(client, false, {"Via", "Connection", "Transfer-Encoding"}) ==
                 headers_without(upstream, true, {"Via"}));
    if (close_client) FUZZ_REQUIRE(!client.keep_alive);
    if (chunked_to_client) {
        FUZZ_REQUIRE(client.framing == BodyFraming::chunked);
    } else if (upstream.framing == BodyFraming::chunked) {
        // Sent as it is decoded, to an HTTP/1.0 client: the end of the body is the close.
        FUZZ_REQUIRE(client.framing == framing_without_length(upstream.status));
    } else {
        FUZZ_REQUIRE(client.framing == upstream.framing);
        FUZZ_REQUIRE(client.content_length == upstream.content_length);
    }
}

void check_response(const MessageHead& upstream) {
    // forward_session re-chunks only what arrived chunked.
    const bool chunked = upstream.framing == BodyFraming::chunked;
    for (const bool close_client : {false, true}) {
        check_client_response(upstream, close_client, false);
        if (chunked) check_client_response(upstream, close_client, true);
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view bytes(reinterpret_cast<const char*>(data), size);
    if (const auto request = parse_head(MessageKind::request, bytes)) check_request(*request);
    if (const auto response = parse_head(MessageKind::response, bytes)) check_response(*response);
    return 0;
}
