// CommitCursor returns once the cursor is durable; the writer trims the delivered records after
// that (buffer/FORMAT.md, invariant 4): the cursor is visible to other connections and survives
// a restart at once, the stats become exact when the trim is through, a trim lost to a crash is
// redone at the next start, and a cursor commit does not wait for the trim or for the appends
// of its writer round.
#include <doctest/doctest.h>
#include <sqlite3.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "buffer/buffer.h"
#include "tests/buffer/powercut_vfs.h"
#include "tests/buffer/test_util.h"

namespace edgeferry::buffer {
namespace {

using testing::Batch;
using testing::Cfg;
using testing::MustOpen;
using testing::SqlInt;
using testing::TempDir;
using testing::WaitFor;
using testing::WaitForTrim;

uint64_t LogicalBytes(const std::vector<Record>& recs, size_t from, size_t to) {
  uint64_t n = 0;
  for (size_t i = from; i < to; ++i) n += recs[i].ByteSize();  // no headers: as the buffer counts
  return n;
}

void SqlExec(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) == SQLITE_OK);
  char* err = nullptr;
  int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
  std::string msg = err ? err : "";
  sqlite3_free(err);
  sqlite3_close(db);
  REQUIRE_MESSAGE(rc == SQLITE_OK, msg);
}

TEST_CASE("CommitCursor returns with the cursor durable, the trim follows with exact stats") {
  TempDir dir;
  auto cfg = Cfg(dir);
  std::vector<Record> all;
  for (int i = 0; i < 4; ++i) {
    auto part = Batch(25, "p" + std::to_string(i), 60);
    all.insert(all.end(), part.begin(), part.end());
  }
  {
    auto b = MustOpen(cfg);
    for (int i = 0; i < 4; ++i)  // four rows: 1-25, 26-50, 51-75, 76-100
      REQUIRE(b->Append({all.begin() + i * 25, all.begin() + (i + 1) * 25}).ok());
    REQUIRE(b->CommitCursor(kForwarderCursor, 60).ok());  // two rows whole, one in part
    // Durable and visible at return, to this process and to a second connection.
    CHECK(b->LoadCursor(kForwarderCursor).value() == 60);
    CHECK(b->GetStats().cursors.at("kafka").seq == 60);
    auto other = ReadStats(cfg.path);
    REQUIRE_MESSAGE(other.ok(), other.status().ToString());
    CHECK(other->cursors.at("kafka").seq == 60);
    CHECK(other->last_seq == 100);
    // Readers after the cursor never see delivered records, trimmed yet or not.
    auto next = b->ReadAfter(60, 1, SIZE_MAX);
    REQUIRE(next.ok());
    REQUIRE(next->size() == 1);
    CHECK(next->front().seq == 61);
    // The trim follows: exact counts in this process and on disk.
    REQUIRE(WaitForTrim(*b));
    auto st = b->GetStats();
    CHECK(st.records == 40);
    CHECK(st.first_seq == 61);
    CHECK(st.bytes == LogicalBytes(all, 60, 100));
    CHECK(st.cursors.at("kafka").lag_records == 40);
    other = ReadStats(cfg.path);
    REQUIRE(other.ok());
    CHECK(other->records == 40);
    CHECK(other->first_seq == 61);
    CHECK(other->bytes == st.bytes);
    // Several commits in a row need one trim, to the newest cursor.
    for (uint64_t c = 65; c <= 95; c += 5) REQUIRE(b->CommitCursor(kForwarderCursor, c).ok());
    CHECK(ReadStats(cfg.path)->cursors.at("kafka").seq == 95);
    REQUIRE(WaitForTrim(*b));
    st = b->GetStats();
    CHECK(st.records == 5);
    CHECK(st.first_seq == 96);
    CHECK(st.bytes == LogicalBytes(all, 95, 100));
    REQUIRE(b->CommitCursor(kForwarderCursor, 100).ok());
  }  // destroyed right after the commit returned
  auto b = MustOpen(cfg);
  CHECK(b->LoadCursor(kForwarderCursor).value() == 100);
  REQUIRE(WaitForTrim(*b));
  auto st = b->GetStats();
  CHECK(st.records == 0);
  CHECK(st.bytes == 0);
  CHECK(st.first_seq == 0);
  CHECK(st.last_seq == 100);
  REQUIRE(b->Append(Batch(1, "after")).ok());
  CHECK(b->LastSeq() == 101);  // seqs are never reused, trimmed or not
}

TEST_CASE("a delivered trim lost to a crash is redone at the next start, without a new commit") {
  TempDir dir;
  auto cfg = Cfg(dir);
  auto recs = Batch(30, "c", 80);
  {
    auto b = MustOpen(cfg);
    REQUIRE(b->Append({recs.begin(), recs.begin() + 10}).ok());  // rows 1-10, 11-30
    REQUIRE(b->Append({recs.begin() + 10, recs.end()}).ok());
  }
  // What a crash between the cursor's commit and its trim leaves: the cursor on disk, every
  // record and counter as before.
  SqlExec(cfg.path, "INSERT INTO cursors(name, seq) VALUES('kafka', 17)");
  auto b = MustOpen(cfg);
  CHECK(b->LoadCursor(kForwarderCursor).value() == 17);
  REQUIRE(WaitForTrim(*b));
  auto st = b->GetStats();
  CHECK(st.records == 13);
  CHECK(st.first_seq == 18);
  CHECK(st.bytes == LogicalBytes(recs, 17, 30));
  auto got = b->ReadAfter(0, SIZE_MAX, SIZE_MAX);
  REQUIRE(got.ok());
  REQUIRE(got->size() == 13);
  CHECK(got->front().seq == 18);
  CHECK(got->front().record == recs[17]);
  auto other = ReadStats(cfg.path);
  REQUIRE(other.ok());
  CHECK(other->records == 13);
  CHECK(other->bytes == st.bytes);
}

// Counts Now() calls: while the writer is held inside a commit, only Submit() asks the clock, so
// the count tells when the ops of the next writer round are all queued.
class CountingClock final : public Clock {
 public:
  TimePoint Now() const override {
    calls++;
    return SystemClock()->Now();
  }
  int64_t NowUnixMs() const override { return SystemClock()->NowUnixMs(); }
  mutable std::atomic<int64_t> calls{0};
};

// Holds the WAL syncs of the writer: while `hold`, the `pass` next syncs go through and the one
// after that waits until Release().
class SyncGate {
 public:
  void Hold(int pass) {
    std::lock_guard lk(mu_);
    hold_ = true;
    pass_ = pass;
  }
  // Lets the sync that is waiting go on; with `keep_holding`, later syncs are held as set by the
  // last Hold (its `pass` count applies from now).
  void Release(bool keep_holding, int pass = 0) {
    {
      std::lock_guard lk(mu_);
      hold_ = keep_holding;
      pass_ = pass;
      gen_++;
    }
    cv_.notify_all();
  }
  int Held() const { return held_.load(); }  // syncs held so far
  void OnSync() {
    std::unique_lock lk(mu_);
    if (!hold_) return;
    if (pass_ > 0) {
      pass_--;
      return;
    }
    uint64_t gen = gen_;
    held_++;
    cv_.wait(lk, [&] { return gen_ != gen; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool hold_ = false;
  int pass_ = 0;
  uint64_t gen_ = 0;
  std::atomic<int> held_{0};
};

// A delivered trim is not fsynced (FORMAT.md, invariant 4): the cursor commit before it is, and a
// trim lost to a power cut is redone at the next start. With sync=full each trim transaction
// used to fsync the WAL, and a cursor commit queued behind it waited for that.
TEST_CASE("a delivered trim does not fsync - lost to a power cut, the next start redoes it") {
  testing::RegisterPowerCutVfs();
  testing::PowerCut::Arm(0);
  TempDir dir;
  auto cfg = Cfg(dir);  // sync=full: every commit but a trim's fsyncs the WAL
  OpenOptions opts;
  opts.vfs = testing::kPowerCutVfs;
  {
    auto b = MustOpen(cfg, SystemClock(), opts);
    for (int i = 0; i < 4; ++i)  // four rows: 1-25, 26-50, 51-75, 76-100
      REQUIRE(b->Append(Batch(25, "p" + std::to_string(i), 60)).ok());
    const int64_t syncs = testing::PowerCut::WalSyncsStarted();
    REQUIRE(b->CommitCursor(kForwarderCursor, 60).ok());
    REQUIRE(WaitForTrim(*b));
    CHECK(b->GetStats().records == 40);
    CHECK(b->GetStats().first_seq == 61);
    CHECK(testing::PowerCut::WalSyncsStarted() - syncs == 1);  // the cursor commit's, no other
    testing::PowerCut::Arm(1);  // the power fails before anything more reaches the disk
  }
  testing::PowerCut::Revert();
  testing::PowerCut::Arm(0);
  // The trim was lost with the power: the delivered rows are back on disk, the cursor is kept.
  CHECK(SqlInt(cfg.path, "SELECT min(first_seq) FROM batches") == 1);
  auto b = MustOpen(cfg);
  CHECK(b->LoadCursor(kForwarderCursor).value() == 60);
  REQUIRE(WaitForTrim(*b));  // redone by the first writer round, without a cursor commit
  auto st = b->GetStats();
  CHECK(st.records == 40);
  CHECK(st.first_seq == 61);
  CHECK(SqlInt(cfg.path, "SELECT min(first_seq) FROM batches") == 61);
  auto rest = b->ReadAfter(60, 100, SIZE_MAX);
  REQUIRE(rest.ok());
  REQUIRE(rest->size() == 40);
  CHECK(rest->front().seq == 61);
  CHECK(rest->front().record.payload.rfind("p210", 0) == 0);
  CHECK(rest->back().seq == 100);
}

TEST_CASE("a cursor commit returns before the trim and the appends of its writer round") {
  testing::RegisterPowerCutVfs();  // passes everything through unless armed; used for its hook
  TempDir dir;
  auto cfg = Cfg(dir);  // sync=full: every commit syncs the WAL
  CountingClock clock;
  OpenOptions opts;
  opts.vfs = testing::kPowerCutVfs;
  SyncGate gate;
  testing::PowerCut::SetWalSyncHook([&] { gate.OnSync(); });
  auto b = MustOpen(cfg, &clock, opts);
  auto first = Batch(10, "r", 50);
  REQUIRE(b->Append(first).ok());  // row 1-10

  // Round 1: an append, held inside its commit's WAL sync.
  gate.Hold(0);
  std::atomic<bool> a_done{false}, b_done{false}, c_done{false};
  Status a_st, b_st, c_st;
  std::thread ta([&] {
    a_st = b->Append(Batch(5, "a", 50));
    a_done = true;
  });
  REQUIRE(WaitFor([&] { return gate.Held() == 1; }));
  // While the writer is held, a cursor commit and another append queue up: both go into round 2.
  int64_t before = clock.calls.load();
  std::thread tc([&] {
    c_st = b->CommitCursor(kForwarderCursor, 10);
    c_done = true;
  });
  std::thread tb([&] {
    b_st = b->Append(Batch(5, "b", 50));
    b_done = true;
  });
  REQUIRE(WaitFor([&] { return clock.calls.load() >= before + 2; }));
  // Round 2 commits the cursor (its sync passes), then holds the next commit of the round: the
  // trim's first step or the append.
  gate.Release(true, 1);
  bool returned = WaitFor([&] { return c_done.load(); });
  CHECK_MESSAGE(returned, "CommitCursor waited for the rest of its writer round");
  CHECK(WaitFor([&] { return gate.Held() == 2; }));
  if (returned) {
    CHECK(c_st.ok());
    CHECK(WaitFor([&] { return a_done.load(); }));  // round 1 is over
    CHECK_FALSE(b_done.load());                     // the writer is held before the append's commit
    auto other = ReadStats(cfg.path);               // durable: another connection sees it
    REQUIRE(other.ok());
    CHECK(other->cursors.at("kafka").seq == 10);
  }
  gate.Release(false);
  ta.join();
  tb.join();
  tc.join();
  CHECK(a_st.ok());
  CHECK(b_st.ok());
  REQUIRE(WaitForTrim(*b));
  auto st = b->GetStats();
  CHECK(st.records == 10);
  CHECK(st.first_seq == 11);
  CHECK(st.last_seq == 20);
  b.reset();
  testing::PowerCut::SetWalSyncHook(nullptr);
}

// Shrinking the file moves the pages still in use at its end into free ones: while a backlog
// drains, those hold the newest records, which are about to be trimmed themselves. The file is
// only shrunk once what is held is small against one bounded step (FORMAT.md, "Size bound and
// when_full").
TEST_CASE("the file gives space back once a backlog has drained, not while it drains") {
  TempDir dir;
  auto cfg = Cfg(dir);  // 64 MiB: one shrink step is 513 pages of 4 KiB (2 MiB)
  auto b = MustOpen(cfg);
  // 3,000 records of 4 KiB that hardly compress: over 2,400 pages, 375 rows of 8 records.
  for (int i = 0; i < 3; ++i) REQUIRE(b->Append(Batch(1000, "r" + std::to_string(i), 4096)).ok());
  const int64_t pages = SqlInt(cfg.path, "PRAGMA page_count");
  REQUIRE(pages > 2400);

  // Two thirds delivered: most of the file is free, but ~800 pages are still in use, more than
  // one step. Nothing is moved.
  REQUIRE(b->CommitCursor(kForwarderCursor, 2000).ok());
  REQUIRE(WaitForTrim(*b));
  CHECK(b->GetStats().records == 1000);
  CHECK(SqlInt(cfg.path, "PRAGMA freelist_count") * 2 > pages);
  CHECK(SqlInt(cfg.path, "PRAGMA page_count") == pages);

  // 2,900 delivered: the ~100 pages still in use fit in one step, but they are more than an
  // eighth of what it would give back (and more than 64): still nothing is moved.
  REQUIRE(b->CommitCursor(kForwarderCursor, 2900).ok());
  REQUIRE(WaitForTrim(*b));
  CHECK(b->GetStats().records == 100);
  const int64_t held = pages - SqlInt(cfg.path, "PRAGMA freelist_count");
  CHECK(held > 64);
  CHECK(held * 8 > 513);
  CHECK(SqlInt(cfg.path, "PRAGMA page_count") == pages);

  // All delivered: the file shrinks, by one step per trim.
  REQUIRE(b->CommitCursor(kForwarderCursor, 3000).ok());
  REQUIRE(WaitForTrim(*b));
  CHECK(b->GetStats().records == 0);
  CHECK(WaitFor([&] { return SqlInt(cfg.path, "PRAGMA page_count") <= pages - 513; }));
  auto next = b->ReadAfter(0, 10, SIZE_MAX);
  REQUIRE(next.ok());
  CHECK(next->empty());
  // What comes after is kept as usual.
  REQUIRE(b->Append(Batch(10, "after", 100)).ok());
  next = b->ReadAfter(3000, 100, SIZE_MAX);
  REQUIRE(next.ok());
  REQUIRE(next->size() == 10);
  CHECK(next->front().seq == 3001);
  CHECK(next->front().record.payload.rfind("after0", 0) == 0);
}

// Flash wear: trimming delivered records writes the b-tree and free-list pages it changes, not
// the freed space. Debian builds SQLite with SQLITE_SECURE_DELETE, under which every freed page
// would be zeroed and written to the WAL and again at checkpoint: more than the rows themselves
// (buffer/FORMAT.md, secure_delete).
TEST_CASE("a delivered trim does not rewrite the space it frees") {
  testing::RegisterPowerCutVfs();
  testing::PowerCut::Arm(0);
  TempDir dir;
  OpenOptions opts;
  opts.vfs = testing::kPowerCutVfs;
  auto b = MustOpen(Cfg(dir), SystemClock(), opts);
  constexpr int kGroups = 16;  // 16 rows of 64 x 4 KiB that zstd cannot shrink: 4 MiB stored
  for (int g = 0; g < kGroups; ++g)
    REQUIRE(b->Append(Batch(64, "g" + std::to_string(g) + "-", 4000)).ok());
  const uint64_t stored = b->GetStats().bytes;
  REQUIRE(stored >= kGroups * 64 * 4000);
  const int64_t before = testing::PowerCut::BytesWritten();
  REQUIRE(b->CommitCursor(kForwarderCursor, b->LastSeq()).ok());
  REQUIRE(WaitForTrim(*b));
  const int64_t written = testing::PowerCut::BytesWritten() - before;
  CHECK(b->GetStats().records == 0);
  // Measured: 136 KB with secure_delete=FAST, 6.9 MB with it ON (Debian's default).
  CHECK_MESSAGE(static_cast<uint64_t>(written) < stored / 8,
                "the cursor commit and the trim of " << stored << " B wrote " << written << " B");
}

}  // namespace
}  // namespace edgeferry::buffer
