// Built-in catalogs: every pattern parses, every name their sources list matches, lookalikes and
// other clouds' names do not, and `egressgate catalogs [NAME]` prints what users read.
#include <catch.hpp>

#include <set>
#include <string>
#include <string_view>

#include "policy/catalog.hpp"
#include "policy/host.hpp"
#include "policy/public_suffix.hpp"

using namespace egressgate::policy;

namespace {

// The catalog as the config expands it: one HostPatternSet, origin "catalog:NAME".
HostPatternSet set_of(std::string_view name) {
    HostPatternSet set;
    const auto patterns = catalog_patterns(name);
    REQUIRE(patterns.has_value());
    for (std::string_view text : *patterns) {
        const auto pattern = HostPattern::parse(text);
        REQUIRE(pattern.has_value());
        set.add(*pattern, "catalog:" + std::string(name));
    }
    return set;
}

}  // namespace

TEST_CASE("every catalog is well formed: patterns parse, normalised, narrower than a public suffix",
          "[policy][catalog]") {
    const auto all = catalogs();
    REQUIRE(all.size() == 7);
    const auto names = catalog_names();
    REQUIRE(names.size() == all.size());
    std::set<std::string_view> seen_names;
    for (std::size_t i = 0; i < all.size(); ++i) {
        const Catalog& c = all[i];
        DYNAMIC_SECTION(c.name) {
            CHECK(names[i] == c.name);
            CHECK(seen_names.insert(c.name).second);
            CHECK(find_catalog(c.name) == &c);
            REQUIRE(catalog_patterns(c.name).has_value());
            CHECK(catalog_patterns(c.name)->data() == c.patterns.data());

            CHECK_FALSE(c.description.empty());
            CHECK(c.description.find('\n') == std::string_view::npos);
            REQUIRE_FALSE(c.patterns.empty());
            REQUIRE_FALSE(c.sources.empty());
            for (const CatalogSource& source : c.sources) {
                INFO(source.url);
                CHECK_FALSE(source.title.empty());
                CHECK(source.url.starts_with("https://"));
            }

            std::set<std::string_view> seen_patterns;
            for (std::string_view text : c.patterns) {
                INFO(text);
                CHECK(seen_patterns.insert(text).second);  // no duplicates
                const auto pattern = HostPattern::parse(text);
                REQUIRE(pattern.has_value());
                CHECK(pattern->to_string() == text);  // already normalised
                CHECK(public_suffix_problem(*pattern) == std::nullopt);
            }
        }
    }
}

TEST_CASE("catalog lookup is exact", "[policy][catalog]") {
    const char* unknown[] = {"azure-backup-mars", "", "Azure-Backup", "azure-backup ", "azure",
                             "catalog:azure-backup"};
    for (const char* name : unknown) {
        INFO(name);
        CHECK(find_catalog(name) == nullptr);
        CHECK_FALSE(catalog_patterns(name).has_value());
    }
    CHECK(catalog_choices() ==
          "azure-backup, azure-backup-usgov, azure-backup-china, azure-storage, azure-ad-login, "
          "azure-agent, azure-workload-backup");
}

TEST_CASE("each name the catalogs' sources list matches, by the most specific pattern",
          "[policy][catalog]") {
    struct Case {
        const char* name;
        std::string_view catalog;
        std::string_view host;
        std::string_view pattern;  // the pattern HostPatternSet reports
    };
    const Case cases[] = {
        // File recovery script: pod01-rec2.<geo>.backup.windowsazure.com.
        {"backup recovery service", "azure-backup", "pod01-rec2.wcus.backup.windowsazure.com", "*.backup.windowsazure.com"},
        // Private endpoint docs' sample DNS entries: communication and backup storage accounts.
        {"backup communication blob", "azure-backup", "abcdeypod01ecs114.blob.core.windows.net", "*.blob.core.windows.net"},
        {"backup communication queue", "azure-backup", "abcdeypod01ecs114.queue.core.windows.net", "*.queue.core.windows.net"},
        {"backup data blob", "azure-backup", "abcdeypod01prot120.blob.core.windows.net", "*.blob.core.windows.net"},
        {"backup dns-zone blob", "azure-backup", "mystorageaccount.z23.blob.storage.azure.net", "*.blob.storage.azure.net"},
        {"backup dns-zone other service", "azure-backup", "mystorageaccount.z23.file.storage.azure.net", "*.storage.azure.net"},
        {"backup entra token", "azure-backup", "login.microsoftonline.com", "login.microsoftonline.com"},
        {"backup entra regional", "azure-backup", "australiacentral.r.login.microsoft.com", "*.login.microsoft.com"},
        {"backup entra section 56", "azure-backup", "device.login.microsoftonline.com", "*.microsoftonline.com"},
        {"backup mars windowsazure", "azure-backup", "account.activedirectory.windowsazure.com", "*.windowsazure.com"},

        {"usgov recovery service", "azure-backup-usgov", "pod01-rec2.ugv.backup.windowsazure.us", "*.backup.windowsazure.us"},
        {"usgov blob", "azure-backup-usgov", "mystorageaccount.blob.core.usgovcloudapi.net", "*.blob.core.usgovcloudapi.net"},
        {"usgov queue", "azure-backup-usgov", "mystorageaccount.queue.core.usgovcloudapi.net", "*.usgovcloudapi.net"},
        {"usgov entra token", "azure-backup-usgov", "login.microsoftonline.us", "login.microsoftonline.us"},
        {"usgov entra other", "azure-backup-usgov", "passwordreset.microsoftonline.us", "*.microsoftonline.us"},

        {"china recovery service", "azure-backup-china", "pod01-rec2.cne2.backup.windowsazure.cn", "*.backup.windowsazure.cn"},
        {"china blob", "azure-backup-china", "mystorageaccount.blob.core.chinacloudapi.cn", "*.blob.core.chinacloudapi.cn"},
        {"china queue", "azure-backup-china", "mystorageaccount.queue.core.chinacloudapi.cn", "*.queue.core.chinacloudapi.cn"},
        {"china entra login", "azure-backup-china", "login.chinacloudapi.cn", "login.chinacloudapi.cn"},
        {"china entra token", "azure-backup-china", "login.partner.microsoftonline.cn", "login.partner.microsoftonline.cn"},

        {"storage blob", "azure-storage", "mystorageaccount.blob.core.windows.net", "*.blob.core.windows.net"},
        {"storage web", "azure-storage", "mystorageaccount.web.core.windows.net", "*.web.core.windows.net"},
        {"storage web zone", "azure-storage", "mystorageaccount.z22.web.core.windows.net", "*.web.core.windows.net"},
        {"storage dfs", "azure-storage", "mystorageaccount.dfs.core.windows.net", "*.dfs.core.windows.net"},
        {"storage file", "azure-storage", "mystorageaccount.file.core.windows.net", "*.file.core.windows.net"},
        {"storage queue", "azure-storage", "mystorageaccount.queue.core.windows.net", "*.queue.core.windows.net"},
        {"storage table", "azure-storage", "mystorageaccount.table.core.windows.net", "*.table.core.windows.net"},
        {"storage blob z00", "azure-storage", "mystorageaccount.z00.blob.storage.azure.net", "*.blob.storage.azure.net"},
        {"storage web z50", "azure-storage", "mystorageaccount.z50.web.storage.azure.net", "*.web.storage.azure.net"},
        {"storage dfs zone", "azure-storage", "mystorageaccount.z01.dfs.storage.azure.net", "*.dfs.storage.azure.net"},
        {"storage file zone", "azure-storage", "mystorageaccount.z02.file.storage.azure.net", "*.file.storage.azure.net"},
        {"storage queue zone", "azure-storage", "mystorageaccount.z03.queue.storage.azure.net", "*.queue.storage.azure.net"},
        {"storage table zone", "azure-storage", "mystorageaccount.z04.table.storage.azure.net", "*.table.storage.azure.net"},

        {"entra token", "azure-ad-login", "login.microsoftonline.com", "login.microsoftonline.com"},
        {"entra login.microsoft.com", "azure-ad-login", "login.microsoft.com", "login.microsoft.com"},
        {"entra regional", "azure-ad-login", "australiacentral.r.login.microsoft.com", "*.login.microsoft.com"},
        {"entra login.windows.net", "azure-ad-login", "login.windows.net", "login.windows.net"},
        {"entra linux rbac", "azure-ad-login", "pas.windows.net", "pas.windows.net"},

        // WALinuxAgent goal state: manifest locations, failover locations, status upload blob.
        {"agent manifest", "azure-agent", "zrdfepirv2cbn04prdstr01a.blob.core.windows.net", "*.blob.core.windows.net"},
        {"agent failover manifest", "azure-agent", "ardfepirv2cdm03prdstr01a.blob.core.windows.net", "*.blob.core.windows.net"},
        {"agent extension package", "azure-agent", "umsavbvncrpzbnxmxzmr.blob.core.windows.net", "*.blob.core.windows.net"},
        {"agent status upload", "azure-agent", "dcrcl3a0xs.blob.core.windows.net", "*.blob.core.windows.net"},

        // Workload extension: <azure_backup_svc>.<geo>.backup.windowsazure.com, then storage.
        {"workload backup service", "azure-workload-backup", "ab-pod01-ecs1.eus.backup.windowsazure.com", "*.backup.windowsazure.com"},
        {"workload communication queue", "azure-workload-backup", "abcdeypod01ecs114.queue.core.windows.net", "*.queue.core.windows.net"},
        {"workload data blob", "azure-workload-backup", "abcdeypod01prot121.blob.core.windows.net", "*.blob.core.windows.net"},
        {"workload dns-zone blob", "azure-workload-backup", "mystorageaccount.z23.blob.storage.azure.net", "*.blob.storage.azure.net"},
        {"workload dns-zone other", "azure-workload-backup", "mystorageaccount.z23.queue.storage.azure.net", "*.storage.azure.net"},
        {"workload entra regional", "azure-workload-backup", "australiacentral.r.login.microsoft.com", "*.login.microsoft.com"},
        {"workload entra token", "azure-workload-backup", "login.microsoftonline.com", "login.microsoftonline.com"},
        {"workload entra login.microsoft.com", "azure-workload-backup", "login.microsoft.com", "login.microsoft.com"},
        {"workload entra login.windows.net", "azure-workload-backup", "login.windows.net", "login.windows.net"},
        {"workload entra section 59", "azure-workload-backup", "ccs.login.microsoftonline.com", "*.microsoftonline.com"},
    };
    for (const auto& c : cases) {
        DYNAMIC_SECTION(c.name) {
            const auto set = set_of(c.catalog);
            const auto match = set.find(c.host);
            REQUIRE(match.has_value());
            CHECK(match->pattern == c.pattern);
            CHECK(match->origin == "catalog:" + std::string(c.catalog));
        }
    }
}

TEST_CASE("every catalog pattern matches below itself and never its bare suffix", "[policy][catalog]") {
    for (const Catalog& c : catalogs()) {
        for (std::string_view text : c.patterns) {
            INFO(c.name << " " << text);
            const auto pattern = HostPattern::parse(text);
            REQUIRE(pattern.has_value());
            if (!pattern->is_wildcard()) {
                CHECK(pattern->matches(pattern->suffix()));
                CHECK_FALSE(pattern->matches("x." + pattern->suffix()));
                continue;
            }
            CHECK(pattern->matches("probe." + pattern->suffix()));
            CHECK(pattern->matches("a.b.probe." + pattern->suffix()));
            CHECK_FALSE(pattern->matches(pattern->suffix()));
            CHECK_FALSE(pattern->matches("x" + pattern->suffix()));
            CHECK_FALSE(pattern->matches(pattern->suffix() + ".evil.com"));
        }
    }
}

TEST_CASE("lookalikes match no catalog", "[policy][catalog]") {
    const char* lookalikes[] = {
        "blob.core.windows.net.evil.com",
        "x.blob.core.windows.net.evil.com",
        "xblob.core.windows.net",
        "xqueue.core.windows.net",
        "blob.core.windows.net",  // a wildcard never matches its own suffix
        "core.windows.net",
        "windows.net",
        "storage.azure.net",
        "x.blobcore.windows.net",
        "x.blob-core.windows.net",
        "x.blob.core.windows.org",
        "evil-windowsazure.com",
        "windowsazure.com",
        "windowsazure.com.evil.com",
        "backup.windowsazure.com.evil.net",
        "evilmicrosoftonline.com",
        "login.microsoftonline.com.evil.com",
        "loginmicrosoftonline.com",
        "login.microsoftonline.co",
        "xlogin.microsoft.com",
        "login.microsoft.com.evil.com",
        "pas.windows.net.evil.com",
        "blob.core.usgovcloudapi.net.evil.com",
        "backup.windowsazure.cn.evil.com",
        "xblob.core.chinacloudapi.cn",
        "evil.com",
    };
    for (const Catalog& c : catalogs()) {
        const auto set = set_of(c.name);
        for (const char* host : lookalikes) {
            INFO(c.name << " " << host);
            const auto match = set.find(host);
            CHECK((match ? match->pattern : std::string()) == "");  // shows the pattern that matched
        }
    }
}

TEST_CASE("each cloud's catalogs stay in their cloud", "[policy][catalog]") {
    struct Case {
        std::string_view catalog;
        std::string_view host;  // a name of another cloud
    };
    const Case cases[] = {
        {"azure-backup", "x.blob.core.usgovcloudapi.net"},
        {"azure-backup", "x.backup.windowsazure.us"},
        {"azure-backup", "login.microsoftonline.us"},
        {"azure-backup", "x.blob.core.chinacloudapi.cn"},
        {"azure-backup", "login.chinacloudapi.cn"},
        {"azure-backup-usgov", "x.blob.core.windows.net"},
        {"azure-backup-usgov", "x.backup.windowsazure.com"},
        {"azure-backup-usgov", "login.microsoftonline.com"},
        {"azure-backup-usgov", "x.backup.windowsazure.cn"},
        {"azure-backup-china", "x.blob.core.windows.net"},
        {"azure-backup-china", "x.backup.windowsazure.com"},
        {"azure-backup-china", "login.microsoftonline.com"},
        {"azure-backup-china", "x.blob.core.usgovcloudapi.net"},
        {"azure-storage", "x.blob.core.usgovcloudapi.net"},
        {"azure-storage", "x.blob.core.chinacloudapi.cn"},
        {"azure-storage", "login.microsoftonline.com"},  // storage only
        {"azure-ad-login", "login.microsoftonline.us"},
        {"azure-ad-login", "x.blob.core.windows.net"},  // sign-in only
        {"azure-agent", "x.queue.core.windows.net"},    // blobs only
        {"azure-agent", "login.microsoftonline.com"},
        {"azure-workload-backup", "x.backup.windowsazure.us"},
        {"azure-workload-backup", "x.file.core.windows.net"},  // not a workload-backup endpoint
    };
    for (const auto& c : cases) {
        INFO(c.catalog << " " << c.host);
        CHECK_FALSE(set_of(c.catalog).find(c.host).has_value());
    }
}

TEST_CASE("egressgate catalogs lists every catalog with its description", "[policy][catalog]") {
    const std::string expected =
        "Built-in catalogs (`egressgate catalogs NAME` shows one's patterns and sources):\n"
        "  azure-backup           Azure Backup, public cloud: VM backup, SQL/SAP HANA workload and MARS agents, with their storage and sign-in names\n"
        "  azure-backup-usgov     Azure Backup in Azure Government (US): backup service, storage and sign-in names\n"
        "  azure-backup-china     Azure Backup in Azure operated by 21Vianet (China): backup service, storage and sign-in names\n"
        "  azure-storage          Azure Storage accounts, public cloud: blob, static web, Data Lake, file, queue and table endpoints\n"
        "  azure-ad-login         Microsoft Entra ID (Azure AD) sign-in endpoints, public cloud: tokens for agents and Entra login to Linux VMs\n"
        "  azure-agent            Azure VM agent (WALinuxAgent): extension downloads and status uploads, Azure Storage blobs, public cloud\n"
        "  azure-workload-backup  Azure Backup for SQL Server and SAP HANA in Azure VMs, public cloud: backup service, storage and sign-in names\n";
    CHECK(catalog_listing(std::nullopt) == expected);
}

TEST_CASE("egressgate catalogs NAME shows the patterns and their sources", "[policy][catalog]") {
    const std::string expected =
        "azure-agent: Azure VM agent (WALinuxAgent): extension downloads and status uploads, Azure Storage blobs, public cloud\n"
        "\n"
        "Patterns:\n"
        "  *.blob.core.windows.net\n"
        "\n"
        "Sources:\n"
        "  Virtual machine extensions and features for Linux: network access\n"
        "    https://learn.microsoft.com/azure/virtual-machines/extensions/features-linux#network-access\n"
        "  WALinuxAgent: extension goal state (manifest locations, statusUploadBlob)\n"
        "    https://github.com/Azure/WALinuxAgent/blob/master/azurelinuxagent/common/protocol/extensions_goal_state_from_vm_settings.py\n";
    CHECK(catalog_listing("azure-agent") == expected);

    // Every catalog: each pattern and each source URL on its own indented line.
    for (const Catalog& c : catalogs()) {
        INFO(c.name);
        const std::string text = catalog_listing(c.name);
        CHECK(text.starts_with(std::string(c.name) + ": " + std::string(c.description) + "\n\nPatterns:\n"));
        for (std::string_view p : c.patterns) CHECK(text.find("\n  " + std::string(p) + "\n") != std::string::npos);
        for (const auto& s : c.sources) CHECK(text.find("\n    " + std::string(s.url) + "\n") != std::string::npos);
        CHECK(text.ends_with("\n"));
    }
}

TEST_CASE("egressgate catalogs with an unknown name offers the choices", "[policy][catalog]") {
    struct Case {
        const char* name;
        std::string input;
        std::string shown;  // as the message quotes it
    };
    const Case cases[] = {
        {"near miss", "azure-backup-mars", "azure-backup-mars"},
        {"wrong case", "Azure-Backup", "Azure-Backup"},
        {"empty", "", ""},
        {"escape sequence", "x\x1b[2J", "x\\x1b[2J"},
        {"newline", "a\nb", "a\\x0ab"},
        {"quote", "a\"b", "a\\x22b"},
        {"non-ascii", "caf\xc3\xa9", "caf\\xc3\\xa9"},
    };
    for (const auto& c : cases) {
        DYNAMIC_SECTION(c.name) {
            CHECK(find_catalog(c.input) == nullptr);
            CHECK(catalog_listing(c.input) ==
                  "unknown catalog \"" + c.shown +
                      "\"; choices: azure-backup, azure-backup-usgov, azure-backup-china, azure-storage, "
                      "azure-ad-login, azure-agent, azure-workload-backup\n");
        }
    }
}
