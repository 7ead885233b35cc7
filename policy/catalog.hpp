#pragma once
// Built-in host sets, like Azure Firewall FQDN tags.
#include <optional>
#include <span>
#include <string_view>

namespace egressgate::policy {

// "azure-backup" (public cloud), "azure-backup-usgov", "azure-backup-china".
// Returns the patterns of a catalog, or nullopt for an unknown name.
std::optional<std::span<const std::string_view>> catalog_patterns(std::string_view name);

// Every catalog name, for error messages that list the choices.
std::span<const std::string_view> catalog_names();

}  // namespace egressgate::policy
