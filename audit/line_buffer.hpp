#pragma once
// The buffer an audit line is built in: room for a typical line inline, so that formatting one
// allocates nothing. A field asks for room once, for the most its value can take, and is written
// through a plain pointer: this runs for every field of every connection's line. No I/O here.
#include <algorithm>
#include <cstddef>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>

namespace egressgate::audit {

// A connection's line is about 450 bytes, and each field asks for room for its worst case before it
// is written (see reserve), so the inline room is twice that.
inline constexpr std::size_t kTypicalLineBytes = 1024;

class LineBuffer {
public:
    LineBuffer() = default;
    LineBuffer(const LineBuffer&) = delete;
    LineBuffer& operator=(const LineBuffer&) = delete;

    void push_back(char c) {
        make_room(1);
        data_[size_++] = c;
    }
    void append(const char* p, std::size_t n) {
        if (n == 0) return;  // an empty view may have no data at all, and memcpy wants some
        make_room(n);
        std::memcpy(data_ + size_, p, n);
        size_ += n;
    }
    void append(const char* begin, const char* end) { append(begin, static_cast<std::size_t>(end - begin)); }
    // Room for `n` more bytes, to be written from the pointer returned; commit() then says where
    // they end. Nothing else may touch the buffer in between.
    char* reserve(std::size_t n) {
        make_room(n);
        return data_ + size_;
    }
    void commit(const char* end) { size_ = static_cast<std::size_t>(end - data_); }
    std::size_t size() const { return size_; }
    std::string_view view() const { return {data_, size_}; }
    std::string str() const { return std::string(data_, size_); }

private:
    void make_room(std::size_t n) {
        if (n > capacity_ - size_) grow(n);
    }
    void grow(std::size_t n) {
        const std::size_t capacity = std::max(capacity_ * 2, size_ + n);
        auto bigger = std::make_unique<char[]>(capacity);
        std::memcpy(bigger.get(), data_, size_);
        heap_ = std::move(bigger);
        data_ = heap_.get();
        capacity_ = capacity;
    }

    char inline_[kTypicalLineBytes];
    std::unique_ptr<char[]> heap_;
    char* data_ = inline_;
    std::size_t size_ = 0;
    std::size_t capacity_ = kTypicalLineBytes;
};

}  // namespace egressgate::audit
