// The script that wrote tests/buffer/fixtures/format1.db. It uses only the public Buffer API, so
// the format-1 code path (commit 4c120af, the last one before format 2) ran it to produce the
// checked-in file, and the migration test runs it again on the current code to get the same
// buffer natively in the current format: after migration the two must read back alike.
//
// What it leaves behind: seqs 1-10 dropped by max_age, 11-20 delivered (trimmed), 21-213 held,
// one dead letter (seq 15) still in the dead-letter table and one (seq 16) re-queued as seq 214;
// cursors kafka=20, audit=30; ingest times that differ between groups.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "buffer/buffer.h"

namespace edgeferry::buffer::testing {

inline constexpr uint64_t kFixtureMaxAgeS = 10;

// Record i (1-based) of the script: every field used, binary payloads, some headers.
inline Record FixtureRecord(int i) {
  Record r;
  r.source = i % 3 == 0 ? "plant-mqtt" : "cpu";
  r.key = i % 5 == 0 ? "" : "sensor-" + std::to_string(i % 7);
  r.topic = i % 4 == 0 ? "custom.topic" : "";
  r.event_time_ms = 1'699'999'990'000 + i * 37 - (i % 11) * 1000;  // not monotonic
  r.payload = "{\"i\":" + std::to_string(i) + ",\"v\":" + std::to_string(i * 0.25) + "}";
  if (i % 6 == 0) r.payload += std::string("\0\x01\xff", 3);
  if (i % 2 == 0) r.headers.push_back({"content-type", "application/json"});
  if (i % 9 == 0) r.headers.push_back({"trace", std::string("\x00\x7f", 2)});
  return r;
}

// Runs the script on a fresh buffer opened with max_age_s = kFixtureMaxAgeS on `clock`.
// Returns false if any call failed.
inline bool RunFixtureScript(Buffer& b, FakeClock& clock) {
  int i = 1;
  auto append = [&](int n) {
    std::vector<Record> recs;
    for (int k = 0; k < n; ++k) recs.push_back(FixtureRecord(i++));
    return b.Append(std::move(recs)).ok();
  };
  if (!append(10)) return false;            // 1-10
  clock.Advance(std::chrono::seconds(20));  // older than max_age from now on
  if (!append(3)) return false;             // 11-13; retention drops 1-10 before this group
  for (int call = 0; call < 50; ++call) {   // 14-213
    if (call % 10 == 0) clock.Advance(std::chrono::milliseconds(5));
    if (!append(4)) return false;
  }
  auto read = b.ReadAfter(14, 2, SIZE_MAX);  // seqs 15 and 16
  if (!read.ok() || read->size() != 2) return false;
  if (!b.DeadLetter(read->at(0), "poison").ok()) return false;
  if (!b.DeadLetter(read->at(1), "poison").ok()) return false;
  if (!b.CommitCursor(kForwarderCursor, 20).ok()) return false;
  if (!b.CommitCursor("audit", 30).ok()) return false;
  auto dead = b.ListDeadLetters(10);
  if (!dead.ok() || dead->size() != 2) return false;
  auto requeued = b.RequeueDeadLetters(std::vector<int64_t>{dead->at(1).id});  // seq 16 -> 214
  return requeued.ok() && *requeued == 1;
}

}  // namespace edgeferry::buffer::testing
