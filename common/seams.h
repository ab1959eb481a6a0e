// The interfaces between the parts: inputs append to a RecordSink, the forwarder drains a
// RecordSource. The SQLite buffer (buffer/) implements both; tests substitute fakes.
#pragma once

#include <chrono>
#include <cstdint>
#include <string_view>
#include <vector>

#include "common/record.h"
#include "common/status.h"

namespace edgeferry {

// What an input sees. Thread-safe: many inputs append concurrently.
class RecordSink {
 public:
  virtual ~RecordSink() = default;

  // Appends `records` in order. Returns OK only once they are stored at the buffer's configured
  // durability ("sync": full = survives power cut; normal = survives process crash): an input
  // may acknowledge upstream (e.g. an MQTT PUBACK) after OK and not before.
  // Errors: Full (dropped by when_full=drop_newest), Unavailable (block mode and the wait was cut
  // short), Aborted (the buffer is stopping), IOError.
  virtual Status Append(std::vector<Record> records) = 0;
};

// What the forwarder sees. Thread-safe.
class RecordSource {
 public:
  virtual ~RecordSource() = default;

  // Up to `max_records` records with seq > after_seq, in seq order, whose payload bytes total at
  // most `max_bytes` (at least one record is returned if any exists). Records dropped by the
  // size policy are skipped, so seq numbers in the result may have gaps.
  Result<std::vector<StoredRecord>> ReadAfter(uint64_t after_seq, size_t max_records,
                                              size_t max_bytes) {
    std::vector<StoredRecord> out;
    auto n = ReadInto(after_seq, max_records, max_bytes, &out);
    if (!n.ok()) return n.status();
    out.resize(*n);
    return out;
  }
  // The same into the first N elements of *out, growing it as needed; returns N. Elements past N
  // are left as they are: their storage is reused by the next read, so the forwarder drains
  // through one vector without allocating for each record (bench_forwarder, 1 KiB records: malloc
  // and free were half of the forwarder thread's CPU when every read made new records).
  virtual Result<size_t> ReadInto(uint64_t after_seq, size_t max_records, size_t max_bytes,
                                  std::vector<StoredRecord>* out) = 0;

  // Blocks until a record with seq > after_seq exists or `max_wait` passes. Returns true if
  // there is one. Lets the forwarder sleep instead of polling.
  virtual bool WaitForRecordsAfter(uint64_t after_seq, std::chrono::milliseconds max_wait) = 0;

  // The named cursor: every record with seq <= cursor is delivered. 0 if never committed.
  virtual Result<uint64_t> LoadCursor(std::string_view name) = 0;
  // Stores the cursor durably (fsync'd regardless of sync mode) and makes records up to it
  // eligible for trimming. Cursors never move backwards; a smaller value is ignored.
  virtual Status CommitCursor(std::string_view name, uint64_t seq) = 0;

  // Moves a record that can never be delivered into the dead-letter table with `reason`.
  virtual Status DeadLetter(const StoredRecord& record, std::string_view reason) = 0;
};

}  // namespace edgeferry
