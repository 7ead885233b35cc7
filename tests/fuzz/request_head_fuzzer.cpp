// libFuzzer target for MessageParser: bytes arrive cut at any point, the way a client or an
// upstream sends them, and the parser is driven the way proxy/session.cpp (read_request_head)
// and proxy/forward/forward_session.cpp (upload_body, relay_response) drive it: feed what is
// pending, erase consumed(), act on the status, read more on need_more. Checked:
//  - the progress promise of http/message.hpp, on which those loops rely to never spin: a feed
//    consumes bytes, reports an event, or asks for more having used everything; no event comes
//    twice without bytes in between (head_complete then message_complete is the one pair of
//    byte-less events in a row); an error is final;
//  - what a reported head promises (message_checks.hpp), and that its framing tells the truth
//    about the body that followed it on the wire.
//  - that a parser reset after reading the stream's first half (the worker's pool reuses request
//    parsers) reads the second half exactly as a new parser does: the same events, bytes used,
//    heads (version included), failures and their details.
// The same bytes go through a request parser and a response parser.
//
// Input: byte 0 = c; c & 7 = how many split bytes follow (0: the stream arrives in one read);
// c & 8: the responses answer a HEAD request (skip_body() on final heads). Each split byte b is
// the size of one read, b + 1, used in turn. The rest is the stream.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "fuzz_check.hpp"
#include "http/message.hpp"
#include "message_checks.hpp"

namespace {

using egressgate::http::BodyFraming;
using egressgate::http::Failure;
using egressgate::http::MessageKind;
using egressgate::http::MessageParser;
using Status = MessageParser::Status;

// The smallest chunked body on the wire: "0\n\n" (llhttp accepts a bare LF).
constexpr std::size_t kMinChunkedBodyBytes = 3;

class StreamCheck {
public:
    StreamCheck(MessageParser& parser, MessageKind kind, bool answers_head)
        : parser_(parser), kind_(kind), answers_head_(answers_head) {}

    // What the parser reported, event by event: two runs that read alike record the same text.
    const std::string& trace() const { return trace_; }

    // One read's worth of bytes: fed until the parser asks for more or fails.
    void deliver(std::string_view bytes) {
        pending_.append(bytes);
        // Each round uses a byte or reports an event, and events come at most two per byte (the
        // progress checks abort before this bound could be reached).
        const std::size_t max_rounds = 3 * pending_.size() + 4;
        for (std::size_t round = 0;; ++round) {
            FUZZ_REQUIRE(round <= max_rounds);
            const std::size_t given = pending_.size();
            const Status status = parser_.feed(pending_);
            const std::size_t used = parser_.consumed();
            FUZZ_REQUIRE(used <= given);
            pending_.erase(0, used);
            observe(status, used, given);
            if (status == Status::need_more || status == Status::error) return;
        }
    }

    // The peer closed: forward_session calls finish() again after an interim response ends.
    void end_of_stream() {
        for (int i = 0; i < 3; ++i) {
            const Status status = parser_.finish();
            FUZZ_REQUIRE(parser_.consumed() == 0);
            observe(status, 0, 0);
            if (status != Status::message_complete) return;
        }
    }

private:
    void observe(Status status, std::size_t used, std::size_t given) {
        note(status, used);
        if (failed_) FUZZ_REQUIRE(status == Status::error);
        if (used > 0) bytes_since_event_ = true;
        if (in_body_) wire_bytes_ += used;
        body_bytes_ += parser_.body().size();
        parser_.body().clear();  // the callers take the body after every feed
        switch (status) {
        case Status::error: return on_error();
        case Status::need_more: FUZZ_REQUIRE(used == given); return;
        case Status::head_complete:
        case Status::message_complete: break;
        }
        // Two events without a byte between them: only the end of a message without a body
        // right after its head.
        if (!bytes_since_event_) {
            FUZZ_REQUIRE(last_event_ == Status::head_complete && status == Status::message_complete);
        }
        last_event_ = status;
        bytes_since_event_ = false;
        if (status == Status::head_complete) on_head();
        else on_message_end();
    }

    void on_head() {
        FUZZ_REQUIRE(!in_body_);
        FUZZ_REQUIRE(body_bytes_ == 0);  // nothing of a body is decoded before its head is reported
        const auto& head = parser_.head();
        egressgate::fuzz::check_head(head, kind_);
        if (kind_ == MessageKind::response && answers_head_ && head.status >= 200) parser_.skip_body();
        // RFC 9112 6.3: a 1xx, 204 or 304 response ends at its head, whatever its headers say.
        if (kind_ == MessageKind::response && (head.status / 100 == 1 || head.status == 204 || head.status == 304)) {
            FUZZ_REQUIRE(head.framing == BodyFraming::none);
        }
        in_body_ = !head.upgrade;
        framing_ = head.framing;
        content_length_ = head.content_length;
        wire_bytes_ = 0;
    }

    // The body that came is the one the head announced.
    void on_message_end() {
        FUZZ_REQUIRE(in_body_);
        switch (framing_) {
        case BodyFraming::none: FUZZ_REQUIRE(body_bytes_ == 0 && wire_bytes_ == 0); break;
        case BodyFraming::content_length: FUZZ_REQUIRE(body_bytes_ == content_length_); break;
        case BodyFraming::chunked: FUZZ_REQUIRE(wire_bytes_ >= kMinChunkedBodyBytes); break;
        case BodyFraming::until_close: break;
        }
        in_body_ = false;
        body_bytes_ = 0;
    }

    void on_error() {
        failed_ = true;
        FUZZ_REQUIRE(!parser_.error_detail().empty());
        const Failure failure = parser_.failure();
        if (kind_ == MessageKind::request) {
            const int status = egressgate::http::status_of(failure);
            FUZZ_REQUIRE(status == 400 || status == 431);
        } else {
            FUZZ_REQUIRE(failure == Failure::upstream_malformed || failure == Failure::unrequested_upgrade ||
                    failure == Failure::upstream_failed);
        }
    }

    void note(Status status, std::size_t used) {
        trace_ += std::to_string(static_cast<int>(status)) + ' ' + std::to_string(used) + ' ' +
                  std::to_string(parser_.body().size());
        if (status == Status::head_complete) {
            const auto& head = parser_.head();
            trace_ += ' ' + head.method + ' ' + head.target + ' ' + std::to_string(head.status) + ' ' +
                      std::to_string(head.version_major) + '.' + std::to_string(head.version_minor) + ' ' +
                      head.reason_phrase + ' ' + std::to_string(head.headers.size()) + ' ' +
                      std::to_string(static_cast<int>(head.framing)) + ' ' + std::to_string(head.content_length) +
                      (head.keep_alive ? " k" : " -") + (head.upgrade ? " u" : " -");
            for (const auto& [name, value] : head.headers) trace_ += ' ' + name + ':' + value;
        }
        if (status == Status::error) {
            trace_ += ' ' + std::to_string(static_cast<int>(parser_.failure())) + ' ' + parser_.error_detail();
        }
        trace_ += '\n';
    }

    MessageParser& parser_;
    MessageKind kind_;
    bool answers_head_;
    std::string pending_;
    bool failed_ = false;
    std::optional<Status> last_event_;
    bool bytes_since_event_ = true;
    // The message whose head was reported last.
    bool in_body_ = false;
    BodyFraming framing_ = BodyFraming::none;
    std::uint64_t content_length_ = 0;
    std::uint64_t body_bytes_ = 0;  // decoded
    std::uint64_t wire_bytes_ = 0;  // consumed after the head
    std::string trace_;
};

// The stream through `parser`, read by read, then its end unless `to_the_end` is false (the
// connection is still open); returns what the parser reported.
std::string read_stream(MessageParser& parser, MessageKind kind, bool answers_head, std::span<const std::uint8_t> splits,
                        std::string_view stream, bool to_the_end = true) {
    StreamCheck check(parser, kind, answers_head);
    std::size_t next = 0;
    while (!stream.empty()) {
        const std::size_t size = splits.empty() ? stream.size() : std::size_t{splits[next++ % splits.size()]} + 1;
        const std::string_view read = stream.substr(0, size);
        stream.remove_prefix(read.size());
        check.deliver(read);
    }
    if (to_the_end) check.end_of_stream();
    return check.trace();
}

// The whole stream through a new parser; then a parser that read its first half (and stopped
// there: in a head, a body, after an error or an upgrade) is reset and reads the second half,
// which must read as through a new parser.
void run(MessageKind kind, bool answers_head, std::span<const std::uint8_t> splits, std::string_view stream) {
    MessageParser whole(kind);
    read_stream(whole, kind, answers_head, splits, stream);
    const std::string_view first_half = stream.substr(0, stream.size() / 2);
    const std::string_view second_half = stream.substr(first_half.size());
    MessageParser reused(kind);
    read_stream(reused, kind, answers_head, splits, first_half, false);
    reused.reset();
    MessageParser fresh(kind);
    const std::string expected = read_stream(fresh, kind, answers_head, splits, second_half);
    FUZZ_REQUIRE(read_stream(reused, kind, answers_head, splits, second_half) == expected);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const std::uint8_t control = data[0];
    const std::size_t split_count = std::min<std::size_t>(control & 7u, size - 1);
    const bool answers_head = (control & 8u) != 0;
    const std::span<const std::uint8_t> splits(data + 1, split_count);
    const std::string_view stream(reinterpret_cast<const char*>(data) + 1 + split_count, size - 1 - split_count);
    run(MessageKind::request, answers_head, splits, stream);
    run(MessageKind::response, answers_head, splits, stream);
    return 0;
}
