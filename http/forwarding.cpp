#include "http/forwarding.hpp"

#include <strings.h>

#include <algorithm>
#include <array>
#include <initializer_list>

#include <fmt/format.h>


namespace egressgate::http {
namespace {

bool iequals(std::string_view a, std::string_view b) {
    return a.size() == b.size() && strncasecmp(a.data(), b.data(), a.size()) == 0;
}

bool starts_with_nocase(std::string_view text, std::string_view prefix) {
    return text.size() >= prefix.size() && iequals(text.substr(0, prefix.size()), prefix);
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

// Hop-by-hop headers (RFC 9110 7.6.1), plus the proxy's own credentials.
constexpr std::array kHopByHop = {
    std::string_view("Connection"), std::string_view("Keep-Alive"),        std::string_view("Proxy-Connection"),
    std::string_view("Proxy-Authorization"), std::string_view("TE"),      std::string_view("Trailer"),
    std::string_view("Upgrade"),    std::string_view("Transfer-Encoding"), std::string_view("Proxy-Authenticate"),
};

// Whether `name` is listed in any Connection header of `head`.
bool named_by_connection(const MessageHead& head, std::string_view name) {
    for (const auto& [field, value] : head.headers) {
        if (!iequals(field, "Connection")) continue;
        std::string_view rest = value;
        while (!rest.empty()) {
            const auto comma = rest.find(',');
            if (iequals(trim(rest.substr(0, comma)), name)) return true;
            rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
        }
    }
    return false;
}

// Content-Length frames the body the proxy forwards as it came: a Connection header naming it
// must not make the proxy drop it, or the peer would read the body as the next message.
bool is_hop_by_hop(const MessageHead& head, std::string_view name) {
    for (auto h : kHopByHop) {
        if (iequals(h, name)) return true;
    }
    if (iequals(name, "Content-Length")) return false;
    return named_by_connection(head, name);
}

// Copies the headers that travel end to end, in order, except `also_drop` (which the proxy
// rewrites itself).
void append_end_to_end_headers(std::string& out, const MessageHead& head,
                               std::initializer_list<std::string_view> also_drop) {
    for (const auto& header : head.headers) {
        const std::string& name = header.first;
        if (is_hop_by_hop(head, name)) continue;
        if (std::any_of(also_drop.begin(), also_drop.end(), [&name](auto d) { return iequals(name, d); })) continue;
        out += name;
        out += ": ";
        out += header.second;
        out += "\r\n";
    }
}

// The Via header: the received value(s) with ours appended (RFC 9110 7.6.3).
void append_via(std::string& out, const MessageHead& head) {
    std::string via;
    for (const auto& [name, value] : head.headers) {
        if (iequals(name, "Via")) via += std::string(via.empty() ? "" : ", ") + value;
    }
    out += "Via: " + (via.empty() ? std::string() : via + ", ") + "1.1 egressgate\r\n";
}

constexpr std::string_view kOriginFormDetail =
    "this is a proxy: send absolute-form requests (GET http://host/path) or CONNECT host:port";
constexpr std::string_view kHttpsDetail = "https goes through a tunnel: send CONNECT host:443";

std::string host_header(const policy::Target& target) {
    const std::string host = target.literal && !target.literal->is_v4() ? "[" + target.host + "]" : target.host;
    return target.port == 80 ? host : host + ":" + std::to_string(target.port);
}

}  // namespace

ClassifiedTarget classify_target(std::string_view t) {
    if (t.starts_with('/') || t == "*") return {TargetForm::origin, std::nullopt};
    const auto scheme_end = t.find("://");
    if (scheme_end == std::string_view::npos) {
        return {policy::parse_authority(t) ? TargetForm::authority : TargetForm::invalid, std::nullopt};
    }
    if (starts_with_nocase(t, "https://")) return {TargetForm::absolute_https, std::nullopt};
    if (!starts_with_nocase(t, "http://")) return {TargetForm::other_scheme, std::nullopt};
    const std::string_view rest = t.substr(7);
    const auto path_start = rest.find_first_of("/?");
    const std::string_view authority = rest.substr(0, path_start);
    std::string origin_form(path_start == std::string_view::npos ? "" : rest.substr(path_start));
    // A fragment is never sent on the wire; one here is a client bug or a smuggling attempt.
    if (origin_form.find('#') != std::string::npos) return {TargetForm::invalid, std::nullopt};
    if (origin_form.empty() || origin_form.front() == '?') origin_form.insert(0, "/");
    auto target = policy::parse_authority(authority, 80);
    if (!target) return {TargetForm::invalid, std::nullopt};
    return {TargetForm::absolute_http, AbsoluteTarget{std::move(*target), std::move(origin_form)}};
}

std::string audit_path(std::string_view origin_form) {
    constexpr std::string_view kRedacted = "REDACTED";
    const auto query_at = origin_form.find('?');
    std::string out(origin_form.substr(0, query_at));
    if (query_at != std::string_view::npos) {
        out += '?';
        std::string_view query = origin_form.substr(query_at + 1);
        bool first = true;
        while (!query.empty() || first) {
            const auto amp = query.find('&');
            const std::string_view pair = query.substr(0, amp);
            if (!first) out += '&';
            first = false;
            const auto eq = pair.find('=');
            out += pair.substr(0, eq);
            if (eq != std::string_view::npos) {
                out += '=';
                if (eq + 1 < pair.size()) out += kRedacted;
            }
            if (amp == std::string_view::npos) break;
            query.remove_prefix(amp + 1);
        }
    }
    if (out.size() > kMaxAuditedPathBytes) out = out.substr(0, kMaxAuditedPathBytes - 3) + "...";
    return out;
}

std::optional<Failure> request_framing_violation(const MessageHead& head) {
    const std::size_t encodings = head.header_count("Transfer-Encoding");
    if (encodings == 0) return std::nullopt;
    if (encodings > 1 || !iequals(trim(*head.header("Transfer-Encoding")), "chunked")) {
        return Failure::unsupported_transfer_encoding;
    }
    return std::nullopt;
}

std::variant<AbsoluteTarget, Refusal> forwarding_target(const MessageHead& head) {
    if (head.is_connect()) {
        return Refusal(Failure::connect_on_forwarding_connection,
                       "CONNECT starts a connection of its own: open a new connection for it");
    }
    if (head.upgrade) return Refusal(Failure::upgrade_not_supported, "the proxy forwards HTTP/1.x only");
    auto classified = classify_target(head.target);
    switch (classified.form) {
    case TargetForm::absolute_http: break;
    case TargetForm::absolute_https: return Refusal(Failure::use_connect_for_https, std::string(kHttpsDetail));
    case TargetForm::other_scheme: return Refusal(Failure::unsupported_scheme, "only http:// is forwarded");
    case TargetForm::origin:
    case TargetForm::authority: return Refusal(Failure::origin_form_target, std::string(kOriginFormDetail));
    case TargetForm::invalid: return Refusal(Failure::invalid_host, "the request target is not a valid http:// URI");
    }
    if (const auto violation = request_framing_violation(head)) {
        return Refusal(*violation, "the body's length cannot be determined");
    }
    return std::move(*classified.absolute);
}

std::string upstream_request_head(const MessageHead& head, const AbsoluteTarget& target, const ForwardOptions& options) {
    std::string out = fmt::format("{} {} HTTP/1.1\r\nHost: {}\r\n", head.method, target.origin_form, host_header(target.target));
    if (options.x_forwarded_for) {
        append_end_to_end_headers(out, head, {"Host", "Via", "X-Forwarded-For"});
    } else {
        append_end_to_end_headers(out, head, {"Host", "Via"});
    }
    if (head.framing == BodyFraming::chunked) out += "Transfer-Encoding: chunked\r\n";
    append_via(out, head);
    if (options.x_forwarded_for) {
        const auto earlier = head.header("X-Forwarded-For");
        out += fmt::format("X-Forwarded-For: {}{}\r\n", earlier ? std::string(*earlier) + ", " : "", options.client_ip);
    }
    out += "\r\n";
    return out;
}

std::string client_response_head(const MessageHead& head, bool close_client, bool chunked_to_client) {
    std::string out = fmt::format("HTTP/1.1 {} {}\r\n", head.status, head.reason_phrase);
    append_end_to_end_headers(out, head, {"Via"});
    if (chunked_to_client) out += "Transfer-Encoding: chunked\r\n";
    append_via(out, head);
    if (close_client) out += "Connection: close\r\n";
    out += "\r\n";
    return out;
}

void append_chunk(std::string& out, std::string_view payload) {
    if (payload.empty()) return;  // an empty chunk would end the body
    fmt::format_to(std::back_inserter(out), "{:x}\r\n", payload.size());
    out += payload;
    out += "\r\n";
}

}  // namespace egressgate::http
