#pragma once
// Built-in host sets, like Azure Firewall FQDN tags. Each catalog names the Microsoft documents
// its patterns come from (catalog.cpp cites them per entry), so that a reviewer can check every
// pattern against its source and `egressgate catalogs NAME` can show where a name comes from.
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace egressgate::policy {

// Where a catalog's patterns are documented.
struct CatalogSource {
    std::string_view title;  // "Back up SQL Server databases in Azure VMs: network connectivity"
    std::string_view url;    // https://learn.microsoft.com/...
};

// One built-in host set. Patterns are HostPattern text, already normalised (lower case, no
// trailing dot), so that HostPattern::parse(p)->to_string() == p.
struct Catalog {
    std::string_view name;         // "azure-backup"
    std::string_view description;  // one line, for `egressgate catalogs`
    std::span<const std::string_view> patterns;
    std::span<const CatalogSource> sources;
};

// Every catalog, in listing order.
std::span<const Catalog> catalogs();

// The catalog with exactly this name (case-sensitive, as written in the config), or nullptr.
const Catalog* find_catalog(std::string_view name);

// "azure-backup" (public cloud), "azure-backup-usgov", "azure-backup-china", "azure-storage",
// "azure-ad-login", "azure-agent", "azure-workload-backup".
// Returns the patterns of a catalog, or nullopt for an unknown name.
std::optional<std::span<const std::string_view>> catalog_patterns(std::string_view name);

// Every catalog name, in listing order, for error messages that list the choices.
std::span<const std::string_view> catalog_names();

// The names joined by ", ": the choices an unknown-catalog error offers.
std::string catalog_choices();

// The text `egressgate catalogs [NAME]` prints, ending in a newline. Without a name: every
// catalog with its description. With a known name: its description, patterns and sources. With an
// unknown name: `unknown catalog "NAME"; choices: ...` (the name escaped to printable ASCII);
// callers tell that case apart with find_catalog(NAME) == nullptr.
std::string catalog_listing(std::optional<std::string_view> name);

}  // namespace egressgate::policy
