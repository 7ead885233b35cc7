#include "http/message.hpp"

#include <strings.h>

#include <cctype>
#include <cstdint>
#include <cstring>
#include <utility>

#include <llhttp.h>

namespace egressgate::http {

struct MessageParser::Impl {
    llhttp_t parser{};
    llhttp_settings_t settings{};
    MessageKind kind;
    MessageHead* head = nullptr;
    std::string* body = nullptr;
    std::size_t max_headers = kMaxReceivedHeaderCount;
    // Where the callbacks are in the stream; a new stream starts from these values.
    struct StreamState {
        bool in_head = true;            // false after the head: header callbacks then are trailers, dropped
        bool head_completed = false;    // set by on_headers_complete, taken by feed()
        bool message_completed = false; // set by on_message_complete, taken by feed()
        bool in_value = false;
        bool too_many_headers = false;
        // Obsolete line folding shows up as a second value chunk that does not continue the first:
        // llhttp skipped the CRLF and the indentation between them. Positions are offsets in the
        // stream, not addresses: a session reads every chunk into the same buffer.
        const char* feed_begin = nullptr;
        std::uint64_t feed_offset = 0;  // where feed_begin lies in the stream
        std::uint64_t value_end = 0;
        // What our own checks refused, when llhttp let it through.
        std::optional<Failure> violation;
    } state;
};

namespace {

using Impl = MessageParser::Impl;

Impl& impl_of(llhttp_t* p) { return *static_cast<Impl*>(p->data); }

// RFC 9110 token characters: what a header name may consist of.
bool is_token_char(unsigned char c) {
    return std::isalnum(c) != 0 || (c != 0 && std::strchr("!#$%&'*+-.^_`|~", c) != nullptr);
}

// A request-target is visible ASCII (RFC 9112 3.2: no whitespace, no controls, no raw bytes
// >= 0x80); other parsers split or decode anything else differently.
bool is_target_char(unsigned char c) { return c > 0x20 && c < 0x7f; }

// Field values may hold HTAB and obs-text (>= 0x80), never another control (RFC 9110 5.5).
bool is_value_char(unsigned char c) { return c == '\t' || (c >= 0x20 && c != 0x7f); }

int refuse(Impl& impl, Failure violation) {
    impl.state.violation = violation;
    return -1;
}

// A string's buffer is kept for the next head unless it grew past kMaxKeptHeadBufferBytes.
void empty_keeping_small_buffer(std::string& text) {
    if (text.capacity() > kMaxKeptHeadBufferBytes) std::string().swap(text);
    text.clear();
}

// The head as a new one is, keeping its small buffers: a connection's next message (or, in a
// pool, the next connection's) allocates no target and no header vector for a head no larger
// than the last. The header names and values go with the old pairs.
void renew(MessageHead& head) {
    empty_keeping_small_buffer(head.method);
    empty_keeping_small_buffer(head.target);
    empty_keeping_small_buffer(head.reason_phrase);
    if (head.headers.capacity() > kMaxKeptHeaderSlots) decltype(head.headers)().swap(head.headers);
    head.headers.clear();
    const MessageHead fresh;
    head.status = fresh.status;
    head.version_major = fresh.version_major;
    head.version_minor = fresh.version_minor;
    head.framing = fresh.framing;
    head.content_length = fresh.content_length;
    head.keep_alive = fresh.keep_alive;
    head.upgrade = fresh.upgrade;
}

int on_message_begin(llhttp_t* p) {
    auto& impl = impl_of(p);
    renew(*impl.head);
    impl.state.in_head = true;
    impl.state.in_value = false;
    return 0;
}

int on_url(llhttp_t* p, const char* at, std::size_t len) {
    auto& impl = impl_of(p);
    for (std::size_t i = 0; i < len; ++i) {
        if (!is_target_char(static_cast<unsigned char>(at[i]))) return refuse(impl, Failure::invalid_request_target);
    }
    impl.head->target.append(at, len);
    return 0;
}

int on_status(llhttp_t* p, const char* at, std::size_t len) {
    impl_of(p).head->reason_phrase.append(at, len);
    return 0;
}

int on_header_field(llhttp_t* p, const char* at, std::size_t len) {
    auto& impl = impl_of(p);
    if (!impl.state.in_head) return 0;
    auto& headers = impl.head->headers;
    if (impl.state.in_value || headers.empty()) {
        if (headers.size() == impl.max_headers) {
            impl.state.too_many_headers = true;
            return -1;
        }
        headers.emplace_back();
        impl.state.in_value = false;
    }
    headers.back().first.append(at, len);
    return 0;
}

// llhttp reports ": x" as a field of no bytes; an empty name is no token.
int on_header_field_complete(llhttp_t* p) {
    auto& impl = impl_of(p);
    if (!impl.state.in_head) return 0;
    const std::string& name = impl.head->headers.back().first;
    if (name.empty()) return refuse(impl, Failure::invalid_header_name);
    for (unsigned char c : name) {
        if (!is_token_char(c)) return refuse(impl, Failure::invalid_header_name);
    }
    return 0;
}

// llhttp 8 accepts obsolete line folding and reports the continuation as more value bytes; a
// proxy must refuse it (RFC 9112 section 5.2). A value split across reads is contiguous.
int on_header_value(llhttp_t* p, const char* at, std::size_t len) {
    auto& impl = impl_of(p);
    if (!impl.state.in_head) return 0;
    const std::uint64_t offset = impl.state.feed_offset + static_cast<std::uint64_t>(at - impl.state.feed_begin);
    if (impl.state.in_value && offset != impl.state.value_end) return refuse(impl, Failure::obsolete_line_folding);
    for (std::size_t i = 0; i < len; ++i) {
        if (!is_value_char(static_cast<unsigned char>(at[i]))) return refuse(impl, Failure::invalid_header_value);
    }
    impl.state.in_value = true;
    impl.state.value_end = offset + len;
    impl.head->headers.back().second.append(at, len);
    return 0;
}

BodyFraming framing_of(const llhttp_t* p, MessageKind kind) {
    if ((p->flags & F_SKIPBODY) != 0) return BodyFraming::none;
    if ((p->flags & F_CHUNKED) != 0) return BodyFraming::chunked;
    if ((p->flags & F_CONTENT_LENGTH) != 0) return p->content_length > 0 ? BodyFraming::content_length : BodyFraming::none;
    if (kind == MessageKind::request) return BodyFraming::none;
    const int status = p->status_code;
    if (status < 200 || status == 204 || status == 304) return BodyFraming::none;
    return BodyFraming::until_close;
}

// Stop at the end of the head: the caller decides what happens to the message.
int on_headers_complete(llhttp_t* p) {
    auto& impl = impl_of(p);
    auto& head = *impl.head;
    if (impl.kind == MessageKind::response) {
        // Requests that switch protocols are refused by the proxy, so a 101 was never asked for.
        if (p->status_code == 101) return refuse(impl, Failure::unrequested_upgrade);
        // llhttp takes "HTTP/1.1 20 OK"; no such status exists, and it would pass for interim.
        if (p->status_code < 100) return refuse(impl, Failure::upstream_malformed);
        // 1xx, 204 and 304 have no body whatever their headers say (RFC 9112 6.3); llhttp 8 would
        // read one, stalling the exchange or taking the next response's bytes as this body.
        if (p->status_code < 200 || p->status_code == 204 || p->status_code == 304) p->flags |= F_SKIPBODY;
    } else {
        // A request line without a version (HTTP/0.9) is not HTTP this proxy forwards, and
        // without a target there is nothing to decide on.
        if (p->http_major == 0) return refuse(impl, Failure::malformed_request);
        if (head.target.empty()) return refuse(impl, Failure::invalid_request_target);
        head.method = llhttp_method_name(static_cast<llhttp_method_t>(p->method));
    }
    head.status = p->status_code;
    head.version_major = p->http_major;
    head.version_minor = p->http_minor;
    head.framing = framing_of(p, impl.kind);
    head.content_length = head.framing == BodyFraming::content_length ? p->content_length : 0;
    head.keep_alive = llhttp_should_keep_alive(p) != 0;
    head.upgrade = p->upgrade != 0;
    impl.state.in_head = false;
    impl.state.head_completed = true;
    return HPE_PAUSED;
}

int on_body(llhttp_t* p, const char* at, std::size_t len) {
    impl_of(p).body->append(at, len);
    return 0;
}

int on_message_complete(llhttp_t* p) {
    impl_of(p).state.message_completed = true;
    return HPE_PAUSED;
}

// What an llhttp error means for the peer: every code has its own branch, so a new kind of
// failure cannot hide behind a default.
Failure failure_of(llhttp_errno_t code, std::string_view detail) {
    switch (code) {
    case HPE_UNEXPECTED_CONTENT_LENGTH:
        return detail.find("Transfer-Encoding") != std::string_view::npos ? Failure::content_length_with_transfer_encoding
                                                                           : Failure::conflicting_content_length;
    case HPE_INVALID_CONTENT_LENGTH: return Failure::invalid_content_length;
    case HPE_INVALID_TRANSFER_ENCODING: return Failure::unsupported_transfer_encoding;
    case HPE_INVALID_HEADER_TOKEN:
        return detail.find("value") != std::string_view::npos ? Failure::invalid_header_value : Failure::invalid_header_name;
    case HPE_LF_EXPECTED:
    case HPE_CR_EXPECTED:
        return detail.find("header value") != std::string_view::npos ? Failure::invalid_header_value
                                                                      : Failure::malformed_request;
    case HPE_INVALID_URL: return Failure::invalid_request_target;
    case HPE_PAUSED_H2_UPGRADE: return Failure::http2_not_supported;
    case HPE_INTERNAL:
    case HPE_STRICT:
    case HPE_UNEXPECTED_SPACE:
    case HPE_CLOSED_CONNECTION:
    case HPE_INVALID_METHOD:
    case HPE_INVALID_CONSTANT:
    case HPE_INVALID_VERSION:
    case HPE_INVALID_CHUNK_SIZE:
    case HPE_INVALID_STATUS:
    case HPE_INVALID_EOF_STATE: return Failure::malformed_request;
    // Our callbacks refuse through a violation, read before this mapping; these codes without
    // one, and the pause and success codes, never reach it.
    case HPE_CB_MESSAGE_BEGIN:
    case HPE_CB_HEADERS_COMPLETE:
    case HPE_CB_MESSAGE_COMPLETE:
    case HPE_CB_CHUNK_HEADER:
    case HPE_CB_CHUNK_COMPLETE:
    case HPE_USER:
    case HPE_CB_URL_COMPLETE:
    case HPE_CB_STATUS_COMPLETE:
    case HPE_CB_METHOD_COMPLETE:
    case HPE_CB_VERSION_COMPLETE:
    case HPE_CB_HEADER_FIELD_COMPLETE:
    case HPE_CB_HEADER_VALUE_COMPLETE:
    case HPE_CB_CHUNK_EXTENSION_NAME_COMPLETE:
    case HPE_CB_CHUNK_EXTENSION_VALUE_COMPLETE:
    case HPE_CB_RESET:
    case HPE_OK:
    case HPE_PAUSED:
    case HPE_PAUSED_UPGRADE: return Failure::malformed_request;
    }
    return Failure::malformed_request;
}

// A response the proxy cannot forward is the upstream's failure, whatever the parser saw.
Failure for_kind(MessageKind kind, Failure failure) {
    if (kind == MessageKind::request) return failure;
    if (failure == Failure::unrequested_upgrade || failure == Failure::upstream_failed) return failure;
    return Failure::upstream_malformed;
}

}  // namespace

std::optional<std::string_view> MessageHead::header(std::string_view name) const {
    for (const auto& [n, v] : headers) {
        if (n.size() == name.size() && strncasecmp(n.data(), name.data(), n.size()) == 0) return v;
    }
    return std::nullopt;
}

std::size_t MessageHead::header_count(std::string_view name) const {
    std::size_t count = 0;
    for (const auto& [n, v] : headers) {
        if (n.size() == name.size() && strncasecmp(n.data(), name.data(), n.size()) == 0) ++count;
    }
    return count;
}

MessageParser::MessageParser(MessageKind kind, std::size_t max_headers) : impl_(std::make_unique<Impl>()), kind_(kind) {
    impl_->max_headers = max_headers;
    auto& s = impl_->settings;
    llhttp_settings_init(&s);
    s.on_message_begin = on_message_begin;
    s.on_url = on_url;
    s.on_status = on_status;
    s.on_header_field = on_header_field;
    s.on_header_field_complete = on_header_field_complete;
    s.on_header_value = on_header_value;
    s.on_headers_complete = on_headers_complete;
    s.on_body = on_body;
    s.on_message_complete = on_message_complete;
    llhttp_init(&impl_->parser, kind_ == MessageKind::request ? HTTP_REQUEST : HTTP_RESPONSE, &s);
    impl_->parser.data = impl_.get();
    impl_->kind = kind_;
    impl_->head = &head_;
    impl_->body = &body_;
}

void MessageParser::reset() noexcept {
    llhttp_reset(&impl_->parser);  // keeps the settings and the callbacks' data
    impl_->state = Impl::StreamState{};
    renew(head_);
    empty_keeping_small_buffer(body_);
    stage_ = Stage::awaiting_head;
    head_bytes_ = 0;
    consumed_ = 0;
    failure_ = Failure::malformed_request;
    error_detail_.clear();
}

MessageParser::~MessageParser() = default;

MessageParser::Status MessageParser::fail(Failure failure, std::string detail) {
    failure_ = for_kind(kind_, failure);
    error_detail_ = std::move(detail);
    stage_ = Stage::failed;
    return Status::error;
}

void MessageParser::skip_body() {
    impl_->parser.flags |= F_SKIPBODY;
    head_.framing = BodyFraming::none;
}

// llhttp paused in one of our callbacks: report the event and move the stage on. A pause with
// neither event would repeat itself forever, so it is an error.
MessageParser::Status MessageParser::on_pause(bool head_ended, bool message_ended) {
    if (head_ended) {
        stage_ = head_.upgrade ? Stage::upgraded : Stage::in_body;
        head_bytes_ = 0;
        if (stage_ == Stage::in_body) llhttp_resume(&impl_->parser);
        return Status::head_complete;
    }
    if (message_ended && stage_ == Stage::in_body) {
        stage_ = Stage::awaiting_head;
        llhttp_resume(&impl_->parser);
        return Status::message_complete;
    }
    return fail(Failure::malformed_request, "the parser paused without an event");
}

MessageParser::Status MessageParser::feed(std::string_view bytes) {
    consumed_ = 0;
    switch (stage_) {
    case Stage::failed: return Status::error;
    case Stage::upgraded: return fail(Failure::upgrade_not_supported, "bytes after an upgrade are not HTTP/1.x");
    case Stage::awaiting_head:
    case Stage::in_body: break;
    }
    impl_->state.feed_begin = bytes.data();
    const llhttp_errno_t rc = llhttp_execute(&impl_->parser, bytes.data(), bytes.size());
    const char* stop = rc == HPE_OK ? bytes.data() + bytes.size() : llhttp_get_error_pos(&impl_->parser);
    consumed_ = static_cast<std::size_t>(stop - bytes.data());
    impl_->state.feed_offset += consumed_;  // the caller feeds what was not consumed again
    const bool head_ended = std::exchange(impl_->state.head_completed, false);
    const bool message_ended = std::exchange(impl_->state.message_completed, false);
    if (stage_ == Stage::awaiting_head) {
        head_bytes_ += consumed_;
        if (head_bytes_ > kMaxRequestHeadBytes) return fail(Failure::request_head_too_large, "head too large");
    }
    switch (rc) {
    case HPE_OK: return Status::need_more;
    case HPE_PAUSED: return on_pause(head_ended, message_ended);
    // We pause in on_headers_complete before llhttp can pause for an upgrade, and never resume
    // an upgrade head; reaching this means that promise broke.
    case HPE_PAUSED_UPGRADE: return fail(Failure::malformed_request, "the parser passed an upgrade");
    default: break;
    }
    if (impl_->state.too_many_headers) return fail(Failure::request_head_too_large, "too many header fields");
    if (impl_->state.violation) return fail(*impl_->state.violation, std::string(reason_of(*impl_->state.violation)));
    const std::string detail = llhttp_get_error_reason(&impl_->parser);
    return fail(failure_of(rc, detail), detail);
}

MessageParser::Status MessageParser::finish() {
    consumed_ = 0;
    switch (stage_) {
    case Stage::failed: return Status::error;
    case Stage::upgraded: return fail(Failure::upgrade_not_supported, "the connection ended after an upgrade head");
    case Stage::awaiting_head:
    case Stage::in_body: break;
    }
    const llhttp_errno_t rc = llhttp_finish(&impl_->parser);
    const bool message_ended = std::exchange(impl_->state.message_completed, false);
    if (rc == HPE_PAUSED) return on_pause(false, message_ended);
    if (rc == HPE_OK) return Status::need_more;  // nothing was pending: the caller knows whether that is a clean end
    return fail(kind_ == MessageKind::response ? Failure::upstream_failed : Failure::malformed_request,
                "the message was cut off");
}

}  // namespace egressgate::http
