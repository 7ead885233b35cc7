#pragma once
// Audit files read back for `egressgate report`, line by line with bounded memory: plain text or
// gzip (recognised by its magic bytes, so rotated files work whatever they are called; several
// concatenated gzip members are read one after the other). This reads the one file it is given
// and nothing else.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace egressgate::audit {

// A longer line is a bad line: skipped up to its newline without being held in memory. An audit
// line is well under 64 KiB (every field is bounded: host names, SNI, ALPN from one ClientHello).
inline constexpr std::size_t kMaxAuditLineBytes = 1 << 20;
// Bytes asked of the file (or of zlib) at a time.
inline constexpr std::size_t kAuditReadChunkBytes = 1 << 20;

class AuditFileReader {
public:
    struct Line {
        std::string_view text;     // without its '\n'; valid until the next call
        std::uint64_t number = 0;  // 1-based
        bool too_long = false;     // over kMaxAuditLineBytes: text is empty
    };

    // Opens the file; error() says why when it could not be.
    explicit AuditFileReader(const std::string& path);
    ~AuditFileReader();
    AuditFileReader(const AuditFileReader&) = delete;
    AuditFileReader& operator=(const AuditFileReader&) = delete;

    // The next line. False at the end of the file, or on an error (error() is then set: a read
    // error, or gzip data that is corrupt or cut short, after the lines before it). A last
    // line without a '\n' is a line.
    bool next(Line& line);

    const std::string& error() const { return error_; }
    // The error is in the data (gzip that is corrupt or cut short), not in reading the file.
    bool data_error() const { return data_error_; }
    bool gzip() const { return gzip_; }
    std::uint64_t bytes_read() const { return bytes_read_; }  // of text (after decompression)
    std::uint64_t lines_read() const { return lines_; }

    class Source;  // the file, or the file through zlib

private:
    bool fill();

    std::unique_ptr<Source> source_;
    std::string error_;
    bool data_error_ = false;
    bool gzip_ = false;
    bool eof_ = false;
    bool discarding_ = false;  // inside a line over kMaxAuditLineBytes
    std::vector<char> buffer_;
    std::size_t begin_ = 0;  // the unread text is buffer_[begin_, end_)
    std::size_t scan_ = 0;   // no '\n' in [begin_, scan_)
    std::size_t end_ = 0;
    std::uint64_t bytes_read_ = 0;
    std::uint64_t lines_ = 0;
};

}  // namespace egressgate::audit
