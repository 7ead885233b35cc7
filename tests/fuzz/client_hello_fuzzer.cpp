// libFuzzer target for the ClientHello parser: whatever a client sends in a tunnel, the parser must
// not crash or read out of bounds, and a verdict given on a prefix must hold for the whole input,
// because the proxy calls again with more bytes. Built by EGRESSGATE_FUZZ; run by scripts/fuzz.sh.
#include <cstddef>
#include <cstdint>
#include <span>

#include "fuzz_check.hpp"
#include "tls/client_hello.hpp"

namespace {

using egressgate::tls::HelloParse;

void check_hello(const egressgate::tls::ClientHello& hello) {
    if (!hello.server_name) return;
    const auto& name = *hello.server_name;
    FUZZ_REQUIRE(!name.empty() && name.size() <= egressgate::tls::kMaxServerNameBytes);
    for (const char ch : name) FUZZ_REQUIRE(ch >= 0x20 && ch <= 0x7e);
}

bool same(const HelloParse& a, const HelloParse& b) {
    if (a.status != b.status) return false;
    if (a.status == HelloParse::Status::error) return a.error == b.error;
    return a.hello.server_name == b.hello.server_name && a.hello.alpn == b.hello.alpn;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::span<const std::uint8_t> bytes(data, size);
    const HelloParse whole = egressgate::tls::parse_client_hello(bytes);
    check_hello(whole.hello);

    const HelloParse at_eof = egressgate::tls::finish_at_eof(whole);
    FUZZ_REQUIRE(at_eof.status != HelloParse::Status::need_more);
    FUZZ_REQUIRE(whole.status == HelloParse::Status::need_more ? at_eof.error == egressgate::tls::HelloError::truncated
                                                          : same(at_eof, whole));

    // A handful of prefixes (all of them would make each input quadratic).
    const std::size_t last = size > 0 ? size - 1 : 0;
    for (std::size_t cut : {size / 2, size / 3, size - size / 8, last, std::size_t{5}, std::size_t{9}}) {
        if (cut > size) continue;
        const HelloParse part = egressgate::tls::parse_client_hello(bytes.first(cut));
        if (part.status != HelloParse::Status::need_more) FUZZ_REQUIRE(same(part, whole));
    }
    return 0;
}
