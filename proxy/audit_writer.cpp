#include "proxy/audit_writer.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string_view>

#include <spdlog/spdlog.h>

namespace egressgate::proxy {

namespace {

// Bytes written in one write(2) at most: a batch goes out in few system calls, and a line is
// never split across two writes unless it is itself this long.
constexpr std::size_t kMaxWriteBytes = 1 << 20;

// All of `bytes`, retried on EINTR and short writes. False: the disk refused (errno says why).
bool write_fully(int fd, std::string_view bytes) {
    while (!bytes.empty()) {
        const ssize_t n = ::write(fd, bytes.data(), bytes.size());
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        bytes.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
}

}  // namespace

AuditWriter::AuditWriter(const std::string& path) : fd_(STDOUT_FILENO), owns_fd_(path != "-") {
    if (owns_fd_) {
        fd_ = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
        if (fd_ < 0) {
            throw std::runtime_error("audit.path: cannot open \"" + path + "\" for appending: " + std::strerror(errno));
        }
        // O_APPEND writes land at the end; pread needs the file readable, so read the tail apart.
        const int reader = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (reader >= 0) {
            struct stat st {};
            char last = '\n';
            const bool cut = ::fstat(reader, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0 &&
                             ::pread(reader, &last, 1, st.st_size - 1) == 1 && last != '\n';
            ::close(reader);
            if (cut && !write_fully(fd_, "\n")) {
                const int error = errno;
                ::close(fd_);
                throw std::runtime_error("audit.path: cannot end the cut-off last line of \"" + path + "\": " +
                                         std::strerror(error));
            }
            if (cut) spdlog::warn("audit file {} ended in a cut-off line (a crash?): ended it with a newline", path);
        }
    }
    thread_ = std::thread([this] { run(); });
}

AuditWriter::~AuditWriter() {
    stop();
    if (owns_fd_) ::close(fd_);
}

void AuditWriter::write(std::string line) {
    bool batch_full = false;
    {
        std::lock_guard lock(mutex_);
        if (queue_.size() >= kMaxQueuedAuditLines) {
            ++dropped_;
            return;
        }
        queue_.push_back(std::move(line));
        batch_full = queue_.size() == kAuditBatchLines;
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

// Takes the whole queue at once and writes it outside the lock: few system calls per batch.
void AuditWriter::run() {
    std::deque<std::string> batch;
    for (;;) {
        {
            std::unique_lock lock(mutex_);
            wake_.wait_for(lock, kAuditFlushInterval, [this] { return stopping_ || queue_.size() >= kAuditBatchLines; });
            if (queue_.empty() && stopping_) return;
            batch.swap(queue_);
        }
        if (batch.empty()) continue;
        write_batch(batch);
        batch.clear();
    }
}

// Lines are gathered into writes of up to kMaxWriteBytes, each ending at a line's end. A write
// the disk refuses loses its lines, which are counted as dropped, never half-written on purpose.
void AuditWriter::write_batch(const std::deque<std::string>& batch) {
    std::string block;
    block.reserve(kMaxWriteBytes);
    std::uint64_t lines_in_block = 0;
    const auto flush = [&] {
        if (block.empty()) return;
        if (!write_fully(fd_, block)) {
            const int error = errno;
            {
                std::lock_guard lock(mutex_);
                dropped_ += lines_in_block;
            }
            if (const auto held_back = write_failures_.admit()) {
                spdlog::error("audit: cannot write {} lines: {} ({} more failed writes not logged)", lines_in_block,
                              std::strerror(error), *held_back);
            }
        }
        block.clear();
        lines_in_block = 0;
    };
    for (const auto& line : batch) {
        if (block.size() + line.size() > kMaxWriteBytes) flush();
        block += line;
        ++lines_in_block;
    }
    flush();
}

}  // namespace egressgate::proxy
