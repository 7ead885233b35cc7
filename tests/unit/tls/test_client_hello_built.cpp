// Hand-built ClientHellos: GREASE, edge cases real clients do not send, every length field broken,
// plain text, and the named size limits.
#include <catch.hpp>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "hello_bytes.hpp"
#include "tls/client_hello.hpp"

using namespace hello_bytes;
using egressgate::tls::finish_at_eof;
using egressgate::tls::HelloError;
using egressgate::tls::kMaxClientHelloBytes;

namespace {

const std::string kHost = "x.blob.core.windows.net";

Bytes body_with(const std::vector<Extension>& extensions) {
    return record(handshake_message(client_hello_body(extensions)));
}

// The usual hello: SNI first, then ALPN, so the offsets below are fixed.
Bytes usual() { return body_with({server_name(kHost), alpn({"h2", "http/1.1"})}); }

constexpr std::size_t kExtensions = kBodyAt + kExtensionsLengthAt;
constexpr std::size_t kSniExtension = kBodyAt + kFirstExtensionAt;  // type(2) length(2)
constexpr std::size_t kSniList = kSniExtension + 4;                 // list length(2)
constexpr std::size_t kSniName = kSniList + 2 + 1;                  // after name_type: length(2)
constexpr std::size_t kAlpnExtension = kSniName + 2 + 23;            // 23 == kHost.size()
constexpr std::size_t kAlpnList = kAlpnExtension + 4;
constexpr std::size_t kAlpnFirstName = kAlpnList + 2;

void add16(Bytes& b, std::size_t at, int delta) {
    const int v = (b[at] << 8 | b[at + 1]) + delta;
    b[at] = static_cast<std::uint8_t>(v >> 8);
    b[at + 1] = static_cast<std::uint8_t>(v);
}

Bytes sni_entries(const std::vector<std::pair<std::uint8_t, std::string>>& entries) {
    Bytes list;
    for (const auto& [type, name] : entries) {
        put8(list, type);
        put16(list, name.size());
        append(list, text(name));
    }
    Bytes data;
    put16(data, list.size());
    append(data, list);
    return data;
}

}  // namespace

TEST_CASE("the usual hand-built hello parses, so the broken ones below are broken on purpose", "[tls]") {
    const auto parse_result = parse(usual());
    REQUIRE(outcome(parse_result) == "complete");
    CHECK(parse_result.hello.server_name == kHost);
    CHECK(parse_result.hello.alpn == std::vector<std::string>{"h2", "http/1.1"});
    const Bytes u = usual();
    CHECK(u[kSniExtension + 1] == 0x00);   // server_name
    CHECK(u[kAlpnExtension + 1] == 0x10);  // ALPN
    CHECK(u[kAlpnFirstName + 1] == 'h');
}

TEST_CASE("hellos that real clients may send are accepted", "[tls]") {
    struct Case {
        const char* name;
        Bytes wire;
        std::optional<std::string> server_name;
        std::vector<std::string> alpn;
    };
    const std::string grease_alpn = "\x2a\x2a";
    const Case cases[] = {
        {"GREASE extension types and ALPN values (Chrome, BoringSSL)",
         body_with({{0x0a0a, {}},
                    server_name(kHost),
                    {0x1a1a, {0x00}},
                    alpn({grease_alpn, "h2", "http/1.1"}),
                    {0xfafa, {0x00, 0x00, 0x00}}}),
         kHost,
         {grease_alpn, "h2", "http/1.1"}},
        {"extensions of unknown types are skipped",
         body_with({{0xff01, {0x00}}, {0x1234, Bytes(300, 0x16)}, server_name(kHost)}), kHost, {}},
        {"no extensions block at all (TLS 1.0 style)", record(handshake_message(client_hello_body({}, false))),
         std::nullopt, {}},
        {"an empty extensions block", body_with({}), std::nullopt, {}},
        {"ALPN without SNI", body_with({alpn({"http/1.1"})}), std::nullopt, {"http/1.1"}},
        {"the name as sent: upper case and trailing dot kept", body_with({server_name("X.Blob.Core.Windows.Net.")}),
         "X.Blob.Core.Windows.Net.", {}},
        {"a 255-byte name", body_with({server_name(std::string(255, 'a'))}), std::string(255, 'a'), {}},
        {"printable ASCII the policy refuses later is left to it", body_with({server_name("a b%_.example")}),
         "a b%_.example", {}},
        {"record version 0x0303", record(handshake_message(client_hello_body({server_name(kHost)})), 0x16, 0x0303),
         kHost, {}},
        {"record version 0x0304", record(handshake_message(client_hello_body({server_name(kHost)})), 0x16, 0x0304),
         kHost, {}},
        {"handshake header split across one-byte records",
         records(handshake_message(client_hello_body({server_name(kHost)})), 1), kHost, {}},
    };
    for (const auto& c : cases) {
        DYNAMIC_SECTION(c.name) {
            const auto result = parse(c.wire);
            REQUIRE(outcome(result) == "complete");
            CHECK(result.hello.server_name == c.server_name);
            CHECK(result.hello.alpn == c.alpn);
        }
    }
}

TEST_CASE("what is not a TLS handshake record is refused from its first bytes", "[tls]") {
    struct Case {
        const char* name;
        Bytes bytes;
        const char* expected;
    };
    const Case cases[] = {
        {"plain HTTP", text("GET / HTTP/1.1\r\nHost: x.blob.core.windows.net\r\n\r\n"), "not_tls"},
        {"plain HTTP, first byte only", text("G"), "not_tls"},
        {"a second CONNECT inside the tunnel", text("CONNECT a:443 HTTP/1.1\r\n\r\n"), "not_tls"},
        {"SSLv2-compatible ClientHello", {0x80, 0x2e, 0x01, 0x03, 0x01, 0x00, 0x15, 0x00, 0x00, 0x00, 0x10}, "not_tls"},
        {"alert record", {0x15, 0x03, 0x01, 0x00, 0x02, 0x02, 0x28}, "not_tls"},
        {"application data record", {0x17, 0x03, 0x03, 0x00, 0x01, 0x00}, "not_tls"},
        {"ChangeCipherSpec first", {0x14, 0x03, 0x03, 0x00, 0x01, 0x01}, "not_tls"},
        {"record version SSL 3.0", {0x16, 0x03, 0x00, 0x00, 0x01}, "not_tls"},
        {"record version 0x0305", {0x16, 0x03, 0x05}, "not_tls"},
        {"record major version 2", {0x16, 0x02}, "not_tls"},
        {"nothing yet", {}, "need_more"},
        {"handshake type byte only", {0x16}, "need_more"},
        {"record header without length", {0x16, 0x03, 0x01, 0x00}, "need_more"},
        {"record header only", {0x16, 0x03, 0x01, 0x00, 0x30}, "need_more"},
    };
    for (const auto& c : cases) {
        DYNAMIC_SECTION(c.name) { CHECK(outcome(parse(c.bytes)) == c.expected); }
    }
}

TEST_CASE("broken length fields are malformed, never read past", "[tls]") {
    struct Case {
        const char* name;
        std::function<void(Bytes&)> corrupt;
        const char* expected;
    };
    const Case cases[] = {
        {"record length 0", [](Bytes& b) { b[3] = b[4] = 0; }, "malformed"},
        {"record length one more than the message", [](Bytes& b) { add16(b, kRecordLengthAt, 1); b.push_back(0); },
         "malformed"},
        {"record length one more, the extra byte not sent yet", [](Bytes& b) { add16(b, kRecordLengthAt, 1); },
         "malformed"},
        {"record length one less: the last byte is read as the next record",
         [](Bytes& b) { add16(b, kRecordLengthAt, -1); }, "malformed"},
        {"record length over 2^14 + 2048", [](Bytes& b) { b[3] = 0x48; b[4] = 0x01; }, "malformed"},
        {"handshake length one less than the record", [](Bytes& b) { b[kHandshakeLengthAt + 2] -= 1; }, "malformed"},
        {"handshake length one more: waits for a record that could finish it",
         [](Bytes& b) { b[kHandshakeLengthAt + 2] += 1; }, "need_more"},
        {"handshake length high byte flipped", [](Bytes& b) { b[kHandshakeLengthAt] ^= 0xff; }, "too_large"},
        {"handshake type ServerHello", [](Bytes& b) { b[5] = 2; }, "malformed"},
        {"handshake type HelloRequest", [](Bytes& b) { b[5] = 0; }, "malformed"},
        {"legacy version 2.0", [](Bytes& b) { b[kBodyAt] = 2; }, "malformed"},
        {"session id length 33", [](Bytes& b) { b[kBodyAt + kSessionIdLengthAt] = 33; }, "malformed"},
        {"session id length past the end", [](Bytes& b) { b[kBodyAt + kSessionIdLengthAt] = 0xff; }, "malformed"},
        {"cipher suites length odd", [](Bytes& b) { add16(b, kBodyAt + kCipherSuitesLengthAt, -1); }, "malformed"},
        {"cipher suites length past the end", [](Bytes& b) { b[kBodyAt + kCipherSuitesLengthAt] = 0xff; }, "malformed"},
        {"compression methods length 0", [](Bytes& b) { b[kBodyAt + kCompressionLengthAt] = 0; }, "malformed"},
        {"extensions length +1", [](Bytes& b) { add16(b, kExtensions, 1); }, "malformed"},
        {"extensions length -1", [](Bytes& b) { add16(b, kExtensions, -1); }, "malformed"},
        {"extensions length flipped", [](Bytes& b) { b[kExtensions] ^= 0xff; }, "malformed"},
        {"SNI extension length +1", [](Bytes& b) { add16(b, kSniExtension + 2, 1); }, "malformed"},
        {"SNI extension length -1", [](Bytes& b) { add16(b, kSniExtension + 2, -1); }, "malformed"},
        {"SNI list length +1", [](Bytes& b) { add16(b, kSniList, 1); }, "malformed"},
        {"SNI list length -1", [](Bytes& b) { add16(b, kSniList, -1); }, "malformed"},
        {"SNI list length flipped", [](Bytes& b) { b[kSniList] ^= 0xff; }, "malformed"},
        {"name length +1", [](Bytes& b) { add16(b, kSniName, 1); }, "malformed"},
        {"name length -1", [](Bytes& b) { add16(b, kSniName, -1); }, "malformed"},
        {"name length flipped", [](Bytes& b) { b[kSniName] ^= 0xff; }, "malformed"},
        {"name type 1", [](Bytes& b) { b[kSniName - 1] = 1; }, "malformed"},
        {"ALPN list length +1", [](Bytes& b) { add16(b, kAlpnList, 1); }, "malformed"},
        {"ALPN list length -1", [](Bytes& b) { add16(b, kAlpnList, -1); }, "malformed"},
        {"ALPN name length past the list", [](Bytes& b) { b[kAlpnFirstName] = 0xf0; }, "malformed"},
        {"ALPN name length 0", [](Bytes& b) { b[kAlpnFirstName] = 0; }, "malformed"},
    };
    for (const auto& c : cases) {
        DYNAMIC_SECTION(c.name) {
            Bytes wire = usual();
            c.corrupt(wire);
            const auto result = parse(wire);
            CHECK(outcome(result) == c.expected);
            if (result.status != egressgate::tls::HelloParse::Status::need_more) {
                CHECK(outcome(finish_at_eof(result)) == c.expected);
            } else {
                CHECK(outcome(finish_at_eof(result)) == "truncated");
            }
        }
    }
}

TEST_CASE("hellos with bad extension contents are malformed", "[tls]") {
    struct Case {
        const char* name;
        Bytes wire;
    };
    Bytes trailing_byte = client_hello_body({}, false);
    trailing_byte.push_back(0);
    Bytes short_extension_header = client_hello_body({}, false);
    append(short_extension_header, {0x00, 0x03, 0x00, 0x00, 0x00});  // 3 bytes: not a whole header
    Bytes extension_overruns_block = client_hello_body({}, false);
    append(extension_overruns_block, {0x00, 0x04, 0x12, 0x34, 0x00, 0x05});
    Bytes bytes_after_extensions = client_hello_body({server_name(kHost)});
    bytes_after_extensions.push_back(0);

    const Case cases[] = {
        {"duplicate server_name", body_with({server_name(kHost), server_name("evil.example")})},
        {"duplicate server_name, same name", body_with({server_name(kHost), server_name(kHost)})},
        {"duplicate ALPN", body_with({alpn({"h2"}), server_name(kHost), alpn({"http/1.1"})})},
        {"empty server_name extension (what servers answer)", body_with({{0, {}}})},
        {"empty server_name list", body_with({{0, {0x00, 0x00}}})},
        {"server_name list with an unknown name type only", body_with({{0, sni_entries({{1, kHost}})}})},
        {"two host_names", body_with({{0, sni_entries({{0, kHost}, {0, "evil.example"}})}})},
        {"a host_name then another type", body_with({{0, sni_entries({{0, kHost}, {7, "x"}})}})},
        {"another type then a host_name", body_with({{0, sni_entries({{7, "x"}, {0, kHost}})}})},
        {"empty name", body_with({server_name("")})},
        {"256-byte name", body_with({server_name(std::string(256, 'a'))})},
        {"NUL in the name", body_with({server_name(std::string("allowed.example\0.evil", 21))})},
        {"tab in the name", body_with({server_name("a\tb.example")})},
        {"DEL in the name", body_with({server_name("a\x7f" "b.example")})},
        {"byte 0x80 in the name", body_with({server_name("a\x80" "b.example")})},
        {"UTF-8 name (IDNs arrive as punycode)", body_with({server_name("caf\xc3\xa9.example")})},
        {"empty ALPN list", body_with({{16, {0x00, 0x00}}})},
        {"empty ALPN extension", body_with({{16, {}}})},
        {"empty ALPN protocol name", body_with({alpn({"h2", ""})})},
        {"one byte after the compression methods", record(handshake_message(trailing_byte))},
        {"an extension header cut by the block's end", record(handshake_message(short_extension_header))},
        {"an extension longer than the block", record(handshake_message(extension_overruns_block))},
        {"a byte after the extensions block", record(handshake_message(bytes_after_extensions))},
    };
    for (const auto& c : cases) {
        DYNAMIC_SECTION(c.name) { CHECK(outcome(parse(c.wire)) == "malformed"); }
    }
}

TEST_CASE("only handshake records may carry the ClientHello", "[tls]") {
    const Bytes message = handshake_message(client_hello_body({server_name(kHost)}));
    const Bytes head(message.begin(), message.begin() + 40);
    const Bytes tail(message.begin() + 40, message.end());
    struct Case {
        const char* name;
        Bytes between;  // a record between the two halves
        Bytes second;   // the record with the second half
        const char* expected;
    };
    const Case cases[] = {
        {"two handshake records", {}, record(tail), "complete"},
        {"ChangeCipherSpec interleaved", {0x14, 0x03, 0x03, 0x00, 0x01, 0x01}, record(tail), "malformed"},
        {"alert interleaved", {0x15, 0x03, 0x03, 0x00, 0x02, 0x01, 0x00}, record(tail), "malformed"},
        {"second half as application data", {}, record(tail, 0x17), "malformed"},
        {"second record version SSL 3.0", {}, record(tail, 0x16, 0x0300), "malformed"},
        {"empty handshake record between", record({}), record(tail), "malformed"},
        {"second half not sent yet", {}, {}, "need_more"},
    };
    for (const auto& c : cases) {
        DYNAMIC_SECTION(c.name) {
            Bytes wire = record(head);
            append(wire, c.between);
            append(wire, c.second);
            CHECK(outcome(parse(wire)) == c.expected);
        }
    }
}

TEST_CASE("a ClientHello is too large once it cannot end within the cap", "[tls]") {
    SECTION("padding to 20000 bytes, in records of 2^14") {
        const Bytes message = handshake_message(client_hello_body({server_name(kHost), padding(20000)}));
        const Bytes wire = records(message, 1 << 14);
        CHECK(outcome(parse(wire)) == "too_large");
        CHECK(outcome(parse_prefix(wire, 5)) == "too_large");  // the record header says so already
    }
    SECTION("padding to 20000 bytes, in small records: the handshake header says so") {
        const Bytes wire = records(handshake_message(client_hello_body({server_name(kHost), padding(20000)})), 1000);
        CHECK(outcome(parse_prefix(wire, 8)) == "need_more");
        CHECK(outcome(parse_prefix(wire, 9)) == "too_large");
        CHECK(outcome(finish_at_eof(parse_prefix(wire, 9))) == "too_large");
    }
    SECTION("a record of the largest allowed size that ends past the cap") {
        CHECK(outcome(parse({0x16, 0x03, 0x01, 0x48, 0x00})) == "too_large");
    }
    SECTION("record headers count toward the cap") {
        // 3000 handshake bytes in one-byte records take 18000 bytes on the wire.
        const Bytes wire = records(handshake_message(client_hello_body({server_name(kHost), padding(2800)})), 1);
        CHECK(outcome(parse(wire)) == "too_large");
    }
    for (const std::size_t fragment : {std::size_t{1000}, kMaxClientHelloBytes}) {
        DYNAMIC_SECTION("exactly at the cap, in records of " << fragment << " bytes") {
            // Find the padding that makes the wire exactly kMaxClientHelloBytes long.
            const auto wire_for = [&](std::size_t pad) {
                return records(handshake_message(client_hello_body({server_name(kHost), padding(pad)})), fragment);
            };
            const std::size_t headroom = kMaxClientHelloBytes - wire_for(0).size();
            std::size_t pad = headroom - 5 * (headroom / fragment + 2);  // a little under
            while (wire_for(pad + 1).size() <= kMaxClientHelloBytes) ++pad;
            const Bytes at_cap = wire_for(pad);
            REQUIRE(at_cap.size() == kMaxClientHelloBytes);
            const auto result = parse(at_cap);
            CHECK(outcome(result) == "complete");
            CHECK(result.hello.server_name == kHost);
            CHECK(outcome(parse(wire_for(pad + 1))) == "too_large");
        }
    }
}

TEST_CASE("every error has its reason string", "[tls]") {
    struct Case {
        HelloError error;
        const char* text;
    };
    const Case cases[] = {{HelloError::not_tls, "not_tls"},
                          {HelloError::truncated, "truncated"},
                          {HelloError::malformed, "malformed"},
                          {HelloError::too_large, "too_large"}};
    for (const auto& c : cases) CHECK(egressgate::tls::to_string(c.error) == c.text);
}
