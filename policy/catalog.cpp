#include "policy/catalog.hpp"

#include <array>

namespace egressgate::policy {
namespace {

using namespace std::string_view_literals;

// Azure Backup and Azure Storage endpoints, public cloud.
constexpr std::array kAzureBackup = {
    "*.backup.windowsazure.com"sv,
    "*.blob.core.windows.net"sv,
    "*.queue.core.windows.net"sv,
    "*.blob.storage.azure.net"sv,
    "*.storage.azure.net"sv,
    "login.microsoftonline.com"sv,
    "*.login.microsoft.com"sv,
    "*.microsoftonline.com"sv,
    "*.windowsazure.com"sv,
};

// Azure US Government.
constexpr std::array kAzureBackupUsGov = {
    "*.backup.windowsazure.us"sv,
    "*.blob.core.usgovcloudapi.net"sv,
    "*.usgovcloudapi.net"sv,
    "*.microsoftonline.us"sv,
    "*.windowsazure.us"sv,
    "login.microsoftonline.us"sv,
};

// Azure operated by 21Vianet (China).
constexpr std::array kAzureBackupChina = {
    "*.backup.windowsazure.cn"sv,
    "*.blob.core.chinacloudapi.cn"sv,
    "*.queue.core.chinacloudapi.cn"sv,
    "login.chinacloudapi.cn"sv,
};

constexpr std::array kCatalogNames = {
    "azure-backup"sv,
    "azure-backup-usgov"sv,
    "azure-backup-china"sv,
};

}  // namespace

std::optional<std::span<const std::string_view>> catalog_patterns(std::string_view name) {
    if (name == kCatalogNames[0]) return std::span<const std::string_view>(kAzureBackup);
    if (name == kCatalogNames[1]) return std::span<const std::string_view>(kAzureBackupUsGov);
    if (name == kCatalogNames[2]) return std::span<const std::string_view>(kAzureBackupChina);
    return std::nullopt;
}

std::span<const std::string_view> catalog_names() { return kCatalogNames; }

}  // namespace egressgate::policy
