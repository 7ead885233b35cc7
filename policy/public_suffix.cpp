#include "policy/public_suffix.hpp"

#include <libpsl.h>

namespace egressgate::policy {
namespace {

// Debian's publicsuffix package installs the list here, compiled to libpsl's DAFSA format; it is
// also the PSL_DISTFILE Debian's libpsl is built with. Named explicitly so that a libpsl built
// without a dist file still finds it.
constexpr const char* kSystemList = "/usr/share/publicsuffix/public_suffix_list.dafsa";

// Loaded on first use; C++ guarantees one initialisation even when sessions race to it. Never
// freed: worker threads may still be checking patterns while static destructors run at exit.
const psl_ctx_t* public_suffix_list() {
    static const psl_ctx_t* const list = [] {
        // The newest of kSystemList, libpsl's dist file and libpsl's built-in copy (compiled in
        // when libpsl was built); the built-in copy when no file loads. nullptr only for a libpsl
        // built without one and no file on disk.
        const psl_ctx_t* latest = psl_latest(kSystemList);
        return latest != nullptr ? latest : psl_builtin();
    }();
    return list;
}

// Decided with the ICANN section only. The PRIVATE section is where operators list their own
// namespaces whose subdomains belong to different customers, for browsers to keep those
// customers' cookies apart: github.io, cloudapp.net, azurewebsites.net, and, as Microsoft submits
// them, more of its service domains. That is a different question from ours. A wildcard under a
// private suffix stays inside one operator's DNS zone, which is exactly what the built-in
// catalogs do ("*.blob.core.windows.net": every tenant's storage account, on purpose), and a list
// update that moved such a zone into the PRIVATE section must not turn a working config into an
// error. Narrowing to one's own tenants is the job of exact names and service tags.
//
// The list's default rule stays on (no PSL_TYPE_NO_STAR_RULE): a top-level label the list does
// not know counts as a public suffix, so "*.internal" and a TLD delegated after the system's
// copy of the list was made are refused rather than allowed. Names below such a label
// ("*.pkg.contoso.example") are unaffected.
constexpr int kSuffixTypes = PSL_TYPE_ICANN;

}  // namespace

bool is_public_suffix(std::string_view normalized_name) {
    const psl_ctx_t* list = public_suffix_list();
    if (list == nullptr) return true;
    const std::string name(normalized_name);  // libpsl wants a NUL-terminated, lower-case name
    return psl_is_public_suffix2(list, name.c_str(), kSuffixTypes) != 0;
}

std::optional<std::string> public_suffix_problem(const HostPattern& pattern) {
    const std::string text = pattern.to_string();
    const std::string& suffix = pattern.suffix();
    if (public_suffix_list() == nullptr) {
        // An exact name allows one host, whatever it is; only a wildcard needs the list.
        if (!pattern.is_wildcard()) return std::nullopt;
        return "\"" + text + "\" cannot be checked: no Public Suffix List could be loaded (" +
               kSystemList + " or libpsl's built-in list)";
    }
    if (!is_public_suffix(suffix)) return std::nullopt;
    if (pattern.is_wildcard()) {
        return "\"" + text + "\" would allow every domain registered under \"" + suffix +
               "\", a public suffix (ICANN section of the Public Suffix List)";
    }
    return "\"" + text +
           "\" is a public suffix (ICANN section of the Public Suffix List), not a host name";
}

}  // namespace egressgate::policy
