// Power-cut and disk-full tests at the VFS layer (tests/buffer/powercut_vfs.h): cut the power
// before the n-th write or sync, throw away every unsynced write, reopen, and check the
// promises of buffer/FORMAT.md for each sync mode.
#include <doctest/doctest.h>
#include <sqlite3.h>

#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "buffer/buffer.h"
#include "tests/buffer/format1_writer.h"
#include "tests/buffer/powercut_vfs.h"
#include "tests/buffer/test_util.h"

namespace edgeferry::buffer {
namespace {

using testing::PowerCut;

struct Ack {
  std::string id;             // "<thread>/<n>"
  int64_t wal_syncs_started;  // PowerCut::WalSyncsStarted() when Append returned OK
};

struct RunResult {
  bool opened = false;
  size_t acked = 0;
  size_t lost = 0;
  size_t lost_beyond_promise = 0;
};

OpenOptions CutOptions() {
  OpenOptions o;
  o.vfs = testing::kPowerCutVfs;
  return o;
}

config::BufferConfig PowerCutConfig(const std::string& path, config::SyncMode sync) {
  config::BufferConfig cfg;
  cfg.path = path;
  cfg.sync = sync;
  // Small, so that checkpoints, WAL restarts, trims and page reuse all happen within a run.
  cfg.max_bytes = 1 << 20;
  cfg.normal_sync_interval_ms = 20;
  cfg.group_commit_max_records = 8;
  return cfg;
}

// One run: appenders and a forwarder work until the power fails at mutating call `cut` (0: no
// cut), then the unsynced writes are discarded and the database is reopened and checked.
RunResult RunOnce(config::SyncMode sync, int64_t cut, int64_t* ops_seen = nullptr) {
  testing::TempDir dir;
  auto cfg = PowerCutConfig(dir.File("pc.db"), sync);
  RunResult res;
  std::mutex mu;
  std::vector<Ack> acks;
  std::map<std::string, uint64_t> delivered_seq;  // id -> seq, for records the forwarder read
  uint64_t cursor_acked = 0;
  PowerCut::Arm(cut);
  {
    auto b = Buffer::Open(cfg, SystemClock(), CutOptions());
    if (b.ok()) {
      res.opened = true;
      Buffer& buf = **b;
      std::atomic<int> running{3};
      std::vector<std::thread> ts;
      for (int t = 0; t < 3; ++t) {
        ts.emplace_back([&, t] {
          for (int n = 0, batch = 0; batch < 60; ++batch) {
            std::vector<Record> recs;
            int first = n;
            for (int j = 0; j < 1 + batch % 4; ++j, ++n)
              recs.push_back(testing::MakeRecord(std::to_string(t) + "/" + std::to_string(n) + "/" +
                                                 std::string(200, 'p')));
            if (!buf.Append(std::move(recs)).ok()) break;
            std::lock_guard lk(mu);
            int64_t s = PowerCut::WalSyncsStarted();
            for (int i = first; i < n; ++i)
              acks.push_back({std::to_string(t) + "/" + std::to_string(i), s});
          }
          running--;
        });
      }
      ts.emplace_back([&] {  // the forwarder: read, then commit the cursor
        uint64_t cursor = 0;
        while (running > 0) {
          if (!buf.WaitForRecordsAfter(cursor, std::chrono::milliseconds(5))) continue;
          auto r = buf.ReadAfter(cursor, 50, SIZE_MAX);
          if (!r.ok() || r->empty()) continue;
          {
            std::lock_guard lk(mu);
            for (const auto& sr : *r) {
              const auto& p = sr.record.payload;
              delivered_seq[p.substr(0, p.rfind('/'))] = sr.seq;
            }
          }
          if (!buf.CommitCursor(kForwarderCursor, r->back().seq).ok()) break;
          cursor = r->back().seq;
          std::lock_guard lk(mu);
          cursor_acked = cursor;
        }
      });
      for (auto& t : ts) t.join();
    }
  }  // every connection closed
  if (ops_seen) *ops_seen = PowerCut::Ops();
  int64_t last_sync = PowerCut::LastCompletedWalSync();
  PowerCut::Revert();

  // After the power returns: the database opens without recovery and keeps its promises.
  auto b = Buffer::Open(cfg);
  REQUIRE_MESSAGE(b.ok(), "cut " << cut << ": " << b.status().ToString());
  auto stats = (*b)->GetStats();
  REQUIRE_MESSAGE(stats.recoveries == 0, "cut " << cut << ": database was corrupt");
  uint64_t cursor = (*b)->LoadCursor(kForwarderCursor).value();
  CHECK_MESSAGE(cursor >= cursor_acked, "cut " << cut << ": acknowledged cursor went back");
  auto all = (*b)->ReadAfter(0, SIZE_MAX, SIZE_MAX);
  REQUIRE(all.ok());
  std::map<std::string, uint64_t> present;
  std::map<std::string, int> last_per_thread;
  uint64_t prev = 0;
  for (const auto& sr : *all) {
    REQUIRE(sr.seq > prev);
    prev = sr.seq;
    const auto& p = sr.record.payload;
    std::string id = p.substr(0, p.rfind('/'));
    REQUIRE_MESSAGE(present.emplace(id, sr.seq).second, "duplicate " << id);
    std::string t = id.substr(0, id.find('/'));
    int n = std::stoi(id.substr(id.find('/') + 1));
    auto it = last_per_thread.find(t);
    REQUIRE_MESSAGE((it == last_per_thread.end() || it->second < n), "out of order " << id);
    last_per_thread[t] = n;
  }
  res.acked = acks.size();
  for (const auto& a : acks) {
    if (present.count(a.id)) continue;
    auto d = delivered_seq.find(a.id);
    if (d != delivered_seq.end() && d->second <= cursor) continue;  // delivered and trimmed
    res.lost++;
    // sync=normal promises: durable once a WAL fsync that started after the ack completed.
    if (sync == config::SyncMode::kFull || last_sync > a.wal_syncs_started)
      res.lost_beyond_promise++;
  }
  // Still writable after the power came back.
  CHECK((*b)->Append({testing::MakeRecord("after")}).ok());
  return res;
}

void RunCutPoints(config::SyncMode sync, int runs) {
  testing::RegisterPowerCutVfs();
  // EDGEFERRY_POWERCUT_AT=n reruns a single cut point (to reproduce a failure).
  if (const char* one = std::getenv("EDGEFERRY_POWERCUT_AT")) {
    RunOnce(sync, std::atoll(one));
    return;
  }
  int64_t total_ops = 0;
  RunResult ref = RunOnce(sync, 0, &total_ops);
  REQUIRE(ref.opened);
  REQUIRE(ref.lost == 0);
  REQUIRE(total_ops > 100);
  std::mt19937 rng(sync == config::SyncMode::kFull ? 7 : 8);
  size_t acked = 0, lost = 0, max_lost = 0;
  for (int i = 0; i < runs; ++i) {
    // Spread evenly over the run (open, appends, checkpoints, close), with random jitter.
    int64_t cut = 1 + (total_ops * i) / runs +
                  std::uniform_int_distribution<int64_t>(0, total_ops / runs)(rng);
    RunResult r = RunOnce(sync, cut);
    CAPTURE(cut);
    CHECK(r.lost_beyond_promise == 0);
    acked += r.acked;
    lost += r.lost;
    max_lost = std::max(max_lost, r.lost);
  }
  MESSAGE(std::string(sync == config::SyncMode::kFull ? "full" : "normal")
          << ": " << runs << " cut points over " << total_ops << " mutating calls; " << acked
          << " acknowledged records, " << lost << " lost (max " << max_lost << " in one cut)");
  if (sync == config::SyncMode::kFull) CHECK(lost == 0);
}

TEST_CASE("power cut, sync=full: the database always opens and no acknowledged record is lost") {
  RunCutPoints(config::SyncMode::kFull, 150);
}

TEST_CASE(
    "power cut, sync=normal: the database always opens, only records acked since the last WAL sync "
    "may be lost") {
  RunCutPoints(config::SyncMode::kNormal, 150);
}

// A power cut at any point of a format-1 to format-2 migration: the next start opens the file
// (no recovery), finishes the migration and holds every record, with its seq and contents.
TEST_CASE("power cut during a format-1 migration: the next start finishes it, nothing lost") {
  testing::RegisterPowerCutVfs();
  constexpr uint64_t kRecords = 3000;
  int resumed = 0;  // runs where the cut left a migration half done
  auto run = [&](int64_t cut, int64_t* ops_seen) {
    testing::TempDir dir;
    config::BufferConfig cfg;
    cfg.path = dir.File("m.db");
    cfg.max_bytes = 1 << 20;  // steps of wal_budget / 8 = 32 KiB: a dozen steps
    REQUIRE(testing::WriteFormat1(cfg.path, 1, kRecords));
    PowerCut::Arm(cut);
    {
      auto b = Buffer::Open(cfg, SystemClock(), CutOptions());  // fails if the cut came first
    }
    if (ops_seen) *ops_seen = PowerCut::Ops();
    PowerCut::Revert();
    PowerCut::Arm(0);
    {  // Cut mid-way: still format 1, with some records already in batch rows.
      sqlite3* db = nullptr;
      sqlite3_stmt* st = nullptr;
      if (sqlite3_open_v2(cfg.path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK &&
          sqlite3_prepare_v2(db,
                             "SELECT (SELECT v FROM meta WHERE k='format') = 1 AND (SELECT "
                             "count(*) FROM batches) > 0",
                             -1, &st, nullptr) == SQLITE_OK &&
          sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) == 1)
        resumed++;
      sqlite3_finalize(st);
      sqlite3_close(db);
    }
    auto b = Buffer::Open(cfg);
    REQUIRE_MESSAGE(b.ok(), "cut " << cut << ": " << b.status().ToString());
    auto stats = (*b)->GetStats();
    CAPTURE(cut);
    REQUIRE(stats.recoveries == 0);
    CHECK(stats.records == kRecords);
    CHECK(stats.last_seq == kRecords);
    auto all = (*b)->ReadAfter(0, SIZE_MAX, SIZE_MAX);
    REQUIRE(all.ok());
    REQUIRE(all->size() == kRecords);
    for (uint64_t i = 0; i < kRecords; ++i) {
      REQUIRE(all->at(i).seq == i + 1);
      REQUIRE(all->at(i).record.payload == testing::Format1Payload(i + 1));
    }
    CHECK((*b)->Append({testing::MakeRecord("after")}).ok());
    CHECK((*b)->LastSeq() == kRecords + 1);
  };
  int64_t total_ops = 0;
  run(0, &total_ops);
  REQUIRE(total_ops > 20);
  constexpr int kRuns = 40;
  for (int i = 0; i < kRuns; ++i) run(1 + (total_ops * i) / kRuns, nullptr);
  CHECK(resumed > kRuns / 4);
  MESSAGE(kRuns << " cut points over " << total_ops << " mutating calls of a migration; " << resumed
                << " left it half done and the next start finished it");
}

TEST_CASE(
    "disk full: appends are refused with Full and counted, the buffer keeps running and recovers") {
  testing::RegisterPowerCutVfs();
  PowerCut::Arm(0);
  testing::TempDir dir;
  config::BufferConfig cfg;
  cfg.path = dir.File("full.db");
  OpenOptions opts = CutOptions();
  std::atomic<bool> full{false};
  opts.free_disk_bytes = [&](const std::string&) -> uint64_t { return full ? 0 : (1ull << 40); };
  {
    auto b = Buffer::Open(cfg, SystemClock(), opts);
    REQUIRE(b.ok());
    REQUIRE((*b)->Append(testing::Batch(10, "before")).ok());
    full = true;
    PowerCut::SetDiskFull(true);
    for (int i = 0; i < 3; ++i) {
      Status st = (*b)->Append(testing::Batch(5, "refused"));
      CHECK(st.code() == Status::Code::kFull);
      CHECK(st.message().find("disk_full") != std::string::npos);
    }
    auto stats = (*b)->GetStats();
    CHECK(stats.drops[std::string(kDropDiskFull)] == 15);
    CHECK(stats.records == 10);
    auto r = (*b)->ReadAfter(0, 100, SIZE_MAX);  // reads still work
    REQUIRE(r.ok());
    CHECK(r->size() == 10);
    // Space returns: appends work again without a restart.
    full = false;
    PowerCut::SetDiskFull(false);
    REQUIRE((*b)->Append(testing::Batch(2, "after")).ok());
  }
  PowerCut::Revert();
  auto b = Buffer::Open(cfg);
  REQUIRE(b.ok());
  auto all = (*b)->ReadAfter(0, 100, SIZE_MAX);
  REQUIRE(all.ok());
  REQUIRE(all->size() == 12);
  CHECK(all->at(10).record.payload == "after0");
  CHECK(all->at(10).seq == 11);  // refused records used no seq that is visible
  CHECK((*b)->GetStats().drops[std::string(kDropDiskFull)] == 15);  // persisted once space returned
}

}  // namespace
}  // namespace edgeferry::buffer
