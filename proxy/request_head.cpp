#include "proxy/request_head.hpp"

#include <strings.h>

#include <cctype>
#include <cstring>

#include <llhttp.h>

namespace egressgate::http {

struct RequestHeadParser::Impl {
    llhttp_t parser{};
    llhttp_settings_t settings{};
    RequestHead* head = nullptr;
    bool in_value = false;
    // Obsolete line folding shows up as a second value chunk that does not continue the first:
    // llhttp skipped the CRLF and the indentation between them.
    const char* feed_begin = nullptr;
    const char* feed_end = nullptr;
    const char* value_end = nullptr;
    bool value_crossed_feed = false;
    bool too_many_headers = false;
    const char* violation = nullptr;  // what our own checks refused, when llhttp let it through
};

namespace {

RequestHeadParser::Impl& impl_of(llhttp_t* p) { return *static_cast<RequestHeadParser::Impl*>(p->data); }

int on_url(llhttp_t* p, const char* at, std::size_t len) {
    impl_of(p).head->target.append(at, len);
    return 0;
}

// RFC 9110 token characters: what a header name may consist of.
bool is_token_char(unsigned char c) {
    return std::isalnum(c) != 0 || std::strchr("!#$%&'*+-.^_`|~", c) != nullptr;
}

int refuse(RequestHeadParser::Impl& impl, const char* violation) {
    impl.violation = violation;
    return -1;
}

int on_header_field(llhttp_t* p, const char* at, std::size_t len) {
    auto& impl = impl_of(p);
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
    const std::string& name = impl.head->headers.back().first;
    for (unsigned char c : name) {
        if (c == 0 || !is_token_char(c)) return refuse(impl, "invalid character in header name");
    }
    return 0;
}

// llhttp 8 accepts obsolete line folding and reports the continuation as more value bytes; a
// proxy must refuse it (RFC 9112 section 5.2). A value split across reads is contiguous.
int on_header_value(llhttp_t* p, const char* at, std::size_t len) {
    auto& impl = impl_of(p);
    if (impl.in_value) {
        const bool contiguous = at == impl.value_end || (impl.value_crossed_feed && at == impl.feed_begin);
        if (!contiguous) return refuse(impl, "obsolete line folding");
    }
    impl.in_value = true;
    impl.value_end = at + len;
    impl.value_crossed_feed = false;
    impl.head->headers.back().second.append(at, len);
    return 0;
}

// Stop at the end of the head: the session decides what happens to whatever follows.
int on_headers_complete(llhttp_t* p) {
    auto& head = *impl_of(p).head;
    head.method = llhttp_method_name(static_cast<llhttp_method_t>(p->method));
    head.version_major = p->http_major;
    head.version_minor = p->http_minor;
    return HPE_PAUSED;
}

}  // namespace

std::optional<std::string_view> RequestHead::header(std::string_view name) const {
    for (const auto& [n, v] : headers) {
        if (n.size() == name.size() && strncasecmp(n.data(), name.data(), n.size()) == 0) return v;
    }
    return std::nullopt;
}

RequestHeadParser::RequestHeadParser() : impl_(std::make_unique<Impl>()) {
    llhttp_settings_init(&impl_->settings);
    impl_->settings.on_url = on_url;
    impl_->settings.on_header_field = on_header_field;
    impl_->settings.on_header_field_complete = on_header_field_complete;
    impl_->settings.on_header_value = on_header_value;
    impl_->settings.on_headers_complete = on_headers_complete;
    llhttp_init(&impl_->parser, HTTP_REQUEST, &impl_->settings);
    impl_->parser.data = impl_.get();
    impl_->head = &head_;
}

RequestHeadParser::~RequestHeadParser() = default;

RequestHeadParser::Status RequestHeadParser::fail(HeadError e, std::string detail) {
    error_ = e;
    error_detail_ = std::move(detail);
    done_ = true;
    return Status::error;
}

RequestHeadParser::Status RequestHeadParser::feed(std::string_view bytes) {
    if (done_) return fail(HeadError::malformed, "bytes after a complete request head");
    impl_->value_crossed_feed = impl_->in_value && impl_->value_end == impl_->feed_end;
    impl_->feed_begin = bytes.data();
    impl_->feed_end = bytes.data() + bytes.size();
    const llhttp_errno_t rc = llhttp_execute(&impl_->parser, bytes.data(), bytes.size());
    if (rc == HPE_OK) {
        total_bytes_ += bytes.size();
        if (total_bytes_ > kMaxRequestHeadBytes) return fail(HeadError::too_large, "request head too large");
        return Status::need_more;
    }
    if (rc == HPE_PAUSED || rc == HPE_PAUSED_UPGRADE) {
        consumed_ = static_cast<std::size_t>(llhttp_get_error_pos(&impl_->parser) - bytes.data());
        total_bytes_ += consumed_;
        done_ = true;
        if (total_bytes_ > kMaxRequestHeadBytes) return fail(HeadError::too_large, "request head too large");
        return Status::complete;
    }
    if (impl_->too_many_headers) return fail(HeadError::too_large, "too many header fields");
    if (impl_->violation != nullptr) return fail(HeadError::malformed, impl_->violation);
    return fail(HeadError::malformed, llhttp_get_error_reason(&impl_->parser));
}

}  // namespace egressgate::http
