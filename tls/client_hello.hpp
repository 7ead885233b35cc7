#pragma once
// The TLS ClientHello as the proxy sees it inside a CONNECT tunnel: plaintext records, never
// decrypted. Pure: bytes in, value out; no sockets, no OpenSSL.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace egressgate::tls {

// Cap on the bytes the proxy buffers while waiting for a complete ClientHello, record headers
// included. Real ClientHellos are 200..2000 bytes; post-quantum key shares stay far below this.
inline constexpr std::size_t kMaxClientHelloBytes = 16 * 1024;

// Largest record payload accepted (RFC 8446 5.2: 2^14 + 2048); a bigger record is malformed.
inline constexpr std::size_t kMaxRecordPayload = (std::size_t{1} << 14) + 2048;

// Longest server_name host_name accepted; RFC 6066 allows 2^16 - 1, DNS allows 253.
inline constexpr std::size_t kMaxServerNameBytes = 255;

enum class HelloError {
    not_tls,    // the first record header is not a TLS handshake record (plain text, SSLv2, ...)
    truncated,  // the client stopped sending before the ClientHello was complete
    malformed,  // inconsistent lengths, wrong message, bad extension framing, invalid server_name
    too_large,  // completing the ClientHello would need more than kMaxClientHelloBytes
};

// "not_tls", "truncated", "malformed", "too_large": the reason strings of audit lines and counters.
std::string_view to_string(HelloError error);

struct ClientHello {
    std::optional<std::string> server_name;  // the host_name as sent: not lower-cased, dot kept
    std::vector<std::string> alpn;           // protocol names in the client's order, GREASE kept
};

struct HelloParse {
    enum class Status { need_more, complete, error } status = Status::need_more;
    ClientHello hello;  // when complete
    HelloError error{};  // when error
};

// Parses the ClientHello at the start of `bytes`, everything the client has sent in the tunnel
// so far. The proxy appends what it reads and calls again (each call parses from the start:
// the input is at most kMaxClientHelloBytes, and clients send the hello in one or two reads).
//
// - need_more: incomplete, and could still complete within kMaxClientHelloBytes.
// - complete: the ClientHello ended exactly at the end of a record; bytes after that record
//   (a ChangeCipherSpec, early data) are not looked at and belong to the tunnel.
// - error not_tls: from the first byte that is not a handshake record header 0x16 0x03 0x01..0x04
//   (so plain text on a TLS port is refused at once; an SSLv2-compatible hello is not_tls too).
// - error too_large: as soon as the lengths seen prove the hello would end past the cap.
// - error malformed: a record longer than 2^14 + 2048 or of length 0, a later record that is
//   not a handshake record, a handshake message that is not ClientHello or that ends inside a
//   record, inconsistent lengths anywhere, duplicate server_name or ALPN extensions, a
//   server_name list that is not exactly one host_name, a host_name that is empty, longer than
//   255 bytes or has a byte outside printable ASCII (0x20..0x7e), an empty ALPN list or name.
//
// An error is final: more bytes never turn it into anything else; nor do they change a complete.
HelloParse parse_client_hello(std::span<const std::uint8_t> bytes);

// What a parse means once the client has closed its side: need_more becomes error truncated,
// anything else is returned unchanged.
HelloParse finish_at_eof(HelloParse parse);

}  // namespace egressgate::tls
