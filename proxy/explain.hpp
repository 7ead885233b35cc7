#pragma once
// `egressgate explain`: the proxy's decision for one client and target, step by step, without
// opening a connection to the target.
#include <iosfwd>
#include <optional>
#include <string>

namespace egressgate::proxy {

struct ExplainRequest {
    std::string config_path;
    std::string client;  // an IP address (checked by the command line)
    std::string target;  // HOST:PORT, as in a CONNECT request
    bool resolve = false;  // resolve a name as the proxy would ([dns.hosts], then [dns] servers)
    std::optional<std::string> sni;  // the ClientHello's server name, for [egress] sni
};

// The exit status of `egressgate explain`.
inline constexpr int kExplainAllowed = 0;  // allow, or report (let through and audited)
inline constexpr int kExplainDenied = 1;
inline constexpr int kExplainError = 2;  // a usage or config error

// Prints each step to `out` and ends with "verdict: VERDICT (REASON, RULE)"; errors go to `err`.
int run_explain(const ExplainRequest& request, std::ostream& out, std::ostream& err);

}  // namespace egressgate::proxy
