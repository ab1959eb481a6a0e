// The crash-safe, bounded local log between the inputs and the forwarder: a SQLite database in
// WAL mode. The on-disk format, its invariants, the recovery rules and exactly what each sync
// mode promises are in buffer/FORMAT.md.
//
// Threading: one writer thread, owned by the Buffer, does every write (appends, cursor commits,
// dead letters, trims, drops); callers enqueue and wait. Reads use their own short read
// transactions on a separate connection, so a reader never holds the WAL back. Every method is
// thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "common/record.h"
#include "common/seams.h"
#include "common/status.h"
#include "config/config.h"

namespace edgeferry::buffer {

// The forwarder's cursor. Records with seq <= min(all cursors) are delivered and trimmed.
inline constexpr std::string_view kForwarderCursor = "kafka";

// Drop reasons as they appear in Stats::drops (and in the stats table).
inline constexpr std::string_view kDropOldest = "drop_oldest";  // pushed out by max_bytes
inline constexpr std::string_view kDropNewest = "drop_newest";  // refused at max_bytes
inline constexpr std::string_view kDropMaxAge = "max_age";      // older than max_age_s
inline constexpr std::string_view kDropDiskFull = "disk_full";  // file system full: refused
inline constexpr std::string_view kDropTooLarge = "too_large";  // larger than the whole buffer

struct OpenOptions {
  // Name of a registered sqlite3_vfs to use instead of the default (fault-injection tests).
  std::string vfs;
  // Free bytes on the file system holding `dir`; tells "disk full" from "max_bytes reached"
  // after SQLITE_FULL (SQLite reports both alike). Empty: statvfs(2). A seam for tests.
  std::function<uint64_t(const std::string& dir)> free_disk_bytes;
  // How long Open waits for another process (or Buffer) that holds the buffer's lock file
  // (`<path>.lock`) before it fails with Unavailable naming that process's pid. The CLI's
  // direct access and an agent that is starting contend only for moments.
  int lock_wait_ms = 10000;
};

struct CursorStats {
  uint64_t seq = 0;
  // Records held with seq > cursor. Computed from seq distance and the records held, so it is
  // exact unless records above the cursor were dropped (then it is an upper bound).
  uint64_t lag_records = 0;
};

struct Stats {
  uint64_t records = 0;     // records held (delivered ones are trimmed promptly)
  uint64_t bytes = 0;       // logical bytes held (sum of Record::ByteSize-like sizes)
  uint64_t file_bytes = 0;  // database + WAL on disk now
  uint64_t max_bytes = 0;   // the configured bound for file_bytes
  uint64_t first_seq = 0;   // smallest seq held; 0 when empty
  uint64_t last_seq = 0;    // highest seq ever assigned (the high-water mark)
  // Age of the oldest record after kForwarderCursor, by ingest time; 0 if everything is sent.
  int64_t oldest_undelivered_age_ms = 0;
  std::map<std::string, CursorStats> cursors;
  std::map<std::string, uint64_t> drops;         // reason -> records dropped, ever (persistent)
  std::map<std::string, uint64_t> dead_letters;  // reason -> records in the dead-letter table
  uint64_t recoveries = 0;                       // corrupt databases moved aside, ever (persistent)
  uint64_t appended_total = 0;                   // records accepted, ever (persistent)
  int64_t last_commit_unix_ms = 0;  // last write transaction (this process); 0 if none yet
};

struct DeadLetterEntry {
  int64_t id = 0;
  std::string reason;
  int64_t dead_lettered_unix_ms = 0;
  StoredRecord record;  // as it was when dead-lettered (its original seq)
};

class Buffer final : public RecordSink, public RecordSource {
 public:
  // Opens or creates the database at cfg.path, runs a quick integrity check and moves a corrupt
  // file aside (renamed with a timestamp, -wal/-shm kept) to start a fresh one. A missing or
  // unwritable directory is an IOError naming the path. `clock` must outlive the Buffer.
  static Result<std::unique_ptr<Buffer>> Open(const config::BufferConfig& cfg,
                                              Clock* clock = SystemClock(),
                                              const OpenOptions& opts = {});
  // Stops the writer thread; appends already queued are committed first.
  ~Buffer() override;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  // RecordSink. Returns once the records are committed at cfg.sync durability (see FORMAT.md).
  // Records of one call get consecutive seqs, in order, in one transaction. Errors: Full
  // (when_full=drop_newest, or too large for the buffer), Unavailable (when_full=block and
  // block_timeout_ms passed), Aborted (closing, or did not fit after CancelBlockedAppends),
  // IOError (disk trouble; nothing was stored).
  Status Append(std::vector<Record> records) override;

  // For a prompt shutdown under when_full=block (block_timeout_ms 0 waits for ever): from this
  // call until AllowBlockedAppends, an Append that does not fit returns Aborted at once instead
  // of waiting, and so does every Append waiting for space now. Such a call stored nothing (its
  // caller must not acknowledge upstream). Appends that fit are stored as usual. Idempotent;
  // no effect on the other when_full modes. The agent calls it before stopping its inputs.
  void CancelBlockedAppends();
  // Ends CancelBlockedAppends: appends that do not fit wait again (e.g. after a reload).
  void AllowBlockedAppends();

  // RecordSource.
  Result<size_t> ReadInto(uint64_t after_seq, size_t max_records, size_t max_bytes,
                          std::vector<StoredRecord>* out) override;
  bool WaitForRecordsAfter(uint64_t after_seq, std::chrono::milliseconds max_wait) override;
  Result<uint64_t> LoadCursor(std::string_view name) override;
  // Returns once the cursor is durable (its own fsynced transaction), before the delivered
  // records are trimmed: the writer trims them right after, so Stats::records/bytes/first_seq
  // drop a moment later (FORMAT.md, invariant 4).
  Status CommitCursor(std::string_view name, uint64_t seq) override;
  Status DeadLetter(const StoredRecord& record, std::string_view reason) override;

  // Cheap (in-memory counters plus one indexed lookup and two stat calls): fine every second.
  Stats GetStats();

  // Oldest first, at most `limit`.
  Result<std::vector<DeadLetterEntry>> ListDeadLetters(size_t limit);
  // Appends the given dead letters (all if nullopt) again with NEW seq numbers and removes them
  // from the dead-letter table, in one transaction. Returns how many were re-queued.
  Result<size_t> RequeueDeadLetters(std::optional<std::vector<int64_t>> ids);

  // The highest seq assigned so far (0 if none).
  uint64_t LastSeq() const;

  class Impl;

 private:
  explicit Buffer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Reads the stats of the buffer at `path` read-only, while a daemon may be writing it (for
// `edgeferry status`). Never writes, never recovers, never creates the file.
Result<Stats> ReadStats(const std::string& path, Clock* clock = SystemClock());

// The zstd library that compresses batch rows, as found at run time ("1.5.4"), for `version`.
std::string ZstdVersion();

}  // namespace edgeferry::buffer
