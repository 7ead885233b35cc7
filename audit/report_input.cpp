#include "audit/report_input.hpp"

#include <cerrno>
#include <cstring>

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

namespace egressgate::audit {

// Bytes of the file (or of the text inside it): the count, 0 at its end, kReadError or
// kDataError on an error (said in error).
class AuditFileReader::Source {
public:
    static constexpr std::ptrdiff_t kReadError = -1;
    static constexpr std::ptrdiff_t kDataError = -2;
    virtual ~Source() = default;
    virtual std::ptrdiff_t read(char* out, std::size_t size, std::string& error) = 0;
};

namespace {

// RFC 1952 section 2.3.1: ID1 ID2.
constexpr unsigned char kGzipMagic[] = {0x1f, 0x8b};

// The file itself; the bytes read to recognise its format come first.
class FileSource final : public AuditFileReader::Source {
public:
    FileSource(int fd, std::string prefix) : fd_(fd), prefix_(std::move(prefix)) {}
    ~FileSource() override { ::close(fd_); }
    FileSource(const FileSource&) = delete;
    FileSource& operator=(const FileSource&) = delete;

    std::ptrdiff_t read(char* out, std::size_t size, std::string& error) override {
        if (prefix_used_ < prefix_.size()) {
            const std::size_t n = std::min(size, prefix_.size() - prefix_used_);
            std::memcpy(out, prefix_.data() + prefix_used_, n);
            prefix_used_ += n;
            return static_cast<std::ptrdiff_t>(n);
        }
        while (true) {
            const ssize_t n = ::read(fd_, out, size);
            if (n >= 0) return n;
            if (errno == EINTR) continue;
            error = std::strerror(errno);
            return kReadError;
        }
    }

private:
    int fd_;
    std::string prefix_;
    std::size_t prefix_used_ = 0;
};

// The text inside gzip data: every member, one after the other (what `zcat` gives).
class GzipSource final : public AuditFileReader::Source {
public:
    explicit GzipSource(std::unique_ptr<FileSource> file) : file_(std::move(file)), in_(kAuditReadChunkBytes) {
        // 16 + MAX_WBITS: a gzip header and trailer, nothing else.
        ok_ = inflateInit2(&z_, 16 + MAX_WBITS) == Z_OK;
    }
    ~GzipSource() override {
        if (ok_) inflateEnd(&z_);
    }
    GzipSource(const GzipSource&) = delete;
    GzipSource& operator=(const GzipSource&) = delete;

    std::ptrdiff_t read(char* out, std::size_t size, std::string& error) override {
        if (!ok_) {
            error = "zlib could not be initialised";
            return kReadError;
        }
        z_.next_out = reinterpret_cast<Bytef*>(out);
        z_.avail_out = static_cast<uInt>(std::min<std::size_t>(size, UINT32_MAX));
        const uInt wanted = z_.avail_out;
        // Each turn reads input, inflates some, or ends: it never goes round without progress.
        while (z_.avail_out == wanted) {
            if (z_.avail_in == 0 && !input_ended_) {
                const std::ptrdiff_t n = file_->read(reinterpret_cast<char*>(in_.data()), in_.size(), error);
                if (n < 0) return n;
                if (n == 0) input_ended_ = true;
                z_.next_in = in_.data();
                z_.avail_in = static_cast<uInt>(n);
            }
            if (member_ended_) {
                if (z_.avail_in == 0) return 0;  // input_ended_: the end, after a whole member
                inflateReset(&z_);  // another member follows
                member_ended_ = false;
            }
            if (z_.avail_in == 0 && input_ended_) {
                error = "gzip data cut short";
                return kDataError;
            }
            const int rc = inflate(&z_, Z_NO_FLUSH);
            if (rc == Z_STREAM_END) {
                member_ended_ = true;
            } else if (rc == Z_BUF_ERROR && z_.avail_in == 0) {
                // wants more input: read next turn
            } else if (rc != Z_OK) {
                error = std::string("corrupt gzip data: ") + (z_.msg != nullptr ? z_.msg : zError(rc));
                return kDataError;
            }
        }
        return static_cast<std::ptrdiff_t>(wanted - z_.avail_out);
    }

private:
    std::unique_ptr<FileSource> file_;
    std::vector<Bytef> in_;
    z_stream z_{};
    bool ok_ = false;
    bool input_ended_ = false;
    bool member_ended_ = false;
};

}  // namespace

AuditFileReader::AuditFileReader(const std::string& path)
    : buffer_(kMaxAuditLineBytes + kAuditReadChunkBytes + 1) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        error_ = std::strerror(errno);
        return;
    }
    // The first two bytes say which format; a file of fewer bytes is plain text.
    std::string prefix;
    char magic[sizeof kGzipMagic];
    while (prefix.size() < sizeof magic) {
        const ssize_t n = ::read(fd, magic, sizeof magic - prefix.size());
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            error_ = std::strerror(errno);
            ::close(fd);
            return;
        }
        if (n == 0) break;
        prefix.append(magic, static_cast<std::size_t>(n));
    }
    gzip_ = prefix.size() == sizeof kGzipMagic && std::memcmp(prefix.data(), kGzipMagic, sizeof kGzipMagic) == 0;
    auto file = std::make_unique<FileSource>(fd, std::move(prefix));
    if (gzip_) {
        source_ = std::make_unique<GzipSource>(std::move(file));
    } else {
        source_ = std::move(file);
    }
}

AuditFileReader::~AuditFileReader() = default;

bool AuditFileReader::fill() {
    const std::ptrdiff_t n = source_->read(buffer_.data() + end_, buffer_.size() - end_, error_);
    if (n < 0) {
        data_error_ = n == Source::kDataError;
        return false;
    }
    if (n == 0) eof_ = true;
    end_ += static_cast<std::size_t>(n);
    bytes_read_ += static_cast<std::uint64_t>(n);
    return true;
}

bool AuditFileReader::next(Line& line) {
    if (!source_ || !error_.empty()) return false;
    while (true) {
        if (scan_ < end_) {
            const auto* newline = static_cast<const char*>(std::memchr(buffer_.data() + scan_, '\n', end_ - scan_));
            if (newline != nullptr) {
                const auto at = static_cast<std::size_t>(newline - buffer_.data());
                line.number = ++lines_;
                line.too_long = discarding_ || at - begin_ > kMaxAuditLineBytes;
                line.text = line.too_long ? std::string_view() : std::string_view(buffer_.data() + begin_, at - begin_);
                discarding_ = false;
                begin_ = scan_ = at + 1;
                return true;
            }
            scan_ = end_;
        }
        if (eof_) {
            if (begin_ == end_ && !discarding_) return false;
            line.number = ++lines_;  // the last line, without its '\n'
            line.too_long = discarding_ || end_ - begin_ > kMaxAuditLineBytes;
            line.text = line.too_long ? std::string_view() : std::string_view(buffer_.data() + begin_, end_ - begin_);
            discarding_ = false;
            begin_ = scan_ = end_;
            return true;
        }
        // No '\n' in what is buffered: make room for more, dropping a line that is too long.
        if (end_ - begin_ > kMaxAuditLineBytes) discarding_ = true;
        if (discarding_) {
            begin_ = scan_ = end_ = 0;
        } else if (begin_ > 0) {
            std::memmove(buffer_.data(), buffer_.data() + begin_, end_ - begin_);
            end_ -= begin_;
            scan_ -= begin_;
            begin_ = 0;
        }
        if (!fill()) return false;
    }
}

}  // namespace egressgate::audit
