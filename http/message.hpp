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

#include "http/responses.hpp"

namespace egressgate::http {

// Named limits of what a peer may send before its message head is complete.
inline constexpr std::size_t kMaxRequestHeadBytes = 16 * 1024;
inline constexpr std::size_t kMaxHeaderCount = 100;
// Header fields the proxy may add to a message it forwards (Via; Host or Connection; and
// X-Forwarded-For or Transfer-Encoding). A peer may send this many fewer than kMaxHeaderCount, so
// that what the proxy writes stays within it too: Python's http.client, which Azure's Linux agent
// speaks, refuses a head of more than 100 fields.
inline constexpr std::size_t kMaxHeadersAdded = 3;
inline constexpr std::size_t kMaxReceivedHeaderCount = kMaxHeaderCount - kMaxHeadersAdded;

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
    // The bytes after this head are not HTTP/1.x: a CONNECT, or a request with
    // "Connection: upgrade" and an Upgrade header. The parser reads nothing after such a head.
    bool upgrade = false;

    bool is_connect() const { return method == "CONNECT"; }
    // The first header with this name (case-insensitive), if any.
    std::optional<std::string_view> header(std::string_view name) const;
    std::size_t header_count(std::string_view name) const;
};

// What a parser keeps of a head's buffers from one message or stream to the next: strings of at
// most this many bytes and a header vector of at most this many slots. A larger one (a long
// target, say) is let go, so that a pooled parser stays small.
inline constexpr std::size_t kMaxKeptHeadBufferBytes = 256;
inline constexpr std::size_t kMaxKeptHeaderSlots = 16;

// Feed bytes as they arrive. The parser stops at the end of each head (so the caller can decide
// before anything is forwarded) and at the end of each message; consumed() says how much of the
// last feed it used, and the caller feeds the rest again after handling the event. Body bytes,
// decoded from their framing, collect in body() until the caller takes them.
//
// Progress: every feed() consumes bytes, or reports an event that moves the parser on (a head,
// then the end of that message), or asks for more having used all it was given, or fails. No
// sequence of calls returns the same event twice without bytes in between, so a caller's read
// loop always either reads or moves on.
class MessageParser {
public:
    enum class Status { need_more, head_complete, message_complete, error };

    // `max_headers`: header fields a head may have; past it the head is refused.
    explicit MessageParser(MessageKind kind = MessageKind::request, std::size_t max_headers = kMaxReceivedHeaderCount);
    ~MessageParser();
    MessageParser(const MessageParser&) = delete;
    MessageParser& operator=(const MessageParser&) = delete;

    // Ready for a new stream's first message, as if newly made, keeping the head's small buffers
    // (method, target, reason phrase and body up to kMaxKeptHeadBufferBytes, and the header
    // vector's slots; the header names and values themselves go).
    void reset() noexcept;

    Status feed(std::string_view bytes);
    // The peer closed its side: ends a body delimited by close, or reports a cut-off message.
    Status finish();
    // After head_complete, for a response to HEAD: the message has no body whatever it says.
    void skip_body();

    const MessageHead& head() const { return head_; }
    std::size_t consumed() const { return consumed_; }
    std::string& body() { return body_; }

    // After an error: what the peer is told (requests: a 400 family failure or
    // request_head_too_large; responses: upstream_malformed or unrequested_upgrade), and
    // llhttp's or our own description of what was wrong.
    Failure failure() const { return failure_; }
    const std::string& error_detail() const { return error_detail_; }

    struct Impl;

private:
    // Where the parser is in the stream of messages.
    enum class Stage {
        awaiting_head,  // between messages, or inside a head
        in_body,        // head reported; the body (maybe empty) and its end follow
        upgraded,       // an upgrade head was reported: what follows is not ours to parse
        failed,
    };
    Status fail(Failure failure, std::string detail);
    Status on_pause(bool head_ended, bool message_ended);

    std::unique_ptr<Impl> impl_;
    MessageKind kind_;
    MessageHead head_;
    std::string body_;
    Stage stage_ = Stage::awaiting_head;
    std::size_t head_bytes_ = 0;  // bytes of the head being read, against kMaxRequestHeadBytes
    std::size_t consumed_ = 0;
    Failure failure_ = Failure::malformed_request;
    std::string error_detail_;
};

}  // namespace egressgate::http
