#include "proxy/http_message.hpp"

#include <strings.h>

#include <utility>

#include <cctype>
#include <cstring>

#include <llhttp.h>

#include "proxy/responses.hpp"

namespace egressgate::http {

struct MessageParser::Impl {
    llhttp_t parser{};
    llhttp_settings_t settings{};
    MessageKind kind;
    MessageHead* head = nullptr;
    std::string* body = nullptr;
    bool in_head = true;  // false after the head: header callbacks then are trailers, dropped
    bool head_completed = false;  // set by on_headers_complete, taken by feed()
    bool in_value = false;
    bool too_many_headers = false;
    // Obsolete line folding shows up as a second value chunk that does not continue the first:
    // llhttp skipped the CRLF and the indentation between them.
    const char* feed_begin = nullptr;
    const char* feed_end = nullptr;
    const char* value_end = nullptr;
    bool value_crossed_feed = false;
    std::string_view violation;  // what our own checks refused, when llhttp let it through
};

namespace {

using Impl = MessageParser::Impl;

Impl& impl_of(llhttp_t* p) { return *static_cast<Impl*>(p->data); }

// RFC 9110 token characters: what a header name may consist of.
bool is_token_char(unsigned char c) {
    return std::isalnum(c) != 0 || (c != 0 && std::strchr("!#$%&'*+-.^_`|~", c) != nullptr);
}

int refuse(Impl& impl, std::string_view violation) {
    impl.violation = violation;
    return -1;
}

int on_message_begin(llhttp_t* p) {
    auto& impl = impl_of(p);
    *impl.head = MessageHead{};
    impl.in_head = true;
    impl.in_value = false;
    return 0;
}

int on_url(llhttp_t* p, const char* at, std::size_t len) {
    impl_of(p).head->target.append(at, len);
    return 0;
}

int on_status(llhttp_t* p, const char* at, std::size_t len) {
    impl_of(p).head->reason_phrase.append(at, len);
    return 0;
}

int on_header_field(llhttp_t* p, const char* at, std::size_t len) {
    auto& impl = impl_of(p);
    if (!impl.in_head) return 0;
    auto& headers = impl.head->headers;
    if (impl.in_value || headers.empty()) {
        if (headers.size() == kMaxHeaderCount) {
            impl.too_many_headers = true;
            return -1;
        }
        headers.emplace_back();
        impl.in_value = false;
    }
    headers.back().first.append(at, len);
    return 0;
}

int on_header_field_complete(llhttp_t* p) {
    auto& impl = impl_of(p);
    if (!impl.in_head) return 0;
    for (unsigned char c : impl.head->headers.back().first) {
        if (!is_token_char(c)) return refuse(impl, reason::invalid_header_name);
    }
    return 0;
}

// llhttp 8 accepts obsolete line folding and reports the continuation as more value bytes; a
// proxy must refuse it (RFC 9112 section 5.2). A value split across reads is contiguous.
int on_header_value(llhttp_t* p, const char* at, std::size_t len) {
    auto& impl = impl_of(p);
    if (!impl.in_head) return 0;
    if (impl.in_value) {
        const bool contiguous = at == impl.value_end || (impl.value_crossed_feed && at == impl.feed_begin);
        if (!contiguous) return refuse(impl, reason::obsolete_line_folding);
    }
    impl.in_value = true;
    impl.value_end = at + len;
    impl.value_crossed_feed = false;
    impl.head->headers.back().second.append(at, len);
    return 0;
}

BodyFraming framing_of(const llhttp_t* p, MessageKind kind) {
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
    if (impl.kind == MessageKind::request) head.method = llhttp_method_name(static_cast<llhttp_method_t>(p->method));
    head.status = p->status_code;
    head.version_major = p->http_major;
    head.version_minor = p->http_minor;
    head.framing = framing_of(p, impl.kind);
    head.content_length = head.framing == BodyFraming::content_length ? p->content_length : 0;
    head.keep_alive = llhttp_should_keep_alive(p) != 0;
    head.upgrade = p->upgrade != 0;
    impl.in_head = false;
    impl.head_completed = true;
    return HPE_PAUSED;
}

int on_body(llhttp_t* p, const char* at, std::size_t len) {
    impl_of(p).body->append(at, len);
    return 0;
}

int on_message_complete(llhttp_t*) { return HPE_PAUSED; }

// The fixed reason of an llhttp error, from its error code and, where one code covers several
// cases, its description.
std::string_view reason_of(llhttp_errno_t code, std::string_view detail) {
    switch (code) {
    case HPE_UNEXPECTED_CONTENT_LENGTH:
        return detail.find("Transfer-Encoding") != std::string_view::npos ? reason::content_length_with_transfer_encoding
                                                                           : reason::conflicting_content_length;
    case HPE_INVALID_CONTENT_LENGTH: return reason::invalid_content_length;
    case HPE_INVALID_TRANSFER_ENCODING: return reason::unsupported_transfer_encoding;
    case HPE_INVALID_HEADER_TOKEN:
        return detail.find("value") != std::string_view::npos ? reason::invalid_header_value : reason::invalid_header_name;
    case HPE_LF_EXPECTED:
    case HPE_CR_EXPECTED:
        return detail.find("header value") != std::string_view::npos ? reason::invalid_header_value
                                                                      : reason::malformed_request;
    default: return reason::malformed_request;
    }
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

MessageParser::MessageParser(MessageKind kind) : impl_(std::make_unique<Impl>()) {
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
    llhttp_init(&impl_->parser, kind == MessageKind::request ? HTTP_REQUEST : HTTP_RESPONSE, &s);
    impl_->parser.data = impl_.get();
    impl_->kind = kind;
    impl_->head = &head_;
    impl_->body = &body_;
}

MessageParser::~MessageParser() = default;

MessageParser::Status MessageParser::fail(HeadError e, std::string_view reason, std::string detail) {
    error_ = e;
    error_reason_ = reason;
    error_detail_ = std::move(detail);
    failed_ = true;
    return Status::error;
}

void MessageParser::skip_body() {
    impl_->parser.flags |= F_SKIPBODY;
    head_.framing = BodyFraming::none;
}

MessageParser::Status MessageParser::feed(std::string_view bytes) {
    if (failed_) return Status::error;
    impl_->value_crossed_feed = impl_->in_value && impl_->value_end == impl_->feed_end;
    impl_->feed_begin = bytes.data();
    impl_->feed_end = bytes.data() + bytes.size();
    const llhttp_errno_t rc = llhttp_execute(&impl_->parser, bytes.data(), bytes.size());
    const char* stop = rc == HPE_OK ? bytes.data() + bytes.size() : llhttp_get_error_pos(&impl_->parser);
    consumed_ = static_cast<std::size_t>(stop - bytes.data());
    const bool head_ended = std::exchange(impl_->head_completed, false);
    if (awaiting_head_) {
        head_bytes_ += consumed_;
        if (head_bytes_ > kMaxRequestHeadBytes) return fail(HeadError::too_large, reason::request_head_too_large, "head too large");
    }
    if (rc == HPE_OK) return Status::need_more;
    if (rc == HPE_PAUSED || rc == HPE_PAUSED_UPGRADE) {
        llhttp_resume(&impl_->parser);
        awaiting_head_ = !head_ended;
        head_bytes_ = 0;
        return head_ended ? Status::head_complete : Status::message_complete;
    }
    if (impl_->too_many_headers) return fail(HeadError::too_large, reason::request_head_too_large, "too many header fields");
    if (!impl_->violation.empty()) return fail(HeadError::malformed, impl_->violation, std::string(impl_->violation));
    const std::string detail = llhttp_get_error_reason(&impl_->parser);
    return fail(HeadError::malformed, reason_of(rc, detail), detail);
}

MessageParser::Status MessageParser::finish() {
    if (failed_) return Status::error;
    const llhttp_errno_t rc = llhttp_finish(&impl_->parser);
    consumed_ = 0;
    if (rc == HPE_PAUSED) return Status::message_complete;
    if (rc == HPE_OK) return Status::need_more;  // between messages: a clean end
    return fail(HeadError::malformed, reason::malformed_request, "the message was cut off");
}

}  // namespace egressgate::http
