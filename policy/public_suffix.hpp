#pragma once
// Host patterns that would allow too much: a wildcard over a public suffix ("*.com", "*.co.uk")
// lets VMs reach every domain anyone can register there. Decided with the Public Suffix List
// through libpsl, never a hand-kept list.
#include <optional>
#include <string>
#include <string_view>

#include "policy/host.hpp"

namespace egressgate::policy {

// True if the normalised name (normalize_host's output) is a public suffix per the ICANN section
// of the Public Suffix List, including the list's default rule that an unlisted top-level label
// is a suffix of its own ("example", "internal"). False for names only the PRIVATE section lists
// ("github.io", "cloudapp.net"). True as well when no list could be loaded: the check fails
// closed.
bool is_public_suffix(std::string_view normalized_name);

// Why the pattern is too wide, or nullopt if it is not:
// - "*.S" where S is a public suffix: every registrable domain under S would be allowed;
// - an exact pattern that is itself a public suffix ("com"): it names a registry, not a host.
// Other exact patterns are never a problem, whatever domain they are in. The message names the
// pattern and the suffix, for a config error: `"*.co.uk" would allow every domain registered
// under "co.uk", a public suffix (ICANN section of the Public Suffix List)`. Should no list load
// at all, every wildcard is refused: unknown policy denies.
// Thread-safe: the list is loaded once, on first use, and only read after that.
std::optional<std::string> public_suffix_problem(const HostPattern& pattern);

}  // namespace egressgate::policy
