#pragma once
// Writes audit lines on a thread of its own, so that a slow disk never stalls a tunnel.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "proxy/log_throttle.hpp"

namespace egressgate::proxy {

// Lines queued beyond this are dropped and counted (/metrics: egressgate_audit_lines_dropped):
// memory stays bounded (about 50 MB of lines, over ten seconds at 10,000 connections a second) if
// the disk stops.
inline constexpr std::size_t kMaxQueuedAuditLines = 1 << 17;
// The writer wakes this often, or as soon as this many lines wait: waking it for every line
// would cost each connection a futex call and two context switches.
inline constexpr std::chrono::milliseconds kAuditFlushInterval{50};
inline constexpr std::size_t kAuditBatchLines = 512;
// A batch buffer that a burst (a disk that stalled) grew past this is given back once written;
// below it, it is kept, so that lines are queued with no allocation.
inline constexpr std::size_t kRetainedAuditBufferBytes = 4 << 20;

class AuditWriter {
public:
    // path "-" writes to stdout. Opens the file for appending (O_APPEND: concurrent writers and
    // rotation tools see whole lines), and if its last byte is not a newline (a crash or power
    // loss cut the last line), writes one first, so that the cut line stays a line of its own.
    // Throws std::runtime_error (start-up only) if the file cannot be opened.
    explicit AuditWriter(const std::string& path);
    ~AuditWriter();  // stop()s
    AuditWriter(const AuditWriter&) = delete;
    AuditWriter& operator=(const AuditWriter&) = delete;

    // Thread-safe, never blocks on I/O. The line (with its '\n') is copied; it reaches the file
    // within kAuditFlushInterval.
    void write(std::string_view line);
    // SIGUSR1, after log rotation moved the file: what is queued goes to the old file, what comes
    // after to a new file at the same path. Lines are never lost or split across the two.
    void reopen();
    // Writes everything queued, then joins the writer thread. Idempotent.
    void stop();
    std::uint64_t dropped_lines() const;
    std::uint64_t written_lines() const;
    // Why the last write failed (a full disk, an unwritable file), while the writes fail: the
    // proxy is not ready then (/readyz), though tunnels go on and the lines are counted as dropped.
    std::optional<std::string> failure() const;

private:
    // Queued lines end to end in one buffer: queueing a line allocates nothing once the buffer
    // has grown to a batch. The queue and the writer's batch swap and keep their capacity, so
    // that no line is a block allocated by a worker and freed by the writer. While the disk
    // stalls the queue grows by doubling, each time copying what it holds under the lock.
    struct Lines {
        std::string bytes;
        std::vector<std::size_t> ends;  // offsets in bytes where each line ends
        void clear();
    };

    void run();
    void write_batch(const Lines& batch);
    void write_block(const Lines& batch, std::size_t first_line, std::size_t end_line);
    void switch_files();

    const std::string path_;
    int fd_;
    bool owns_fd_;
    mutable std::mutex mutex_;
    std::condition_variable wake_;
    Lines queue_;
    bool stopping_ = false;
    bool reopen_requested_ = false;
    bool line_cut_ = false;  // writer thread only: the file ends in a partial line
    std::uint64_t dropped_ = 0;
    std::uint64_t written_ = 0;
    std::optional<std::string> failure_;
    LogThrottle write_failures_;
    std::thread thread_;
};

}  // namespace egressgate::proxy
