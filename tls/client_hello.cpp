#include "tls/client_hello.hpp"

#include <algorithm>

namespace egressgate::tls {
namespace {

using Bytes = std::span<const std::uint8_t>;
using Status = HelloParse::Status;

constexpr std::size_t kRecordHeaderBytes = 5;     // type, version (2), length (2)
constexpr std::size_t kHandshakeHeaderBytes = 4;  // msg_type, length (3)
constexpr std::uint8_t kContentTypeHandshake = 0x16;
constexpr std::uint8_t kHandshakeClientHello = 1;
constexpr std::size_t kRandomBytes = 32;
constexpr std::size_t kMaxSessionIdBytes = 32;
constexpr std::uint16_t kExtensionServerName = 0;
constexpr std::uint16_t kExtensionAlpn = 16;
constexpr std::uint8_t kNameTypeHostName = 0;

HelloParse need_more() { return {}; }
HelloParse fail(HelloError error) { return {Status::error, {}, error}; }

// Reads a TLS presentation-language structure front to back. Every read checks the bytes are
// there and, when they are not, returns false and consumes nothing.
class TlsReader {
public:
    explicit TlsReader(Bytes bytes) : bytes_(bytes) {}

    bool empty() const { return bytes_.empty(); }

    bool u8(std::uint8_t& out) {
        Bytes b;
        if (!take(1, b)) return false;
        out = b[0];
        return true;
    }
    bool u16(std::uint16_t& out) {
        Bytes b;
        if (!take(2, b)) return false;
        out = static_cast<std::uint16_t>(b[0] << 8 | b[1]);
        return true;
    }
    bool take(std::size_t n, Bytes& out) {
        if (n > bytes_.size()) return false;
        out = bytes_.first(n);
        bytes_ = bytes_.subspan(n);
        return true;
    }
    // opaque x<a..b> with a one- or two-byte length prefix.
    bool vector8(Bytes& out) {
        std::uint8_t n = 0;
        Bytes rest = bytes_;
        if (u8(n) && take(n, out)) return true;
        bytes_ = rest;
        return false;
    }
    bool vector16(Bytes& out) {
        std::uint16_t n = 0;
        Bytes rest = bytes_;
        if (u16(n) && take(n, out)) return true;
        bytes_ = rest;
        return false;
    }

private:
    Bytes bytes_;
};

bool printable_ascii(std::uint8_t byte) { return byte >= 0x20 && byte <= 0x7e; }

// ServerNameList (RFC 6066 3). Exactly one entry, a host_name: that is all any client sends,
// and what OpenSSL and BoringSSL servers accept. Tolerating more would let a hello carry a name
// for the proxy that the upstream server reads differently.
std::optional<std::string> parse_server_name(Bytes data) {
    TlsReader extension(data);
    Bytes list;
    if (!extension.vector16(list) || !extension.empty()) return std::nullopt;
    TlsReader entries(list);
    std::uint8_t name_type = 0;
    Bytes name;
    if (!entries.u8(name_type) || name_type != kNameTypeHostName || !entries.vector16(name) || !entries.empty()) {
        return std::nullopt;
    }
    if (name.empty() || name.size() > kMaxServerNameBytes) return std::nullopt;
    if (!std::all_of(name.begin(), name.end(), printable_ascii)) return std::nullopt;
    return std::string(name.begin(), name.end());
}

// ProtocolNameList (RFC 7301 3.1): ProtocolName protocol_name_list<2..2^16-1>, each <1..2^8-1>.
// Names are opaque bytes (GREASE ones are not text) and are kept as sent.
std::optional<std::vector<std::string>> parse_alpn(Bytes data) {
    TlsReader extension(data);
    Bytes list;
    if (!extension.vector16(list) || !extension.empty() || list.empty()) return std::nullopt;
    std::vector<std::string> names;
    for (TlsReader entries(list); !entries.empty();) {
        Bytes name;
        if (!entries.vector8(name) || name.empty()) return std::nullopt;
        names.emplace_back(name.begin(), name.end());
    }
    return names;
}

// The body of a complete ClientHello message (RFC 8446 4.1.2, RFC 5246 7.4.1.2).
HelloParse parse_client_hello_body(Bytes body) {
    TlsReader hello(body);
    std::uint16_t legacy_version = 0;
    Bytes random, session_id, cipher_suites, compression_methods;
    if (!hello.u16(legacy_version) || (legacy_version >> 8) != 3 || !hello.take(kRandomBytes, random) ||
        !hello.vector8(session_id) || session_id.size() > kMaxSessionIdBytes ||
        !hello.vector16(cipher_suites) || cipher_suites.empty() || cipher_suites.size() % 2 != 0 ||
        !hello.vector8(compression_methods) || compression_methods.empty()) {
        return fail(HelloError::malformed);
    }
    HelloParse parse{Status::complete, {}, {}};
    if (hello.empty()) return parse;  // before TLS 1.3 the extensions block may be absent

    Bytes extensions;
    if (!hello.vector16(extensions) || !hello.empty()) return fail(HelloError::malformed);
    bool seen_alpn = false;
    for (TlsReader reader(extensions); !reader.empty();) {
        std::uint16_t type = 0;
        Bytes data;
        if (!reader.u16(type) || !reader.vector16(data)) return fail(HelloError::malformed);
        if (type == kExtensionServerName) {
            if (parse.hello.server_name) return fail(HelloError::malformed);
            parse.hello.server_name = parse_server_name(data);
            if (!parse.hello.server_name) return fail(HelloError::malformed);
        } else if (type == kExtensionAlpn) {
            if (seen_alpn) return fail(HelloError::malformed);
            seen_alpn = true;
            auto alpn = parse_alpn(data);
            if (!alpn) return fail(HelloError::malformed);
            parse.hello.alpn = std::move(*alpn);
        }
        // Every other type, GREASE (0x?a?a) included, is skipped by its length.
    }
    return parse;
}

}  // namespace

std::string_view to_string(HelloError error) {
    switch (error) {
        case HelloError::not_tls: return "not_tls";
        case HelloError::truncated: return "truncated";
        case HelloError::malformed: return "malformed";
        case HelloError::too_large: return "too_large";
    }
    return "malformed";
}

HelloParse parse_client_hello(Bytes bytes) {
    // Walks the records from the start, gathering the handshake bytes they carry, until those
    // hold the whole first handshake message. Checks run in the order of the bytes they read, so
    // a prefix never says error or complete where the whole would say something else.
    std::vector<std::uint8_t> handshake;
    std::optional<std::size_t> message_size;  // header included, once the header is in
    std::size_t pos = 0;                       // start of the next record header

    // Handshake bytes still to come once `have` are in; until the header is in, the header's.
    const auto still_needed = [&](std::size_t have) {
        if (message_size) return *message_size - std::min(*message_size, have);
        return kHandshakeHeaderBytes - std::min(kHandshakeHeaderBytes, have);
    };
    // Would the hello end past the cap, with `needed` handshake bytes still to come after `end`?
    // They need at least one more record header.
    const auto past_cap = [](std::size_t end, std::size_t needed) {
        return end + (needed > 0 ? kRecordHeaderBytes + needed : 0) > kMaxClientHelloBytes;
    };

    for (bool first_record = true;; first_record = false) {
        if (past_cap(pos, still_needed(handshake.size()))) return fail(HelloError::too_large);

        // Record header: checked byte by byte so plain text is refused from its first byte.
        const Bytes header = bytes.subspan(pos, std::min(kRecordHeaderBytes, bytes.size() - pos));
        const HelloError bad_header = first_record ? HelloError::not_tls : HelloError::malformed;
        if (header.size() > 0 && header[0] != kContentTypeHandshake) return fail(bad_header);
        if (header.size() > 1 && header[1] != 0x03) return fail(bad_header);
        if (header.size() > 2 && (header[2] < 0x01 || header[2] > 0x04)) return fail(bad_header);
        if (header.size() < kRecordHeaderBytes) return need_more();

        const std::size_t record_length = std::size_t{header[3]} << 8 | header[4];
        if (record_length == 0 || record_length > kMaxRecordPayload) return fail(HelloError::malformed);
        const std::size_t record_end = pos + kRecordHeaderBytes + record_length;
        const std::size_t carried = handshake.size() + record_length;  // once this record is in
        // The ClientHello must end exactly where a record ends: nothing else may share it.
        if (message_size && carried > *message_size) return fail(HelloError::malformed);
        if (past_cap(record_end, still_needed(carried))) return fail(HelloError::too_large);

        const std::size_t body_at = pos + kRecordHeaderBytes;
        const Bytes fragment = bytes.subspan(body_at, std::min(record_length, bytes.size() - body_at));
        handshake.insert(handshake.end(), fragment.begin(), fragment.end());
        if (!handshake.empty() && handshake[0] != kHandshakeClientHello) return fail(HelloError::malformed);
        if (!message_size && handshake.size() >= kHandshakeHeaderBytes) {
            message_size = kHandshakeHeaderBytes +
                           (std::size_t{handshake[1]} << 16 | std::size_t{handshake[2]} << 8 | handshake[3]);
            if (carried > *message_size) return fail(HelloError::malformed);
            if (past_cap(record_end, still_needed(carried))) return fail(HelloError::too_large);
        }
        if (fragment.size() < record_length) return need_more();

        pos = record_end;
        if (message_size && handshake.size() == *message_size) {
            return parse_client_hello_body(Bytes(handshake).subspan(kHandshakeHeaderBytes));
        }
    }
}

HelloParse finish_at_eof(HelloParse parse) {
    if (parse.status == Status::need_more) return fail(HelloError::truncated);
    return parse;
}

}  // namespace egressgate::tls
