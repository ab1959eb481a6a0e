// An in-memory RecordSource for forwarder tests: records with increasing seqs, named cursors,
// dead-letter capture, and optional trimming (to imitate the buffer's drop_oldest policy).
// Thread-safe.
#pragma once

#include <algorithm>
#include <condition_variable>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "common/seams.h"

namespace edgeferry::forwarder::testing {

class MemorySource : public RecordSource {
 public:
  struct DeadLetterEntry {
    StoredRecord record;
    std::string reason;
  };

  uint64_t Append(Record r) {
    std::lock_guard lock(mu_);
    StoredRecord sr;
    sr.seq = ++last_seq_;
    sr.ingest_time_ms = r.event_time_ms;
    sr.record = std::move(r);
    records_.emplace(sr.seq, std::move(sr));
    cv_.notify_all();
    return last_seq_;
  }
  // Leaves a hole in the sequence (as records dropped by the size policy do).
  void SkipSeqs(uint64_t n) {
    std::lock_guard lock(mu_);
    last_seq_ += n;
  }
  // Removes records with seq <= upto whether delivered or not (drop_oldest under pressure).
  void Trim(uint64_t upto) {
    std::lock_guard lock(mu_);
    records_.erase(records_.begin(), records_.upper_bound(upto));
  }

  Result<size_t> ReadInto(uint64_t after_seq, size_t max_records, size_t max_bytes,
                          std::vector<StoredRecord>* out) override {
    {
      // A storage read that takes long (HoldReads): the reader is held, appends are not.
      std::unique_lock gate(gate_mu_);
      ++held_readers_;
      gate_cv_.wait(gate, [&] { return !hold_reads_; });
      --held_readers_;
    }
    std::lock_guard lock(mu_);
    ++reads_;
    if (fail_reads_ > 0) {
      --fail_reads_;
      return Status::IOError("injected read failure");
    }
    size_t n = 0, bytes = 0;
    for (auto it = records_.upper_bound(after_seq); it != records_.end(); ++it) {
      if (n >= max_records) break;
      size_t b = it->second.record.payload.size();
      if (n > 0 && bytes + b > max_bytes) break;
      bytes += b;
      if (n == out->size()) out->emplace_back();
      (*out)[n++] = it->second;
    }
    if (n > 0) read_upto_ = std::max(read_upto_, (*out)[n - 1].seq);
    return n;
  }

  bool WaitForRecordsAfter(uint64_t after_seq, std::chrono::milliseconds max_wait) override {
    std::unique_lock lock(mu_);
    auto has = [&] { return records_.upper_bound(after_seq) != records_.end(); };
    if (max_wait.count() <= 0) return has();
    return cv_.wait_for(lock, max_wait, has);
  }

  Result<uint64_t> LoadCursor(std::string_view name) override {
    std::lock_guard lock(mu_);
    auto it = cursors_.find(std::string(name));
    return it == cursors_.end() ? 0 : it->second;
  }

  Status CommitCursor(std::string_view name, uint64_t seq) override {
    std::lock_guard lock(mu_);
    ++commits_;
    uint64_t& c = cursors_[std::string(name)];
    c = std::max(c, seq);
    return Status::Ok();
  }

  Status DeadLetter(const StoredRecord& record, std::string_view reason) override {
    std::lock_guard lock(mu_);
    dead_letters_.push_back({record, std::string(reason)});
    return Status::Ok();
  }

  uint64_t cursor(const std::string& name = "kafka") {
    std::lock_guard lock(mu_);
    auto it = cursors_.find(name);
    return it == cursors_.end() ? 0 : it->second;
  }
  uint64_t last_seq() {
    std::lock_guard lock(mu_);
    return last_seq_;
  }
  std::vector<DeadLetterEntry> dead_letters() {
    std::lock_guard lock(mu_);
    return dead_letters_;
  }
  uint64_t commits() {
    std::lock_guard lock(mu_);
    return commits_;
  }
  // While held, every ReadInto waits until released (a read stuck on a slow SD card).
  void HoldReads(bool hold) {
    {
      std::lock_guard gate(gate_mu_);
      hold_reads_ = hold;
    }
    gate_cv_.notify_all();
  }
  int held_readers() {
    std::lock_guard gate(gate_mu_);
    return held_readers_;
  }
  // The highest seq that ReadInto has returned.
  uint64_t read_upto() {
    std::lock_guard lock(mu_);
    return read_upto_;
  }
  void FailNextReads(int n) {
    std::lock_guard lock(mu_);
    fail_reads_ = n;
  }

 private:
  std::mutex gate_mu_;
  std::condition_variable gate_cv_;
  bool hold_reads_ = false;  // GUARDED_BY(gate_mu_)
  int held_readers_ = 0;     // GUARDED_BY(gate_mu_)
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<uint64_t, StoredRecord> records_;
  uint64_t last_seq_ = 0;
  uint64_t read_upto_ = 0;
  std::map<std::string, uint64_t> cursors_;
  std::vector<DeadLetterEntry> dead_letters_;
  uint64_t commits_ = 0;
  uint64_t reads_ = 0;
  int fail_reads_ = 0;
};

}  // namespace edgeferry::forwarder::testing
