#include "proxy/audit_writer.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string_view>
#include <algorithm>
#include <utility>

#include <spdlog/spdlog.h>

namespace egressgate::proxy {

namespace {

// Bytes written in one write(2) at most: a batch goes out in few system calls, and a line is
// never split across two writes unless it is itself this long.
constexpr std::size_t kMaxWriteBytes = 1 << 20;

// Writes `bytes`, retried on EINTR and short writes, and returns how many went out: fewer than
// all when the disk refused (errno says why; ENOSPC for a write that made no progress).
std::size_t write_all(int fd, std::string_view bytes) {
    std::size_t written = 0;
    while (written < bytes.size()) {
        const ssize_t n = ::write(fd, bytes.data() + written, bytes.size() - written);
        if (n < 0 && errno == EINTR) continue;
        if (n == 0) errno = ENOSPC;
        if (n <= 0) break;
        written += static_cast<std::size_t>(n);
    }
    return written;
}

bool write_fully(int fd, std::string_view bytes) { return write_all(fd, bytes) == bytes.size(); }


// Opens `path` for appending (creating it 0640) and ends a line a crash cut off. Throws
// std::runtime_error naming the path.
int open_for_append(const std::string& path) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0) throw std::runtime_error("audit.path: cannot open \"" + path + "\" for appending: " + std::strerror(errno));
    // O_APPEND writes land at the end; reading the last byte needs a descriptor of its own.
    const int reader = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (reader < 0) return fd;
    struct stat st {};
    char last = '\n';
    const bool cut = ::fstat(reader, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0 &&
                     ::pread(reader, &last, 1, st.st_size - 1) == 1 && last != '\n';
    ::close(reader);
    if (cut && !write_fully(fd, "\n")) {
        const int error = errno;
        ::close(fd);
        throw std::runtime_error("audit.path: cannot end the cut-off last line of \"" + path + "\": " + std::strerror(error));
    }
    if (cut) spdlog::warn("audit file {} ended in a cut-off line (a crash?): ended it with a newline", path);
    return fd;
}

}  // namespace

AuditWriter::AuditWriter(const std::string& path)
    : path_(path), fd_(path == "-" ? STDOUT_FILENO : open_for_append(path)), owns_fd_(path != "-") {
    thread_ = std::thread([this] { run(); });
}

void AuditWriter::reopen() {
    {
        std::lock_guard lock(mutex_);
        reopen_requested_ = true;
    }
    wake_.notify_one();
}

// After log rotation moved the file away: lines written so far went to the old file, the next
// batch goes to a new one at the configured path. If it cannot be opened, writing goes on into
// the old one, so nothing is lost.
void AuditWriter::switch_files() {
    if (!owns_fd_) return;
    try {
        const int next = open_for_append(path_);
        ::close(fd_);
        fd_ = next;
        line_cut_ = false;  // open_for_append ended any cut line of the new file
        spdlog::info("audit: reopened {}", path_);
    } catch (const std::exception& e) {
        spdlog::error("{}; still writing to the file that was open", e.what());
    }
}

AuditWriter::~AuditWriter() {
    stop();
    if (owns_fd_) ::close(fd_);
}

void AuditWriter::Lines::clear() {
    if (bytes.capacity() > kRetainedAuditBufferBytes) {
        std::string().swap(bytes);
        std::vector<std::size_t>().swap(ends);
    }
    bytes.clear();
    ends.clear();
}

// A line that cannot be queued (no memory) is dropped and counted, like one over the limit.
void AuditWriter::write(std::string_view line) {
    bool batch_full = false;
    {
        std::lock_guard lock(mutex_);
        if (queue_.ends.size() >= kMaxQueuedAuditLines) {
            ++dropped_;
            return;
        }
        const std::size_t queued_bytes = queue_.bytes.size();
        try {
            queue_.bytes.append(line);
            queue_.ends.push_back(queue_.bytes.size());
        } catch (const std::bad_alloc&) {
            queue_.bytes.resize(queued_bytes);  // no part of the line stays queued
            ++dropped_;
            return;
        }
        batch_full = queue_.ends.size() == kAuditBatchLines;
    }
    if (batch_full) wake_.notify_one();
}

void AuditWriter::stop() {
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    wake_.notify_one();
    if (thread_.joinable()) thread_.join();
}

std::uint64_t AuditWriter::dropped_lines() const {
    std::lock_guard lock(mutex_);
    return dropped_;
}

std::uint64_t AuditWriter::written_lines() const {
    std::lock_guard lock(mutex_);
    return written_;
}

std::optional<std::string> AuditWriter::failure() const {
    std::lock_guard lock(mutex_);
    return failure_;
}

// Takes the whole queue at once and writes it outside the lock: few system calls per batch.
void AuditWriter::run() {
    Lines batch;
    bool reopen = false;
    for (;;) {
        {
            std::unique_lock lock(mutex_);
            wake_.wait_for(lock, kAuditFlushInterval,
                           [this] { return stopping_ || reopen_requested_ || queue_.ends.size() >= kAuditBatchLines; });
            if (queue_.ends.empty() && stopping_ && !reopen_requested_) return;
            std::swap(batch, queue_);
            reopen = std::exchange(reopen_requested_, false);
        }
        if (!batch.ends.empty()) write_batch(batch);
        batch.clear();
        if (reopen) switch_files();
    }
}

// Lines go out in writes of up to kMaxWriteBytes, each ending at a line's end (a longer line
// is a write of its own). A write the disk refuses loses its lines, which are counted as
// dropped, never half-written on purpose.
void AuditWriter::write_batch(const Lines& batch) {
    std::size_t first = 0;
    while (first < batch.ends.size()) {
        const std::size_t start = first == 0 ? 0 : batch.ends[first - 1];
        auto end = std::upper_bound(batch.ends.begin() + static_cast<std::ptrdiff_t>(first), batch.ends.end(),
                                    start + kMaxWriteBytes);
        if (end == batch.ends.begin() + static_cast<std::ptrdiff_t>(first)) ++end;  // one line past the limit
        const auto last = static_cast<std::size_t>(end - batch.ends.begin());
        write_block(batch, first, last);
        first = last;
    }
}

// Writes lines [first_line, end_line) of the batch with one write_all.
void AuditWriter::write_block(const Lines& batch, std::size_t first_line, std::size_t end_line) {
    const std::size_t start = first_line == 0 ? 0 : batch.ends[first_line - 1];
    const std::string_view block(batch.bytes.data() + start, batch.ends[end_line - 1] - start);
    // A write the disk cut off mid-line left a partial line: it gets its newline before the
    // next block, so that the next line stays whole and a line of its own.
    if (line_cut_) line_cut_ = !write_fully(fd_, "\n");
    const std::size_t written = line_cut_ ? 0 : write_all(fd_, block);
    const std::size_t lines = end_line - first_line;
    if (written == block.size()) {
        std::lock_guard lock(mutex_);
        written_ += lines;
        failure_.reset();
        return;
    }
    const int error = errno;
    const auto ends = batch.ends.begin() + static_cast<std::ptrdiff_t>(first_line);
    const auto past_written = std::upper_bound(ends, ends + static_cast<std::ptrdiff_t>(lines), start + written);
    const auto whole = static_cast<std::size_t>(past_written - ends);
    const std::uint64_t lost = lines - whole;
    line_cut_ = line_cut_ || (written > 0 && (whole == 0 || batch.ends[first_line + whole - 1] != start + written));
    {
        std::lock_guard lock(mutex_);
        dropped_ += lost;
        written_ += whole;
        failure_ = std::string(std::strerror(error));
    }
    if (const auto held_back = write_failures_.admit()) {
        spdlog::error("audit: cannot write {} lines: {} ({} more failed writes not logged)", lost, std::strerror(error),
                      *held_back);
    }
}

}  // namespace egressgate::proxy
