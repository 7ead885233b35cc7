#include "policy/authority.hpp"

#include <algorithm>
#include <charconv>

namespace egressgate::policy {
namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// ":443" after the host, or nothing.
AuthorityParse with_port(std::string_view host, std::string_view rest, bool bracketed) {
    if (rest.empty()) return {Authority{host, std::nullopt, bracketed}, AuthorityProblem::none};
    if (rest.front() != ':') return {std::nullopt, AuthorityProblem::junk_after_bracket};
    const auto port = parse_port(rest.substr(1));
    if (!port) return {std::nullopt, AuthorityProblem::bad_port};
    return {Authority{host, port, bracketed}, AuthorityProblem::none};
}

}  // namespace

std::optional<std::uint16_t> parse_port(std::string_view digits) {
    if (digits.empty() || digits.size() > kMaxPortDigits) return std::nullopt;
    if (!std::all_of(digits.begin(), digits.end(), is_digit)) return std::nullopt;
    if (digits.size() > 1 && digits.front() == '0') return std::nullopt;
    unsigned value = 0;
    std::from_chars(digits.data(), digits.data() + digits.size(), value);
    if (value > kMaxPort) return std::nullopt;
    return static_cast<std::uint16_t>(value);
}

AuthorityParse split_authority(std::string_view text) {
    if (text.find('@') != std::string_view::npos) return {std::nullopt, AuthorityProblem::userinfo};
    if (text.starts_with('[')) {
        const auto close = text.find(']');
        if (close == std::string_view::npos) return {std::nullopt, AuthorityProblem::missing_close_bracket};
        return with_port(text.substr(1, close - 1), text.substr(close + 1), true);
    }
    const auto colon = text.find(':');
    if (colon == std::string_view::npos) return {Authority{text, std::nullopt, false}, AuthorityProblem::none};
    if (text.find(':', colon + 1) != std::string_view::npos) return {std::nullopt, AuthorityProblem::unbracketed_ipv6};
    return with_port(text.substr(0, colon), text.substr(colon), false);
}

std::string_view describe(AuthorityProblem problem) {
    switch (problem) {
    case AuthorityProblem::none: return "";
    case AuthorityProblem::missing_close_bracket: return "no ']' after the IPv6 address";
    case AuthorityProblem::junk_after_bracket: return "expected ':port' after ']'";
    case AuthorityProblem::unbracketed_ipv6: return "IPv6 addresses need brackets: \"[::1]:port\"";
    case AuthorityProblem::bad_port: return "port must be a number from 0 to 65535, without leading zeros";
    case AuthorityProblem::userinfo: return "no '@' (user info) in an address";
    }
    return "not an address";
}

}  // namespace egressgate::policy
