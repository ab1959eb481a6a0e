// Format 2 (batch rows, buffer/FORMAT.md): record-granular reads, trims, drops and dead letters
// over rows that hold many records, and the in-place migration of format-1 files.
#include <doctest/doctest.h>
#include <sqlite3.h>

#include <filesystem>

#include "buffer/buffer.h"
#include "tests/buffer/format1_fixture.h"
#include "tests/buffer/format1_writer.h"
#include "tests/buffer/test_util.h"

namespace edgeferry::buffer {
namespace {

using testing::Batch;
using testing::Cfg;
using testing::MustOpen;
using testing::SqlInt;
using testing::TempDir;

std::vector<StoredRecord> ReadAll(Buffer& b, uint64_t after = 0) {
  auto r = b.ReadAfter(after, SIZE_MAX, SIZE_MAX);
  REQUIRE_MESSAGE(r.ok(), r.status().ToString());
  return r.value();
}

uint64_t LogicalBytes(const std::vector<Record>& recs, size_t from, size_t to) {
  uint64_t n = 0;
  for (size_t i = from; i < to; ++i) n += recs[i].ByteSize();  // no headers: same as the buffer's
  return n;
}

TEST_CASE(
    "a group spanning several batch rows reads back from every seq, bounded by count and "
    "bytes") {
  TempDir dir;
  auto b = MustOpen(Cfg(dir));
  auto recs = Batch(1000, "p", 100);  // ~110 KB encoded: several rows of at most 32 KiB
  REQUIRE(b->Append(recs).ok());
  REQUIRE(SqlInt(dir.File("buffer.db"), "SELECT count(*) FROM batches") >= 3);
  for (uint64_t after = 0; after <= 1000; ++after) {
    auto r = b->ReadAfter(after, 50, SIZE_MAX);
    REQUIRE(r.ok());
    REQUIRE(r->size() == std::min<uint64_t>(50, 1000 - after));
    for (size_t i = 0; i < r->size(); ++i) {
      REQUIRE(r->at(i).seq == after + 1 + i);
      REQUIRE(r->at(i).record == recs[after + i]);
    }
  }
  // max_bytes counts payload bytes and cuts across row boundaries too; at least one record.
  auto r = b->ReadAfter(250, SIZE_MAX, 100 * 400);
  REQUIRE(r.ok());
  CHECK(r->size() == 400);
  CHECK(r->back().seq == 650);
  r = b->ReadAfter(999, 10, 1);
  REQUIRE(r.ok());
  REQUIRE(r->size() == 1);
  CHECK(r->at(0).seq == 1000);
}

TEST_CASE(
    "a partly delivered batch row is rewritten: stats exact, delivered records gone, "
    "undelivered ones kept") {
  TempDir dir;
  auto cfg = Cfg(dir);
  auto first = Batch(10, "a", 100);
  auto second = Batch(10, "b", 100);
  std::vector<Record> all = first;
  all.insert(all.end(), second.begin(), second.end());
  {
    auto b = MustOpen(cfg);
    REQUIRE(b->Append(first).ok());   // one row: 1-10
    REQUIRE(b->Append(second).ok());  // one row: 11-20
    REQUIRE(b->CommitCursor(kForwarderCursor, 4).ok());
    REQUIRE(testing::WaitForTrim(*b));
    auto st = b->GetStats();
    CHECK(st.records == 16);
    CHECK(st.first_seq == 5);
    CHECK(st.bytes == LogicalBytes(all, 4, 20));
    auto got = ReadAll(*b);  // from 0: the delivered ones are gone, as in format 1
    REQUIRE(got.size() == 16);
    CHECK(got.front().seq == 5);
    CHECK(got.front().record == all[4]);
    REQUIRE(b->CommitCursor(kForwarderCursor, 12).ok());  // row 1-10 whole, row 11-20 in part
    REQUIRE(testing::WaitForTrim(*b));
    st = b->GetStats();
    CHECK(st.records == 8);
    CHECK(st.first_seq == 13);
    CHECK(st.bytes == LogicalBytes(all, 12, 20));
    CHECK(SqlInt(cfg.path, "SELECT count(*) FROM batches") == 1);
    CHECK(SqlInt(cfg.path, "SELECT first_seq FROM batches") == 13);
  }
  auto b = MustOpen(cfg);
  auto st = b->GetStats();
  CHECK(st.records == 8);
  CHECK(st.first_seq == 13);
  CHECK(st.last_seq == 20);
  CHECK(st.bytes == LogicalBytes(all, 12, 20));
  auto other = ReadStats(cfg.path);
  REQUIRE(other.ok());
  CHECK(other->records == 8);
  CHECK(other->bytes == st.bytes);
  auto got = ReadAll(*b);
  REQUIRE(got.size() == 8);
  for (size_t i = 0; i < 8; ++i) {
    CHECK(got[i].seq == 13 + i);
    CHECK(got[i].record == all[12 + i]);
  }
}

// The forwarder reads its whole drain through one vector (RecordSource::ReadInto): records are
// decoded into the storage of earlier ones. A record whose source, key or topic is stored as "same
// as the previous one" must take it from the previous record of the row, which may be a record
// skipped below after_seq or the previous element, never from what the element held before.
TEST_CASE("ReadInto into a vector of other records gives exactly what a fresh read gives") {
  TempDir dir;
  auto b = MustOpen(Cfg(dir));
  std::vector<Record> rows;  // rows of 10: runs of equal source/key/topic, some with headers
  for (int i = 0; i < 40; ++i) {
    Record r = testing::MakeRecord("payload-" + std::to_string(i) + std::string(i % 7 * 50, 'x'),
                                   "src-" + std::to_string(i / 4));
    r.key = i % 3 == 0 ? "" : "key-" + std::to_string(i / 6);
    r.topic = i < 20 ? "t.one" : "";
    r.event_time_ms = 1000 + i;
    if (i % 5 == 0) r.headers = {{"h", std::to_string(i)}, {"unit", "C"}};
    rows.push_back(std::move(r));
  }
  for (int i = 0; i < 4; ++i)
    REQUIRE(b->Append({rows.begin() + i * 10, rows.begin() + (i + 1) * 10}).ok());

  // Stale records, longer than the new ones and with every field set.
  Record stale = testing::MakeRecord(std::string(3000, 's'), "stale-source-name-longer-than-sso");
  stale.key = "stale-key";
  stale.topic = "stale.topic";
  stale.headers = {{"stale", "1"}, {"stale", "2"}, {"stale", "3"}};
  std::vector<StoredRecord> out(25, StoredRecord{999, 999, stale});

  for (uint64_t after : {0, 1, 3, 5, 9, 10, 13, 22, 37, 39, 40}) {
    for (size_t max : {size_t{1}, size_t{4}, size_t{17}, size_t{100}}) {
      CAPTURE(after);
      CAPTURE(max);
      auto fresh = b->ReadAfter(after, max, SIZE_MAX);
      REQUIRE(fresh.ok());
      auto n = b->ReadInto(after, max, SIZE_MAX, &out);
      REQUIRE_MESSAGE(n.ok(), n.status().ToString());
      REQUIRE(*n == fresh->size());
      REQUIRE(out.size() >= *n);
      CHECK(*n == std::min<size_t>(max, 40 - after));
      for (size_t i = 0; i < *n; ++i) {
        CAPTURE(i);
        CHECK(out[i].seq == (*fresh)[i].seq);
        CHECK(out[i].seq == after + 1 + i);
        CHECK(out[i].ingest_time_ms == (*fresh)[i].ingest_time_ms);
        CHECK(out[i].record == (*fresh)[i].record);
        CHECK(out[i].record == rows[out[i].seq - 1]);
      }
    }
  }
  // max_bytes stops it as it stops ReadAfter, with the same records.
  auto fresh = b->ReadAfter(2, 100, 1000);
  REQUIRE(fresh.ok());
  auto n = b->ReadInto(2, 100, 1000, &out);
  REQUIRE(n.ok());
  REQUIRE(*n == fresh->size());
  CHECK(*n < 38);
  for (size_t i = 0; i < *n; ++i) CHECK(out[i].record == (*fresh)[i].record);
}

TEST_CASE("max_age and drop counts stay exact per record over a partly delivered row") {
  TempDir dir;
  FakeClock clock;
  auto cfg = Cfg(dir);
  cfg.max_age_s = 10;
  auto b = MustOpen(cfg, &clock);
  REQUIRE(b->Append(Batch(10, "old")).ok());
  REQUIRE(b->CommitCursor(kForwarderCursor, 3).ok());  // 3 delivered, 7 of the row left
  REQUIRE(b->CommitCursor("audit", 3).ok());
  REQUIRE(testing::WaitForTrim(*b));
  clock.Advance(std::chrono::seconds(11));
  REQUIRE(b->Append(Batch(2, "new")).ok());  // retention runs first: the old row goes
  auto st = b->GetStats();
  CHECK(st.drops[std::string(kDropMaxAge)] == 7);
  CHECK(st.records == 2);
  CHECK(st.first_seq == 11);
  // A second cursor behind the first: records between them are not delivered, so a drop counts
  // them.
  REQUIRE(b->Append(Batch(10, "mid")).ok());  // 13-22, one row
  REQUIRE(b->CommitCursor(kForwarderCursor, 20).ok());
  REQUIRE(b->CommitCursor("audit", 14).ok());  // min cursor 14: row 13-22 rewritten to 15-22
  REQUIRE(testing::WaitForTrim(*b));
  CHECK(b->GetStats().records == 8);
  clock.Advance(std::chrono::seconds(11));
  REQUIRE(b->Append(Batch(1, "last")).ok());
  st = b->GetStats();
  // 11-12 were trimmed as delivered; 15-22 are past the smallest cursor (audit 14), so they are
  // undelivered drops even though the kafka cursor had passed 15-20.
  CHECK(st.drops[std::string(kDropMaxAge)] == 7 + 8);
  CHECK(st.records == 1);
}

TEST_CASE("dead-lettering one record in the middle of a batch keeps its neighbours, sent once") {
  TempDir dir;
  auto b = MustOpen(Cfg(dir));
  auto recs = Batch(5, "r");
  REQUIRE(b->Append(recs).ok());  // one row: 1-5
  auto got = ReadAll(*b);
  REQUIRE(got.size() == 5);
  REQUIRE(b->DeadLetter(got[2], "poison").ok());
  REQUIRE(b->CommitCursor(kForwarderCursor, 3).ok());
  auto rest = ReadAll(*b, 3);
  REQUIRE(rest.size() == 2);
  CHECK(rest[0].seq == 4);
  CHECK(rest[0].record == recs[3]);
  CHECK(rest[1].seq == 5);
  REQUIRE(testing::WaitForTrim(*b));
  CHECK(ReadAll(*b).size() == 2);  // 1-3 are gone, not re-read
  auto dead = b->ListDeadLetters(10);
  REQUIRE(dead.ok());
  REQUIRE(dead->size() == 1);
  CHECK(dead->at(0).record.seq == 3);
  CHECK(dead->at(0).record.record == recs[2]);
  REQUIRE(b->CommitCursor(kForwarderCursor, 5).ok());
  REQUIRE(testing::WaitForTrim(*b));
  CHECK(b->GetStats().records == 0);
  auto n = b->RequeueDeadLetters(std::nullopt);
  REQUIRE(n.ok());
  CHECK(*n == 1);
  auto again = ReadAll(*b, 5);
  REQUIRE(again.size() == 1);
  CHECK(again[0].seq == 6);
  CHECK(again[0].record == recs[2]);
}

TEST_CASE("a damaged batch row is Corruption on read, not a silent skip") {
  TempDir dir;
  auto cfg = Cfg(dir);
  {
    auto b = MustOpen(cfg);
    REQUIRE(b->Append(Batch(5, "x")).ok());
  }
  {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(cfg.path.c_str(), &db) == SQLITE_OK);
    REQUIRE(sqlite3_exec(db, "UPDATE batches SET data = substr(data, 1, length(data) - 3)", nullptr,
                         nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(db);
  }
  auto b = MustOpen(cfg);
  auto r = b->ReadAfter(0, 10, SIZE_MAX);
  CHECK(r.status().code() == Status::Code::kCorruption);
}

TEST_CASE(
    "rows are zstd-compressed when that pays and stored as they are when not, both read "
    "back exactly") {
  TempDir dir;
  auto cfg = Cfg(dir);
  auto b = MustOpen(cfg);
  std::vector<Record> json;
  for (int i = 0; i < 500; ++i) {
    Record r = testing::MakeRecord(
        "{\"device\":\"gw-01\",\"sensor\":\"temp-" + std::to_string(i % 4) +
        "\",\"value\":" + std::to_string(20 + i % 7) + "." + std::to_string(i % 10) + "}");
    r.event_time_ms += i * 10;
    json.push_back(std::move(r));
  }
  REQUIRE(b->Append(json).ok());
  CHECK(SqlInt(cfg.path, "SELECT min(codec) FROM batches") == 1);
  // Stored at well under a third of the logical bytes.
  CHECK(SqlInt(cfg.path, "SELECT sum(length(data)) * 3 FROM batches") <
        SqlInt(cfg.path, "SELECT sum(bytes) FROM batches"));
  std::vector<Record> random;  // bytes that do not compress
  uint64_t x = 88172645463325252ull;
  for (int i = 0; i < 20; ++i) {
    std::string p;
    for (int k = 0; k < 1000; ++k) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      p.push_back(static_cast<char>(x));
    }
    random.push_back(testing::MakeRecord(p));
  }
  REQUIRE(b->Append(random).ok());
  CHECK(SqlInt(cfg.path, "SELECT codec FROM batches WHERE first_seq = 501") == 0);
  auto got = ReadAll(*b);
  REQUIRE(got.size() == 520);
  for (size_t i = 0; i < 500; ++i) CHECK(got[i].record == json[i]);
  for (size_t i = 0; i < 20; ++i) CHECK(got[500 + i].record == random[i]);
  // A partly delivered compressed row is rewritten compressed, and reads on exactly.
  REQUIRE(b->CommitCursor(kForwarderCursor, 250).ok());
  REQUIRE(testing::WaitForTrim(*b));
  auto rest = ReadAll(*b);
  REQUIRE(rest.size() == 270);
  CHECK(rest[0].seq == 251);
  CHECK(rest[0].record == json[250]);
  CHECK(b->GetStats().first_seq == 251);
}

TEST_CASE("a damaged compressed row is Corruption on read") {
  TempDir dir;
  auto cfg = Cfg(dir);
  {
    auto b = MustOpen(cfg);
    REQUIRE(b->Append(std::vector<Record>(200, testing::MakeRecord("{\"value\":21.5}"))).ok());
  }
  REQUIRE(SqlInt(cfg.path, "SELECT codec FROM batches") == 1);
  {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(cfg.path.c_str(), &db) == SQLITE_OK);
    // Keep the frame header (its content size), damage what follows.
    REQUIRE(sqlite3_exec(db,
                         "UPDATE batches SET data = substr(data, 1, 12) || zeroblob(8) || "
                         "substr(data, 21)",
                         nullptr, nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(db);
  }
  auto b = MustOpen(cfg);
  auto r = b->ReadAfter(0, 10, SIZE_MAX);
  CHECK(r.status().code() == Status::Code::kCorruption);
}

// The checked-in file was written by the format-1 code running RunFixtureScript; the same
// script on the current code gives the expected buffer.
TEST_CASE(
    "a format-1 file written by the format-1 code migrates in place and reads back like "
    "a native one") {
  TempDir dir;
  auto cfg = Cfg(dir);
  std::filesystem::copy_file(std::string(EDGEFERRY_BUFFER_FIXTURES) + "/format1.db", cfg.path);
  REQUIRE(SqlInt(cfg.path, "SELECT v FROM meta WHERE k='format'") == 1);
  auto old_stats = ReadStats(cfg.path);  // the status command reads a format-1 file too
  REQUIRE_MESSAGE(old_stats.ok(), old_stats.status().ToString());
  CHECK(old_stats->records == 194);
  CHECK(old_stats->first_seq == 21);

  FakeClock clock;
  auto native_cfg = Cfg(dir);
  native_cfg.path = dir.File("native.db");
  native_cfg.max_age_s = testing::kFixtureMaxAgeS;
  auto native = MustOpen(native_cfg, &clock);
  REQUIRE(testing::RunFixtureScript(*native, clock));

  auto migrated = MustOpen(cfg);  // max_age_s 0: nothing expires on the way
  CHECK(SqlInt(cfg.path, "SELECT v FROM meta WHERE k='format'") == 2);
  CHECK(SqlInt(cfg.path, "SELECT count(*) FROM sqlite_master WHERE name='records'") == 0);
  auto want = ReadAll(*native);
  auto got = ReadAll(*migrated);
  REQUIRE(got.size() == 194);
  REQUIRE(want.size() == got.size());
  for (size_t i = 0; i < got.size(); ++i) {
    CHECK(got[i].seq == want[i].seq);
    CHECK(got[i].ingest_time_ms == want[i].ingest_time_ms);
    CHECK(got[i].record == want[i].record);
  }
  auto ws = native->GetStats();
  auto gs = migrated->GetStats();
  CHECK(gs.records == 194);
  CHECK(gs.bytes == 11982);  // format 1's meta said so; the migration kept it exact
  CHECK(gs.bytes == ws.bytes);
  CHECK(gs.first_seq == 21);
  CHECK(gs.last_seq == 214);
  CHECK(gs.appended_total == ws.appended_total);
  CHECK(gs.drops == ws.drops);
  CHECK(gs.drops[std::string(kDropMaxAge)] == 10);
  CHECK(gs.dead_letters == ws.dead_letters);
  CHECK(gs.cursors.at("kafka").seq == 20);
  CHECK(gs.cursors.at("audit").seq == 30);
  CHECK(gs.cursors.at("kafka").lag_records == ws.cursors.at("kafka").lag_records);
  auto wd = native->ListDeadLetters(10);
  auto gd = migrated->ListDeadLetters(10);
  REQUIRE(wd.ok());
  REQUIRE(gd.ok());
  REQUIRE(gd->size() == 1);
  CHECK(gd->at(0).id == wd->at(0).id);
  CHECK(gd->at(0).record.seq == 15);
  CHECK(gd->at(0).record.record == wd->at(0).record.record);
  // Seqs go on from the high-water mark; the migrated buffer works as usual.
  REQUIRE(migrated->Append(Batch(1, "after")).ok());
  CHECK(migrated->LastSeq() == 215);
  REQUIRE(migrated->CommitCursor("audit", 100).ok());
  REQUIRE(migrated->CommitCursor(kForwarderCursor, 100).ok());
  REQUIRE(testing::WaitForTrim(*migrated));
  CHECK(migrated->GetStats().records == 115);
  CHECK(ReadAll(*migrated).front().seq == 101);
}

TEST_CASE("a large format-1 file migrates in bounded steps, even when it fills max_bytes") {
  TempDir dir;
  auto cfg = Cfg(dir);
  cfg.max_bytes = 2 << 20;  // the format-1 file (~3 MB) is over it: no room to grow
  REQUIRE(testing::WriteFormat1(cfg.path, 101, 20000));
  auto old_bytes = SqlInt(cfg.path, "SELECT v FROM meta WHERE k='bytes'");
  auto b = MustOpen(cfg);
  CHECK(SqlInt(cfg.path, "SELECT v FROM meta WHERE k='format'") == 2);
  CHECK(SqlInt(cfg.path, "SELECT count(*) FROM batches") > 100);  // runs split by ingest time
  CHECK(SqlInt(cfg.path, "SELECT max(length(data)) FROM batches") <= 32 << 10);
  auto st = b->GetStats();
  CHECK(st.records == 19900);
  CHECK(st.bytes == static_cast<uint64_t>(old_bytes));
  CHECK(st.first_seq == 101);
  CHECK(st.last_seq == 20000);
  CHECK(st.cursors.at("kafka").seq == 100);
  auto got = ReadAll(*b, 100);
  REQUIRE(got.size() == 19900);
  for (size_t i = 0; i < got.size(); ++i) {
    uint64_t seq = 101 + i;
    REQUIRE(got[i].seq == seq);
    REQUIRE(got[i].record.payload == testing::Format1Payload(seq));
    REQUIRE(got[i].ingest_time_ms == 1'700'000'000'000 + static_cast<int64_t>(seq / 37));
    REQUIRE(got[i].record.event_time_ms == 1'700'000'000'000 - 5000 + static_cast<int64_t>(seq));
    REQUIRE(got[i].record.headers.size() == (seq % 3 == 0 ? 1u : 0u));
  }
  CHECK(got[1].record.headers.at(0) == Header{"ct", "json"});  // seq 102
  REQUIRE(b->Append(Batch(3, "new")).ok());
  CHECK(b->LastSeq() == 20003);
  REQUIRE(b->CommitCursor(kForwarderCursor, 20003).ok());
  REQUIRE(testing::WaitForTrim(*b));
  CHECK(b->GetStats().records == 0);
}

}  // namespace
}  // namespace edgeferry::buffer
