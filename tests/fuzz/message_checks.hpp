#pragma once
// What a head reported by MessageParser promises the rest of the proxy, checked by the fuzz
// targets that parse HTTP: the session, the policy and the forwarding rules all rely on it.
#include <cstring>
#include <string_view>

#include "fuzz_check.hpp"
#include "http/message.hpp"

namespace egressgate::fuzz {

// RFC 9110 5.6.2 tchar.
inline bool is_token(std::string_view text) {
    if (text.empty()) return false;
    for (const unsigned char c : text) {
        const bool alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        if (!alnum && (c == 0 || std::strchr("!#$%&'*+-.^_`|~", c) == nullptr)) return false;
    }
    return true;
}

inline void check_head(const http::MessageHead& head, http::MessageKind kind) {
    if (kind == http::MessageKind::request) {
        FUZZ_REQUIRE(!head.method.empty() && !head.target.empty());
        for (const unsigned char c : head.target) FUZZ_REQUIRE(c >= 0x21 && c <= 0x7e);
    } else {
        FUZZ_REQUIRE(head.status >= 100 && head.status <= 999);
    }
    FUZZ_REQUIRE(head.headers.size() <= http::kMaxHeaderCount);
    for (const auto& [name, value] : head.headers) {
        FUZZ_REQUIRE(is_token(name));
        for (const unsigned char c : value) FUZZ_REQUIRE(c == '\t' || (c >= 0x20 && c != 0x7f));
    }
    FUZZ_REQUIRE(head.framing == http::BodyFraming::content_length ? head.content_length > 0 : head.content_length == 0);
    FUZZ_REQUIRE(!(kind == http::MessageKind::request && head.framing == http::BodyFraming::until_close));
}

}  // namespace egressgate::fuzz
