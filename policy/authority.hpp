#pragma once
// The one parser of authorities, "host:port", "[v6]:port", "host" and "[v6]": used for CONNECT
// and absolute-form targets (policy::parse_authority) and for the addresses in the config
// (listen, dns.servers, admin.listen), so that brackets, ports and colons mean the same
// everywhere. Pure: text in, pieces out.
#include <cstdint>
#include <optional>
#include <string_view>

namespace egressgate::policy {

// Named limits: a port is 1..5 decimal digits, at most 65535.
inline constexpr std::size_t kMaxPortDigits = 5;
inline constexpr unsigned kMaxPort = 65535;

// Why a text is not an authority (the shape only; what the host is, is the caller's business).
enum class AuthorityProblem {
    none,
    missing_close_bracket,   // "[::1" or "[::1:443"
    junk_after_bracket,      // "[::1]x" or "[::1]443"
    unbracketed_ipv6,        // "::1:443": where the port starts is ambiguous
    bad_port,                // not 1..5 digits, a leading zero, or over 65535
    userinfo,                // any '@': "user@host", "host:443@evil" read differently elsewhere
};

struct Authority {
    std::string_view host;               // without brackets
    std::optional<std::uint16_t> port;   // absent when the text names none; 0 only if written "0"
    bool bracketed = false;              // the host was written "[...]"
};

struct AuthorityParse {
    std::optional<Authority> authority;  // set exactly when problem is none
    AuthorityProblem problem = AuthorityProblem::none;
};

AuthorityParse split_authority(std::string_view text);

// Decimal digits only, no sign, no leading zero (except "0" itself), at most 65535.
std::optional<std::uint16_t> parse_port(std::string_view digits);

// A message for an admin, e.g. "IPv6 addresses need brackets: \"[::1]:port\"".
std::string_view describe(AuthorityProblem problem);

}  // namespace egressgate::policy
