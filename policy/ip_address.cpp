#include "policy/ip_address.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <stdexcept>

namespace egressgate::policy {
namespace {

constexpr std::size_t kV4Octets = 4;
constexpr std::size_t kMaxOctetDigits = 3;
constexpr int kMaxOctetValue = 255;
constexpr int kV4Bits = 32;
constexpr int kV6Bits = 128;
constexpr int kBitsPerByte = 8;
// Longest IPv6 text inet_pton can accept ("ffff:...:255.255.255.255"); anything longer is garbage.
constexpr std::size_t kMaxV6TextLength = INET6_ADDRSTRLEN;
// ::ffff:0:0/96 carries an IPv4 address in its last four bytes.
constexpr std::size_t kMappedPrefixZeroBytes = 10;
constexpr std::size_t kMappedV4Offset = 12;

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// Parses a decimal number of at most max_digits digits with no sign and no leading zero: the
// resolver's inet_aton reads "010" as octal and "0x7f" as hex, so accepting them here would let a
// client name one address while the policy checked another.
std::optional<int> parse_strict_decimal(std::string_view text, std::size_t max_digits) {
    if (text.empty() || text.size() > max_digits) return std::nullopt;
    if (!std::all_of(text.begin(), text.end(), is_digit)) return std::nullopt;
    if (text.size() > 1 && text.front() == '0') return std::nullopt;
    int value = 0;
    std::from_chars(text.data(), text.data() + text.size(), value);
    return value;
}

std::optional<IpAddress> parse_v4(std::string_view text) {
    std::array<std::uint8_t, kV4Octets> octets{};
    for (std::size_t i = 0; i < kV4Octets; ++i) {
        const bool last = i + 1 == kV4Octets;
        const auto dot = text.find('.');
        if (last != (dot == std::string_view::npos)) return std::nullopt;  // exactly three dots
        const auto value = parse_strict_decimal(text.substr(0, dot), kMaxOctetDigits);
        if (!value || *value > kMaxOctetValue) return std::nullopt;
        octets[i] = static_cast<std::uint8_t>(*value);
        if (!last) text.remove_prefix(dot + 1);
    }
    return IpAddress::v4(octets);
}

std::optional<IpAddress> parse_v6(std::string_view text) {
    // inet_pton wants a NUL-terminated string: an embedded NUL would cut the text short.
    if (text.size() > kMaxV6TextLength || text.find('\0') != std::string_view::npos) {
        return std::nullopt;
    }
    const std::string terminated(text);
    std::array<std::uint8_t, 16> bytes{};
    if (inet_pton(AF_INET6, terminated.c_str(), bytes.data()) != 1) return std::nullopt;
    return IpAddress::v6(bytes);
}

int max_prefix_length(const IpAddress& a) { return a.is_v4() ? kV4Bits : kV6Bits; }

// True when the first prefix_length bits of a and b are equal.
bool same_prefix(const std::array<std::uint8_t, 16>& a, const std::array<std::uint8_t, 16>& b,
                 int prefix_length) {
    const auto whole_bytes = static_cast<std::size_t>(prefix_length / kBitsPerByte);
    const int rest_bits = prefix_length % kBitsPerByte;
    if (!std::equal(a.begin(), a.begin() + static_cast<std::ptrdiff_t>(whole_bytes), b.begin())) {
        return false;
    }
    if (rest_bits == 0) return true;
    const auto mask = static_cast<std::uint8_t>(0xff << (kBitsPerByte - rest_bits));
    return (a[whole_bytes] & mask) == (b[whole_bytes] & mask);
}

bool has_host_bits(const IpAddress& a, int prefix_length) {
    for (int bit = prefix_length; bit < max_prefix_length(a); ++bit) {
        const auto byte = static_cast<std::size_t>(bit / kBitsPerByte);
        const auto mask = static_cast<std::uint8_t>(0x80 >> (bit % kBitsPerByte));
        if ((a.bytes()[byte] & mask) != 0) return true;
    }
    return false;
}

}  // namespace

std::optional<IpAddress> IpAddress::parse(std::string_view text) {
    if (text.find(':') != std::string_view::npos) return parse_v6(text);
    return parse_v4(text);
}

IpAddress IpAddress::v4(std::array<std::uint8_t, 4> b) {
    IpAddress a;
    std::copy(b.begin(), b.end(), a.bytes_.begin());
    a.is_v4_ = true;
    return a;
}

IpAddress IpAddress::v6(const std::array<std::uint8_t, 16>& b) {
    IpAddress a;
    a.bytes_ = b;
    a.is_v4_ = false;
    return a;
}

IpAddress IpAddress::unmapped() const {
    if (is_v4_) return *this;
    const bool zeros = std::all_of(bytes_.begin(), bytes_.begin() + kMappedPrefixZeroBytes,
                                   [](std::uint8_t b) { return b == 0; });
    if (!zeros || bytes_[10] != 0xff || bytes_[11] != 0xff) return *this;
    return v4({bytes_[kMappedV4Offset], bytes_[kMappedV4Offset + 1], bytes_[kMappedV4Offset + 2],
               bytes_[kMappedV4Offset + 3]});
}

namespace {

// Octets of a dotted quad, each 0..255.
constexpr int kIpv4Octets = 4;

// Writes the octet's digits at `out`; returns where they end.
char* write_octet(char* out, std::uint8_t octet) {
    if (octet >= 100) *out++ = static_cast<char>('0' + octet / 100);
    if (octet >= 10) *out++ = static_cast<char>('0' + octet / 10 % 10);
    *out++ = static_cast<char>('0' + octet % 10);
    return out;
}

}  // namespace

// IPv4 by hand: glibc's inet_ntop formats it through sprintf, and every connection formats two
// addresses (the client's and the upstream's, for its audit record).
std::string IpAddress::to_string() const {
    if (is_v4_) {
        char text[INET_ADDRSTRLEN];  // the string is at most 15 characters: no allocation
        char* end = text;
        for (int i = 0; i < kIpv4Octets; ++i) {
            if (i > 0) *end++ = '.';
            end = write_octet(end, bytes_[static_cast<std::size_t>(i)]);
        }
        return std::string(text, end);
    }
    char text[INET6_ADDRSTRLEN] = {};
    inet_ntop(AF_INET6, bytes_.data(), text, sizeof text);
    return text;
}

Cidr::Cidr(IpAddress network, int prefix_length)
    : network_(network), prefix_length_(prefix_length) {
    // A wrong length here would silently widen or empty a rule: refuse it at start-up.
    if (prefix_length < 0 || prefix_length > max_prefix_length(network)) {
        throw std::invalid_argument("prefix length out of range for " + network.to_string());
    }
}

std::optional<Cidr> Cidr::parse(std::string_view text) {
    const auto slash = text.find('/');
    const auto address = IpAddress::parse(text.substr(0, slash));
    if (!address) return std::nullopt;
    const int max_length = max_prefix_length(*address);
    int length = max_length;
    if (slash != std::string_view::npos) {
        const auto parsed = parse_strict_decimal(text.substr(slash + 1), kMaxOctetDigits);
        if (!parsed || *parsed > max_length) return std::nullopt;
        length = *parsed;
    }
    if (has_host_bits(*address, length)) return std::nullopt;
    return Cidr(*address, length);
}

bool Cidr::contains(const IpAddress& address) const {
    if (address.is_v4() != network_.is_v4()) return false;
    return same_prefix(address.bytes(), network_.bytes(), prefix_length_);
}

std::string Cidr::to_string() const {
    return network_.to_string() + "/" + std::to_string(prefix_length_);
}

const Cidr* CidrSet::find(const IpAddress& address) const {
    // The unmapped form first, so that a v4 rule covers ::ffff:a.b.c.d; then the address as given,
    // for admins who wrote an IPv6 rule.
    const IpAddress plain = address.unmapped();
    for (const auto& c : cidrs_) {
        if (c.contains(plain)) return &c;
    }
    if (plain == address) return nullptr;
    for (const auto& c : cidrs_) {
        if (c.contains(address)) return &c;
    }
    return nullptr;
}

// Two 64-bit words and the family through a multiply-xorshift mix: a few instructions for every
// ledger and inventory lookup of a connection, and every input bit reaches every output bit.
std::size_t IpAddressHash::operator()(const IpAddress& address) const noexcept {
    constexpr std::uint64_t kMultiplier = 0x9e3779b97f4a7c15ULL;
    const auto mix = [](std::uint64_t x) {
        x ^= x >> 32;
        x *= kMultiplier;
        return x ^ (x >> 29);
    };
    std::uint64_t high = 0;
    std::uint64_t low = 0;
    std::memcpy(&high, address.bytes().data(), sizeof high);
    std::memcpy(&low, address.bytes().data() + sizeof high, sizeof low);
    const std::uint64_t family = address.is_v4() ? 4 : 6;
    return static_cast<std::size_t>(mix(mix(mix(high) + low) + family));
}

}  // namespace egressgate::policy
