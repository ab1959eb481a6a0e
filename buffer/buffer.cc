// The SQLite log. Format, invariants, recovery rules and durability promises: buffer/FORMAT.md.
#include "buffer/buffer.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>
#include <zstd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <ctime>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
#include <tuple>

#include "buffer/sqlite_util.h"
#include "common/log.h"
#include "common/thread_name.h"

namespace edgeferry::buffer {
namespace {

constexpr const char* kComponent = "buffer";
constexpr int64_t kFormatVersion = 2;
constexpr int64_t kPageSize = 4096;
// A batch row's encoded block is closed once it reaches this size (a group commit larger than
// that becomes several rows). Bounds what a read in the middle of a row decodes and skips, and
// what rewriting a partly delivered row costs, while keeping SQLite's per-row and per-overflow-
// chain overhead small (FORMAT.md, "Batch rows").
constexpr size_t kBlockMaxBytes = 32 << 10;
constexpr int64_t kCodecRaw = 0;
constexpr int64_t kCodecZstd = 1;
// zstd's fastest regular level: JSON readings shrink about as much as at level 3, at a fraction of
// the CPU (measured: FORMAT.md, "Costs").
constexpr int kZstdLevel = 1;

constexpr const char* kBatchesTable = R"sql(
CREATE TABLE IF NOT EXISTS batches(
  first_seq INTEGER PRIMARY KEY, last_seq INTEGER NOT NULL, ingest_ms INTEGER NOT NULL,
  bytes INTEGER NOT NULL, codec INTEGER NOT NULL, data BLOB NOT NULL);
)sql";
constexpr const char* kSchema = R"sql(
CREATE TABLE meta(k TEXT PRIMARY KEY, v INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE cursors(name TEXT PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE dead_letters(
  id INTEGER PRIMARY KEY AUTOINCREMENT, reason TEXT NOT NULL, dead_ms INTEGER NOT NULL,
  seq INTEGER NOT NULL, ingest_ms INTEGER NOT NULL, event_ms INTEGER NOT NULL,
  source BLOB NOT NULL, key BLOB NOT NULL, topic BLOB NOT NULL, headers BLOB,
  payload BLOB NOT NULL);
)sql";

// The batch rows whose range holds seqs after ?1: the row holding ?1 (if any) and all later ones.
// Uses the primary key only (no index on last_seq); callers skip a first row that ends at ?1.
constexpr const char* kRowsAfterWhere =
    " FROM batches WHERE first_seq >= ifnull((SELECT max(first_seq) FROM batches WHERE "
    "first_seq <= ?1), 0) ";

// Headers: for each, varint(len name) name varint(len value) value. Empty list -> NULL column.
void PutVarint(std::string* out, uint64_t v) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>(v | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}
bool GetVarint(std::string_view* in, uint64_t* v) {
  *v = 0;
  for (int shift = 0; shift < 64 && !in->empty(); shift += 7) {
    auto b = static_cast<uint8_t>(in->front());
    in->remove_prefix(1);
    *v |= static_cast<uint64_t>(b & 0x7f) << shift;
    if ((b & 0x80) == 0) return true;
  }
  return false;
}
void PutBytes(std::string* out, std::string_view b) {
  PutVarint(out, b.size());
  out->append(b);
}
bool GetBytes(std::string_view* in, std::string_view* b) {
  uint64_t n = 0;
  if (!GetVarint(in, &n) || n > in->size()) return false;
  *b = in->substr(0, n);
  in->remove_prefix(n);
  return true;
}
std::string EncodeHeaders(const std::vector<Header>& hs) {
  std::string out;
  for (const auto& h : hs) {
    PutBytes(&out, h.name);
    PutBytes(&out, h.value);
  }
  return out;
}
bool DecodeHeaders(std::string_view in, std::vector<Header>* hs) {
  while (!in.empty()) {
    std::string_view name, value;
    if (!GetBytes(&in, &name) || !GetBytes(&in, &value)) return false;
    hs->push_back({std::string(name), std::string(value)});
  }
  return true;
}
uint64_t RowBytes(const Record& r, size_t encoded_headers) {
  return r.source.size() + r.key.size() + r.topic.size() + r.payload.size() + encoded_headers + 8;
}
uint64_t ZigZag(int64_t v) {
  return (static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63);
}
int64_t UnZigZag(uint64_t v) { return static_cast<int64_t>(v >> 1) ^ -static_cast<int64_t>(v & 1); }

// The block of a batch row (codec 0): the records of seqs first_seq..last_seq, in order, each
//   flags (1 byte: 1 = same source as the previous record, 2 = same key, 4 = same topic,
//          8 = has headers)
//   varint zigzag(event_ms - previous event_ms)    (before the first record: the row's ingest_ms)
//   [varint len, source] [varint len, key] [varint len, topic]   unless flagged as the same
//   [varint len, headers blob]                                    if flag 8
//   varint len, payload
enum : uint8_t { kSameSource = 1, kSameKey = 2, kSameTopic = 4, kHasHeaders = 8 };

class BlockEncoder {
 public:
  explicit BlockEncoder(int64_t ingest_ms) : base_ms_(ingest_ms) { Clear(); }
  void Clear() {
    data_.clear();
    prev_ = nullptr;
    prev_ms_ = base_ms_;
    count_ = 0;
    bytes_ = 0;
  }
  // `r` must stay alive until Clear() (the next record is compared with it).
  void Add(const Record& r, std::string* hdr_scratch) {
    hdr_scratch->clear();
    for (const auto& h : r.headers) {
      PutBytes(hdr_scratch, h.name);
      PutBytes(hdr_scratch, h.value);
    }
    uint8_t flags = 0;
    if (prev_ != nullptr && prev_->source == r.source) flags |= kSameSource;
    if (prev_ != nullptr && prev_->key == r.key) flags |= kSameKey;
    if (prev_ != nullptr && prev_->topic == r.topic) flags |= kSameTopic;
    if (!hdr_scratch->empty()) flags |= kHasHeaders;
    data_.push_back(static_cast<char>(flags));
    PutVarint(&data_, ZigZag(r.event_time_ms - prev_ms_));
    if (!(flags & kSameSource)) PutBytes(&data_, r.source);
    if (!(flags & kSameKey)) PutBytes(&data_, r.key);
    if (!(flags & kSameTopic)) PutBytes(&data_, r.topic);
    if (flags & kHasHeaders) PutBytes(&data_, *hdr_scratch);
    PutBytes(&data_, r.payload);
    prev_ = &r;
    prev_ms_ = r.event_time_ms;
    count_++;
    bytes_ += RowBytes(r, hdr_scratch->size());
  }
  const std::string& data() const { return data_; }
  uint64_t count() const { return count_; }
  uint64_t bytes() const { return bytes_; }  // logical bytes of the records in it

 private:
  int64_t base_ms_;
  std::string data_;
  const Record* prev_ = nullptr;
  int64_t prev_ms_ = 0;
  uint64_t count_ = 0;
  uint64_t bytes_ = 0;
};

// Decodes a block record by record. Each call overwrites `*r` (the previous record is the base
// of the next one, so pass the same Record every time, or a copy of the previous one).
class BlockDecoder {
 public:
  BlockDecoder(std::string_view data, int64_t ingest_ms) : in_(data), prev_ms_(ingest_ms) {}
  bool done() const { return in_.empty(); }
  // Decodes the next record into `r`, which must hold the previous record of this block (or be
  // fresh for the first). Returns the record's logical bytes; false if the block is damaged.
  bool Next(Record* r, uint64_t* logical_bytes) { return Next(r, r, logical_bytes); }
  // The same into any `r` (its storage is reused), with `prev` holding the previous record of
  // this block (unused for the first). `prev` may be `r`.
  bool Next(Record* r, const Record* prev, uint64_t* logical_bytes) {
    if (in_.empty()) return false;
    auto flags = static_cast<uint8_t>(in_.front());
    in_.remove_prefix(1);
    if (first_ && (flags & (kSameSource | kSameKey | kSameTopic))) return false;
    first_ = false;
    uint64_t zz = 0;
    if (!GetVarint(&in_, &zz)) return false;
    r->event_time_ms = prev_ms_ + UnZigZag(zz);
    prev_ms_ = r->event_time_ms;
    std::string_view b;
    if (!(flags & kSameSource)) {
      if (!GetBytes(&in_, &b)) return false;
      r->source.assign(b);
    } else if (prev != r) {
      r->source.assign(prev->source);
    }
    if (!(flags & kSameKey)) {
      if (!GetBytes(&in_, &b)) return false;
      r->key.assign(b);
    } else if (prev != r) {
      r->key.assign(prev->key);
    }
    if (!(flags & kSameTopic)) {
      if (!GetBytes(&in_, &b)) return false;
      r->topic.assign(b);
    } else if (prev != r) {
      r->topic.assign(prev->topic);
    }
    r->headers.clear();
    size_t hdr_size = 0;
    if (flags & kHasHeaders) {
      if (!GetBytes(&in_, &b) || !DecodeHeaders(b, &r->headers)) return false;
      hdr_size = b.size();
    }
    if (!GetBytes(&in_, &b)) return false;
    r->payload.assign(b);
    *logical_bytes = RowBytes(*r, hdr_size);
    return true;
  }

 private:
  std::string_view in_;
  int64_t prev_ms_;
  bool first_ = true;
};

struct ZstdCCtxFree {
  void operator()(ZSTD_CCtx* c) const { ZSTD_freeCCtx(c); }
};
struct ZstdDCtxFree {
  void operator()(ZSTD_DCtx* c) const { ZSTD_freeDCtx(c); }
};
using ZstdCCtxPtr = std::unique_ptr<ZSTD_CCtx, ZstdCCtxFree>;
using ZstdDCtxPtr = std::unique_ptr<ZSTD_DCtx, ZstdDCtxFree>;

// Chooses how a block is stored: zstd when that saves at least an eighth, else as it is (already
// compressed or random payloads). Not thread-safe: one per thread that writes rows.
class BlockPacker {
 public:
  // Returns the codec; *stored is the bytes to store, valid until the next Pack or until `block`
  // changes.
  int64_t Pack(const std::string& block, std::string_view* stored) {
    if (!cctx_) cctx_.reset(ZSTD_createCCtx());
    if (cctx_) {
      buf_.resize(ZSTD_compressBound(block.size()));
      size_t n = ZSTD_compressCCtx(cctx_.get(), buf_.data(), buf_.size(), block.data(),
                                   block.size(), kZstdLevel);
      if (!ZSTD_isError(n) && n < block.size() - block.size() / 8) {
        *stored = std::string_view(buf_.data(), n);
        return kCodecZstd;
      }
    }
    *stored = block;  // no context (out of memory) or not worth it: store as it is
    return kCodecRaw;
  }

 private:
  ZstdCCtxPtr cctx_;
  std::string buf_;
};

// Turns a stored block back into the block: as it is (codec 0) or decompressed into *scratch.
// `max_size` bounds the decompressed size (a damaged frame must not allocate without limit).
// False if the codec is unknown or the data is damaged.
bool UnpackBlock(ZSTD_DCtx* dctx, int64_t codec, std::string_view stored, uint64_t max_size,
                 std::string* scratch, std::string_view* block) {
  if (codec == kCodecRaw) {
    *block = stored;
    return true;
  }
  if (codec != kCodecZstd || dctx == nullptr) return false;
  unsigned long long size = ZSTD_getFrameContentSize(stored.data(), stored.size());
  if (size == ZSTD_CONTENTSIZE_UNKNOWN || size == ZSTD_CONTENTSIZE_ERROR || size > max_size)
    return false;
  scratch->resize(size);
  size_t n =
      ZSTD_decompressDCtx(dctx, scratch->data(), scratch->size(), stored.data(), stored.size());
  if (ZSTD_isError(n) || n != size) return false;
  *block = *scratch;
  return true;
}

// The largest a block of `count` records of `bytes` logical bytes can be: per record a flags
// byte, a 10-byte varint and five length varints of at most 5 bytes each beyond the bytes.
uint64_t MaxBlockSize(uint64_t bytes, uint64_t count) { return bytes + 36 * count; }

// Reads a dead_letters row's record columns (seq, ingest_ms, event_ms, source, key, topic,
// headers, payload) starting at column `c`.
StoredRecord ReadRow(const sql::Stmt& st, int c) {
  StoredRecord sr;
  sr.seq = static_cast<uint64_t>(st.Int(c));
  sr.ingest_time_ms = st.Int(c + 1);
  sr.record.event_time_ms = st.Int(c + 2);
  sr.record.source = st.Bytes(c + 3);
  sr.record.key = st.Bytes(c + 4);
  sr.record.topic = st.Bytes(c + 5);
  if (!st.IsNull(c + 6)) (void)DecodeHeaders(st.Bytes(c + 6), &sr.record.headers);
  sr.record.payload = st.Bytes(c + 7);
  return sr;
}

// Decodes every record of a batch row. Corruption if the block does not hold exactly
// last_seq - first_seq + 1 records.
Result<std::vector<StoredRecord>> DecodeRow(ZSTD_DCtx* dctx, uint64_t first_seq, uint64_t last_seq,
                                            int64_t ingest_ms, int64_t codec, uint64_t row_bytes,
                                            std::string_view data, uint64_t* logical_bytes) {
  std::vector<StoredRecord> out;
  auto damaged = [&] {
    return Status::Corruption("batch row at seq " + std::to_string(first_seq) + " is damaged");
  };
  std::string scratch;
  std::string_view block;
  if (last_seq < first_seq ||
      !UnpackBlock(dctx, codec, data, MaxBlockSize(row_bytes, last_seq - first_seq + 1), &scratch,
                   &block))
    return damaged();
  BlockDecoder dec(block, ingest_ms);
  Record r;
  *logical_bytes = 0;
  for (uint64_t seq = first_seq; seq <= last_seq; ++seq) {
    uint64_t n = 0;
    if (!dec.Next(&r, &n)) return damaged();
    *logical_bytes += n;
    out.push_back({seq, ingest_ms, r});
  }
  if (!dec.done()) return damaged();
  return out;
}

uint64_t FileSize(const std::string& path) {
  struct stat sb {};
  return ::stat(path.c_str(), &sb) == 0 ? static_cast<uint64_t>(sb.st_size) : 0;
}

// Everything the meta, cursors and dead_letters tables say, as the writer last committed it.
struct State {
  int64_t format = 0;  // meta.format as read (LoadState); 0 before
  uint64_t last_seq = 0;
  uint64_t records = 0;
  uint64_t bytes = 0;
  uint64_t first_seq = 0;
  uint64_t appended_total = 0;
  uint64_t recoveries = 0;
  std::map<std::string, uint64_t> drops;
  std::map<std::string, uint64_t, std::less<>> cursors;
  std::map<std::string, uint64_t> dead_letters;
  int64_t last_commit_unix_ms = 0;

  uint64_t MinCursor() const {
    if (cursors.empty()) return 0;
    uint64_t m = UINT64_MAX;
    for (const auto& [n, s] : cursors) m = std::min(m, s);
    return m;
  }
};

// Loads State from a database that has the schema. Used by Open and by ReadStats.
Status LoadState(sqlite3* db, State* s) {
  {
    auto st = sql::Stmt::Prepare(db, "SELECT k, v FROM meta");
    if (!st.ok()) return st.status();
    int rc;
    while ((rc = st->Step()) == SQLITE_ROW) {
      std::string k = st->Bytes(0);
      auto v = static_cast<uint64_t>(st->Int(1));
      if (k == "format")
        s->format = static_cast<int64_t>(v);
      else if (k == "last_seq")
        s->last_seq = v;
      else if (k == "records")
        s->records = v;
      else if (k == "bytes")
        s->bytes = v;
      else if (k == "appended_total")
        s->appended_total = v;
      else if (k == "recoveries")
        s->recoveries = v;
      else if (k.rfind("drop.", 0) == 0)
        s->drops[k.substr(5)] = v;
    }
    if (rc != SQLITE_DONE) return sql::ToStatus(rc, db, "read meta");
  }
  {
    auto st = sql::Stmt::Prepare(db, "SELECT name, seq FROM cursors");
    if (!st.ok()) return st.status();
    int rc;
    while ((rc = st->Step()) == SQLITE_ROW) s->cursors[st->Bytes(0)] = st->Int(1);
    if (rc != SQLITE_DONE) return sql::ToStatus(rc, db, "read cursors");
  }
  {
    auto st = sql::Stmt::Prepare(db, "SELECT reason, count(*) FROM dead_letters GROUP BY reason");
    if (!st.ok()) return st.status();
    int rc;
    while ((rc = st->Step()) == SQLITE_ROW) s->dead_letters[st->Bytes(0)] = st->Int(1);
    if (rc != SQLITE_DONE) return sql::ToStatus(rc, db, "read dead letters");
  }
  {
    // A format-1 file (ReadStats while an older daemon runs it) keeps one row per record.
    auto st = sql::Stmt::Prepare(
        db, s->format == 1 ? "SELECT min(seq), max(seq) FROM records"
                           : "SELECT (SELECT min(first_seq) FROM batches), (SELECT last_seq FROM "
                             "batches ORDER BY first_seq DESC LIMIT 1)");
    if (!st.ok()) return st.status();
    int rc = st->Step();
    if (rc != SQLITE_ROW) return sql::ToStatus(rc, db, "read records");
    s->first_seq = st->IsNull(0) ? 0 : st->Int(0);
    // The high-water mark is in meta; max(seq) can only be lower, but never trust one alone.
    if (!st->IsNull(1)) s->last_seq = std::max<uint64_t>(s->last_seq, st->Int(1));
  }
  return Status::Ok();
}

Result<int64_t> QueryInt(sqlite3* db, const std::string& sql) {
  auto st = sql::Stmt::Prepare(db, sql);
  if (!st.ok()) return st.status();
  int rc = st->Step();
  if (rc != SQLITE_ROW) return sql::ToStatus(rc == SQLITE_DONE ? SQLITE_ERROR : rc, db, sql);
  return st->Int(0);
}

Result<std::string> QueryText(sqlite3* db, const std::string& sql) {
  auto st = sql::Stmt::Prepare(db, sql);
  if (!st.ok()) return st.status();
  int rc = st->Step();
  if (rc != SQLITE_ROW) return sql::ToStatus(rc == SQLITE_DONE ? SQLITE_ERROR : rc, db, sql);
  return st->Bytes(0);
}

Result<int64_t> OldestUndeliveredIngestMs(sqlite3* db, uint64_t cursor, int64_t format) {
  auto st = sql::Stmt::Prepare(
      db, format == 1 ? "SELECT ingest_ms FROM records WHERE seq > ?1 ORDER BY seq LIMIT 1"
                      : std::string("SELECT ingest_ms") + kRowsAfterWhere +
                            "AND last_seq > ?1 ORDER BY first_seq LIMIT 1");
  if (!st.ok()) return st.status();
  st->Bind(1, static_cast<int64_t>(cursor));
  int rc = st->Step();
  if (rc == SQLITE_DONE) return int64_t{0};
  if (rc != SQLITE_ROW) return sql::ToStatus(rc, db, "oldest undelivered");
  return st->Int(0);
}

Stats MakeStats(const State& s, int64_t oldest_ingest_ms, int64_t now_ms) {
  Stats out;
  out.records = s.records;
  out.bytes = s.bytes;
  out.first_seq = s.first_seq;
  out.last_seq = s.last_seq;
  out.oldest_undelivered_age_ms =
      oldest_ingest_ms > 0 ? std::max<int64_t>(0, now_ms - oldest_ingest_ms) : 0;
  for (const auto& [name, seq] : s.cursors) {
    out.cursors[name] = {seq, std::min(s.last_seq > seq ? s.last_seq - seq : 0, s.records)};
  }
  out.drops = s.drops;
  out.dead_letters = s.dead_letters;
  out.recoveries = s.recoveries;
  out.appended_total = s.appended_total;
  out.last_commit_unix_ms = s.last_commit_unix_ms;
  return out;
}

Result<sql::DbPtr> OpenDb(const std::string& path, int flags, const std::string& vfs) {
  // Each connection takes its page cache (up to its cache_size, 2 MiB) in one allocation and
  // keeps reusing it. By default SQLite mallocs pages one by one, and the reader's cache is
  // emptied at every read transaction after the writer committed (WAL), which is every read
  // while the forwarder drains: those page-sized mallocs were a fifth of the forwarder thread's
  // samples in bench_forwarder at 1 KiB. Process-wide, so it must come before SQLite's first
  // use; if something else initialised SQLite first, the call fails and the default stays.
  static std::once_flag page_cache_once;
  std::call_once(page_cache_once,
                 [] { (void)sqlite3_config(SQLITE_CONFIG_PAGECACHE, nullptr, 0, -2048); });
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &raw, flags | SQLITE_OPEN_NOMUTEX,
                           vfs.empty() ? nullptr : vfs.c_str());
  sql::DbPtr db(raw);  // sqlite3_open_v2 hands out a handle even on failure: close it either way
  if (rc != SQLITE_OK) return sql::ToStatus(rc, raw, "open " + path);
  sqlite3_extended_result_codes(raw, 1);
  sqlite3_busy_timeout(raw, 5000);
  return db;
}

// One writer per buffer file: two agents on one buffer (or an agent and `edgeferry
// dead-letters` run beside it) would each create the schema, keep their own seq and cursor
// state and overwrite each other's counters. flock(2) on a side file rather than on the database:
// closing any descriptor of the database would drop SQLite's own POSIX locks (SQLite docs,
// "How To Corrupt An SQLite Database File", 2.2). The lock dies with the process, so a crash
// never leaves a stale lock behind.
class LockFile {
 public:
  LockFile() = default;
  LockFile(const LockFile&) = delete;
  LockFile& operator=(const LockFile&) = delete;
  ~LockFile() {
    if (fd_ >= 0) ::close(fd_);
  }

  // Waits on the steady clock, not the buffer's Clock: the other holder is a real process.
  Status Acquire(const std::string& path, int wait_ms) {
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd_ < 0) return Status::IOError("lock file " + path + ": " + std::strerror(errno));
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(wait_ms);
    while (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      if (errno != EWOULDBLOCK && errno != EINTR)
        return Status::IOError("lock file " + path + ": flock: " + std::strerror(errno));
      if (std::chrono::steady_clock::now() >= deadline) {
        char text[32] = {};
        ssize_t n = ::pread(fd_, text, sizeof text - 1, 0);
        std::string holder = n > 0 ? std::string(text, static_cast<size_t>(n)) : "";
        while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' '))
          holder.pop_back();
        return Status::Unavailable("in use by another process" +
                                   (holder.empty() ? "" : " (pid " + holder + ")") +
                                   ": only one edgeferry may open a buffer (lock file " + path +
                                   ", waited " + std::to_string(wait_ms) + " ms)");
      }
      // Polling, not a blocking flock: a blocking call cannot honour the deadline.
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    // Who holds it, for the message above (advisory: the lock itself is what counts).
    std::string pid = std::to_string(::getpid()) + "\n";
    if (::ftruncate(fd_, 0) != 0 ||
        ::pwrite(fd_, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
      EF_LOG(kWarning, kComponent, "lock file {}: cannot record the pid: {}", path,
             std::strerror(errno));
    }
    return Status::Ok();
  }

 private:
  int fd_ = -1;
};

std::string TimestampSuffix(int64_t unix_ms) {
  std::time_t t = unix_ms / 1000;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm);
  return buf;
}

}  // namespace

// ---------------------------------------------------------------------------------------------

class Buffer::Impl {
 public:
  struct Op {
    enum class Kind { kAppend, kCursor, kDeadLetter, kRequeue } kind = Kind::kAppend;
    std::vector<Record> records;
    std::string name;  // cursor name or dead-letter reason
    uint64_t seq = 0;
    const StoredRecord* dead = nullptr;
    // Requeue: the dead letters to re-queue, or all of them. (Two fields rather than an optional
    // vector: GCC 12 at -Os reports a false maybe-uninitialized on the optional's storage.)
    bool all_ids = true;
    std::vector<int64_t> ids;
    Clock::TimePoint enqueued{};
    // Set by the writer:
    Status status;
    size_t count = 0;
    bool finished = false;       // writer thread only
    bool done = false;           // guarded by mu_: set only after the writer is through with the op
    std::condition_variable cv;  // the submitter waits here: one wake-up per op, not a herd

    // Marks the op done and wakes its submitter. mu_ must be held: the submitter cannot return
    // (and destroy the op) before mu_ is released.
    void Done() {
      done = true;
      cv.notify_one();
    }
  };

  Impl(const config::BufferConfig& cfg, Clock* clock, OpenOptions opts)
      : cfg_(cfg), clock_(clock), opts_(std::move(opts)) {
    // WAL budget: a quarter of max_bytes (64 KiB..64 MiB); the database gets the rest.
    wal_budget_ = std::clamp<uint64_t>(cfg_.max_bytes / 4, 64 << 10, 64ull << 20);
    max_page_count_ = static_cast<int64_t>((cfg_.max_bytes - wal_budget_) / kPageSize);
    group_max_bytes_ = std::max<uint64_t>(wal_budget_ / 4, 16 << 10);
  }

  Status Open();
  void Start() {
    writer_ = std::thread([this] {
      SetThreadName("ef-buffer");
      WriterLoop();
    });
  }
  void Stop() {
    {
      std::lock_guard lk(mu_);
      stopping_ = true;
    }
    work_cv_.notify_all();
    data_cv_.notify_all();
    if (writer_.joinable()) writer_.join();
    read_.clear();
    rdb_.reset();
    stmts_.clear();
    wdb_.reset();  // the last connection: SQLite checkpoints and removes the WAL
  }

  Status Submit(Op* op);

  // Declared first, so destroyed last: held until both connections are closed.
  LockFile lock_;

  // Shared with readers (guarded by mu_).
  std::mutex mu_;
  std::condition_variable work_cv_;  // writer waits for ops
  std::condition_variable data_cv_;  // WaitForRecordsAfter
  std::deque<Op*> queue_;
  bool stopping_ = false;
  // CancelBlockedAppends: appends that do not fit fail at once (Aborted) instead of waiting.
  // Written under mu_, read by the writer without it in RunAppends (hence atomic).
  std::atomic<bool> cancel_blocked_{false};
  State shared_;

  // The read connection (guarded by rmu_).
  std::mutex rmu_;
  sql::DbPtr rdb_;
  std::map<std::string, sql::Stmt> read_;
  ZstdDCtxPtr read_dctx_{ZSTD_createDCtx()};
  std::string read_scratch_;  // a decompressed block
  std::string read_blob_;     // a row's data as stored
  Result<sql::Stmt*> ReadStmt(const std::string& sql);

  config::BufferConfig cfg_;
  Clock* clock_;
  OpenOptions opts_;

 private:
  Status CreateOrCheck(bool* corrupt, std::string* why);
  Status Migrate();
  void Recover(const std::string& why);
  Status Configure();

  // Writer thread only from here on.
  void WriterLoop();
  bool OpsWaiting() const;  // mu_ held
  bool Runnable() const;    // mu_ held
  bool TrimDue() const;
  bool TrimRunnable() const;
  void RunTrim(const std::function<bool()>& yield);
  void Housekeeping();
  void RunAppends(std::vector<Op*>& group);
  void RunControl(Op* op);
  Status InsertGroup(const std::vector<Op*>& group, State* next);
  Status DropOldest(uint64_t need_bytes, uint64_t* dropped);
  Status DeleteUpTo(uint64_t cutoff_seq, std::string_view reason, State* next);
  Status TrimTo(uint64_t cutoff_seq, std::string_view reason,
                const std::function<bool()>& yield = nullptr);
  Status RewriteStraddling(uint64_t cutoff_seq, State* next);
  Status Begin(bool force_sync = false, bool lazy = false);
  Status Commit(State* next);
  void Rollback();
  Status WriteCounters(const State& next);
  Result<sql::Stmt*> W(const char* sql);
  void Publish();
  void Finish(Op* op, Status st, size_t count = 0);
  bool DbAtLimit();

  sql::DbPtr wdb_;
  std::map<const char*, sql::Stmt> stmts_;  // keyed by the literal's address
  State committed_;
  bool sync_full_now_ = true;    // the connection's current synchronous setting
  bool counters_dirty_ = false;  // drop counters newer in memory than on disk
  bool tx_full_ = true;          // the open transaction fsyncs at commit
  bool tx_lazy_ = false;         // the open transaction need not be made durable (Begin)
  bool unsynced_ = false;        // sync=normal: commits since the last WAL fsync
  Clock::TimePoint last_sync_{};
  Clock::TimePoint last_age_check_{};
  Clock::TimePoint last_full_attempt_{};
  bool blocked_ = false;        // when_full=block: appends wait for space
  bool space_changed_ = false;  // something was deleted since the appends blocked
  // The delivered trim failed (or made no progress) at trim_failed_at_: retried by the next
  // cursor commit at once, otherwise by the writer once a second (TrimRunnable).
  bool trim_failed_ = false;
  Clock::TimePoint trim_failed_at_{};
  // How many appenders to expect in a group: the largest recent group, forgetting one appender
  // per group so that appenders that went away cost at most a few lingers.
  size_t linger_target_ = 0;
  uint64_t wal_budget_ = 0;
  int64_t max_page_count_ = 0;
  uint64_t group_max_bytes_ = 0;
  RateLimiter log_limit_{std::chrono::seconds(30)};
  int64_t found_format_ = 0;  // the format CreateOrCheck found (1: Migrate() must run)
  BlockPacker packer_;        // writer thread (and Open, before it starts)
  ZstdDCtxPtr write_dctx_{ZSTD_createDCtx()};
  std::thread writer_;
};

// --- open, create, recover -------------------------------------------------------------------

Status Buffer::Impl::CreateOrCheck(bool* corrupt, std::string* why) {
  *corrupt = false;
  auto db = OpenDb(cfg_.path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, opts_.vfs);
  if (!db.ok()) return db.status();
  wdb_ = std::move(db.value());
  sqlite3* d = wdb_.get();
  auto corrupt_if = [&](const Status& st) {
    if (st.code() == Status::Code::kCorruption) {
      *corrupt = true;
      *why = st.message();
      return Status::Ok();
    }
    return st;
  };
  // Reading the schema is the first access: a file that is not a database fails here.
  // Which of our tables exist, as a bit set.
  enum : int64_t { kMeta = 1, kCursors = 2, kRecords = 4, kBatches = 8, kDeadLetters = 16 };
  auto tables = QueryInt(d,
                         "SELECT ifnull(sum((name='meta')*1 + (name='cursors')*2 + "
                         "(name='records')*4 + (name='batches')*8 + (name='dead_letters')*16), 0) "
                         "FROM sqlite_master WHERE type='table'");
  if (!tables.ok()) return corrupt_if(tables.status());
  if (*tables == 0) {
    auto any = QueryInt(d, "SELECT count(*) FROM sqlite_master");
    if (!any.ok()) return corrupt_if(any.status());
    if (*any != 0) {
      *corrupt = true;
      *why = "not an edgeferry buffer (unknown tables)";
      return Status::Ok();
    }
    // auto_vacuum must be chosen before the first table exists.
    if (auto st = sql::Exec(d, "PRAGMA page_size=4096; PRAGMA auto_vacuum=INCREMENTAL"); !st.ok())
      return st;
    auto mode = QueryText(d, "PRAGMA journal_mode=WAL");
    if (!mode.ok()) return mode.status();
    if (*mode != "wal") return Status::IOError(cfg_.path + ": cannot use WAL mode (" + *mode + ")");
    std::string create = std::string("BEGIN;") + kSchema + kBatchesTable +
                         "INSERT INTO meta VALUES('format'," + std::to_string(kFormatVersion) +
                         "),('created_unix_ms'," + std::to_string(clock_->NowUnixMs()) +
                         ");COMMIT;";
    if (auto st = sql::Exec(d, create); !st.ok()) {
      (void)sql::Exec(d, "ROLLBACK");
      return st;
    }
    found_format_ = kFormatVersion;
    return Status::Ok();
  }
  auto incomplete = [&] {
    *corrupt = true;
    *why = "schema incomplete";
    return Status::Ok();
  };
  constexpr int64_t kCommon = kMeta | kCursors | kDeadLetters;
  if ((*tables & kCommon) != kCommon || (*tables & (kRecords | kBatches)) == 0) return incomplete();
  auto check = QueryText(d, "PRAGMA quick_check");
  if (!check.ok()) return corrupt_if(check.status());
  if (*check != "ok") {
    *corrupt = true;
    *why = "quick_check: " + *check;
    return Status::Ok();
  }
  auto fmt = QueryInt(d, "SELECT v FROM meta WHERE k='format'");
  if (!fmt.ok()) return corrupt_if(fmt.status());
  if (*fmt != kFormatVersion && *fmt != 1)
    return Status::InvalidArgument(cfg_.path + ": buffer format " + std::to_string(*fmt) +
                                   " is not supported (this build reads 1 and " +
                                   std::to_string(kFormatVersion) + ")");
  // Format 2 has no records table; format 1 has one (and a batches table too when a migration
  // was cut short: Migrate() resumes it).
  if (*fmt == kFormatVersion && (*tables & (kRecords | kBatches)) != kBatches) return incomplete();
  if (*fmt == 1 && !(*tables & kRecords)) return incomplete();
  found_format_ = *fmt;
  auto mode = QueryText(d, "PRAGMA journal_mode=WAL");
  if (!mode.ok()) return corrupt_if(mode.status());
  return Status::Ok();
}

// Moves the damaged files aside and starts a fresh database that carries the seq high-water
// mark, the cursors and the counters over if they can still be read (FORMAT.md, "Recovery").
void Buffer::Impl::Recover(const std::string& why_full) {
  // quick_check can list thousands of problems: one line of them is enough for the log.
  std::string why = why_full.substr(0, 200);
  std::replace(why.begin(), why.end(), '\n', ' ');
  if (why_full.size() > 200) why += "...";
  State salvaged;
  bool have_seq = false;
  if (wdb_) {
    sqlite3* d = wdb_.get();
    if (auto v = QueryInt(d, "SELECT v FROM meta WHERE k='last_seq'"); v.ok()) {
      salvaged.last_seq = *v;
      have_seq = true;
    }
    // Either table may be there (format 1, format 2, or a migration cut short): try both.
    for (const char* q : {"SELECT max(seq) FROM records", "SELECT max(last_seq) FROM batches"}) {
      if (auto v = QueryInt(d, q); v.ok()) {
        salvaged.last_seq = std::max<uint64_t>(salvaged.last_seq, *v);
        have_seq = true;
      }
    }
    State s;
    if (LoadState(d, &s).ok()) {
      salvaged.recoveries = s.recoveries;
      salvaged.drops = s.drops;
      salvaged.appended_total = s.appended_total;
      salvaged.cursors = s.cursors;
      salvaged.drops["corrupt"] += s.records;
    } else if (auto v = QueryInt(d, "SELECT v FROM meta WHERE k='recoveries'"); v.ok()) {
      salvaged.recoveries = *v;
    }
    wdb_.reset();
  }
  if (!have_seq) {
    // Nothing readable: a floor that cannot be below any seq handed out before (seqs are
    // assigned far slower than 1000 per millisecond of wall-clock time since the epoch... see
    // FORMAT.md for the exact rule and its assumption about the clock).
    salvaged.last_seq = static_cast<uint64_t>(clock_->NowUnixMs()) * 1000;
  }
  salvaged.recoveries += 1;
  std::string aside = cfg_.path + ".corrupt-" + TimestampSuffix(clock_->NowUnixMs());
  for (int i = 1; std::filesystem::exists(aside); ++i)
    aside =
        cfg_.path + ".corrupt-" + TimestampSuffix(clock_->NowUnixMs()) + "-" + std::to_string(i);
  for (const char* ext : {"", "-wal", "-shm"}) {
    std::string from = cfg_.path + ext;
    if (::access(from.c_str(), F_OK) == 0 && ::rename(from.c_str(), (aside + ext).c_str()) != 0) {
      EF_LOG(kError, kComponent, "cannot move {} aside: {}", from, std::strerror(errno));
      ::unlink(from.c_str());
    }
  }
  EF_LOG(kError, kComponent,
         "CORRUPT BUFFER {} ({}): moved aside to {} and started a fresh buffer; records held in "
         "the damaged file are not forwarded (recovery #{}, seq continues after {})",
         cfg_.path, why, aside, salvaged.recoveries, salvaged.last_seq);
  committed_ = salvaged;
}

// Format 1 (one row per record) to format 2 (batch rows), in place. Each step is one fsynced
// transaction that moves up to wal_budget / 8 logical bytes of the oldest remaining records into
// batch rows and deletes their format-1 rows (deleted first, so their pages can be reused by the
// inserts and a full database still migrates). Seqs, ingest times, cursors, counters and dead
// letters stay as they are. meta.format turns 2, and the records table goes, only in the last
// step, so a crash or power cut in between leaves a format-1 file (records plus some batch rows,
// all of lower seqs) that the next start migrates on from where it stopped.
Status Buffer::Impl::Migrate() {
  sqlite3* d = wdb_.get();
  auto n = QueryInt(d, "SELECT count(*) FROM records");
  if (!n.ok()) return n.status();
  EF_LOG(kWarning, kComponent, "{}: migrating {} records from buffer format 1 to format {}",
         cfg_.path, *n, kFormatVersion);
  // Batch rows take less room than the rows they replace, and each step frees those first, but
  // the new table's first pages need room: a file at (or, from a larger max_bytes, over) its cap
  // may grow by 16 pages during the migration, no more.
  auto pc = QueryInt(d, "PRAGMA page_count");
  if (!pc.ok()) return pc.status();
  bool lifted = *pc + 16 > max_page_count_;
  if (lifted)
    if (auto st = sql::Exec(d, "PRAGMA max_page_count=" + std::to_string(*pc + 16)); !st.ok())
      return st;
  uint64_t moved = 0, rows = 0;
  for (;;) {
    if (auto st = sql::Exec(d, "BEGIN IMMEDIATE"); !st.ok()) return st;
    Status st = sql::Exec(d, kBatchesTable);
    std::vector<StoredRecord> chunk;
    if (st.ok()) {
      auto sel = sql::Stmt::Prepare(
          d,
          "SELECT seq, ingest_ms, event_ms, source, key, topic, headers, payload FROM records "
          "ORDER BY seq");
      if (!sel.ok()) st = sel.status();
      uint64_t bytes = 0;
      int rc = SQLITE_DONE;
      while (st.ok() && bytes < std::max<uint64_t>(wal_budget_ / 8, 1) &&
             (rc = sel->Step()) == SQLITE_ROW) {
        chunk.push_back(ReadRow(*sel, 0));
        bytes += chunk.back().record.ByteSize();
      }
      if (st.ok() && rc != SQLITE_ROW && rc != SQLITE_DONE)
        st = sql::ToStatus(rc, d, "read format-1 records");
    }
    if (st.ok() && chunk.empty()) {
      st = sql::Exec(d, "DROP TABLE records; UPDATE meta SET v=" + std::to_string(kFormatVersion) +
                            " WHERE k='format'");
      if (st.ok()) st = sql::Exec(d, "COMMIT");
      if (!st.ok()) {
        Rollback();
        return st;
      }
      break;
    }
    if (st.ok()) {
      auto del = sql::Stmt::Prepare(d, "DELETE FROM records WHERE seq <= ?");
      if (del.ok()) {
        del->Bind(1, static_cast<int64_t>(chunk.back().seq));
        st = del->Run("delete format-1 records");
      } else {
        st = del.status();
      }
    }
    // One batch row per run of consecutive seqs with the same ingest time, at most
    // kBlockMaxBytes each.
    auto ins = sql::Stmt::Prepare(
        d,
        "INSERT INTO batches(first_seq, last_seq, ingest_ms, bytes, codec, data) "
        "VALUES(?,?,?,?,?,?)");
    if (st.ok() && !ins.ok()) st = ins.status();
    std::string hdr;
    for (size_t i = 0; st.ok() && i < chunk.size();) {
      BlockEncoder enc(chunk[i].ingest_time_ms);
      size_t j = i;
      do {
        enc.Add(chunk[j].record, &hdr);
        ++j;
      } while (j < chunk.size() && chunk[j].seq == chunk[j - 1].seq + 1 &&
               chunk[j].ingest_time_ms == chunk[i].ingest_time_ms &&
               enc.data().size() < kBlockMaxBytes);
      ins->Reset();
      ins->Bind(1, static_cast<int64_t>(chunk[i].seq));
      ins->Bind(2, static_cast<int64_t>(chunk[j - 1].seq));
      ins->Bind(3, chunk[i].ingest_time_ms);
      ins->Bind(4, static_cast<int64_t>(enc.bytes()));
      std::string_view stored;
      ins->Bind(5, packer_.Pack(enc.data(), &stored));
      ins->BindBlobStatic(6, stored);
      st = ins->Run("insert migrated batch");
      rows++;
      i = j;
    }
    if (st.ok()) st = sql::Exec(d, "COMMIT");
    if (!st.ok()) {
      Rollback();
      return st;
    }
    moved += chunk.size();
    if (FileSize(cfg_.path + "-wal") > wal_budget_ / 2)
      (void)sql::Exec(d, "PRAGMA wal_checkpoint(TRUNCATE)");
  }
  if (lifted)
    if (auto st = sql::Exec(d, "PRAGMA max_page_count=" + std::to_string(max_page_count_));
        !st.ok())
      return st;
  EF_LOG(kWarning, kComponent, "{}: migrated {} records into {} batch rows (format {})", cfg_.path,
         moved, rows, kFormatVersion);
  return Status::Ok();
}

Status Buffer::Impl::Configure() {
  sqlite3* d = wdb_.get();
  std::string pragmas =
      "PRAGMA synchronous=FULL; PRAGMA temp_store=MEMORY; PRAGMA cache_size=-2048;"
      // Debian builds SQLite with SQLITE_SECURE_DELETE: every page a trim frees would be read,
      // zeroed and written twice more (WAL, checkpoint), doubling the flash writes per reading.
      // FAST zeroes deleted cells only inside pages that are written anyway.
      "PRAGMA secure_delete=FAST;"
      "PRAGMA wal_autocheckpoint=" +
      std::to_string(std::max<uint64_t>(wal_budget_ / 4 / (kPageSize + 24), 8)) +
      "; PRAGMA journal_size_limit=" + std::to_string(wal_budget_) +
      "; PRAGMA max_page_count=" + std::to_string(max_page_count_) + ";";
  if (auto st = sql::Exec(d, pragmas); !st.ok()) return st;
  sync_full_now_ = true;
  if (auto pc = QueryInt(d, "PRAGMA page_count"); pc.ok() && *pc > max_page_count_) {
    // A database from a larger max_bytes: it keeps working, it just cannot grow.
    EF_LOG(kWarning, kComponent,
           "{} holds {} bytes, more than max_bytes {}: no growth until drained", cfg_.path,
           *pc * kPageSize, cfg_.max_bytes);
  }
  return Status::Ok();
}

Status Buffer::Impl::Open() {
  if (cfg_.path.empty()) return Status::InvalidArgument("buffer.path is empty");
  if (cfg_.max_bytes < (256u << 10))
    return Status::InvalidArgument("buffer.max_bytes " + std::to_string(cfg_.max_bytes) +
                                   " is below the minimum of 262144");
  namespace fs = std::filesystem;
  fs::path dir = fs::path(cfg_.path).parent_path();
  if (dir.empty()) dir = ".";
  struct stat sb {};
  if (::stat(dir.c_str(), &sb) != 0)
    return Status::IOError("buffer directory " + dir.string() + ": " + std::strerror(errno));
  if (!S_ISDIR(sb.st_mode))
    return Status::IOError("buffer directory " + dir.string() + " is not a directory");
  if (::access(dir.c_str(), W_OK | X_OK) != 0)
    return Status::IOError("buffer directory " + dir.string() +
                           " is not writable: " + std::strerror(errno));
  if (::access(cfg_.path.c_str(), F_OK) == 0 && ::access(cfg_.path.c_str(), R_OK | W_OK) != 0)
    return Status::IOError("buffer file " + cfg_.path +
                           " is not writable: " + std::strerror(errno));
  if (auto st = lock_.Acquire(cfg_.path + ".lock", opts_.lock_wait_ms); !st.ok()) return st;

  bool corrupt = false;
  std::string why;
  if (auto st = CreateOrCheck(&corrupt, &why); !st.ok()) {
    return Status(st.code() == Status::Code::kFull
                      ? Status::Full(cfg_.path + ": " + st.message())
                      : Status::IOError(cfg_.path + ": " + st.message()));
  }
  if (corrupt) {
    Recover(why);
    State carried = committed_;
    bool corrupt_again = false;
    if (auto st = CreateOrCheck(&corrupt_again, &why); !st.ok() || corrupt_again)
      return Status::IOError(cfg_.path +
                             ": cannot start a fresh buffer: " + (st.ok() ? why : st.message()));
    if (auto st = Configure(); !st.ok()) return st;
    // Persist what was carried over before anything else happens.
    State next = carried;
    committed_ = State{};  // so that WriteCounters writes every carried value
    if (auto st = Begin(true); !st.ok()) return st;
    Status st = WriteCounters(next);
    for (const auto& [name, seq] : next.cursors) {
      if (!st.ok()) break;
      auto ins = W("INSERT INTO cursors(name, seq) VALUES(?,?)");
      if (!ins.ok()) {
        st = ins.status();
        break;
      }
      (*ins)->Reset();
      (*ins)->BindText(1, name);
      (*ins)->Bind(2, static_cast<int64_t>(seq));
      st = (*ins)->Run("carry cursor");
    }
    if (st.ok()) st = Commit(&next);
    if (!st.ok()) {
      Rollback();
      return st;
    }
  } else {
    if (auto st = Configure(); !st.ok()) return st;
    if (found_format_ == 1) {
      if (auto st = Migrate(); !st.ok()) {
        std::string msg =
            cfg_.path + ": migrating buffer format 1 to " + std::to_string(kFormatVersion) +
            " failed (every completed step is kept and the next start resumes): " + st.message();
        return st.code() == Status::Code::kFull ? Status::Full(msg) : Status::IOError(msg);
      }
    }
    if (auto st = LoadState(wdb_.get(), &committed_); !st.ok()) return st;
  }

  auto r = OpenDb(cfg_.path, SQLITE_OPEN_READWRITE, opts_.vfs);
  if (!r.ok()) return r.status();
  rdb_ = std::move(r.value());
  last_sync_ = last_age_check_ = clock_->Now();
  Publish();
  return Status::Ok();
}

// --- writer ---------------------------------------------------------------------------------

Result<sql::Stmt*> Buffer::Impl::W(const char* sql) {
  auto it = stmts_.find(sql);
  if (it == stmts_.end()) {
    auto st = sql::Stmt::Prepare(wdb_.get(), sql);
    if (!st.ok()) return st.status();
    it = stmts_.emplace(sql, std::move(st.value())).first;
  }
  it->second.Reset();
  return &it->second;
}

// Starts a write transaction. Its commit fsyncs the WAL if sync=full, if forced (cursor
// commits), or with sync=normal once normal_sync_interval_ms has passed since the last fsync.
// A `lazy` transaction never fsyncs: one whose loss to a power cut costs nothing but redoing it
// (a delivered trim). The WAL is appended in order, so the next fsync makes it durable with
// everything before it. SQLite refuses to change synchronous inside a transaction, hence the
// decision here.
Status Buffer::Impl::Begin(bool force_sync, bool lazy) {
  tx_lazy_ = lazy;
  tx_full_ =
      !lazy &&
      (cfg_.sync == config::SyncMode::kFull || force_sync ||
       (cfg_.normal_sync_interval_ms > 0 &&
        clock_->Now() - last_sync_ >= std::chrono::milliseconds(cfg_.normal_sync_interval_ms)));
  if (tx_full_ != sync_full_now_) {
    if (auto st = sql::Exec(wdb_.get(),
                            tx_full_ ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL");
        !st.ok())
      return st;
    sync_full_now_ = tx_full_;
  }
  return sql::Exec(wdb_.get(), "BEGIN IMMEDIATE");
}

void Buffer::Impl::Rollback() {
  // After SQLITE_FULL or an I/O error SQLite may or may not have rolled back already.
  if (!sqlite3_get_autocommit(wdb_.get())) (void)sql::Exec(wdb_.get(), "ROLLBACK");
}

Status Buffer::Impl::WriteCounters(const State& next) {
  auto put = [&](const std::string& k, uint64_t v) -> Status {
    auto st = W("INSERT INTO meta(k, v) VALUES(?, ?) ON CONFLICT(k) DO UPDATE SET v=excluded.v");
    if (!st.ok()) return st.status();
    (*st)->BindText(1, k);
    (*st)->Bind(2, static_cast<int64_t>(v));
    return (*st)->Run("write meta");
  };
  for (auto [k, v, old] :
       {std::tuple{"last_seq", next.last_seq, committed_.last_seq},
        std::tuple{"records", next.records, committed_.records},
        std::tuple{"bytes", next.bytes, committed_.bytes},
        std::tuple{"appended_total", next.appended_total, committed_.appended_total},
        std::tuple{"recoveries", next.recoveries, committed_.recoveries}}) {
    if (v != old || k == std::string_view("last_seq"))
      if (auto st = put(k, v); !st.ok()) return st;
  }
  for (const auto& [reason, n] : next.drops) {
    auto it = committed_.drops.find(reason);
    if (counters_dirty_ || it == committed_.drops.end() || it->second != n)
      if (auto st = put("drop." + reason, n); !st.ok()) return st;
  }
  return Status::Ok();
}

// Commits the open transaction, with the fsync decided by Begin().
Status Buffer::Impl::Commit(State* next) {
  if (auto st = sql::Exec(wdb_.get(), "COMMIT"); !st.ok()) return st;
  if (tx_full_) {
    last_sync_ = clock_->Now();
    unsynced_ = false;
  } else if (!tx_lazy_) {  // a lazy one needs no periodic fsync after it (Housekeeping)
    unsynced_ = true;
  }
  next->last_commit_unix_ms = clock_->NowUnixMs();
  committed_ = *next;
  counters_dirty_ = false;
  // Keep the WAL inside its budget even if a reader held a checkpoint back: past half the
  // budget, wait for readers and reset it (room is left for one more group transaction).
  if (FileSize(cfg_.path + "-wal") > wal_budget_ / 2) {
    (void)sql::Exec(wdb_.get(), "PRAGMA wal_checkpoint(TRUNCATE)");
  }
  return Status::Ok();
}

void Buffer::Impl::Publish() {
  std::lock_guard lk(mu_);
  bool more = committed_.last_seq != shared_.last_seq || committed_.records != shared_.records;
  shared_ = committed_;
  if (more) data_cv_.notify_all();
}

void Buffer::Impl::Finish(Op* op, Status st, size_t count) {
  op->status = std::move(st);
  op->count = count;
  op->finished = true;
}

// After SQLITE_FULL: was it max_bytes (max_page_count) or the file system? SQLite reports both
// as SQLITE_FULL, so ask the file system how much room is left.
bool Buffer::Impl::DbAtLimit() {
  std::string dir = std::filesystem::path(cfg_.path).parent_path().string();
  if (dir.empty()) dir = ".";
  uint64_t avail = 0;
  if (opts_.free_disk_bytes) {
    avail = opts_.free_disk_bytes(dir);
  } else {
    struct statvfs vfs {};
    if (::statvfs(dir.c_str(), &vfs) != 0) return true;
    avail = static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize;
  }
  return avail > wal_budget_ + (1u << 20);
}

// Stores the group as batch rows: consecutive seqs, one ingest time, a row closed at
// kBlockMaxBytes (FORMAT.md, "Batch rows").
Status Buffer::Impl::InsertGroup(const std::vector<Op*>& group, State* next) {
  auto ins =
      W("INSERT INTO batches(first_seq, last_seq, ingest_ms, bytes, codec, data) "
        "VALUES(?,?,?,?,?,?)");
  if (!ins.ok()) return ins.status();
  sql::Stmt* s = *ins;
  int64_t now = clock_->NowUnixMs();
  BlockEncoder enc(now);
  uint64_t row_first = 0;
  auto flush = [&]() -> Status {
    if (enc.count() == 0) return Status::Ok();
    s->Reset();
    s->Bind(1, static_cast<int64_t>(row_first));
    s->Bind(2, static_cast<int64_t>(next->last_seq));
    s->Bind(3, now);
    s->Bind(4, static_cast<int64_t>(enc.bytes()));
    std::string_view stored;
    s->Bind(5, packer_.Pack(enc.data(), &stored));
    s->BindBlobStatic(6, stored);  // enc and packer_ outlive the step
    Status st = s->Run("insert batch");
    next->bytes += enc.bytes();
    enc.Clear();
    return st;
  };
  std::string hdr;
  for (Op* op : group) {
    for (const Record& r : op->records) {
      uint64_t seq = ++next->last_seq;
      if (enc.count() == 0) row_first = seq;
      enc.Add(r, &hdr);  // the record outlives the encoder's use of it
      if (next->first_seq == 0) next->first_seq = seq;
      next->records++;
      next->appended_total++;
      if (enc.data().size() >= kBlockMaxBytes)
        if (auto st = flush(); !st.ok()) return st;
    }
  }
  if (auto st = flush(); !st.ok()) return st;
  return WriteCounters(*next);
}

// Deletes every batch row that ends at or before cutoff_seq inside the open transaction (a row
// that straddles the cutoff stays). Records above the smallest cursor count as dropped for
// `reason`; those at or below it were delivered (trimmed).
Status Buffer::Impl::DeleteUpTo(uint64_t cutoff_seq, std::string_view reason, State* next) {
  uint64_t delivered = next->MinCursor();
  // Rows hold consecutive seqs, so a row's undelivered records are
  // last_seq - max(first_seq - 1, delivered) when positive.
  auto q =
      W("SELECT ifnull(sum(last_seq - first_seq + 1),0), ifnull(sum(bytes),0), "
        "ifnull(sum(max(0, last_seq - max(first_seq - 1, ?2))),0) FROM batches "
        "WHERE first_seq <= ?1 AND last_seq <= ?1");
  if (!q.ok()) return q.status();
  (*q)->Bind(1, static_cast<int64_t>(cutoff_seq));
  (*q)->Bind(2, static_cast<int64_t>(delivered));
  int rc = (*q)->Step();
  if (rc != SQLITE_ROW) return sql::ToStatus(rc, wdb_.get(), "count records");
  auto n = static_cast<uint64_t>((*q)->Int(0));
  auto bytes = static_cast<uint64_t>((*q)->Int(1));
  auto undelivered = static_cast<uint64_t>((*q)->Int(2));
  (*q)->Reset();
  if (n == 0) return Status::Ok();
  auto del = W("DELETE FROM batches WHERE first_seq <= ?1 AND last_seq <= ?1");
  if (!del.ok()) return del.status();
  (*del)->Bind(1, static_cast<int64_t>(cutoff_seq));
  if (auto st = (*del)->Run("delete batches"); !st.ok()) return st;
  next->records -= std::min(n, next->records);
  next->bytes -= std::min(bytes, next->bytes);
  if (undelivered > 0 && !reason.empty()) next->drops[std::string(reason)] += undelivered;
  auto first = QueryInt(wdb_.get(), "SELECT ifnull(min(first_seq),0) FROM batches");
  if (!first.ok()) return first.status();
  next->first_seq = *first;
  space_changed_ = true;
  return Status::Ok();
}

// One transaction that drops the oldest batch rows until `need_bytes` of stored (compressed) row
// data are freed: the file holds stored bytes, and the group waiting for room needs at most its
// logical size.
Status Buffer::Impl::DropOldest(uint64_t need_bytes, uint64_t* dropped) {
  *dropped = 0;
  if (auto st = Begin(); !st.ok()) return st;
  State next = committed_;
  uint64_t cutoff = 0, acc = 0;
  auto scan = W("SELECT last_seq, length(data) FROM batches ORDER BY first_seq");
  if (!scan.ok()) {
    Rollback();
    return scan.status();
  }
  int rc;
  while (acc < need_bytes && (rc = (*scan)->Step()) == SQLITE_ROW) {
    cutoff = (*scan)->Int(0);
    acc += (*scan)->Int(1);
  }
  (*scan)->Reset();
  Status st = cutoff == 0 ? Status::Ok() : DeleteUpTo(cutoff, kDropOldest, &next);
  if (st.ok() && cutoff != 0) st = WriteCounters(next);
  uint64_t before = committed_.records;
  if (st.ok()) st = Commit(&next);
  if (!st.ok()) {
    Rollback();
    return st;
  }
  *dropped = before - next.records;
  return Status::Ok();
}

// Deletes every record with seq <= cutoff_seq in transactions of at most wal_budget / 8 stored
// bytes each: deleting a row rewrites its pages, so one big delete would put the whole range into
// the WAL at once and break max_bytes. Each commit checkpoints when the WAL has grown. Whole rows
// go; for a delivered trim (`reason` empty) a row that straddles the cutoff is then rewritten
// without its delivered records (RewriteStraddling). Callers with a reason pass a row's end.
// `yield`, if given, is asked after each committed transaction: true stops the trim there (the
// rest is done later, see RunTrim), so that waiting appends and cursor commits are not held
// behind a long trim.
Status Buffer::Impl::TrimTo(uint64_t cutoff_seq, std::string_view reason,
                            const std::function<bool()>& yield) {
  while (committed_.first_seq != 0 && committed_.first_seq <= cutoff_seq) {
    // A delivered trim is not fsynced: the cursor it follows is durable, and a trim lost to a
    // power cut is redone at the next start (RunTrim). With sync=full each of its transactions
    // cost an fsync of its own, the cursor commit queued behind it waiting for that.
    if (auto st = Begin(/*force_sync=*/false, /*lazy=*/reason.empty()); !st.ok()) return st;
    uint64_t chunk = 0, acc = 0;
    auto scan =
        W("SELECT last_seq, length(data) FROM batches WHERE first_seq <= ? ORDER BY first_seq");
    if (!scan.ok()) {
      Rollback();
      return scan.status();
    }
    (*scan)->Bind(1, static_cast<int64_t>(cutoff_seq));
    while (acc < wal_budget_ / 8 && (*scan)->Step() == SQLITE_ROW &&
           static_cast<uint64_t>((*scan)->Int(0)) <= cutoff_seq) {
      chunk = (*scan)->Int(0);
      acc += (*scan)->Int(1);
    }
    (*scan)->Reset();
    // Every whole row up to the cutoff is in this chunk: a row straddling the cutoff is
    // rewritten in the same transaction. In a transaction of its own it wrote the pages both
    // change (the b-tree, the free list, the counters) to the WAL twice per cursor commit.
    const bool last_chunk = acc < wal_budget_ / 8;
    State next = committed_;
    Status st = chunk != 0 ? DeleteUpTo(chunk, reason, &next) : Status::Ok();
    if (st.ok() && last_chunk && reason.empty()) st = RewriteStraddling(cutoff_seq, &next);
    if (st.ok() && next.first_seq == committed_.first_seq) {  // nothing to delete or rewrite
      Rollback();
      return Status::Ok();
    }
    if (st.ok()) st = WriteCounters(next);
    if (st.ok()) st = Commit(&next);
    if (!st.ok()) {
      Rollback();
      return st;
    }
    if (yield && yield()) return Status::Ok();
  }
  return Status::Ok();
}

// If the oldest row holds delivered records (seq <= cutoff_seq) and undelivered ones, replaces
// it, within the caller's transaction, by a row of the undelivered ones only, so that
// records/bytes/first_seq stay exact and the space of delivered records is freed as in format 1.
// Costs at most one row (kBlockMaxBytes) of writes per cursor commit.
Status Buffer::Impl::RewriteStraddling(uint64_t cutoff_seq, State* next) {
  auto sel =
      W("SELECT first_seq, last_seq, ingest_ms, codec, bytes, data FROM batches ORDER BY first_seq "
        "LIMIT 1");
  if (!sel.ok()) return sel.status();
  int rc = (*sel)->Step();
  if (rc != SQLITE_ROW) {
    (*sel)->Reset();
    return rc == SQLITE_DONE ? Status::Ok() : sql::ToStatus(rc, wdb_.get(), "read row");
  }
  auto first = static_cast<uint64_t>((*sel)->Int(0));
  auto last = static_cast<uint64_t>((*sel)->Int(1));
  int64_t ingest = (*sel)->Int(2);
  if (!(first <= cutoff_seq && cutoff_seq < last)) {  // nothing straddles
    (*sel)->Reset();
    return Status::Ok();
  }
  uint64_t row_bytes = 0;
  auto recs = DecodeRow(write_dctx_.get(), first, last, ingest, (*sel)->Int(3), (*sel)->Int(4),
                        (*sel)->View(5), &row_bytes);
  (*sel)->Reset();
  if (!recs.ok()) return recs.status();
  BlockEncoder enc(ingest);
  std::string hdr;
  for (const auto& sr : *recs)
    if (sr.seq > cutoff_seq) enc.Add(sr.record, &hdr);
  auto del = W("DELETE FROM batches WHERE first_seq = ?");
  if (!del.ok()) return del.status();
  (*del)->Bind(1, static_cast<int64_t>(first));
  if (auto st = (*del)->Run("delete straddling row"); !st.ok()) return st;
  auto ins =
      W("INSERT INTO batches(first_seq, last_seq, ingest_ms, bytes, codec, data) "
        "VALUES(?,?,?,?,?,?)");
  if (!ins.ok()) return ins.status();
  (*ins)->Bind(1, static_cast<int64_t>(cutoff_seq + 1));
  (*ins)->Bind(2, static_cast<int64_t>(last));
  (*ins)->Bind(3, ingest);
  (*ins)->Bind(4, static_cast<int64_t>(enc.bytes()));
  std::string_view stored;
  (*ins)->Bind(5, packer_.Pack(enc.data(), &stored));
  (*ins)->BindBlobStatic(6, stored);
  if (auto st = (*ins)->Run("rewrite straddling row"); !st.ok()) return st;
  uint64_t gone = cutoff_seq - first + 1;
  next->records -= std::min(gone, next->records);
  next->bytes -= std::min(row_bytes - enc.bytes(), next->bytes);
  next->first_seq = cutoff_seq + 1;
  space_changed_ = true;
  return Status::Ok();
}

void Buffer::Impl::RunAppends(std::vector<Op*>& group) {
  uint64_t group_records = 0, group_bytes = 0;
  for (Op* op : group) {
    group_records += op->records.size();
    for (const auto& r : op->records) group_bytes += r.ByteSize();
  }
  for (;;) {
    State next = committed_;
    Status st = Begin();
    if (st.ok()) st = InsertGroup(group, &next);
    if (st.ok()) st = Commit(&next);
    if (st.ok()) {
      for (Op* op : group) Finish(op, Status::Ok(), op->records.size());
      blocked_ = false;
      linger_target_ = std::max(group.size(), linger_target_ > 0 ? linger_target_ - 1 : 0);
      return;
    }
    Rollback();
    if (st.code() != Status::Code::kFull) {
      uint64_t suppressed = 0;
      if (log_limit_.Allow("append", &suppressed))
        EF_LOG(kError, kComponent, "append to {} failed: {} ({} similar suppressed)", cfg_.path,
               st.ToString(), suppressed);
      for (Op* op : group) Finish(op, st);
      return;
    }
    // Delivered records the trim has not reached yet (it runs in bounded steps between groups)
    // give their room first: when_full is about a buffer full of undelivered records.
    if (TrimDue()) {
      uint64_t before = committed_.records;
      RunTrim(nullptr);
      if (committed_.records < before) continue;
    }
    bool at_limit = DbAtLimit();
    if (cfg_.when_full == config::WhenFull::kDropOldest && committed_.records > 0) {
      uint64_t dropped = 0;
      // Bounded per transaction (see TrimTo); the loop drops again if that was not enough.
      uint64_t need = std::min<uint64_t>(
          std::max<uint64_t>(group_bytes * 2, (cfg_.max_bytes - wal_budget_) / 16),
          wal_budget_ / 8);
      Status ds = DropOldest(need, &dropped);
      if (ds.ok() && dropped > 0) {
        uint64_t suppressed = 0;
        if (log_limit_.Allow("drop_oldest", &suppressed))
          EF_LOG(kWarning, kComponent, "buffer {} full ({}): dropped the {} oldest records",
                 cfg_.path, at_limit ? "max_bytes reached" : "disk full", dropped);
        continue;
      }
    }
    if (cfg_.when_full == config::WhenFull::kBlock && cancel_blocked_) {
      // CancelBlockedAppends: refuse instead of waiting. Nothing of the group was stored (the
      // transaction was rolled back), so the callers must not acknowledge upstream.
      blocked_ = true;
      last_full_attempt_ = clock_->Now();
      if (group.size() > 1) {
        // One by one, so that an append that fits alone is still stored.
        for (Op* op : group) {
          std::vector<Op*> one{op};
          RunAppends(one);
        }
        return;
      }
      for (Op* op : group)
        Finish(op, Status::Aborted("buffer " + cfg_.path +
                                   " full: waiting append cancelled (stopping); nothing stored"));
      return;
    }
    if (cfg_.when_full == config::WhenFull::kBlock) {
      // Appenders wait; RunAppends is retried when space may have been freed (see WriterLoop).
      uint64_t suppressed = 0;
      if (!blocked_ && log_limit_.Allow("block", &suppressed))
        EF_LOG(kWarning, kComponent, "buffer {} full ({}): appenders wait (when_full=block)",
               cfg_.path, at_limit ? "max_bytes reached" : "disk full");
      blocked_ = true;
      space_changed_ = false;
      last_full_attempt_ = clock_->Now();
      return;  // ops stay not done; the loop puts them back
    }
    if (group.size() > 1 && committed_.records == 0 &&
        cfg_.when_full == config::WhenFull::kDropOldest) {
      // Nothing left to drop: try the appends one by one so that one huge call fails alone.
      for (Op* op : group) {
        std::vector<Op*> one{op};
        RunAppends(one);
      }
      return;
    }
    std::string_view reason = cfg_.when_full == config::WhenFull::kDropNewest && at_limit
                                  ? kDropNewest
                                  : (at_limit ? kDropTooLarge : kDropDiskFull);
    State next2 = committed_;
    next2.drops[std::string(reason)] += group_records;
    if (Begin().ok() && WriteCounters(next2).ok() && Commit(&next2).ok()) {
    } else {
      Rollback();
      committed_ = next2;  // persisted with the next successful transaction
      counters_dirty_ = true;
    }
    uint64_t suppressed = 0;
    if (log_limit_.Allow(std::string(reason), &suppressed))
      EF_LOG(kWarning, kComponent, "buffer {} full: refused {} records ({}; {} similar suppressed)",
             cfg_.path, group_records, reason, suppressed);
    for (Op* op : group)
      Finish(op, Status::Full("buffer " + cfg_.path + " is full (" + std::string(reason) + ")"));
    return;
  }
}

void Buffer::Impl::RunControl(Op* op) {
  State next = committed_;
  Status st;

  size_t count = 0;
  switch (op->kind) {
    case Op::Kind::kCursor: {
      auto it = next.cursors.find(op->name);
      if (it != next.cursors.end() && it->second >= op->seq) return Finish(op, Status::Ok());
      if (op->seq > next.last_seq)
        return Finish(op, Status::InvalidArgument(
                              "cursor " + op->name + " " + std::to_string(op->seq) +
                              " is beyond the last seq " + std::to_string(next.last_seq)));
      next.cursors[op->name] = op->seq;
      // Cursors are durable in every sync mode.
      st = Begin(true);
      if (st.ok()) {
        auto up =
            W("INSERT INTO cursors(name, seq) VALUES(?, ?) ON CONFLICT(name) DO UPDATE SET "
              "seq=excluded.seq");
        st = up.ok() ? Status::Ok() : up.status();
        if (st.ok()) {
          (*up)->BindText(1, op->name);
          (*up)->Bind(2, static_cast<int64_t>(op->seq));
          st = (*up)->Run("commit cursor");
        }
      }

      break;
    }
    case Op::Kind::kDeadLetter: {
      st = Begin();
      if (st.ok()) {
        auto ins =
            W("INSERT INTO dead_letters(reason, dead_ms, seq, ingest_ms, event_ms, source, key, "
              "topic, "
              "headers, payload) VALUES(?,?,?,?,?,?,?,?,?,?)");
        st = ins.ok() ? Status::Ok() : ins.status();
        if (st.ok()) {
          const StoredRecord& sr = *op->dead;
          std::string hdr = EncodeHeaders(sr.record.headers);
          sql::Stmt* s = *ins;
          s->BindText(1, op->name);
          s->Bind(2, clock_->NowUnixMs());
          s->Bind(3, static_cast<int64_t>(sr.seq));
          s->Bind(4, sr.ingest_time_ms);
          s->Bind(5, sr.record.event_time_ms);
          s->BindBlob(6, sr.record.source);
          s->BindBlob(7, sr.record.key);
          s->BindBlob(8, sr.record.topic);
          if (hdr.empty())
            s->BindNull(9);
          else
            s->BindBlob(9, hdr);
          s->BindBlob(10, sr.record.payload);
          st = s->Run("insert dead letter");
        }
      }
      if (st.ok()) next.dead_letters[op->name]++;
      count = 1;
      break;
    }
    case Op::Kind::kRequeue: {
      st = Begin();
      std::vector<std::pair<int64_t, DeadLetterEntry>> rows;
      if (st.ok()) {
        auto sel =
            W("SELECT id, reason, seq, ingest_ms, event_ms, source, key, topic, headers, payload "
              "FROM dead_letters ORDER BY id");
        st = sel.ok() ? Status::Ok() : sel.status();
        int rc = SQLITE_DONE;
        while (st.ok() && (rc = (*sel)->Step()) == SQLITE_ROW) {
          int64_t id = (*sel)->Int(0);
          if (!op->all_ids && std::find(op->ids.begin(), op->ids.end(), id) == op->ids.end())
            continue;
          DeadLetterEntry e;
          e.id = id;
          e.reason = (*sel)->Bytes(1);
          e.record = ReadRow(**sel, 2);
          rows.emplace_back(id, std::move(e));
        }
        if (st.ok() && rc != SQLITE_DONE) st = sql::ToStatus(rc, wdb_.get(), "read dead letters");
        if (sel.ok()) (*sel)->Reset();
      }
      if (st.ok() && !rows.empty()) {
        Op tmp;
        for (auto& [id, e] : rows) tmp.records.push_back(std::move(e.record.record));
        std::vector<Op*> g{&tmp};
        st = InsertGroup(g, &next);
        auto del = W("DELETE FROM dead_letters WHERE id = ?");
        if (!del.ok()) st = del.status();
        for (auto& [id, e] : rows) {
          if (!st.ok()) break;
          (*del)->Reset();
          (*del)->Bind(1, id);
          st = (*del)->Run("delete dead letter");
          if (st.ok() && --next.dead_letters[e.reason] == 0) next.dead_letters.erase(e.reason);
        }
      }
      count = rows.size();
      break;
    }
    case Op::Kind::kAppend:
      break;
  }
  if (st.ok()) st = WriteCounters(next);
  if (st.ok()) st = Commit(&next);
  if (!st.ok()) {
    Rollback();
    return Finish(op, st);
  }
  // The trim of what is now delivered is not done here: the cursor is durable, so its caller
  // gets the result first and the writer trims afterwards (RunTrim, from WriterLoop). A cursor
  // commit retries a trim that failed before.
  if (op->kind == Op::Kind::kCursor) trim_failed_ = false;
  Finish(op, Status::Ok(), count);
}

// Delivered records are still held: the smallest cursor is at or past the oldest record.
bool Buffer::Impl::TrimDue() const {
  return committed_.first_seq != 0 && committed_.first_seq <= committed_.MinCursor();
}

// A trim is due and was not just tried in vain (then it waits a second, or a cursor commit).
bool Buffer::Impl::TrimRunnable() const {
  return TrimDue() && (!trim_failed_ || clock_->Now() - trim_failed_at_ >= std::chrono::seconds(1));
}

// Deletes the delivered records, up to the newest smallest cursor: several cursor commits since
// the last trim need one trim. Runs after the cursor commits of a writer round have been handed
// back (FORMAT.md, invariant 4). `yield` (see TrimTo) may stop it between its transactions; the
// writer then continues it in a later round, since TrimRunnable() stays true. A trim lost to a
// crash or a power cut is redone by the first round of the next start for the same reason.
void Buffer::Impl::RunTrim(const std::function<bool()>& yield) {
  uint64_t first_before = committed_.first_seq;
  Status ts = TrimTo(committed_.MinCursor(), "", yield);
  if (ts.ok() && TrimDue() && committed_.first_seq == first_before) {
    // Nothing moved although the trim ended without an error: never spin on it.
    ts = Status::IOError("delivered trim made no progress at seq " +
                         std::to_string(committed_.first_seq));
  }
  if (!ts.ok()) {
    trim_failed_ = true;
    trim_failed_at_ = clock_->Now();
    uint64_t suppressed = 0;
    if (log_limit_.Allow("trim", &suppressed))
      EF_LOG(kWarning, kComponent,
             "trimming delivered records of {} failed: {} (retried; {} similar suppressed)",
             cfg_.path, ts.ToString(), suppressed);
    return;
  }
  trim_failed_ = false;
  if (TrimDue()) return;  // yielded: more to do in a later round
  // Give space back to the file system once most of the file is free and what is still held is
  // small, a bounded number of pages at a time. Shrinking moves the pages in use at the end of
  // the file into free ones nearer the start, writing each through the WAL. While a backlog
  // drains those are the newest records, about to be delivered and trimmed themselves: moving
  // them was half the writer's CPU in bench_forwarder (1 KiB records: 2.5 CPU-s per million
  // records with it, 1.2 without). So wait until the pages in use are at most an eighth of
  // what one step gives back (or 64, which cost nothing to move): waiting only until they fit in
  // one step still moved up to a step of them each trim through the last quarter of a drain
  // (100 B records: ~100 ms of the writer per million records, and the WAL writes with it).
  const auto step = static_cast<int64_t>(wal_budget_ / 8 / kPageSize) + 1;
  auto pc = QueryInt(wdb_.get(), "PRAGMA page_count");
  auto fl = QueryInt(wdb_.get(), "PRAGMA freelist_count");
  if (pc.ok() && fl.ok() && *fl > 64 && *fl * 2 > *pc) {
    const int64_t give_back = std::min(*fl / 2, step);
    if (*pc - *fl <= 64 || (*pc - *fl) * 8 <= give_back) {
      (void)sql::Exec(wdb_.get(), "PRAGMA incremental_vacuum(" + std::to_string(give_back) + ")");
    }
  }
}

// Background work between groups: max_age retention and, for sync=normal, the periodic fsync
// of the WAL when the writer is otherwise idle.
void Buffer::Impl::Housekeeping() {
  auto now = clock_->Now();
  if (cfg_.max_age_s > 0 && now - last_age_check_ >= std::chrono::seconds(1)) {
    last_age_check_ = now;
    int64_t cutoff_ms = clock_->NowUnixMs() - static_cast<int64_t>(cfg_.max_age_s) * 1000;
    // Ingest times grow with seq (one writer stamps them, one per batch row), so the expired
    // records are a prefix of whole rows: walk it from the oldest and stop at the first young one.
    uint64_t cutoff_seq = 0;
    if (auto q = W("SELECT last_seq, ingest_ms FROM batches ORDER BY first_seq"); q.ok()) {
      while ((*q)->Step() == SQLITE_ROW && (*q)->Int(1) < cutoff_ms) cutoff_seq = (*q)->Int(0);
      (*q)->Reset();
    }
    if (cutoff_seq > 0) (void)TrimTo(cutoff_seq, kDropMaxAge);
  }
  if (unsynced_ && cfg_.normal_sync_interval_ms > 0 &&
      now - last_sync_ >= std::chrono::milliseconds(cfg_.normal_sync_interval_ms)) {
    // A tiny FULL transaction fsyncs the WAL, which makes every earlier commit durable.
    State next = committed_;
    Status st = Begin(true);
    if (st.ok()) st = WriteCounters(next);
    if (st.ok()) st = Commit(&next);
    if (!st.ok()) Rollback();
  }
}

// An op in the queue can run now (appends waiting for space cannot).
bool Buffer::Impl::OpsWaiting() const {
  for (const Op* op : queue_) {
    if (op->kind != Op::Kind::kAppend) return true;
    return !blocked_ || space_changed_ || stopping_ || cancel_blocked_;
  }
  return false;
}

bool Buffer::Impl::Runnable() const { return OpsWaiting() || stopping_; }

void Buffer::Impl::WriterLoop() {
  std::unique_lock lk(mu_);
  for (;;) {
    if (!Runnable() && !TrimRunnable()) {
      // Idle: wake for housekeeping when some is pending (a failed trim is retried from here).
      // The wait is real time (a scheduling primitive); what is due is decided by clock_.
      bool pending = unsynced_ || blocked_ || cfg_.max_age_s > 0 || TrimDue();
      if (pending)
        work_cv_.wait_for(
            lk, std::chrono::milliseconds(
                    unsynced_ ? std::max<uint32_t>(cfg_.normal_sync_interval_ms / 4, 1) : 100));
      else
        work_cv_.wait(lk);
    }
    // A clean stop finishes the delivered trim first (unless it is failing), so that the file
    // left behind holds no delivered records.
    bool stop = stopping_ && !TrimRunnable() &&
                (queue_.empty() || (blocked_ && queue_.front()->kind == Op::Kind::kAppend &&
                                    std::none_of(queue_.begin(), queue_.end(), [](Op* o) {
                                      return o->kind != Op::Kind::kAppend;
                                    })));
    if (stop) break;
    std::vector<Op*> control, group;
    for (auto it = queue_.begin(); it != queue_.end();) {
      if ((*it)->kind != Op::Kind::kAppend) {
        control.push_back(*it);
        it = queue_.erase(it);
      } else {
        ++it;
      }
    }
    // Block-mode timeouts and retries.
    auto now = clock_->Now();
    if (blocked_ && cfg_.block_timeout_ms > 0) {
      for (auto it = queue_.begin(); it != queue_.end();) {
        if (now - (*it)->enqueued >= std::chrono::milliseconds(cfg_.block_timeout_ms)) {
          Finish(*it,
                 Status::Unavailable("buffer " + cfg_.path + " full: block_timeout_ms passed"));
          (*it)->Done();
          it = queue_.erase(it);
        } else {
          ++it;
        }
      }
    }
    bool retry = !blocked_ || space_changed_ || stopping_ || cancel_blocked_ ||
                 now - last_full_attempt_ >= std::chrono::milliseconds(200);
    // Takes appends from the front of the queue into the group, up to the group bounds. Stops at
    // a control op (one that arrived while lingering): it runs in the next round, in order.
    uint64_t n = 0, bytes = 0;  // records and bytes in the group
    auto take = [&] {
      while (
          !queue_.empty() && queue_.front()->kind == Op::Kind::kAppend &&
          (group.empty() || (n + queue_.front()->records.size() <= cfg_.group_commit_max_records &&
                             bytes < group_max_bytes_))) {
        Op* op = queue_.front();
        queue_.pop_front();
        n += op->records.size();
        for (const auto& r : op->records) bytes += r.ByteSize();
        group.push_back(op);
      }
    };
    if (retry && !(stopping_ && blocked_)) {
      take();
      // Linger (sync=full): when recent groups had several appenders, wait (up to
      // group_commit_max_delay_ms) until as many have come back, so that they share one fsync.
      // A lone appender never waits. Not with sync=normal: there a commit is cheaper than the
      // wait (measured with bench_buffer). Real time on purpose: this is a scheduling wait,
      // not logic, and a FakeClock must not stall it.
      if (!group.empty() && cfg_.sync == config::SyncMode::kFull && linger_target_ > 1 &&
          group.size() < linger_target_ && cfg_.group_commit_max_delay_ms > 0 &&
          n < cfg_.group_commit_max_records) {
        auto until = std::chrono::steady_clock::now() +
                     std::chrono::milliseconds(cfg_.group_commit_max_delay_ms);
        auto control_waiting = [&] {
          return !queue_.empty() && queue_.front()->kind != Op::Kind::kAppend;
        };
        while (n < cfg_.group_commit_max_records && group.size() < linger_target_ && !stopping_ &&
               !control_waiting() && work_cv_.wait_until(lk, until) != std::cv_status::timeout) {
          take();
        }
        take();
      }
    }
    lk.unlock();
    for (Op* op : control) RunControl(op);
    if (!control.empty()) {
      // Control ops are committed (a cursor durably): their callers need not wait for the
      // trim, the housekeeping and the appends of this round. Published first, so that a
      // caller sees its cursor in LoadCursor and GetStats once it returns. Results are handed
      // over under mu_ (a submitter may return and reuse its stack as soon as it sees done).
      Publish();
      lk.lock();
      for (Op* op : control) op->Done();
      control.clear();
      lk.unlock();
    }
    if (TrimRunnable()) {
      // With appends in hand this round, one bounded transaction of the trim, then the
      // appends; with none, the trim goes on until an op arrives (or it is done). Either way
      // the rest follows in the next rounds.
      bool appends = !group.empty();
      RunTrim([&] {
        if (appends) return true;
        std::lock_guard g(mu_);
        return OpsWaiting();
      });
    }
    Housekeeping();
    if (!group.empty()) RunAppends(group);
    Publish();
    lk.lock();
    // Hand results over under mu_ (see above). Blocked appends go back to the front of the
    // queue, in order.
    for (auto it = group.rbegin(); it != group.rend(); ++it) {
      if ((*it)->finished)
        (*it)->Done();
      else
        queue_.push_front(*it);
    }
  }
  for (Op* op : queue_) {
    Finish(op, Status::Aborted("buffer " + cfg_.path + " is closing"));
    op->Done();
  }
  queue_.clear();
}

Status Buffer::Impl::Submit(Op* op) {
  std::unique_lock lk(mu_);
  if (stopping_) return Status::Aborted("buffer " + cfg_.path + " is closing");
  op->enqueued = clock_->Now();
  queue_.push_back(op);
  work_cv_.notify_one();
  op->cv.wait(lk, [&] { return op->done; });
  return op->status;
}

Result<sql::Stmt*> Buffer::Impl::ReadStmt(const std::string& sql) {
  auto it = read_.find(sql);
  if (it == read_.end()) {
    auto st = sql::Stmt::Prepare(rdb_.get(), sql);
    if (!st.ok()) return st.status();
    it = read_.emplace(sql, std::move(st.value())).first;
  }
  it->second.Reset();
  return &it->second;
}

// --- Buffer ---------------------------------------------------------------------------------

Result<std::unique_ptr<Buffer>> Buffer::Open(const config::BufferConfig& cfg, Clock* clock,
                                             const OpenOptions& opts) {
  auto impl = std::make_unique<Impl>(cfg, clock, opts);
  if (auto st = impl->Open(); !st.ok()) return st;
  EF_LOG(kInfo, kComponent, "opened {} (sync={}, max_bytes={}, when_full={}, last_seq={})",
         cfg.path, cfg.sync == config::SyncMode::kFull ? "full" : "normal", cfg.max_bytes,
         cfg.when_full == config::WhenFull::kDropOldest
             ? "drop_oldest"
             : (cfg.when_full == config::WhenFull::kBlock ? "block" : "drop_newest"),
         impl->shared_.last_seq);
  impl->Start();  // after the log line: from here on shared_ belongs to mu_
  return std::unique_ptr<Buffer>(new Buffer(std::move(impl)));
}

Buffer::Buffer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Buffer::~Buffer() { impl_->Stop(); }

void Buffer::CancelBlockedAppends() {
  {
    std::lock_guard lk(impl_->mu_);
    impl_->cancel_blocked_ = true;
  }
  impl_->work_cv_.notify_all();
}

void Buffer::AllowBlockedAppends() {
  std::lock_guard lk(impl_->mu_);
  impl_->cancel_blocked_ = false;
}

Status Buffer::Append(std::vector<Record> records) {
  if (records.empty()) return Status::Ok();
  Impl::Op op;
  op.records = std::move(records);
  return impl_->Submit(&op);
}

// Reads the rows' blobs through one incremental blob handle into a buffer kept across reads, and
// decodes into the records already in *out: a drain allocates neither per row nor per record.
Result<size_t> Buffer::ReadInto(uint64_t after_seq, size_t max_records, size_t max_bytes,
                                std::vector<StoredRecord>* out) {
  size_t n = 0;  // records of *out filled so far
  if (max_records == 0) return n;
  std::lock_guard lk(impl_->rmu_);
  sqlite3* db = impl_->rdb_.get();
  auto st = impl_->ReadStmt(std::string("SELECT first_seq, last_seq, ingest_ms, codec, bytes") +
                            kRowsAfterWhere + "ORDER BY first_seq");
  if (!st.ok()) return st.status();
  sql::Stmt* s = *st;
  s->Bind(1, static_cast<int64_t>(std::min<uint64_t>(after_seq, INT64_MAX)));
  std::unique_ptr<sqlite3_blob, int (*)(sqlite3_blob*)> blob(nullptr, sqlite3_blob_close);
  std::string& stored = impl_->read_blob_;
  size_t bytes = 0;
  bool full = false;
  Status bad;
  int rc;
  Record skipped;  // records up to after_seq of the first row
  while (!full && (rc = s->Step()) == SQLITE_ROW) {
    auto first = static_cast<uint64_t>(s->Int(0));
    auto last = static_cast<uint64_t>(s->Int(1));
    if (last <= after_seq) continue;  // the row holding after_seq ends there
    int64_t ingest = s->Int(2);
    auto damaged = [&] {
      return Status::Corruption("buffer " + impl_->cfg_.path + ": batch row at seq " +
                                std::to_string(first) + " is damaged");
    };
    sqlite3_blob* h = blob.get();
    int brc = h != nullptr ? sqlite3_blob_reopen(h, static_cast<int64_t>(first))
                           : sqlite3_blob_open(db, "main", "batches", "data",
                                               static_cast<int64_t>(first), 0, &h);
    if (blob == nullptr) blob.reset(h);  // also a handle that failed to open: it must be closed
    if (brc == SQLITE_OK) {
      stored.resize(static_cast<size_t>(sqlite3_blob_bytes(h)));
      brc = sqlite3_blob_read(h, stored.data(), static_cast<int>(stored.size()), 0);
    }
    if (brc != SQLITE_OK) {
      bad = sql::ToStatus(brc, db, "read batch row at seq " + std::to_string(first));
      break;
    }
    std::string_view block;
    if (last < first ||
        !UnpackBlock(impl_->read_dctx_.get(), s->Int(3), stored,
                     MaxBlockSize(static_cast<uint64_t>(s->Int(4)), last - first + 1),
                     &impl_->read_scratch_, &block)) {
      bad = damaged();
      break;
    }
    // Records up to after_seq are decoded and skipped (each one is the base of the next).
    BlockDecoder dec(block, ingest);
    bool prev_skipped = true;  // the previous record went to `skipped`, else to (*out)[n - 1]
    for (uint64_t seq = first; seq <= last; ++seq) {
      Record* r = &skipped;
      if (seq > after_seq) {
        if (n == out->size()) out->emplace_back();  // may move the records: no pointers kept
        r = &(*out)[n].record;
      }
      const Record* prev = prev_skipped ? &skipped : &(*out)[n - 1].record;
      uint64_t logical = 0;
      if (!dec.Next(r, seq == first ? r : prev, &logical)) {
        bad = damaged();
        break;
      }
      prev_skipped = seq <= after_seq;
      if (seq <= after_seq) continue;
      if (n > 0 && bytes + r->payload.size() > max_bytes) {
        full = true;
        break;
      }
      bytes += r->payload.size();
      (*out)[n].seq = seq;
      (*out)[n].ingest_time_ms = ingest;
      if (++n == max_records) {
        full = true;
        break;
      }
    }
    if (!bad.ok()) break;
  }
  blob.reset();
  s->Reset();  // ends the read transaction now: never hold the WAL back
  if (!bad.ok()) return bad;
  if (!full && rc != SQLITE_DONE) return sql::ToStatus(rc, db, "read records");
  return n;
}

bool Buffer::WaitForRecordsAfter(uint64_t after_seq, std::chrono::milliseconds max_wait) {
  std::unique_lock lk(impl_->mu_);
  return impl_->data_cv_.wait_for(lk, max_wait, [&] {
    return impl_->stopping_ || (impl_->shared_.records > 0 && impl_->shared_.last_seq > after_seq);
  }) && !impl_->stopping_;
}

Result<uint64_t> Buffer::LoadCursor(std::string_view name) {
  std::lock_guard lk(impl_->mu_);
  auto it = impl_->shared_.cursors.find(name);
  return it == impl_->shared_.cursors.end() ? uint64_t{0} : it->second;
}

Status Buffer::CommitCursor(std::string_view name, uint64_t seq) {
  if (name.empty()) return Status::InvalidArgument("cursor name is empty");
  Impl::Op op;
  op.kind = Impl::Op::Kind::kCursor;
  op.name = std::string(name);
  op.seq = seq;
  return impl_->Submit(&op);
}

Status Buffer::DeadLetter(const StoredRecord& record, std::string_view reason) {
  Impl::Op op;
  op.kind = Impl::Op::Kind::kDeadLetter;
  op.name = std::string(reason);
  op.dead = &record;
  return impl_->Submit(&op);
}

Stats Buffer::GetStats() {
  State s;
  {
    std::lock_guard lk(impl_->mu_);
    s = impl_->shared_;
  }
  int64_t oldest = 0;
  {
    std::lock_guard lk(impl_->rmu_);
    auto c = s.cursors.find(kForwarderCursor);
    if (auto r = OldestUndeliveredIngestMs(impl_->rdb_.get(), c == s.cursors.end() ? 0 : c->second,
                                           kFormatVersion);
        r.ok())
      oldest = *r;
  }
  Stats out = MakeStats(s, oldest, impl_->clock_->NowUnixMs());
  out.file_bytes = FileSize(impl_->cfg_.path) + FileSize(impl_->cfg_.path + "-wal");
  out.max_bytes = impl_->cfg_.max_bytes;
  return out;
}

Result<std::vector<DeadLetterEntry>> Buffer::ListDeadLetters(size_t limit) {
  std::vector<DeadLetterEntry> out;
  std::lock_guard lk(impl_->rmu_);
  auto st = impl_->ReadStmt(
      "SELECT id, reason, dead_ms, seq, ingest_ms, event_ms, source, key, topic, headers, payload "
      "FROM dead_letters ORDER BY id LIMIT ?");
  if (!st.ok()) return st.status();
  sql::Stmt* s = *st;
  s->Bind(1, static_cast<int64_t>(std::min<uint64_t>(limit, INT64_MAX)));
  int rc;
  while ((rc = s->Step()) == SQLITE_ROW) {
    DeadLetterEntry e;
    e.id = s->Int(0);
    e.reason = s->Bytes(1);
    e.dead_lettered_unix_ms = s->Int(2);
    e.record = ReadRow(*s, 3);
    out.push_back(std::move(e));
  }
  s->Reset();
  if (rc != SQLITE_DONE) return sql::ToStatus(rc, impl_->rdb_.get(), "list dead letters");
  return out;
}

Result<size_t> Buffer::RequeueDeadLetters(std::optional<std::vector<int64_t>> ids) {
  Impl::Op op;
  op.kind = Impl::Op::Kind::kRequeue;
  if (ids) {
    op.all_ids = false;
    op.ids = std::move(*ids);
  }
  if (auto st = impl_->Submit(&op); !st.ok()) return st;
  return op.count;
}

uint64_t Buffer::LastSeq() const {
  std::lock_guard lk(impl_->mu_);
  return impl_->shared_.last_seq;
}

Result<Stats> ReadStats(const std::string& path, Clock* clock) {
  if (::access(path.c_str(), F_OK) != 0)
    return Status::NotFound("buffer file " + path + ": " + std::strerror(errno));
  auto db = OpenDb(path, SQLITE_OPEN_READONLY, "");
  if (!db.ok()) return db.status();
  State s;
  // One read transaction so that the figures agree with each other.
  if (auto st = sql::Exec(db->get(), "BEGIN"); !st.ok()) return st;
  Status st = LoadState(db->get(), &s);
  int64_t oldest = 0;
  if (st.ok()) {
    auto c = s.cursors.find(kForwarderCursor);
    auto r = OldestUndeliveredIngestMs(db->get(), c == s.cursors.end() ? 0 : c->second, s.format);
    if (r.ok())
      oldest = *r;
    else
      st = r.status();
  }
  (void)sql::Exec(db->get(), "COMMIT");
  if (!st.ok())
    return Status(
        st.code() == Status::Code::kCorruption ? st : Status::IOError(path + ": " + st.message()));
  Stats out = MakeStats(s, oldest, clock->NowUnixMs());
  out.file_bytes = FileSize(path) + FileSize(path + "-wal");
  return out;
}

std::string ZstdVersion() { return ZSTD_versionString(); }

}  // namespace edgeferry::buffer
