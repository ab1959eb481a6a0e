// Helpers for the buffer tests: temp dirs, records, byte-level corruption, waiting with a deadline.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include <doctest/doctest.h>
#include <sqlite3.h>

#include "buffer/buffer.h"

namespace edgeferry::buffer::testing {

// A fresh directory under TMPDIR, removed with everything in it at scope exit.
class TempDir {
 public:
  TempDir() {
    std::string tmpl =
        (std::filesystem::temp_directory_path() / "edgeferry-buffer-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) std::abort();
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::permissions(path_, std::filesystem::perms::owner_all, ec);
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// The buffer at dir/buffer.db with room to spare (64 MiB) and every other setting at its default.
inline config::BufferConfig Cfg(const TempDir& dir) {
  config::BufferConfig cfg;
  cfg.path = dir.File("buffer.db");
  cfg.max_bytes = 64ull << 20;
  return cfg;
}

// Opens the buffer or fails the test with the reason.
inline std::unique_ptr<Buffer> MustOpen(const config::BufferConfig& cfg,
                                        Clock* clock = SystemClock(),
                                        const OpenOptions& opts = {}) {
  auto b = Buffer::Open(cfg, clock, opts);
  REQUIRE_MESSAGE(b.ok(), b.status().ToString());
  return std::move(b.value());
}

// One integer answer from the database file, read with a connection of its own.
inline int64_t SqlInt(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  REQUIRE_MESSAGE(sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK,
                  sqlite3_errmsg(db));
  REQUIRE(sqlite3_step(st) == SQLITE_ROW);
  int64_t v = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
  return v;
}

inline Record MakeRecord(const std::string& payload, const std::string& source = "test") {
  Record r;
  r.source = source;
  r.key = "k";
  r.event_time_ms = 1234;
  r.payload = payload;
  return r;
}

inline std::vector<Record> Batch(size_t n, const std::string& prefix, size_t pad = 0) {
  std::vector<Record> out;
  for (size_t i = 0; i < n; ++i) {
    std::string p = prefix + std::to_string(i);
    // Padding that does not compress (batch rows are zstd-compressed): tests that fill the
    // buffer need records that take their size on disk.
    uint32_t x = 2166136261u ^ static_cast<uint32_t>(i * 16777619u + prefix.size());
    while (p.size() < pad) {
      x = x * 1664525u + 1013904223u;
      p.push_back(static_cast<char>('!' + (x >> 24) % 90));
    }
    out.push_back(MakeRecord(p));
  }
  return out;
}

// Polls `cond` until it holds or `timeout` (scaled by EDGEFERRY_TEST_TIMEOUT_SCALE) passes.
inline bool WaitFor(const std::function<bool()>& cond,
                    std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  double scale = 1;
  if (const char* s = std::getenv("EDGEFERRY_TEST_TIMEOUT_SCALE")) scale = std::atof(s);
  auto deadline = std::chrono::steady_clock::now() +
                  std::chrono::duration_cast<std::chrono::milliseconds>(timeout * scale);
  while (!cond()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

// Waits (with WaitFor's deadline) until the buffer holds no delivered record, i.e. nothing at or
// below its smallest cursor. CommitCursor returns once the cursor is durable; the writer trims
// what it delivered afterwards (buffer/FORMAT.md, invariant 4), so stats and reads from seq 0
// show the trim only after this.
inline bool WaitForTrim(Buffer& b, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  return WaitFor(
      [&] {
        Stats st = b.GetStats();
        if (st.cursors.empty() || st.first_seq == 0) return true;
        uint64_t min = UINT64_MAX;
        for (const auto& [name, c] : st.cursors) min = std::min(min, c.seq);
        return st.first_seq > min;
      },
      timeout);
}

// Byte-level damage.
inline void OverwriteBytes(const std::string& path, off_t offset, size_t n, char c) {
  int fd = ::open(path.c_str(), O_WRONLY);
  if (fd < 0) std::abort();
  std::string junk(n, c);
  if (::pwrite(fd, junk.data(), n, offset) != static_cast<ssize_t>(n)) std::abort();
  ::close(fd);
}
inline void TruncateFile(const std::string& path, off_t size) {
  if (::truncate(path.c_str(), size) != 0) std::abort();
}

}  // namespace edgeferry::buffer::testing
