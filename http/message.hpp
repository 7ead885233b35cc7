#pragma once
// HTTP/1.x messages as they cross the proxy, parsed incrementally with llhttp. Pure: bytes in,
// events and values out. One parser reads a connection's messages one after the other.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace egressgate::http {

// Named limits of what a peer may send before its message head is complete.
inline constexpr std::size_t kMaxRequestHeadBytes = 16 * 1024;
inline constexpr std::size_t kMaxHeaderCount = 100;

enum class MessageKind { request, response };

// How the body of a message is delimited on the wire.
enum class BodyFraming { none, content_length, chunked, until_close };

struct MessageHead {
    std::string method;         // requests: "CONNECT", "GET", ...
    std::string target;         // requests: "host:443", "http://host/path", "/path"
    int status = 0;             // responses
    std::string reason_phrase;  // responses
    int version_major = 1;
    int version_minor = 1;
    std::vector<std::pair<std::string, std::string>> headers;  // in order, names as sent
    BodyFraming framing = BodyFraming::none;
    std::uint64_t content_length = 0;  // when framing is content_length
    bool keep_alive = false;           // the sender allows another message on this connection
    bool upgrade = false;              // the sender asked to switch protocols

    bool is_connect() const { return method == "CONNECT"; }
    // The first header with this name (case-insensitive), if any.
    std::optional<std::string_view> header(std::string_view name) const;
    std::size_t header_count(std::string_view name) const;
};

enum class HeadError {
    malformed,  // the bytes are not HTTP/1.x, or not HTTP this proxy will forward
    too_large,  // head exceeds kMaxRequestHeadBytes or kMaxHeaderCount
};

// Feed bytes as they arrive. The parser stops at the end of each head (so the caller can decide
// before anything is forwarded) and at the end of each message; consumed() says how much of the
// last feed it used, and the caller feeds the rest again after handling the event. Body bytes,
// decoded from their framing, collect in body() until the caller takes them.
class MessageParser {
public:
    enum class Status { need_more, head_complete, message_complete, error };

    explicit MessageParser(MessageKind kind = MessageKind::request);
    ~MessageParser();
    MessageParser(const MessageParser&) = delete;
    MessageParser& operator=(const MessageParser&) = delete;

    Status feed(std::string_view bytes);
    // The peer closed its side: ends a body delimited by close, or reports a cut-off message.
    Status finish();
    // After head_complete, for a response to HEAD: the message has no body whatever it says.
    void skip_body();

    const MessageHead& head() const { return head_; }
    std::size_t consumed() const { return consumed_; }
    std::string& body() { return body_; }

    HeadError error() const { return error_; }
    // A fixed reason string for the refusal (see http::reason), and llhttp's description.
    std::string_view error_reason() const { return error_reason_; }
    const std::string& error_detail() const { return error_detail_; }

    struct Impl;

private:
    Status fail(HeadError e, std::string_view reason, std::string detail);

    std::unique_ptr<Impl> impl_;
    MessageHead head_;
    std::string body_;
    std::size_t head_bytes_ = 0;   // bytes of the head being read, against kMaxRequestHeadBytes
    bool awaiting_head_ = true;    // between messages or inside a head
    std::size_t consumed_ = 0;
    HeadError error_ = HeadError::malformed;
    std::string_view error_reason_;
    std::string error_detail_;
    bool failed_ = false;
};

}  // namespace egressgate::http
