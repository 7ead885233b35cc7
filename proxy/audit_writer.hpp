#pragma once
// Writes audit lines on a thread of its own, so that a slow disk never stalls a tunnel.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

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

    // Thread-safe, never blocks on I/O. The line reaches the file within kAuditFlushInterval.
    void write(std::string line);
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
    void run();
    void write_batch(const std::deque<std::string>& batch);
    void switch_files();

    const std::string path_;
    int fd_;
    bool owns_fd_;
    mutable std::mutex mutex_;
    std::condition_variable wake_;
    std::deque<std::string> queue_;
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
