#pragma once
// Policy decisions as values: a verdict, a fixed reason string, and the rule that decided.
// The same reason strings appear in HTTP responses, audit lines and tests.
#include <memory>
#include <ostream>
#include <string>
#include <string_view>
#include <type_traits>

namespace egressgate::policy {

enum class Verdict {
    allow,
    deny,
    report,  // would be denied; allowed because [egress] mode = "report"
};

std::string_view to_string(Verdict v);  // "allow", "deny", "report"

namespace reason {
inline constexpr std::string_view host_allowed = "host_allowed";
inline constexpr std::string_view address_allowed = "address_allowed";
inline constexpr std::string_view invalid_host = "invalid_host";
inline constexpr std::string_view host_not_allowed = "host_not_allowed";
inline constexpr std::string_view port_not_allowed = "port_not_allowed";
inline constexpr std::string_view ip_literal_not_allowed = "ip_literal_not_allowed";
inline constexpr std::string_view destination_address_denied = "destination_address_denied";
inline constexpr std::string_view client_denied = "client_denied";
inline constexpr std::string_view host_denied = "host_denied";  // [egress] deny_hosts
inline constexpr std::string_view denied_by_rule = "denied_by_rule";  // an [[egress.rule]] with action = "deny"
inline constexpr std::string_view address_outside_service_tags = "address_outside_service_tags";
// Tunnel inspection ([egress] sni).
inline constexpr std::string_view sni_match = "sni_match";
inline constexpr std::string_view sni_allowed = "sni_allowed";
inline constexpr std::string_view sni_mismatch = "sni_mismatch";
inline constexpr std::string_view sni_missing = "sni_missing";
inline constexpr std::string_view sni_not_allowed = "sni_not_allowed";
inline constexpr std::string_view not_tls = "not_tls";
inline constexpr std::string_view tls_malformed = "tls_malformed";
}  // namespace reason

class PrefixSet;

// The rule that decided, as audit lines and refusals name it. Most such texts are fixed or the
// policy's own, made when it was built: a decision then holds a view of them (valid while that
// policy is, as a session's config is) and costs no allocation. Those made per request (SNI
// checks, a deny_hosts or service tag match, an [[egress.rule]] with what it matched) are held
// here.
class RuleText {
public:
    RuleText() = default;
    RuleText(std::string text) : owned_(std::move(text)) {}  // NOLINT: implicit, as std::string's
    // Text that outlives the decision: a constant, or the deciding policy's.
    static RuleText fixed(std::string_view text) {
        RuleText rule;
        rule.fixed_ = text;
        return rule;
    }
    // Not a temporary string: its text would not outlive the call.
    template <typename T>
        requires std::is_same_v<T, std::string>
    static RuleText fixed(T&&) = delete;

    std::string_view view() const { return owned_.empty() ? fixed_ : std::string_view(owned_); }
    bool empty() const { return view().empty(); }
    friend bool operator==(const RuleText& rule, std::string_view text) { return rule.view() == text; }
    friend std::ostream& operator<<(std::ostream& out, const RuleText& rule) { return out << rule.view(); }

private:
    std::string owned_;
    std::string_view fixed_;
};

struct Decision {
    Verdict verdict = Verdict::deny;
    std::string_view reason;  // one of policy::reason
    RuleText rule;            // what decided: "catalog:azure-backup *.blob.core.windows.net", "imds", ...
    // The rule's name alone, for /metrics (a bounded set): an [[egress.rule]] name,
    // "egress.deny_hosts", "egress.hosts", "egress.service_tags", "egress.ports", ... Fixed
    // text or the deciding policy's: valid while that policy is, as a session's config is.
    std::string_view rule_name;
    // The addresses the destination must resolve into (service tags), when the rule says so.
    std::shared_ptr<const PrefixSet> within;
    std::string within_rule;  // where that requirement came from, for the address's decision
    std::string_view within_name;  // its rule name alone, for /metrics (as rule_name)
    // Decided in report mode (the deciding rule's, or [egress] mode): an address outside
    // `within` is then reported, not refused. The address deny list is enforced regardless.
    bool on_trial = false;

    bool permits() const { return verdict != Verdict::deny; }
};

}  // namespace egressgate::policy
