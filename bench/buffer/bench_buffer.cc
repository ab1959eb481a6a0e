// bench_buffer: append and read throughput of buffer::Buffer, bytes written per record and peak
// RSS, against the raw SQLite ceiling measured in the same run on the same file system: one big
// transaction of prepared inserts into a one-row-per-record table (the buffer's format-1 schema,
// kept as the ceiling since format 2 so that ratios compare across formats).
//
//   bench_buffer [--dir DIR] [--seconds S] [--only APPENDERSxPER_CALL|drain]
//
// The drain cases play the forwarder against the buffer alone (no Kafka): a backlog is read
// with ReadAfter, "delivered" at once, and its cursor committed from a second thread one commit
// at a time, every 2500 records, with at most 20000 records delivered but uncommitted (the
// forwarder's defaults: max_inflight_records / 8 and max_inflight_records). The drain rate is
// then bound by how long CommitCursor takes; the figures are that rate, the CommitCursor
// latencies and, with one appender running beside the drain, its Append latencies (what a trim
// holds appends back by).
//
// Every figure is measured here; nothing is a target check. Run it on an idle machine: a shared
// one makes the full-sync figures (fsync-bound) especially noisy.
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "buffer/buffer.h"
#include "common/log.h"

namespace {

using namespace edgeferry;
using Clk = std::chrono::steady_clock;

uint64_t WriteBytes() {  // bytes this process caused to be written to storage
  std::ifstream in("/proc/self/io");
  std::string k;
  uint64_t v;
  while (in >> k >> v)
    if (k == "write_bytes:") return v;
  return 0;
}

uint64_t PeakRssKiB() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::strtoull(line.c_str() + 6, nullptr, 10);
  return 0;
}

void ResetPeakRss() { std::ofstream("/proc/self/clear_refs") << "5"; }

void Remove(const std::string& path) {
  for (const char* ext : {"", "-wal", "-shm", ".lock"}) std::filesystem::remove(path + ext);
}

// A JSON sensor reading (or, for larger sizes, a list of them) of exactly `payload` bytes, with
// values that vary from record to record as real readings do: bytes written per record depend
// on how the payload compresses, so it must look like what gateways carry.
Record MakeRecord(size_t payload, uint64_t n) {
  Record r;
  r.source = "bench";
  r.key = "sensor-1";
  r.event_time_ms = 1700000000000 + static_cast<int64_t>(n) * 7;
  uint64_t x = n * 0x9E3779B97F4A7C15ull + 1;  // cheap deterministic variation
  auto next = [&] {
    x ^= x >> 29;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 32;
    return x;
  };
  std::string p = "[";
  while (p.size() < payload) {
    char buf[160];
    std::snprintf(buf, sizeof buf,
                  "{\"ts\":%llu,\"device\":\"gw-%02u\",\"sensor\":\"temp-%u\",\"value\":%.2f,"
                  "\"unit\":\"C\",\"rssi\":-%u},",
                  static_cast<unsigned long long>(r.event_time_ms), unsigned(next() % 32),
                  unsigned(next() % 8), 15 + (next() % 2000) / 100.0, unsigned(40 + next() % 50));
    p += buf;
  }
  p.resize(payload);
  r.payload = std::move(p);
  return r;
}

// Distinct payloads cycled by the appenders: more than a batch row holds, so no row sees repeats.
std::vector<Record> RecordPool(size_t payload) {
  std::vector<Record> pool;
  for (uint64_t i = 0; i < 4096; ++i) pool.push_back(MakeRecord(payload, i));
  return pool;
}

// The ceiling: one row per record (format 1's table and settings), one transaction, prepared
// inserts, synchronous=NORMAL.
double RawCeiling(const std::string& path, size_t payload, size_t n) {
  Remove(path);
  sqlite3* db = nullptr;
  sqlite3_open(path.c_str(), &db);
  sqlite3_exec(db,
               "PRAGMA page_size=4096; PRAGMA auto_vacuum=INCREMENTAL; PRAGMA journal_mode=WAL; "
               "PRAGMA synchronous=NORMAL; PRAGMA cache_size=-2048; "
               "CREATE TABLE records(seq INTEGER PRIMARY KEY, ingest_ms INTEGER NOT NULL, "
               "event_ms INTEGER NOT NULL, source BLOB NOT NULL, key BLOB NOT NULL, "
               "topic BLOB NOT NULL, headers BLOB, payload BLOB NOT NULL)",
               nullptr, nullptr, nullptr);
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(db,
                     "INSERT INTO records(seq, ingest_ms, event_ms, source, key, topic, headers, "
                     "payload) VALUES(?,?,?,?,?,?,?,?)",
                     -1, &st, nullptr);
  Record r = MakeRecord(payload, 1);
  auto t0 = Clk::now();
  sqlite3_exec(db, "BEGIN", nullptr, nullptr, nullptr);
  for (size_t i = 1; i <= n; ++i) {
    sqlite3_reset(st);
    sqlite3_bind_int64(st, 1, static_cast<int64_t>(i));
    sqlite3_bind_int64(st, 2, 1700000000000);
    sqlite3_bind_int64(st, 3, r.event_time_ms);
    sqlite3_bind_blob(st, 4, r.source.data(), static_cast<int>(r.source.size()), SQLITE_STATIC);
    sqlite3_bind_blob(st, 5, r.key.data(), static_cast<int>(r.key.size()), SQLITE_STATIC);
    sqlite3_bind_blob(st, 6, "", 0, SQLITE_STATIC);
    sqlite3_bind_null(st, 7);
    sqlite3_bind_blob(st, 8, r.payload.data(), static_cast<int>(r.payload.size()), SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE) std::abort();
  }
  sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr);
  double secs = std::chrono::duration<double>(Clk::now() - t0).count();
  sqlite3_finalize(st);
  sqlite3_close(db);
  Remove(path);
  return n / secs;
}

struct RunResult {
  double rate = 0;
  double bytes_per_record = 0;
  uint64_t peak_rss_kib = 0;
};

RunResult AppendRun(const std::string& path, config::SyncMode sync, size_t payload, int appenders,
                    size_t per_call, uint32_t group_max, double seconds) {
  Remove(path);
  config::BufferConfig cfg;
  cfg.path = path;
  cfg.sync = sync;
  cfg.max_bytes = 4ull << 30;
  cfg.group_commit_max_records = group_max;
  auto b = buffer::Buffer::Open(cfg);
  if (!b.ok()) {
    std::fprintf(stderr, "open: %s\n", b.status().ToString().c_str());
    std::exit(1);
  }
  ResetPeakRss();
  uint64_t w0 = WriteBytes();
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> total{0};
  std::vector<std::thread> ts;
  const std::vector<Record> pool = RecordPool(payload);
  auto t0 = Clk::now();
  for (int t = 0; t < appenders; ++t) {
    ts.emplace_back([&] {
      uint64_t mine = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        std::vector<Record> recs;
        recs.reserve(per_call);
        for (size_t i = 0; i < per_call; ++i) recs.push_back(pool[(mine + i) % pool.size()]);
        if (!(*b)->Append(std::move(recs)).ok()) std::abort();
        mine += per_call;
      }
      total += mine;
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (auto& t : ts) t.join();
  double secs = std::chrono::duration<double>(Clk::now() - t0).count();
  RunResult res;
  res.rate = total / secs;
  b->reset();  // includes the final checkpoint: its writes count too
  res.bytes_per_record = static_cast<double>(WriteBytes() - w0) / static_cast<double>(total);
  res.peak_rss_kib = PeakRssKiB();
  Remove(path);
  return res;
}

double ReadRun(const std::string& path, size_t payload, size_t n, double* mb_per_s) {
  Remove(path);
  config::BufferConfig cfg;
  cfg.path = path;
  cfg.sync = config::SyncMode::kNormal;
  cfg.max_bytes = 4ull << 30;
  auto b = buffer::Buffer::Open(cfg);
  if (!b.ok()) std::abort();
  const std::vector<Record> pool = RecordPool(payload);
  for (size_t done = 0; done < n; done += 1000) {
    std::vector<Record> recs;
    for (size_t i = 0; i < 1000; ++i) recs.push_back(pool[(done + i) % pool.size()]);
    if (!(*b)->Append(std::move(recs)).ok()) std::abort();
  }
  auto t0 = Clk::now();
  uint64_t after = 0, count = 0, bytes = 0;
  for (;;) {
    auto r = (*b)->ReadAfter(after, 1000, 1 << 20);
    if (!r.ok()) std::abort();
    if (r->empty()) break;
    count += r->size();
    for (const auto& sr : *r) bytes += sr.record.payload.size();
    after = r->back().seq;
  }
  double secs = std::chrono::duration<double>(Clk::now() - t0).count();
  b->reset();
  Remove(path);
  *mb_per_s = bytes / secs / 1e6;
  return count / secs;
}

struct DrainResult {
  double rate = 0;                // records drained per second
  std::vector<double> commit_ms;  // CommitCursor latencies
  std::vector<double> append_ms;  // Append latencies of the appender beside the drain
  uint64_t appended = 0;
  double wbytes_per_record = 0;  // written to storage during the drain, per backlog record
};

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

DrainResult DrainRun(const std::string& path, size_t payload, uint64_t n, bool appender) {
  constexpr uint64_t kThreshold = 2500, kWindow = 20000;
  Remove(path);
  config::BufferConfig cfg;
  cfg.path = path;
  cfg.sync = config::SyncMode::kFull;  // as the agent ships and bench_forwarder uses
  cfg.max_bytes = 4ull << 30;
  auto b = buffer::Buffer::Open(cfg);
  if (!b.ok()) std::abort();
  buffer::Buffer& buf = **b;
  const std::vector<Record> pool = RecordPool(payload);
  for (uint64_t done = 0; done < n; done += 10000) {
    std::vector<Record> recs;
    for (uint64_t i = done; i < std::min(n, done + 10000); ++i)
      recs.push_back(pool[i % pool.size()]);
    if (!buf.Append(std::move(recs)).ok()) std::abort();
  }
  DrainResult res;
  uint64_t w0 = WriteBytes();
  std::mutex mu;
  std::condition_variable cv;
  uint64_t request = 0, committed = 0;
  bool busy = false, stop = false;
  std::thread committer([&] {
    std::unique_lock lk(mu);
    for (;;) {
      cv.wait(lk, [&] { return stop || request != 0; });
      if (request == 0) return;
      uint64_t seq = std::exchange(request, 0);
      lk.unlock();
      auto t0 = Clk::now();
      if (!buf.CommitCursor(buffer::kForwarderCursor, seq).ok()) std::abort();
      double ms = std::chrono::duration<double, std::milli>(Clk::now() - t0).count();
      lk.lock();
      res.commit_ms.push_back(ms);
      committed = seq;
      busy = false;
      cv.notify_all();
    }
  });
  std::atomic<bool> drained{false};
  std::thread app;
  if (appender) {
    app = std::thread([&] {
      for (uint64_t i = 0; !drained; i += 16) {
        std::vector<Record> recs;
        for (uint64_t j = 0; j < 16; ++j) recs.push_back(pool[(i + j) % pool.size()]);
        auto t0 = Clk::now();
        if (!buf.Append(std::move(recs)).ok()) std::abort();
        res.append_ms.push_back(std::chrono::duration<double, std::milli>(Clk::now() - t0).count());
        res.appended += 16;
        std::this_thread::sleep_for(std::chrono::milliseconds(2));  // a steady input, not a flood
      }
    });
  }
  auto t0 = Clk::now();
  uint64_t delivered = 0;
  for (;;) {
    {
      std::unique_lock lk(mu);
      // The window: wait for the commit in progress while too much is uncommitted.
      cv.wait(lk, [&] { return delivered - committed < kWindow || !busy; });
      if (delivered >= n && committed >= n) break;
      if (!busy && delivered > committed &&
          (delivered - committed >= kThreshold || delivered >= n)) {
        request = delivered;
        busy = true;
        cv.notify_all();
      }
      if (delivered - committed >= kWindow || delivered >= n) {
        cv.wait(lk, [&] { return !busy; });
        continue;
      }
    }
    auto r = buf.ReadAfter(delivered, 1000, 1 << 20);
    if (!r.ok()) std::abort();
    for (const auto& sr : *r) {
      if (sr.seq > n) break;  // the appender's records are not part of the backlog
      delivered = sr.seq;
    }
  }
  res.rate = static_cast<double>(n) / std::chrono::duration<double>(Clk::now() - t0).count();
  drained = true;
  {
    std::lock_guard lk(mu);
    stop = true;
  }
  cv.notify_all();
  committer.join();
  if (app.joinable()) app.join();
  b->reset();  // includes the final checkpoint
  res.wbytes_per_record = static_cast<double>(WriteBytes() - w0) / static_cast<double>(n);
  Remove(path);
  return res;
}

void PrintDrains(const std::string& path) {
  std::printf(
      "\ndrain (sync=full; commit every 2500 records, at most 20000 uncommitted; latencies in "
      "ms: p50 / p99 / max)\n");
  std::printf("%-7s %-9s %9s %12s %8s %10s %26s %26s\n", "payload", "appender", "backlog",
              "records/s", "commits", "wbytes/rec", "CommitCursor ms", "Append(16) ms");
  for (size_t payload : {size_t{100}, size_t{1024}}) {
    for (bool appender : {false, true}) {
      uint64_t n = 1000000;
      DrainResult r = DrainRun(path, payload, n, appender);
      char app[64] = "-";
      if (appender)
        std::snprintf(app, sizeof app, "%.1f / %.1f / %.1f", Percentile(r.append_ms, 0.5),
                      Percentile(r.append_ms, 0.99), Percentile(r.append_ms, 1.0));
      char com[64];
      std::snprintf(com, sizeof com, "%.1f / %.1f / %.1f", Percentile(r.commit_ms, 0.5),
                    Percentile(r.commit_ms, 0.99), Percentile(r.commit_ms, 1.0));
      std::printf("%-7zu %-9s %9llu %12.0f %8zu %10.0f %26s %26s\n", payload,
                  appender ? "1x16" : "none", static_cast<unsigned long long>(n), r.rate,
                  r.commit_ms.size(), r.wbytes_per_record, com, app);
      std::fflush(stdout);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir = std::filesystem::temp_directory_path().string();
  double seconds = 1.5;
  std::string only;  // "APPENDERSxPER_CALL", e.g. "16x1": run only those append cases
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--dir")
      dir = argv[i + 1];
    else if (a == "--seconds")
      seconds = std::atof(argv[i + 1]);
    else if (a == "--only")
      only = argv[i + 1];
  }
  edgeferry::SetLogLevel(edgeferry::LogLevel::kWarning);
  std::string path = dir + "/bench_buffer_" + std::to_string(::getpid()) + ".db";
  std::printf("bench_buffer: %s, SQLite %s, %u CPUs, %.1f s per run\n", dir.c_str(),
              sqlite3_libversion(), std::thread::hardware_concurrency(), seconds);
  if (only == "drain") {
    PrintDrains(path);
    return 0;
  }

  // The machine may be shared: the ceiling is measured before, between and after the append
  // runs, and the best of the three is used, so ratios err on the low side.
  double ceiling[2] = {0, 0};
  auto measure_ceiling = [&](const char* when) {
    double c100 = RawCeiling(path, 100, 400000), c1k = RawCeiling(path, 1024, 100000);
    std::printf(
        "raw SQLite ceiling %-7s (row per record, one transaction, prepared inserts, NORMAL): "
        "100 B %.0f records/s, 1 KiB %.0f records/s\n",
        when, c100, c1k);
    ceiling[0] = std::max(ceiling[0], c100);
    ceiling[1] = std::max(ceiling[1], c1k);
  };
  measure_ceiling("before");

  struct Case {
    config::SyncMode sync;
    size_t payload;
    int appenders;
    size_t per_call;
    uint32_t group_max;
  };
  std::vector<Case> cases;
  for (auto sync : {config::SyncMode::kNormal, config::SyncMode::kFull})
    for (size_t payload : {size_t{100}, size_t{1024}})
      for (auto [appenders, per_call] : {std::pair{1, size_t{1}}, std::pair{1, size_t{256}},
                                         std::pair{16, size_t{1}}, std::pair{16, size_t{64}}})
        for (uint32_t group : {256u, 4096u}) {
          if (appenders == 1 && per_call == 1 && group == 4096) continue;  // group size moot
          if (!only.empty() && only != std::to_string(appenders) + "x" + std::to_string(per_call))
            continue;
          cases.push_back({sync, payload, appenders, per_call, group});
        }
  std::vector<RunResult> results;
  for (const auto& c : cases) {
    if (&c == &cases[cases.size() / 2]) measure_ceiling("between");
    results.push_back(
        AppendRun(path, c.sync, c.payload, c.appenders, c.per_call, c.group_max, seconds));
  }
  measure_ceiling("after");
  std::printf("best ceiling: 100 B %.0f records/s, 1 KiB %.0f records/s\n", ceiling[0], ceiling[1]);
  std::printf(
      "\nappend (records/s; ratio to the best ceiling; bytes written per record; peak RSS)\n");
  std::printf("%-6s %-7s %-9s %-8s %-9s %12s %7s %10s %9s\n", "sync", "payload", "appenders",
              "per_call", "group_max", "records/s", "ratio", "wbytes/rec", "peakRSS");
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    const RunResult& r = results[i];
    double ratio = r.rate / ceiling[c.payload == 100 ? 0 : 1];
    std::printf("%-6s %-7zu %-9d %-8zu %-9u %12.0f %6.0f%% %10.0f %7lluKiB\n",
                c.sync == config::SyncMode::kFull ? "full" : "normal", c.payload, c.appenders,
                c.per_call, c.group_max, r.rate, ratio * 100, r.bytes_per_record,
                static_cast<unsigned long long>(r.peak_rss_kib));
    std::fflush(stdout);
  }

  std::printf("\nread (ReadAfter, 1000 records per call):\n");
  for (size_t payload : {size_t{100}, size_t{1024}}) {
    double mbs = 0;
    double rate = ReadRun(path, payload, payload == 100 ? 500000 : 200000, &mbs);
    std::printf("  %4zu B: %9.0f records/s (%.0f MB/s of payload)\n", payload, rate, mbs);
  }
  PrintDrains(path);
  std::printf("\npeak RSS of the whole run: %llu KiB\n",
              static_cast<unsigned long long>(PeakRssKiB()));
  return 0;
}
