// A test-only writer of buffer format 1 (one row per record), for migration tests that need more
// records than the checked-in fixture holds (tests/buffer/fixtures/format1.db, written by the
// format-1 code itself). It writes exactly the schema, settings and meta keys that format 1's
// Buffer::Open and writer did (commit 4c120af); each record's ingest_ms is `ingest_ms` plus
// seq / per_ms, so runs of equal ingest times vary in length as group commits did.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <string>

namespace edgeferry::buffer::testing {

inline constexpr const char* kFormat1Schema = R"sql(
CREATE TABLE meta(k TEXT PRIMARY KEY, v INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE cursors(name TEXT PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE records(
  seq INTEGER PRIMARY KEY, ingest_ms INTEGER NOT NULL, event_ms INTEGER NOT NULL,
  source BLOB NOT NULL, key BLOB NOT NULL, topic BLOB NOT NULL, headers BLOB, payload BLOB NOT NULL);
CREATE TABLE dead_letters(
  id INTEGER PRIMARY KEY AUTOINCREMENT, reason TEXT NOT NULL, dead_ms INTEGER NOT NULL,
  seq INTEGER NOT NULL, ingest_ms INTEGER NOT NULL, event_ms INTEGER NOT NULL,
  source BLOB NOT NULL, key BLOB NOT NULL, topic BLOB NOT NULL, headers BLOB,
  payload BLOB NOT NULL);
)sql";

inline std::string Format1Payload(uint64_t seq) {
  std::string p = "{\"seq\":" + std::to_string(seq) + ",\"temp\":21.5}";
  p.resize(100, ' ');
  return p;
}

// Writes records first_seq..last_seq (payload Format1Payload, source "s", key "k", a header on
// every third one), cursor kafka = first_seq - 1 (what is below was delivered and trimmed), and
// the meta counters format 1 kept. Returns false on any error.
inline bool WriteFormat1(const std::string& path, uint64_t first_seq, uint64_t last_seq,
                         int64_t ingest_ms = 1'700'000'000'000, uint64_t per_ms = 37) {
  sqlite3* db = nullptr;
  if (sqlite3_open(path.c_str(), &db) != SQLITE_OK) {
    sqlite3_close(db);
    return false;
  }
  auto exec = [&](const std::string& sql) {
    return sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr) == SQLITE_OK;
  };
  bool ok = exec("PRAGMA page_size=4096; PRAGMA auto_vacuum=INCREMENTAL") &&
            exec("PRAGMA journal_mode=WAL") && exec("BEGIN") && exec(kFormat1Schema);
  sqlite3_stmt* st = nullptr;
  ok = ok && sqlite3_prepare_v2(db,
                                "INSERT INTO records(seq, ingest_ms, event_ms, source, key, topic, "
                                "headers, payload) VALUES(?,?,?,'s','k','',?,?)",
                                -1, &st, nullptr) == SQLITE_OK;
  uint64_t bytes = 0;
  const std::string hdr = std::string("\x02") + "ct" + "\x04" + "json";  // varint-prefixed pair
  for (uint64_t seq = first_seq; ok && seq <= last_seq; ++seq) {
    std::string payload = Format1Payload(seq);
    sqlite3_reset(st);
    sqlite3_bind_int64(st, 1, static_cast<int64_t>(seq));
    sqlite3_bind_int64(st, 2, ingest_ms + static_cast<int64_t>(seq / per_ms));
    sqlite3_bind_int64(st, 3, ingest_ms - 5000 + static_cast<int64_t>(seq));
    if (seq % 3 == 0)
      sqlite3_bind_blob(st, 4, hdr.data(), static_cast<int>(hdr.size()), SQLITE_TRANSIENT);
    else
      sqlite3_bind_null(st, 4);
    sqlite3_bind_blob(st, 5, payload.data(), static_cast<int>(payload.size()), SQLITE_TRANSIENT);
    ok = sqlite3_step(st) == SQLITE_DONE;
    bytes += 1 + 1 + payload.size() + (seq % 3 == 0 ? hdr.size() : 0) + 8;
  }
  sqlite3_finalize(st);
  uint64_t n = last_seq >= first_seq ? last_seq - first_seq + 1 : 0;
  ok = ok &&
       exec(
           "INSERT INTO meta VALUES('format',1),('created_unix_ms',1700000000000),"
           "('last_seq'," +
           std::to_string(last_seq) + "),('records'," + std::to_string(n) + "),('bytes'," +
           std::to_string(bytes) + "),('appended_total'," + std::to_string(last_seq) + ")") &&
       exec("INSERT INTO cursors VALUES('kafka'," + std::to_string(first_seq - 1) + ")") &&
       exec("COMMIT");
  sqlite3_close(db);
  return ok;
}

}  // namespace edgeferry::buffer::testing
