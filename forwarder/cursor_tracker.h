// Which records above the cursor are in flight, delivered or failed, and how far the cursor may
// move: to the highest seq below which everything is delivered. Deliveries complete out of
// order across partitions, so a delivered record above an undelivered one is remembered (and
// skipped when the forwarder resends from the cursor) but does not move the cursor.
//
// Pure logic, no I/O; not thread-safe (the forwarder thread owns it).
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>

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
  uint64_t highest() const { return entries_.empty() ? cursor_ : entries_.back().seq; }
  size_t tracked() const { return entries_.size(); }
  size_t in_flight() const { return in_flight_; }

 private:
  struct Entry {
    uint64_t seq;
    State state;
  };
  Entry* Find(uint64_t seq);
  const Entry* Find(uint64_t seq) const;
  void Advance();

  uint64_t cursor_ = 0;
  size_t in_flight_ = 0;
  std::deque<Entry> entries_;  // seq strictly increasing, all > cursor_, front never kDelivered
};

}  // namespace edgeferry::forwarder
