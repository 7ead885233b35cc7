#pragma once
// The head of a client's request, parsed incrementally with llhttp. Pure: bytes in, a value out.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace egressgate::http {

// Named limits of what a client may send before the proxy has decided anything.
inline constexpr std::size_t kMaxRequestHeadBytes = 16 * 1024;
inline constexpr std::size_t kMaxHeaderCount = 100;

struct RequestHead {
    std::string method;  // "CONNECT", "GET", ...
    std::string target;  // request-target as sent: "host:443", "http://host/path", "/path"
    int version_major = 1;
    int version_minor = 1;
    std::vector<std::pair<std::string, std::string>> headers;  // in order, names as sent

    bool is_connect() const { return method == "CONNECT"; }
    // The first header with this name (case-insensitive), if any.
    std::optional<std::string_view> header(std::string_view name) const;
};

enum class HeadError {
    malformed,  // llhttp refused the bytes
    too_large,  // head exceeds kMaxRequestHeadBytes or kMaxHeaderCount
};

// Feed bytes as they arrive; once complete, head() is the request and the bytes of the last chunk
// past consumed_in_last_feed() belong to the request's payload (e.g. a pipelined TLS ClientHello).
class RequestHeadParser {
public:
    enum class Status { need_more, complete, error };

    RequestHeadParser();
    ~RequestHeadParser();
    RequestHeadParser(const RequestHeadParser&) = delete;
    RequestHeadParser& operator=(const RequestHeadParser&) = delete;

    Status feed(std::string_view bytes);

    const RequestHead& head() const { return head_; }
    std::size_t consumed_in_last_feed() const { return consumed_; }
    HeadError error() const { return error_; }
    // llhttp's description of a malformed head, for the 400 body.
    const std::string& error_detail() const { return error_detail_; }

    struct Impl;

private:
    Status fail(HeadError e, std::string detail);

    std::unique_ptr<Impl> impl_;
    RequestHead head_;
    std::size_t total_bytes_ = 0;
    std::size_t consumed_ = 0;
    HeadError error_ = HeadError::malformed;
    std::string error_detail_;
    bool done_ = false;
};

}  // namespace egressgate::http
