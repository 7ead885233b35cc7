// libFuzzer target for config::parse_config: an admin's file, however broken, gives either a
// config or errors that point at a place in it (line and column from 1) and say what is wrong.
//
// Input: the TOML text, parsed as "/nonexistent/fuzz.toml". A relative [inventory] az_vm_list is
// read from that directory, which does not exist; an input naming an absolute one is skipped, so
// that no run reads /dev/zero or a FIFO.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string_view>

#include <toml++/toml.h>

#include "config/config.hpp"
#include "fuzz_check.hpp"

namespace {

// Whether the text sets [inventory] az_vm_list to an absolute path. Without the word
// "inventory" or a backslash (an escaped key) it cannot, which spares most inputs a second parse.
bool names_absolute_inventory(std::string_view text) {
    if (text.find("inventory") == std::string_view::npos && text.find('\\') == std::string_view::npos) return false;
    toml::table root;
    try {
        root = toml::parse(text);
    } catch (const toml::parse_error&) {
        return false;
    }
    const auto path = root["inventory"]["az_vm_list"].value<std::string>();
    return path && !std::filesystem::path(*path).is_relative();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    namespace config = egressgate::config;
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    if (names_absolute_inventory(text)) return 0;
    const config::LoadResult result = config::parse_config(text, "/nonexistent/fuzz.toml");
    if (result.errors.empty()) {
        FUZZ_REQUIRE(result.config != nullptr);
        FUZZ_REQUIRE(!result.config->listen.empty());
        FUZZ_REQUIRE(!result.config->clients.empty());  // no open-proxy default
        return 0;
    }
    FUZZ_REQUIRE(result.config == nullptr);
    int line = 0;
    int column = 0;
    for (const auto& error : result.errors) {
        FUZZ_REQUIRE(error.line >= 1 && error.column >= 1);
        FUZZ_REQUIRE(!error.message.empty());
        FUZZ_REQUIRE(error.source == "/nonexistent/fuzz.toml");
        // Sorted by position.
        FUZZ_REQUIRE(error.line > line || (error.line == line && error.column >= column));
        line = error.line;
        column = error.column;
        FUZZ_REQUIRE(!error.to_string().empty());
    }
    return 0;
}
