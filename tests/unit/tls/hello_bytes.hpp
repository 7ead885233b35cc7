#pragma once
// Test-side helpers: captured ClientHellos from tests/fixtures/tls, and a builder for hand-made
// ones whose every length field sits at a known offset.
#include <algorithm>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "tls/client_hello.hpp"

namespace hello_bytes {

using Bytes = std::vector<std::uint8_t>;

inline Bytes fixture(const std::string& name) {
    std::ifstream in(std::string(EGRESSGATE_FIXTURES) + "/tls/" + name, std::ios::binary);
    if (!in) throw std::runtime_error("missing fixture tls/" + name);
    return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline Bytes text(std::string_view s) { return Bytes(s.begin(), s.end()); }

inline void put8(Bytes& out, std::size_t v) { out.push_back(static_cast<std::uint8_t>(v)); }
inline void put16(Bytes& out, std::size_t v) {
    put8(out, v >> 8);
    put8(out, v);
}
inline void put24(Bytes& out, std::size_t v) {
    put8(out, v >> 16);
    put16(out, v);
}
inline void append(Bytes& out, const Bytes& more) { out.insert(out.end(), more.begin(), more.end()); }

struct Extension {
    std::uint16_t type;
    Bytes data;
};

inline Extension server_name(std::string_view name) {
    Bytes data;
    put16(data, 3 + name.size());
    put8(data, 0);  // host_name
    put16(data, name.size());
    append(data, text(name));
    return {0, data};
}

inline Extension alpn(const std::vector<std::string>& names) {
    Bytes list;
    for (const auto& n : names) {
        put8(list, n.size());
        append(list, text(n));
    }
    Bytes data;
    put16(data, list.size());
    append(data, list);
    return {16, data};
}

inline Extension padding(std::size_t size) { return {21, Bytes(size, 0)}; }

// Byte offsets of the fields built by client_hello_body() (from the start of the body) and
// single_record() (from the start of the wire bytes).
inline constexpr std::size_t kRecordLengthAt = 3;
inline constexpr std::size_t kHandshakeLengthAt = 6;
inline constexpr std::size_t kBodyAt = 9;  // in single_record()
inline constexpr std::size_t kSessionIdLengthAt = 2 + 32;
inline constexpr std::size_t kCipherSuitesLengthAt = kSessionIdLengthAt + 1 + 32;
inline constexpr std::size_t kCompressionLengthAt = kCipherSuitesLengthAt + 2 + 4;
inline constexpr std::size_t kExtensionsLengthAt = kCompressionLengthAt + 1 + 1;
inline constexpr std::size_t kFirstExtensionAt = kExtensionsLengthAt + 2;

// A TLS 1.2-shaped ClientHello body: version, random, 32-byte session id, two cipher suites, null
// compression, then the extensions (none at all when `with_extensions` is false).
inline Bytes client_hello_body(const std::vector<Extension>& extensions, bool with_extensions = true) {
    Bytes body{0x03, 0x03};
    for (int i = 0; i < 32; ++i) put8(body, 0x40 + i);  // random
    put8(body, 32);
    for (int i = 0; i < 32; ++i) put8(body, 0x80 + i);  // session id
    put16(body, 4);
    put16(body, 0x1301);
    put16(body, 0xc02f);
    put8(body, 1);
    put8(body, 0);
    if (!with_extensions) return body;
    Bytes block;
    for (const auto& e : extensions) {
        put16(block, e.type);
        put16(block, e.data.size());
        append(block, e.data);
    }
    put16(body, block.size());
    append(body, block);
    return body;
}

// Handshake message: type 1 (ClientHello), 24-bit length, body.
inline Bytes handshake_message(const Bytes& body, std::uint8_t type = 1) {
    Bytes message{type};
    put24(message, body.size());
    append(message, body);
    return message;
}

inline Bytes record(const Bytes& payload, std::uint8_t type = 0x16, std::uint16_t version = 0x0301) {
    Bytes out{type};
    put16(out, version);
    put16(out, payload.size());
    append(out, payload);
    return out;
}

// Frames a handshake message into records of at most `fragment` payload bytes each.
inline Bytes records(const Bytes& message, std::size_t fragment) {
    Bytes out;
    for (std::size_t at = 0; at < message.size(); at += fragment) {
        const auto end = std::min(message.size(), at + fragment);
        append(out, record(Bytes(message.begin() + at, message.begin() + end)));
    }
    return out;
}

inline Bytes single_record(const std::vector<Extension>& extensions) {
    return record(handshake_message(client_hello_body(extensions)));
}

// The handshake message inside a capture that holds it in one record.
inline Bytes message_of(const Bytes& wire) { return Bytes(wire.begin() + 5, wire.end()); }

// "need_more", "complete", or the error's reason string: what tables compare.
inline std::string outcome(const egressgate::tls::HelloParse& parse) {
    using Status = egressgate::tls::HelloParse::Status;
    switch (parse.status) {
        case Status::need_more: return "need_more";
        case Status::complete: return "complete";
        case Status::error: return std::string(egressgate::tls::to_string(parse.error));
    }
    return "?";
}

inline egressgate::tls::HelloParse parse(const Bytes& bytes) {
    return egressgate::tls::parse_client_hello(std::span<const std::uint8_t>(bytes));
}

inline egressgate::tls::HelloParse parse_prefix(const Bytes& bytes, std::size_t n) {
    return egressgate::tls::parse_client_hello(std::span<const std::uint8_t>(bytes).first(n));
}

}  // namespace hello_bytes
