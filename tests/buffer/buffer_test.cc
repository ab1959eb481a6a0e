// Unit tests for buffer/: every path of the append, read, cursor, size, retention, recovery and
// dead-letter logic, asserting counts, contents and order.
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include "buffer/buffer.h"
#include "tests/buffer/test_util.h"

namespace edgeferry::buffer {
namespace {

using testing::Batch;
using testing::Cfg;
using testing::MakeRecord;
using testing::MustOpen;
using testing::TempDir;
using testing::WaitFor;

std::vector<StoredRecord> ReadAll(Buffer& b, uint64_t after = 0) {
  auto r = b.ReadAfter(after, SIZE_MAX, SIZE_MAX);
  REQUIRE(r.ok());
  return r.value();
}

size_t CountCorruptFiles(const TempDir& dir) {
  size_t n = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path()))
    if (e.path().filename().string().find(".corrupt-") != std::string::npos &&
        e.path().filename().string().find("-wal") == std::string::npos &&
        e.path().filename().string().find("-shm") == std::string::npos)
      ++n;
  return n;
}

TEST_CASE("append and read back every field, seqs from 1 in order") {
  TempDir dir;
  auto b = MustOpen(Cfg(dir));
  Record r;
  r.source = "plant-mqtt";
  r.key = std::string("k\0ey", 4);
  r.topic = "t";
  r.event_time_ms = 1700000000123;
  r.payload = std::string("\x00\xff\x01 binary", 10);
  r.headers = {{"a", "1"}, {"", std::string("\0", 1)}, {"long", std::string(300, 'x')}};
  Record empty;  // all fields empty
  REQUIRE(b->Append({r, empty, MakeRecord("third")}).ok());
  auto got = ReadAll(*b);
  REQUIRE(got.size() == 3);
  CHECK(got[0].seq == 1);
  CHECK(got[1].seq == 2);
  CHECK(got[2].seq == 3);
  CHECK(got[0].record == r);
  CHECK(got[1].record == empty);
  CHECK(got[2].record.payload == "third");
  CHECK(got[0].ingest_time_ms > 0);
  CHECK(b->LastSeq() == 3);
  CHECK(b->Append({}).ok());
  CHECK(b->LastSeq() == 3);
}

TEST_CASE("ReadAfter honours after_seq, max_records and max_bytes (at least one record)") {
  TempDir dir;
  auto b = MustOpen(Cfg(dir));
  REQUIRE(b->Append(Batch(10, "p", 100)).ok());  // 10 payloads of 100 bytes, seqs 1..10
  auto r = b->ReadAfter(3, 4, SIZE_MAX);
  REQUIRE(r.ok());
  REQUIRE(r->size() == 4);
  CHECK(r->front().seq == 4);
  CHECK(r->back().seq == 7);
  r = b->ReadAfter(0, 100, 250);  // two payloads fit in 250 bytes, not three
  REQUIRE(r.ok());
  CHECK(r->size() == 2);
  r = b->ReadAfter(0, 100, 10);  // smaller than one record: still one
  REQUIRE(r.ok());
  CHECK(r->size() == 1);
  r = b->ReadAfter(10, 100, SIZE_MAX);
  REQUIRE(r.ok());
  CHECK(r->empty());
  r = b->ReadAfter(0, 0, SIZE_MAX);
  REQUIRE(r.ok());
  CHECK(r->empty());
}

TEST_CASE("seq strictly increases across trims and restarts, cursors persist") {
  TempDir dir;
  auto cfg = Cfg(dir);
  {
    auto b = MustOpen(cfg);
    REQUIRE(b->Append(Batch(10, "a")).ok());
    REQUIRE(b->CommitCursor(kForwarderCursor, 10).ok());  // trims everything
    REQUIRE(testing::WaitForTrim(*b));
    CHECK(b->GetStats().records == 0);
    REQUIRE(b->Append(Batch(1, "b")).ok());
    auto got = ReadAll(*b);
    REQUIRE(got.size() == 1);
    CHECK(got[0].seq == 11);
    REQUIRE(b->CommitCursor(kForwarderCursor, 11).ok());
  }
  {
    auto b = MustOpen(cfg);  // empty table: the high-water mark comes from meta
    CHECK(b->LoadCursor(kForwarderCursor).value() == 11);
    CHECK(b->LoadCursor("other").value() == 0);
    CHECK(b->LastSeq() == 11);
    REQUIRE(b->Append(Batch(2, "c")).ok());
    auto got = ReadAll(*b);
    REQUIRE(got.size() == 2);
    CHECK(got[0].seq == 12);
    CHECK(got[1].seq == 13);
    // Backwards is ignored; beyond the last seq is refused.
    CHECK(b->CommitCursor(kForwarderCursor, 5).ok());
    CHECK(b->LoadCursor(kForwarderCursor).value() == 11);
    CHECK(b->CommitCursor(kForwarderCursor, 99).code() == Status::Code::kInvalidArgument);
    CHECK(b->CommitCursor("", 1).code() == Status::Code::kInvalidArgument);
    // A second cursor holds trimming back to the smallest cursor.
    REQUIRE(b->CommitCursor("audit", 12).ok());
    REQUIRE(b->CommitCursor(kForwarderCursor, 13).ok());
    REQUIRE(testing::WaitForTrim(*b));
    CHECK(b->GetStats().records == 1);
    auto st = b->GetStats();
    CHECK(st.cursors["kafka"].seq == 13);
    CHECK(st.cursors["kafka"].lag_records == 0);
    CHECK(st.cursors["audit"].lag_records == 1);
  }
}

TEST_CASE("group commit: many concurrent appenders, every record once, order kept per appender") {
  TempDir dir;
  for (auto sync : {config::SyncMode::kFull, config::SyncMode::kNormal}) {
    auto cfg = Cfg(dir);
    cfg.path = dir.File(sync == config::SyncMode::kFull ? "full.db" : "normal.db");
    cfg.sync = sync;
    cfg.group_commit_max_records = 64;
    auto b = MustOpen(cfg);
    constexpr int kThreads = 8, kCalls = 150;
    std::vector<std::thread> ts;
    std::atomic<int> failures{0};
    for (int t = 0; t < kThreads; ++t) {
      ts.emplace_back([&, t] {
        for (int i = 0; i < kCalls; ++i) {
          std::vector<Record> recs;
          for (int j = 0; j < 1 + i % 3; ++j)
            recs.push_back(
                MakeRecord(std::to_string(i) + "." + std::to_string(j), "t" + std::to_string(t)));
          if (!b->Append(std::move(recs)).ok()) failures++;
        }
      });
    }
    for (auto& t : ts) t.join();
    CHECK(failures == 0);
    auto got = ReadAll(*b);
    size_t expected = 0;
    for (int i = 0; i < kCalls; ++i) expected += 1 + i % 3;
    CHECK(got.size() == expected * kThreads);
    CHECK(b->GetStats().appended_total == expected * kThreads);
    std::map<std::string, std::vector<std::string>> per;
    uint64_t prev = 0;
    for (const auto& sr : got) {
      CHECK(sr.seq == prev + 1);  // no gaps, no duplicates
      prev = sr.seq;
      per[sr.record.source].push_back(sr.record.payload);
    }
    REQUIRE(per.size() == kThreads);
    for (const auto& [src, payloads] : per) {
      std::vector<std::string> want;
      for (int i = 0; i < kCalls; ++i)
        for (int j = 0; j < 1 + i % 3; ++j)
          want.push_back(std::to_string(i) + "." + std::to_string(j));
      CHECK(payloads == want);  // one call's records are consecutive and calls stay in order
    }
  }
}

TEST_CASE(
    "cursor commits interleaved with concurrent group commits are written, not just acknowledged") {
  // Regression: a cursor commit arriving while the writer waited for more appenders was once
  // swallowed into the append group and acknowledged without being stored.
  TempDir dir;
  auto cfg = Cfg(dir);
  cfg.sync = config::SyncMode::kFull;
  cfg.group_commit_max_delay_ms = 5;
  auto b = MustOpen(cfg);
  std::atomic<bool> stop{false};
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([&] {
      while (!stop) REQUIRE(b->Append(Batch(2, "c")).ok());
    });
  uint64_t cursor = 0, stored = 0;
  for (int i = 0; i < 60; ++i) {
    if (!WaitFor([&] { return b->LastSeq() > cursor; })) break;
    cursor = b->LastSeq();
    if (!b->CommitCursor(kForwarderCursor, cursor).ok()) break;
    auto on_disk = ReadStats(cfg.path);  // another connection: sees only what was committed
    stored = on_disk.ok() ? on_disk->cursors["kafka"].seq : 0;
    if (stored != cursor) break;
  }
  stop = true;
  for (auto& t : ts) t.join();
  CHECK(cursor > 0);
  CHECK(stored == cursor);
}

TEST_CASE("WaitForRecordsAfter wakes on append and times out without one") {
  TempDir dir;
  auto b = MustOpen(Cfg(dir));
  CHECK_FALSE(b->WaitForRecordsAfter(0, std::chrono::milliseconds(20)));
  std::thread t([&] { REQUIRE(b->Append(Batch(1, "x")).ok()); });
  CHECK(b->WaitForRecordsAfter(0, std::chrono::seconds(10)));
  t.join();
  CHECK_FALSE(b->WaitForRecordsAfter(1, std::chrono::milliseconds(20)));
}

// Appends `total` 100-byte records in batches and checks db + WAL against max_bytes after each.
void FillAndCheckBound(Buffer& b, const config::BufferConfig& cfg, int batches, int per_batch,
                       uint64_t* max_seen, std::vector<Status>* results) {
  for (int i = 0; i < batches; ++i) {
    results->push_back(b.Append(Batch(per_batch, "r" + std::to_string(i) + "-", 100)));
    auto st = b.GetStats();
    *max_seen = std::max(*max_seen, st.file_bytes);
    REQUIRE_MESSAGE(st.file_bytes <= cfg.max_bytes, "file_bytes " << st.file_bytes);
  }
}

TEST_CASE("when_full=drop_oldest: file stays under max_bytes, drops counted exactly, suffix kept") {
  TempDir dir;
  auto cfg = Cfg(dir);
  cfg.max_bytes = 1 << 20;
  auto b = MustOpen(cfg);
  uint64_t max_seen = 0;
  std::vector<Status> results;
  FillAndCheckBound(*b, cfg, 400, 100, &max_seen, &results);  // ~5 MB of records into 1 MiB
  for (const auto& st : results) CHECK(st.ok());
  auto st = b->GetStats();
  CHECK(st.appended_total == 40000);
  CHECK(st.drops[std::string(kDropOldest)] > 0);
  CHECK(st.drops[std::string(kDropOldest)] + st.records == 40000);
  auto got = ReadAll(*b);
  CHECK(got.size() == st.records);
  REQUIRE(!got.empty());
  CHECK(got.back().seq == 40000);
  CHECK(got.front().seq == st.first_seq);
  CHECK(got.front().seq == 40000 - got.size() + 1);  // the newest records, contiguous
  MESSAGE("max file_bytes seen " << max_seen << " of " << cfg.max_bytes);
  // Persistent: the counters survive a restart.
  b.reset();
  b = MustOpen(cfg);
  auto st2 = b->GetStats();
  CHECK(st2.drops == st.drops);
  CHECK(st2.records == st.records);
  CHECK(st2.bytes == st.bytes);
}

TEST_CASE(
    "file stays under max_bytes with concurrent readers, in both sync modes, and space is reused") {
  TempDir dir;
  for (auto sync : {config::SyncMode::kFull, config::SyncMode::kNormal}) {
    auto cfg = Cfg(dir);
    cfg.path = dir.File(sync == config::SyncMode::kFull ? "f.db" : "n.db");
    cfg.sync = sync;
    cfg.max_bytes = 1 << 20;
    auto b = MustOpen(cfg);
    std::atomic<bool> stop{false};
    std::atomic<uint64_t> reads{0};
    // A forwarder that reads and commits, and a status reader: both hold read snapshots that
    // can hold checkpoints back.
    std::thread forwarder([&] {
      uint64_t after = 0, unacked = 0;
      while (!stop) {
        auto r = b->ReadAfter(after, 500, SIZE_MAX);
        if (r.ok() && !r->empty()) {
          after = r->back().seq;
          reads++;
          // A slow consumer: commits after reading more than the buffer holds, so the buffer
          // fills and drops the oldest, and each commit trims a large range.
          if ((unacked += r->size()) >= 12000) {
            (void)b->CommitCursor(kForwarderCursor, after);
            unacked = 0;
          }
        }
      }
    });
    std::thread status([&] {
      while (!stop) (void)ReadStats(cfg.path);
    });
    uint64_t max_seen = 0;
    bool appended = true;
    for (int i = 0; i < 300 && appended; ++i) {
      appended = b->Append(Batch(100, "s", 100)).ok();
      max_seen = std::max(max_seen, b->GetStats().file_bytes);
    }
    stop = true;
    forwarder.join();
    status.join();
    CHECK(appended);
    CHECK(reads > 0);
    CHECK(max_seen <= cfg.max_bytes);
    auto st = b->GetStats();
    CHECK(st.appended_total == 30000);
    CHECK(st.last_seq == 30000);
    CHECK(st.drops[std::string(kDropOldest)] > 0);        // it did fill up
    CHECK(st.records == st.last_seq - st.first_seq + 1);  // what is held is a contiguous suffix
    std::string mode = sync == config::SyncMode::kFull ? "full" : "normal";
    MESSAGE(mode << ": max file_bytes " << max_seen << " of " << cfg.max_bytes);
  }
}

TEST_CASE("when_full=drop_newest: refused appends return Full and are counted, oldest kept") {
  TempDir dir;
  auto cfg = Cfg(dir);
  cfg.max_bytes = 1 << 20;
  cfg.when_full = config::WhenFull::kDropNewest;
  auto b = MustOpen(cfg);
  uint64_t max_seen = 0;
  std::vector<Status> results;
  FillAndCheckBound(*b, cfg, 200, 100, &max_seen, &results);
  uint64_t refused = 0, ok = 0;
  for (const auto& s : results) {
    if (s.ok()) {
      ok += 100;
    } else {
      CHECK(s.code() == Status::Code::kFull);
      refused += 100;
    }
  }
  CHECK(refused > 0);
  auto st = b->GetStats();
  CHECK(st.drops[std::string(kDropNewest)] == refused);
  CHECK(st.records == ok);
  CHECK(st.appended_total == ok);
  auto got = ReadAll(*b);
  REQUIRE(got.size() == ok);
  CHECK(got.front().seq == 1);
  CHECK(got.front().record.payload.substr(0, 4) == "r0-0");
  // Delivering frees space: appends succeed again.
  REQUIRE(b->CommitCursor(kForwarderCursor, got.back().seq).ok());
  CHECK(b->Append(Batch(100, "again", 100)).ok());
}

TEST_CASE("when_full=block: appenders wait until space is freed, or until block_timeout_ms") {
  TempDir dir;
  auto cfg = Cfg(dir);
  cfg.max_bytes = 1 << 20;
  cfg.when_full = config::WhenFull::kBlock;
  cfg.block_timeout_ms = 300;
  auto b = MustOpen(cfg);
  int i = 0;
  Status st;
  for (; i < 1000 && (st = b->Append(Batch(100, "f", 100))).ok(); ++i) {
  }
  REQUIRE(i < 1000);
  CHECK(st.code() == Status::Code::kUnavailable);  // waited block_timeout_ms, then gave up
  auto stats = b->GetStats();
  CHECK(stats.records == static_cast<uint64_t>(i) * 100);
  CHECK(stats.drops.empty());  // block never drops
  CHECK(stats.file_bytes <= cfg.max_bytes);

  // With no timeout, an appender waits for the forwarder to free space.
  b.reset();
  cfg.block_timeout_ms = 0;
  b = MustOpen(cfg);
  std::atomic<bool> done{false};
  Status waited;
  std::thread t([&] {
    waited = b->Append(Batch(100, "late", 100));
    done = true;
  });
  // It must still be waiting when the stats show the writer tried and found no room.
  CHECK_FALSE(WaitFor([&] { return done.load(); }, std::chrono::milliseconds(300)));
  auto all = ReadAll(*b);
  REQUIRE(b->CommitCursor(kForwarderCursor, all.back().seq).ok());
  CHECK(WaitFor([&] { return done.load(); }));
  t.join();
  CHECK(waited.ok());
  // The append may have found room after the first bounded step of the trim; the rest follows.
  REQUIRE(testing::WaitForTrim(*b));
  auto after = ReadAll(*b);
  REQUIRE(after.size() == 100);
  CHECK(after.front().record.payload.substr(0, 5) == "late0");
  CHECK(after.front().seq == all.back().seq + 1);
}

TEST_CASE("when_full=block: CancelBlockedAppends fails waiting appends at once, storing nothing") {
  TempDir dir;
  auto cfg = Cfg(dir);
  cfg.max_bytes = 1 << 20;
  cfg.when_full = config::WhenFull::kBlock;
  cfg.block_timeout_ms = 200;  // only to fill the buffer without hanging this thread
  auto b = MustOpen(cfg);
  Status st;
  for (int i = 0; i < 1000 && (st = b->Append(Batch(100, "f", 100))).ok(); ++i) {
  }
  REQUIRE(st.code() == Status::Code::kUnavailable);
  b.reset();
  cfg.block_timeout_ms = 0;  // wait for ever
  b = MustOpen(cfg);
  const auto full = b->GetStats();
  REQUIRE(full.records > 0);

  // Three appenders wait for space (one group, then the rest queued behind it).
  constexpr int kAppenders = 3;
  std::atomic<int> done{0};
  std::vector<Status> results(kAppenders);
  std::vector<std::thread> threads;
  for (int t = 0; t < kAppenders; ++t)
    threads.emplace_back([&, t] {
      results[t] = b->Append(Batch(100, "late" + std::to_string(t) + "-", 100));
      ++done;
    });
  CHECK_FALSE(WaitFor([&] { return done.load() > 0; }, std::chrono::milliseconds(300)));
  auto t0 = std::chrono::steady_clock::now();
  b->CancelBlockedAppends();
  CHECK(WaitFor([&] { return done.load() == kAppenders; }, std::chrono::seconds(2)));
  for (auto& t : threads) t.join();
  // Without WaitFor's scaling: the appenders are back well within a shutdown grace period.
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(5));
  for (const auto& r : results) {
    CHECK(r.code() == Status::Code::kAborted);
    CHECK(r.message().find("cancelled") != std::string::npos);
  }
  // Nothing of theirs was stored; nothing accepted was lost; no seq was spent.
  auto after = b->GetStats();
  CHECK(after.records == full.records);
  CHECK(after.last_seq == full.last_seq);
  CHECK(after.appended_total == full.appended_total);
  CHECK(after.drops.empty());
  auto held = ReadAll(*b);
  REQUIRE(held.size() == full.records);
  for (const auto& r : held) CHECK(r.record.payload.rfind("late", 0) != 0);

  // Later appends that do not fit fail at once too (this call would otherwise never return).
  CHECK(b->Append(Batch(100, "later", 100)).code() == Status::Code::kAborted);
  CHECK(b->GetStats().last_seq == full.last_seq);

  // Appends that fit are unaffected.
  REQUIRE(b->CommitCursor(kForwarderCursor, held.back().seq).ok());
  REQUIRE(WaitFor([&] { return b->GetStats().records == 0; }));
  REQUIRE(b->Append(Batch(100, "fits", 100)).ok());
  auto fits = ReadAll(*b, held.back().seq);
  REQUIRE(fits.size() == 100);
  CHECK(fits.front().record.payload.substr(0, 5) == "fits0");
  CHECK(fits.front().seq == full.last_seq + 1);

  // AllowBlockedAppends: a full buffer makes appenders wait again, until space is freed.
  Status fill;
  int n = 0;
  std::atomic<bool> waiting_done{false};
  for (; n < 1000 && (fill = b->Append(Batch(100, "g", 100))).ok(); ++n) {
  }
  REQUIRE(fill.code() == Status::Code::kAborted);  // still cancelled: full again
  b->AllowBlockedAppends();
  Status waited;
  std::thread w([&] {
    waited = b->Append(Batch(100, "waits", 100));
    waiting_done = true;
  });
  CHECK_FALSE(WaitFor([&] { return waiting_done.load(); }, std::chrono::milliseconds(300)));
  REQUIRE(b->CommitCursor(kForwarderCursor, b->LastSeq()).ok());
  CHECK(WaitFor([&] { return waiting_done.load(); }));
  w.join();
  CHECK(waited.ok());
  auto last = ReadAll(*b, b->LastSeq() - 100);
  REQUIRE(last.size() == 100);
  CHECK(last.front().record.payload.substr(0, 6) == "waits0");
}

TEST_CASE("max_age drops records older than max_age_s (FakeClock), counted as max_age") {
  TempDir dir;
  FakeClock clock;
  auto cfg = Cfg(dir);
  cfg.max_age_s = 10;
  auto b = MustOpen(cfg, &clock);
  REQUIRE(b->Append(Batch(5, "old")).ok());
  clock.Advance(std::chrono::seconds(6));
  REQUIRE(b->Append(Batch(3, "mid")).ok());
  REQUIRE(b->CommitCursor(kForwarderCursor, 2).ok());  // 2 delivered: trimmed, not dropped
  CHECK(b->GetStats().oldest_undelivered_age_ms == 6000);
  clock.Advance(std::chrono::seconds(5));    // "old" are 11 s old, "mid" 5 s
  REQUIRE(b->Append(Batch(1, "new")).ok());  // the writer runs retention before this group
  auto st = b->GetStats();
  CHECK(st.drops[std::string(kDropMaxAge)] == 3);
  CHECK(st.records == 4);
  auto got = ReadAll(*b);
  REQUIRE(got.size() == 4);
  CHECK(got[0].seq == 6);
  CHECK(got[0].record.payload == "mid0");
  CHECK(st.oldest_undelivered_age_ms == 5000);
}

TEST_CASE("corrupt files are moved aside, a fresh buffer starts, seq never goes back") {
  struct Damage {
    const char* name;
    std::function<void(const std::string&)> apply;
  };
  std::vector<Damage> damages = {
      {"garbage header", [](const std::string& p) { testing::OverwriteBytes(p, 0, 100, 'G'); }},
      {"garbage pages",
       [](const std::string& p) { testing::OverwriteBytes(p, 4096 * 3, 4096 * 4, 'Z'); }},
      {"truncated", [](const std::string& p) { testing::TruncateFile(p, 4096 * 3 + 100); }},
      {"not a database",
       [](const std::string& p) {
         testing::TruncateFile(p, 0);
         testing::OverwriteBytes(p, 0, 5000, 'x');
       }},
  };
  for (const auto& d : damages) {
    CAPTURE(d.name);
    TempDir dir;
    auto cfg = Cfg(dir);
    uint64_t last = 0;
    {
      auto b = MustOpen(cfg);
      for (int i = 0; i < 20; ++i) REQUIRE(b->Append(Batch(100, "x", 200)).ok());
      REQUIRE(b->CommitCursor(kForwarderCursor, 50).ok());
      last = b->LastSeq();
    }
    REQUIRE(!std::filesystem::exists(cfg.path + "-wal"));  // checkpointed on close
    d.apply(cfg.path);
    auto b = MustOpen(cfg);
    auto st = b->GetStats();
    CHECK(st.recoveries == 1);
    CHECK(st.records == 0);
    CHECK(CountCorruptFiles(dir) == 1);
    REQUIRE(b->Append(Batch(1, "after")).ok());
    auto got = ReadAll(*b);
    REQUIRE(got.size() == 1);
    CHECK(got[0].seq > last);
    // Keeps working, and the counter is persistent.
    b.reset();
    b = MustOpen(cfg);
    CHECK(b->GetStats().recoveries == 1);
    CHECK(ReadAll(*b).size() == 1);
  }
}

TEST_CASE("missing, non-directory or unwritable directory: clear error naming the path") {
  TempDir dir;
  config::BufferConfig cfg = Cfg(dir);
  cfg.path = dir.File("nope/buffer.db");
  auto r = Buffer::Open(cfg);
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == Status::Code::kIOError);
  CHECK(r.status().message().find(dir.File("nope")) != std::string::npos);

  { std::ofstream(dir.File("file")) << "x"; }
  cfg.path = dir.File("file/buffer.db");
  r = Buffer::Open(cfg);
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().message().find(dir.File("file")) != std::string::npos);

  // A directory that exists but takes no new files: /proc refuses even root.
  cfg.path = "/proc/buffer.db";
  r = Buffer::Open(cfg);
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().message().find("/proc") != std::string::npos);
  if (::geteuid() != 0) {
    std::filesystem::create_directory(dir.File("ro"));
    ::chmod(dir.File("ro").c_str(), 0555);
    cfg.path = dir.File("ro/buffer.db");
    r = Buffer::Open(cfg);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().message().find("not writable") != std::string::npos);
  }
  cfg.path = dir.File("ok.db");
  cfg.max_bytes = 1000;
  CHECK(Buffer::Open(cfg).status().code() == Status::Code::kInvalidArgument);
}

TEST_CASE(
    "one opener at a time: a second Open fails naming the holder's pid, then waits its turn") {
  TempDir dir;
  auto cfg = Cfg(dir);
  auto first = MustOpen(cfg);
  REQUIRE(first->Append(Batch(3, "a")).ok());

  OpenOptions now;
  now.lock_wait_ms = 0;
  auto second = Buffer::Open(cfg, SystemClock(), now);
  REQUIRE_FALSE(second.ok());
  CHECK(second.status().code() == Status::Code::kUnavailable);
  const std::string& msg = second.status().message();
  CHECK(msg.find(cfg.path) != std::string::npos);
  CHECK(msg.find("pid " + std::to_string(::getpid())) != std::string::npos);
  CHECK(msg.find(cfg.path + ".lock") != std::string::npos);
  // The refused opener touched nothing: the holder's records and seqs go on.
  REQUIRE(first->Append(Batch(2, "b")).ok());
  CHECK(first->GetStats().last_seq == 5);

  // A waiting opener gets the buffer once the holder closes it, with every record.
  Result<std::unique_ptr<Buffer>> waited = Status::Aborted("not run");
  std::thread opener([&] {
    OpenOptions patient;
    patient.lock_wait_ms = 30000;
    waited = Buffer::Open(cfg, SystemClock(), patient);
  });
  first.reset();
  opener.join();
  REQUIRE_MESSAGE(waited.ok(), waited.status().ToString());
  CHECK(ReadAll(**waited).size() == 5);
  CHECK((*waited)->GetStats().last_seq == 5);
}

TEST_CASE("ReadStats reads from a second connection while the writer appends") {
  TempDir dir;
  auto cfg = Cfg(dir);
  CHECK(ReadStats(cfg.path).status().code() == Status::Code::kNotFound);
  auto b = MustOpen(cfg);
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    for (int i = 0; !stop; ++i) REQUIRE(b->Append(Batch(50, "w", 100)).ok());
  });
  uint64_t prev = 0;
  for (int i = 0; i < 20; ++i) {
    auto s = ReadStats(cfg.path);
    REQUIRE_MESSAGE(s.ok(), s.status().ToString());
    CHECK(s->last_seq >= prev);
    CHECK(s->records == s->last_seq);  // nothing trimmed: a consistent snapshot
    prev = s->last_seq;
    REQUIRE(WaitFor([&] { return b->LastSeq() > prev; }));
  }
  stop = true;
  writer.join();
  REQUIRE(b->CommitCursor(kForwarderCursor, 10).ok());
  REQUIRE(testing::WaitForTrim(*b));  // else the trim may commit between the two reads
  auto s = ReadStats(cfg.path);
  REQUIRE(s.ok());
  auto mine = b->GetStats();
  CHECK(s->records == mine.records);
  CHECK(s->last_seq == mine.last_seq);
  CHECK(s->cursors["kafka"].seq == 10);
  CHECK(s->appended_total == mine.appended_total);
}

TEST_CASE("dead letters: stored with reason, listed, re-queued with new seqs") {
  TempDir dir;
  auto b = MustOpen(Cfg(dir));
  REQUIRE(b->Append(Batch(4, "d")).ok());
  auto got = ReadAll(*b);
  REQUIRE(b->DeadLetter(got[0], "too_large").ok());
  REQUIRE(b->DeadLetter(got[2], "bad_topic").ok());
  REQUIRE(b->DeadLetter(got[3], "bad_topic").ok());
  REQUIRE(b->CommitCursor(kForwarderCursor, 4).ok());
  auto st = b->GetStats();
  CHECK(st.dead_letters["too_large"] == 1);
  CHECK(st.dead_letters["bad_topic"] == 2);
  auto list = b->ListDeadLetters(10);
  REQUIRE(list.ok());
  REQUIRE(list->size() == 3);
  CHECK((*list)[0].reason == "too_large");
  CHECK((*list)[0].record.seq == 1);
  CHECK((*list)[0].record.record == got[0].record);
  CHECK((*list)[1].record.record.payload == "d2");
  CHECK(b->ListDeadLetters(1)->size() == 1);

  auto n = b->RequeueDeadLetters(std::vector<int64_t>{(*list)[1].id});
  REQUIRE(n.ok());
  CHECK(*n == 1);
  auto fresh = ReadAll(*b, 4);
  REQUIRE(fresh.size() == 1);
  CHECK(fresh[0].seq == 5);
  CHECK(fresh[0].record.payload == "d2");
  n = b->RequeueDeadLetters(std::nullopt);
  REQUIRE(n.ok());
  CHECK(*n == 2);
  fresh = ReadAll(*b, 5);
  REQUIRE(fresh.size() == 2);
  CHECK(fresh[0].record.payload == "d0");
  CHECK(fresh[1].record.payload == "d3");
  CHECK(b->ListDeadLetters(10)->empty());
  CHECK(b->GetStats().dead_letters.empty());
}

TEST_CASE("sync=normal: appends are readable and survive a clean restart") {
  TempDir dir;
  auto cfg = Cfg(dir);
  cfg.sync = config::SyncMode::kNormal;
  cfg.normal_sync_interval_ms = 10;
  {
    auto b = MustOpen(cfg);
    for (int i = 0; i < 10; ++i) REQUIRE(b->Append(Batch(10, "n")).ok());
  }
  auto b = MustOpen(cfg);
  CHECK(ReadAll(*b).size() == 100);
}

}  // namespace
}  // namespace edgeferry::buffer
