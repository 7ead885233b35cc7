#include "policy/service_tags.hpp"

#include <algorithm>
#include <fstream>
#include <iterator>
#include <system_error>
#include <tuple>

#include <nlohmann/json.hpp>

namespace egressgate::policy {
namespace {

using nlohmann::json;

// Thrown only inside this file: the first schema error ends parsing, and its message says where,
// e.g. "values[12] (\"Storage.WestEurope\").properties.addressPrefixes[3]: ... is not a CIDR".
struct SchemaError {
    std::string message;
};

[[noreturn]] void fail(const std::string& where, const std::string& what) {
    throw SchemaError{where + ": " + what};
}

std::string type_mismatch(std::string_view expected, const json& got) {
    return "expected " + std::string(expected) + ", got " + got.type_name();
}

// "[json.exception.parse_error.101] parse error at ..." -> "parse error at ...": the id is for
// programmers, the admin reading a start-up error needs the rest.
std::string without_exception_id(std::string what) {
    constexpr std::string_view kIdPrefix = "[json.exception.";
    const auto end_of_id = what.find("] ");
    if (what.starts_with(kIdPrefix) && end_of_id != std::string::npos) what.erase(0, end_of_id + 2);
    return what;
}

std::string lower_ascii(std::string_view text) {
    std::string out(text);
    for (char& c : out) {
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    }
    return out;
}

const json* member(const json& object, const char* key) {
    const auto it = object.find(key);
    return it == object.end() ? nullptr : &*it;
}

const json& required(const json& object, const std::string& where, const char* key) {
    const json* value = member(object, key);
    if (value == nullptr) fail(where, std::string("missing \"") + key + "\"");
    return *value;
}

std::uint64_t change_number_of(const json& value, const std::string& where) {
    if (!value.is_number_unsigned()) fail(where, type_mismatch("a non-negative integer", value));
    return value.get<std::uint64_t>();
}

// An optional text field: absent and null read as "", anything else must be a string. Microsoft
// leaves region and systemService empty for global tags; their spellings are kept as they are.
std::string optional_string(const json& object, const std::string& where, const char* key) {
    const json* value = member(object, key);
    if (value == nullptr || value->is_null()) return {};
    if (!value->is_string()) fail(where + "." + key, type_mismatch("a string", *value));
    return value->get<std::string>();
}

std::vector<Cidr> parse_prefixes(const json& properties, const std::string& where) {
    const json& list = required(properties, where, "addressPrefixes");
    const std::string list_where = where + ".addressPrefixes";
    if (!list.is_array()) fail(list_where, type_mismatch("an array of CIDRs", list));
    std::vector<Cidr> prefixes;
    prefixes.reserve(list.size());
    // The element's place is spelled out only on failure: a file lists ~150,000 prefixes.
    const auto element = [&](std::size_t i) { return list_where + "[" + std::to_string(i) + "]"; };
    for (std::size_t i = 0; i < list.size(); ++i) {
        const json& text = list[i];
        if (!text.is_string()) fail(element(i), type_mismatch("a string", text));
        auto cidr = Cidr::parse(text.get_ref<const std::string&>());
        if (!cidr) fail(element(i), text.dump() + " is not a CIDR (or has host bits set)");
        prefixes.push_back(*cidr);
    }
    return prefixes;
}

ServiceTag parse_value(const json& value, std::size_t index) {
    std::string where = "values[" + std::to_string(index) + "]";
    if (!value.is_object()) fail(where, type_mismatch("an object", value));
    const json& name = required(value, where, "name");
    if (!name.is_string()) fail(where + ".name", type_mismatch("a string", name));
    if (name.get_ref<const std::string&>().empty()) fail(where + ".name", "is empty");
    // From here on the entry is named too: a 5 MB file is easier to search by name than by index.
    where += " (" + name.dump() + ")";
    ServiceTag tag;
    tag.name = name.get<std::string>();
    tag.id = optional_string(value, where, "id");
    const json& properties = required(value, where, "properties");
    const std::string properties_where = where + ".properties";
    if (!properties.is_object()) fail(properties_where, type_mismatch("an object", properties));
    if (const json* number = member(properties, "changeNumber")) {
        tag.change_number = change_number_of(*number, properties_where + ".changeNumber");
    }
    tag.region = optional_string(properties, properties_where, "region");
    tag.system_service = optional_string(properties, properties_where, "systemService");
    tag.prefixes = parse_prefixes(properties, properties_where);
    return tag;
}

// Levenshtein distance, giving up (returning limit + 1) once every path exceeds `limit`: most of
// the ~3,000 names are far from a typo and are rejected after a few rows.
std::size_t edit_distance(std::string_view a, std::string_view b, std::size_t limit) {
    if ((a.size() > b.size() ? a.size() - b.size() : b.size() - a.size()) > limit) return limit + 1;
    std::vector<std::size_t> previous(b.size() + 1);
    std::vector<std::size_t> current(b.size() + 1);
    for (std::size_t j = 0; j <= b.size(); ++j) previous[j] = j;
    for (std::size_t i = 1; i <= a.size(); ++i) {
        current[0] = i;
        std::size_t row_min = current[0];
        for (std::size_t j = 1; j <= b.size(); ++j) {
            const std::size_t substitute = previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
            current[j] = std::min({previous[j] + 1, current[j - 1] + 1, substitute});
            row_min = std::min(row_min, current[j]);
        }
        if (row_min > limit) return limit + 1;
        std::swap(previous, current);
    }
    return previous[b.size()];
}

std::size_t suggestion_limit(std::string_view name) {
    constexpr std::size_t kMinEdits = 2;
    constexpr std::size_t kLengthPerEdit = 3;
    return std::max(kMinEdits, name.size() / kLengthPerEdit);
}

}  // namespace

std::string describe(const UnknownServiceTag& unknown) {
    std::string text = "unknown service tag \"" + unknown.name + "\"";
    if (unknown.suggestions.empty()) return text + " (no similar name in the file)";
    text += " (did you mean ";
    for (std::size_t i = 0; i < unknown.suggestions.size(); ++i) {
        if (i > 0) text += i + 1 == unknown.suggestions.size() ? " or " : ", ";
        text += "\"" + unknown.suggestions[i] + "\"";
    }
    return text + "?)";
}

ServiceTagsLoad ServiceTags::load(const std::filesystem::path& path) {
    const std::string name = path.string();
    std::error_code ec;
    const auto size = std::filesystem::file_size(path, ec);
    if (ec) return {nullptr, name + ": cannot read: " + ec.message()};
    if (size > kMaxServiceTagsFileBytes) {
        return {nullptr, name + ": " + std::to_string(size) + " bytes, more than the " +
                             std::to_string(kMaxServiceTagsFileBytes) + " a Service Tags file may have"};
    }
    std::ifstream in(path, std::ios::binary);
    if (!in) return {nullptr, name + ": cannot open"};
    // Read at most one byte past the limit: a file that grew since file_size() is still bounded.
    std::string text;
    text.reserve(static_cast<std::size_t>(size));
    char chunk[64 * 1024];
    while (text.size() <= kMaxServiceTagsFileBytes && in.read(chunk, sizeof chunk).gcount() > 0) {
        text.append(chunk, static_cast<std::size_t>(in.gcount()));
    }
    if (in.bad()) return {nullptr, name + ": read error"};
    if (text.size() > kMaxServiceTagsFileBytes) {
        return {nullptr, name + ": more than the " + std::to_string(kMaxServiceTagsFileBytes) +
                             " bytes a Service Tags file may have"};
    }
    return parse(text, name);
}

ServiceTagsLoad ServiceTags::parse(std::string_view json_text, std::string_view source) {
    auto tags = std::make_shared<ServiceTags>();
    try {
        const json document = json::parse(json_text);
        if (!document.is_object()) fail("document", type_mismatch("an object", document));
        tags->change_number_ = change_number_of(required(document, "document", "changeNumber"), "changeNumber");
        const json& cloud = required(document, "document", "cloud");
        if (!cloud.is_string()) fail("cloud", type_mismatch("a string", cloud));
        tags->cloud_ = cloud.get<std::string>();
        const json& values = required(document, "document", "values");
        if (!values.is_array()) fail("values", type_mismatch("an array", values));
        tags->tags_.reserve(values.size());
        for (std::size_t i = 0; i < values.size(); ++i) {
            tags->tags_.push_back(parse_value(values[i], i));
            tags->prefix_count_ += tags->tags_.back().prefixes.size();
        }
    } catch (const json::parse_error& e) {
        // e.what() carries line and column; the byte offset helps with the one-line files.
        return {nullptr, std::string(source) + ": invalid JSON at byte " + std::to_string(e.byte) + ": " +
                             without_exception_id(e.what())};
    } catch (const json::exception& e) {
        return {nullptr, std::string(source) + ": unusable JSON: " + without_exception_id(e.what())};
    } catch (const SchemaError& e) {
        return {nullptr, std::string(source) + ": " + e.message};
    }

    tags->lower_names_.reserve(tags->tags_.size());
    for (const auto& tag : tags->tags_) tags->lower_names_.push_back(lower_ascii(tag.name));
    tags->by_name_.resize(tags->tags_.size());
    for (std::size_t i = 0; i < tags->by_name_.size(); ++i) tags->by_name_[i] = i;
    const auto& lower = tags->lower_names_;
    std::sort(tags->by_name_.begin(), tags->by_name_.end(),
              [&](std::size_t a, std::size_t b) { return std::tie(lower[a], a) < std::tie(lower[b], b); });
    // Two entries that differ only in case would make a configured name ambiguous.
    const auto duplicate = std::adjacent_find(tags->by_name_.begin(), tags->by_name_.end(),
                                              [&](std::size_t a, std::size_t b) { return lower[a] == lower[b]; });
    if (duplicate != tags->by_name_.end()) {
        const auto first = *duplicate;
        const auto second = *std::next(duplicate);
        return {nullptr, std::string(source) + ": values[" + std::to_string(second) + "].name: \"" +
                             tags->tags_[second].name + "\" is already the name of values[" + std::to_string(first) +
                             "] (names ignore case)"};
    }
    return {std::move(tags), {}};
}

const ServiceTag* ServiceTags::find(std::string_view name) const {
    const std::string key = lower_ascii(name);
    const auto it = std::lower_bound(by_name_.begin(), by_name_.end(), key,
                                     [&](std::size_t index, const std::string& k) { return lower_names_[index] < k; });
    if (it == by_name_.end() || lower_names_[*it] != key) return nullptr;
    return &tags_[*it];
}

std::vector<std::string> ServiceTags::suggestions(std::string_view name) const {
    const std::string key = lower_ascii(name);
    const std::size_t limit = suggestion_limit(key);
    std::vector<std::pair<std::size_t, std::size_t>> close;  // (distance, index into tags_)
    for (const std::size_t index : by_name_) {                // name order, so ties stay in it
        const std::size_t distance = edit_distance(key, lower_names_[index], limit);
        if (distance <= limit) close.emplace_back(distance, index);
    }
    std::stable_sort(close.begin(), close.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    std::vector<std::string> out;
    for (std::size_t i = 0; i < close.size() && i < kMaxTagSuggestions; ++i) out.push_back(tags_[close[i].second].name);
    return out;
}

ServiceTagResolution ServiceTags::resolve(std::span<const std::string> names) const {
    PrefixSet::Builder builder;
    ServiceTagResolution resolution;
    for (const std::string& name : names) {
        if (const ServiceTag* tag = find(name)) {
            builder.add(tag->name, tag->prefixes);  // the file's spelling labels the matches
        } else {
            resolution.unknown.push_back({name, suggestions(name)});
        }
    }
    resolution.set = std::move(builder).build();
    return resolution;
}

}  // namespace egressgate::policy
