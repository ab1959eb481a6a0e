// Which records above the cursor are in flight, delivered or failed, and how far the cursor may
// move: to the highest seq below which everything is delivered. Deliveries complete out of
// order across partitions, so a delivered record above an undelivered one is remembered (and
// skipped when the forwarder resends from the cursor) but does not move the cursor.
//
// Pure logic, no I/O; not thread-safe (the forwarder thread owns it).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace edgeferry::forwarder {

class CursorTracker {
 public:
  enum class State : uint8_t { kInFlight, kDelivered, kFailed };

  explicit CursorTracker(uint64_t cursor = 0) { Reset(cursor); }

  // Forgets everything; the cursor is `cursor` (e.g. as loaded from the buffer).
  void Reset(uint64_t cursor);

  // Everything <= cursor() is delivered (or dead-lettered, or gone from the source).
  uint64_t cursor() const { return cursor_; }

  // The record `seq` was handed to the producer. `seq` must be above the cursor and either above
  // everything tracked (a new record) or a tracked record in state kFailed (a resend). Returns
  // false (and changes nothing) otherwise.
  bool OnSent(uint64_t seq);
  // A successful delivery report, or the record was dead-lettered. Unknown seqs are ignored.
  void OnDelivered(uint64_t seq);
  // A failed delivery report (or the producer was destroyed): the record must be sent again.
  void OnFailed(uint64_t seq);
  // Every tracked record still in flight becomes kFailed (the producer that had them is gone).
  void FailAllInFlight();
  // The source no longer holds tracked records with after < seq < before (trimmed by the
  // buffer's size policy while undelivered): stop waiting for them.
  void ForgetMissing(uint64_t after, uint64_t before);

  // True if `seq` is tracked and delivered: a resend pass skips it.
  bool IsDelivered(uint64_t seq) const;
  // The highest seq ever handed to OnSent since the last Reset (or the cursor).
  uint64_t highest() const { return size_ == 0 ? cursor_ : At(size_ - 1).seq; }
  size_t tracked() const { return size_; }
  size_t in_flight() const { return in_flight_; }
  // Nothing tracked: gives back the storage a backlog grew (an idle agent keeps little).
  void ShrinkIfIdle();
  size_t capacity() const { return ring_.size(); }

 private:
  struct Entry {
    uint64_t seq;
    State state;
  };
  // The i-th tracked entry (0 = the lowest seq).
  Entry& At(size_t i) { return ring_[(head_ + i) & (ring_.size() - 1)]; }
  const Entry& At(size_t i) const { return ring_[(head_ + i) & (ring_.size() - 1)]; }
  // The index of the first entry with a seq >= `seq` (size_ if none).
  size_t LowerBound(uint64_t seq) const;
  Entry* Find(uint64_t seq);
  const Entry* Find(uint64_t seq) const;
  void Advance();

  uint64_t cursor_ = 0;
  size_t in_flight_ = 0;
  // A ring (power-of-two size) rather than a std::deque: every record of a drain goes through
  // OnSent and OnDelivered, and the deque's block allocations and indexing, with a binary search
  // per report, were 7 % of the forwarder thread at 100 B records. Seqs are contiguous but for
  // records trimmed from the source, so Find is usually one index computation.
  // The size_ entries from head_ on: seq strictly increasing, all > cursor_, the first never
  // kDelivered.
  std::vector<Entry> ring_;
  size_t head_ = 0;
  size_t size_ = 0;
};

}  // namespace edgeferry::forwarder
