#include "proxy/audit_writer.hpp"

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <vector>

namespace egressgate::proxy {

AuditWriter::AuditWriter(const std::string& path)
    : file_(path == "-" ? stdout : std::fopen(path.c_str(), "a")), owns_file_(path != "-") {
    if (file_ == nullptr) {
        throw std::runtime_error("audit.path: cannot open \"" + path + "\" for appending: " +
                                 std::strerror(errno));
    }
    thread_ = std::thread([this] { run(); });
}

AuditWriter::~AuditWriter() {
    stop();
    if (owns_file_) std::fclose(file_);
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

// Takes the whole queue at once and writes it outside the lock: one flush per batch.
void AuditWriter::run() {
    std::deque<std::string> batch;
    for (;;) {
        {
            std::unique_lock lock(mutex_);
            wake_.wait_for(lock, kAuditFlushInterval,
                           [this] { return stopping_ || queue_.size() >= kAuditBatchLines; });
            if (queue_.empty() && stopping_) return;
            batch.swap(queue_);
        }
        if (batch.empty()) continue;
        for (const auto& line : batch) std::fwrite(line.data(), 1, line.size(), file_);
        std::fflush(file_);
        batch.clear();
    }
}

}  // namespace egressgate::proxy
