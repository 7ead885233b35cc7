#include "policy/catalog.hpp"

#include <algorithm>
#include <array>
#include <cstdio>

namespace egressgate::policy {
namespace {

using namespace std::string_view_literals;

// ---------------------------------------------------------------------------------------------
// Sources. Every pattern below cites the documents that list it, by these tags. A document that
// lists a wildcard ("*.blob.core.windows.net") or a name below one ("pod01-rec2.<geo>.backup.
// windowsazure.com") is cited for the wildcard; no pattern here is inferred from a name's shape.
// ---------------------------------------------------------------------------------------------

// [sql] Azure Backup for SQL Server in VMs: *.backup.windowsazure.com; *.blob.core.windows.net,
// *.queue.core.windows.net, *.blob.storage.azure.net; Entra ID: *.login.microsoft.com (older
// revisions: *.australiacentral.r.login.microsoft.com) and "sections 56 and 59" of the
// Microsoft 365 endpoint list. The HTTP proxy section routes the extension's traffic to these.
constexpr CatalogSource kSqlBackup{
    "Back up SQL Server databases in Azure VMs: establish network connectivity"sv,
    "https://learn.microsoft.com/azure/backup/backup-sql-server-database-azure-vms#establish-network-connectivity"sv};

// [hana] Azure Backup for SAP HANA in VMs: *.backup.windowsazure.com; *.blob.core.windows.net,
// *.queue.core.windows.net; Entra ID: sections 56 and 59.
constexpr CatalogSource kHanaBackup{
    "Back up SAP HANA databases in Azure VMs: establish network connectivity"sv,
    "https://learn.microsoft.com/azure/backup/backup-azure-sap-hana-database#establish-network-connectivity"sv};

// [pe-overview] Workload extensions (SQL, SAP HANA) and the MARS agent, vault without private
// endpoints: *.backup.windowsazure.com; *.blob.core.windows.net, *.queue.core.windows.net,
// *.blob.storage.azure.net, *.storage.azure.net; Entra ID as in [sql].
constexpr CatalogSource kBackupPrivateEndpointsOverview{
    "Overview of private endpoints for Azure Backup: difference in network connections"sv,
    "https://learn.microsoft.com/azure/backup/private-endpoints-overview#difference-in-network-connections-due-to-private-endpoints"sv};

// [pe-proxy] The proxy-server table spells out the Entra ID names of sections 56 and 59,
// among them login.microsoftonline.com, login.microsoft.com, login.windows.net and
// *.microsoftonline.com, next to the Backup and Storage names of [sql].
constexpr CatalogSource kBackupPrivateEndpointsProxy{
    "Create and use private endpoints for Azure Backup: set up a proxy server"sv,
    "https://learn.microsoft.com/azure/backup/private-endpoints#set-up-proxy-server-for-recovery-services-vault-with-private-endpoint"sv};

// [mars] MARS agent (files and folders from Azure VMs): *.microsoft.com, *.windowsazure.com,
// *.microsoftonline.com, *.windows.net, *.blob.core.windows.net, *.queue.core.windows.net,
// *.blob.storage.azure.net; US Government: *.windowsazure.us, *.microsoftonline.us,
// *.usgovcloudapi.net. (*.microsoft.com and *.windows.net are not taken into any catalog: they
// cover most of Microsoft; an admin who runs MARS adds them to [egress] hosts knowingly.)
constexpr CatalogSource kMarsAgent{
    "Support matrix for the MARS agent: networking and access support"sv,
    "https://learn.microsoft.com/azure/backup/backup-support-matrix-mars-agent#networking-and-access-support"sv};

// [file-recovery] The file-recovery script of Azure VM backup reaches
// pod01-rec2.<geo>.backup.windowsazure.com (public), .backup.windowsazure.us (US Government) and
// .backup.windowsazure.cn (21Vianet).
constexpr CatalogSource kVmFileRecovery{
    "Recover files from Azure virtual machine backup: network access of the script"sv,
    "https://learn.microsoft.com/azure/backup/backup-azure-restore-files-from-vm"sv};

// [dns-zones] Public DNS zones of Private Link resources per cloud: Azure Backup
// {regionCode}.backup.windowsazure.us (US Government) and {region}.backup.windowsazure.cn (China).
constexpr CatalogSource kPrivateLinkDnsZones{
    "Azure Private Endpoint private DNS zone values"sv,
    "https://learn.microsoft.com/azure/private-link/private-endpoint-dns"sv};

// [gov] Endpoint table: Azure Backup backup.windowsazure.us, Blob blob.core.usgovcloudapi.net,
// Queue queue.core.usgovcloudapi.net, Microsoft Entra ID login.microsoftonline.us.
constexpr CatalogSource kGovEndpoints{
    "Compare Azure Government and global Azure: guidance for developers"sv,
    "https://learn.microsoft.com/azure/azure-government/compare-azure-government-global-azure#guidance-for-developers"sv};

// [china] Endpoint mapping: Storage *.blob.core.chinacloudapi.cn, *.queue.core.chinacloudapi.cn,
// *.table.core.chinacloudapi.cn; Entra ID sign-in login.chinacloudapi.cn.
constexpr CatalogSource kChinaEndpoints{
    "Azure in China developer guide: check endpoints in Azure"sv,
    "https://learn.microsoft.com/azure/china/resources-developer-guide#check-endpoints-in-azure"sv};

// [entra-clouds] Token endpoints per cloud: login.microsoftonline.com (global),
// login.microsoftonline.us (US Government), login.partner.microsoftonline.cn (21Vianet).
constexpr CatalogSource kEntraNationalClouds{
    "Microsoft Entra authentication and national clouds"sv,
    "https://learn.microsoft.com/entra/identity-platform/authentication-national-cloud"sv};

// [entra-linux] Entra ID login to Linux VMs (AADSSHLoginForLinux): login.microsoftonline.com for
// PAM authentication and pas.windows.net for Azure RBAC (US Government: login.microsoftonline.us;
// 21Vianet: login.chinacloudapi.cn). It also lists packages.microsoft.com, which is a package
// repository rather than a sign-in endpoint: not in a catalog, an admin's choice.
constexpr CatalogSource kEntraLinuxLogin{
    "Log in to a Linux virtual machine in Azure by using Microsoft Entra ID and OpenSSH: network"sv,
    "https://learn.microsoft.com/entra/identity/devices/howto-vm-sign-in-azure-ad-linux#network"sv};

// [storage] Standard endpoints <account>.{blob,web,dfs,file,queue,table}.core.windows.net and
// Azure DNS zone endpoints <account>.z[00-50].{blob,web,dfs,file,queue,table}.storage.azure.net.
constexpr CatalogSource kStorageEndpoints{
    "Storage account overview: storage account endpoints"sv,
    "https://learn.microsoft.com/azure/storage/common/storage-account-overview#storage-account-endpoints"sv};

// [vm-extensions] "Extension packages are downloaded from the Azure Storage extension repository.
// Extension status uploads are posted to Azure Storage." Agents that use the HostGAPlugin reach
// both through 168.63.129.16 instead, which the proxy never does (DESIGN.md, Destinations).
constexpr CatalogSource kVmExtensionsLinux{
    "Virtual machine extensions and features for Linux: network access"sv,
    "https://learn.microsoft.com/azure/virtual-machines/extensions/features-linux#network-access"sv};

// [walinuxagent] The goal state the agent parses: extension manifest locations and failover
// locations (https://zrdfepirv2cbn04prdstr01a.blob.core.windows.net/..., https://umsa...
// .blob.core.windows.net/...) and the statusUploadBlob SAS URL (https://dcrcl3a0xs.blob.core.
// windows.net/$system/...status).
constexpr CatalogSource kWaLinuxAgentGoalState{
    "WALinuxAgent: extension goal state (manifest locations, statusUploadBlob)"sv,
    "https://github.com/Azure/WALinuxAgent/blob/master/azurelinuxagent/common/protocol/extensions_goal_state_from_vm_settings.py"sv};

// ---------------------------------------------------------------------------------------------
// Catalogs.
// ---------------------------------------------------------------------------------------------

// Azure Backup, public cloud: the VM backup and file recovery paths, the SQL/SAP HANA workload
// extensions and the MARS agent, with the storage and sign-in names they share.
constexpr std::array kAzureBackup = {
    "*.backup.windowsazure.com"sv,  // [sql] [hana] [pe-overview] [file-recovery]
    "*.blob.core.windows.net"sv,    // [sql] [hana] [pe-overview] [mars]
    "*.queue.core.windows.net"sv,   // [sql] [hana] [pe-overview] [mars]
    "*.blob.storage.azure.net"sv,   // [sql] [pe-overview] [mars]
    "*.storage.azure.net"sv,        // [pe-overview]
    "login.microsoftonline.com"sv,  // [pe-proxy] (section 56) [entra-clouds]
    "*.login.microsoft.com"sv,      // [sql]
    "*.microsoftonline.com"sv,      // [pe-proxy] (section 59) [mars]
    "*.windowsazure.com"sv,         // [mars]
};
constexpr std::array kAzureBackupSources = {
    kSqlBackup, kHanaBackup, kBackupPrivateEndpointsOverview, kBackupPrivateEndpointsProxy,
    kMarsAgent, kVmFileRecovery, kEntraNationalClouds,
};

// Azure Government (US).
constexpr std::array kAzureBackupUsGov = {
    "*.backup.windowsazure.us"sv,       // [gov] [file-recovery] [dns-zones]
    "*.blob.core.usgovcloudapi.net"sv,  // [gov]
    "*.usgovcloudapi.net"sv,            // [mars] (US Government list; covers queue.core too)
    "*.microsoftonline.us"sv,           // [mars] (US Government list)
    "*.windowsazure.us"sv,              // [mars] (US Government list)
    "login.microsoftonline.us"sv,       // [gov] [entra-clouds] [entra-linux]
};
constexpr std::array kAzureBackupUsGovSources = {
    kGovEndpoints, kMarsAgent, kVmFileRecovery, kPrivateLinkDnsZones, kEntraNationalClouds,
    kEntraLinuxLogin,
};

// Azure operated by 21Vianet (China).
constexpr std::array kAzureBackupChina = {
    "*.backup.windowsazure.cn"sv,          // [file-recovery] [dns-zones]
    "*.blob.core.chinacloudapi.cn"sv,      // [china]
    "*.queue.core.chinacloudapi.cn"sv,     // [china]
    "login.chinacloudapi.cn"sv,            // [china] [entra-linux]
    "login.partner.microsoftonline.cn"sv,  // [entra-clouds]: the token endpoint named today
};
constexpr std::array kAzureBackupChinaSources = {
    kVmFileRecovery, kPrivateLinkDnsZones, kChinaEndpoints, kEntraLinuxLogin, kEntraNationalClouds,
};

// Azure Storage accounts, public cloud: every service, standard and Azure DNS zone endpoints.
// The wildcards cover every tenant's account; narrowing to one's own accounts is what exact
// names or service tags are for.
constexpr std::array kAzureStorage = {
    "*.blob.core.windows.net"sv,    // [storage]
    "*.web.core.windows.net"sv,     // [storage] static website
    "*.dfs.core.windows.net"sv,     // [storage] Data Lake Storage
    "*.file.core.windows.net"sv,    // [storage]
    "*.queue.core.windows.net"sv,   // [storage]
    "*.table.core.windows.net"sv,   // [storage]
    "*.blob.storage.azure.net"sv,   // [storage] <account>.z[00-50].blob.storage.azure.net
    "*.web.storage.azure.net"sv,    // [storage]
    "*.dfs.storage.azure.net"sv,    // [storage]
    "*.file.storage.azure.net"sv,   // [storage]
    "*.queue.storage.azure.net"sv,  // [storage]
    "*.table.storage.azure.net"sv,  // [storage]
};
constexpr std::array kAzureStorageSources = {kStorageEndpoints};

// Microsoft Entra ID sign-in (token) endpoints, public cloud. Sections 56 and 59 also list
// directory, password-reset and sign-in-page CDN names (graph.microsoft.com,
// passwordreset.microsoftonline.com, *.msauth.net, ...): those serve people in browsers and
// administrators, not an agent asking for a token, so they are left to [egress] hosts.
constexpr std::array kAzureAdLogin = {
    "login.microsoftonline.com"sv,  // [pe-proxy] (section 56) [entra-clouds] [entra-linux]
    "login.microsoft.com"sv,        // [pe-proxy] (section 56)
    "*.login.microsoft.com"sv,      // [sql] regional <region>.r.login.microsoft.com
    "login.windows.net"sv,          // [pe-proxy] (section 56)
    "pas.windows.net"sv,            // [entra-linux] Azure RBAC for Entra ID login to Linux VMs
};
constexpr std::array kAzureAdLoginSources = {
    kBackupPrivateEndpointsProxy, kSqlBackup, kEntraNationalClouds, kEntraLinuxLogin,
};

// The Azure VM agent (WALinuxAgent) and the extensions it runs: manifests and packages come from
// Azure Storage blobs, status goes to a blob SAS URL. Every name in [walinuxagent] is a blob
// endpoint; no narrower documented suffix exists (zrdfepirv2*, umsa*, per-VM status accounts).
constexpr std::array kAzureAgent = {
    "*.blob.core.windows.net"sv,  // [vm-extensions] [walinuxagent]
};
constexpr std::array kAzureAgentSources = {kVmExtensionsLinux, kWaLinuxAgentGoalState};

// Azure Backup for SQL Server and SAP HANA running in Azure VMs (the AzureBackupWindowsWorkload
// and HANA backup extensions), public cloud: the Backup service, the communication and backup
// storage accounts, and Entra ID sign-in. Only the sign-in names of sections 56 and 59 are here,
// for the reason given at kAzureAdLogin: "The backup extension also uses Azure AD for
// authentication" ([sql], [hana]).
constexpr std::array kAzureWorkloadBackup = {
    "*.backup.windowsazure.com"sv,  // [sql] [hana] [pe-overview]
    "*.blob.core.windows.net"sv,    // [sql] [hana] [pe-overview]
    "*.queue.core.windows.net"sv,   // [sql] [hana] [pe-overview]
    "*.blob.storage.azure.net"sv,   // [sql] [pe-overview]
    "*.storage.azure.net"sv,        // [pe-overview]
    "*.login.microsoft.com"sv,      // [sql]
    "login.microsoftonline.com"sv,  // [pe-proxy] (section 56)
    "login.microsoft.com"sv,        // [pe-proxy] (section 56)
    "login.windows.net"sv,          // [pe-proxy] (section 56)
    "*.microsoftonline.com"sv,      // [pe-proxy] (section 59)
};
constexpr std::array kAzureWorkloadBackupSources = {
    kSqlBackup, kHanaBackup, kBackupPrivateEndpointsOverview, kBackupPrivateEndpointsProxy,
};

constexpr std::array kCatalogs = {
    Catalog{"azure-backup"sv,
            "Azure Backup, public cloud: VM backup, SQL/SAP HANA workload and MARS agents, with their storage and sign-in names"sv,
            kAzureBackup, kAzureBackupSources},
    Catalog{"azure-backup-usgov"sv,
            "Azure Backup in Azure Government (US): backup service, storage and sign-in names"sv,
            kAzureBackupUsGov, kAzureBackupUsGovSources},
    Catalog{"azure-backup-china"sv,
            "Azure Backup in Azure operated by 21Vianet (China): backup service, storage and sign-in names"sv,
            kAzureBackupChina, kAzureBackupChinaSources},
    Catalog{"azure-storage"sv,
            "Azure Storage accounts, public cloud: blob, static web, Data Lake, file, queue and table endpoints"sv,
            kAzureStorage, kAzureStorageSources},
    Catalog{"azure-ad-login"sv,
            "Microsoft Entra ID (Azure AD) sign-in endpoints, public cloud: tokens for agents and Entra login to Linux VMs"sv,
            kAzureAdLogin, kAzureAdLoginSources},
    Catalog{"azure-agent"sv,
            "Azure VM agent (WALinuxAgent): extension downloads and status uploads, Azure Storage blobs, public cloud"sv,
            kAzureAgent, kAzureAgentSources},
    Catalog{"azure-workload-backup"sv,
            "Azure Backup for SQL Server and SAP HANA in Azure VMs, public cloud: backup service, storage and sign-in names"sv,
            kAzureWorkloadBackup, kAzureWorkloadBackupSources},
};

constexpr auto kCatalogNames = [] {
    std::array<std::string_view, kCatalogs.size()> names{};
    for (std::size_t i = 0; i < kCatalogs.size(); ++i) names[i] = kCatalogs[i].name;
    return names;
}();

// Width of the name column in the listing of all catalogs.
constexpr std::size_t kNameColumn = [] {
    std::size_t width = 0;
    for (const Catalog& c : kCatalogs) width = std::max(width, c.name.size());
    return width + 2;
}();

// A name from the command line, shown back without control bytes or non-ASCII.
std::string printable(std::string_view text) {
    std::string out;
    for (const char c : text) {
        const auto byte = static_cast<unsigned char>(c);
        if (byte >= 0x20 && byte < 0x7f && c != '"' && c != '\\') {
            out += c;
            continue;
        }
        char escaped[5];
        std::snprintf(escaped, sizeof escaped, "\\x%02x", byte);
        out += escaped;
    }
    return out;
}

std::string list_all() {
    std::string out = "Built-in catalogs (`egressgate catalogs NAME` shows one's patterns and sources):\n";
    for (const Catalog& c : kCatalogs) {
        out += "  ";
        out += c.name;
        out.append(kNameColumn - c.name.size(), ' ');
        out += c.description;
        out += '\n';
    }
    return out;
}

std::string list_one(const Catalog& c) {
    std::string out;
    out += c.name;
    out += ": ";
    out += c.description;
    out += "\n\nPatterns:\n";
    for (std::string_view pattern : c.patterns) {
        out += "  ";
        out += pattern;
        out += '\n';
    }
    out += "\nSources:\n";
    for (const CatalogSource& source : c.sources) {
        out += "  ";
        out += source.title;
        out += "\n    ";
        out += source.url;
        out += '\n';
    }
    return out;
}

}  // namespace

std::span<const Catalog> catalogs() { return kCatalogs; }

const Catalog* find_catalog(std::string_view name) {
    const auto it = std::find_if(kCatalogs.begin(), kCatalogs.end(),
                                 [name](const Catalog& c) { return c.name == name; });
    return it == kCatalogs.end() ? nullptr : &*it;
}

std::optional<std::span<const std::string_view>> catalog_patterns(std::string_view name) {
    if (const Catalog* c = find_catalog(name)) return c->patterns;
    return std::nullopt;
}

std::span<const std::string_view> catalog_names() { return kCatalogNames; }

std::string catalog_choices() {
    std::string choices;
    for (std::string_view name : kCatalogNames) {
        if (!choices.empty()) choices += ", ";
        choices += name;
    }
    return choices;
}

std::string catalog_listing(std::optional<std::string_view> name) {
    if (!name) return list_all();
    if (const Catalog* c = find_catalog(*name)) return list_one(*c);
    return "unknown catalog \"" + printable(*name) + "\"; choices: " + catalog_choices() + "\n";
}

}  // namespace egressgate::policy
