#include "forwarder/cursor_tracker.h"

namespace edgeferry::forwarder {

namespace {
// Kept when the tracker empties: enough for a small window without reallocating.
constexpr size_t kMinRing = 1024;
}  // namespace

void CursorTracker::Reset(uint64_t cursor) {
  cursor_ = cursor;
  in_flight_ = 0;
  ring_.assign(kMinRing, Entry{0, State::kDelivered});
  ring_.shrink_to_fit();
  head_ = size_ = 0;
}

size_t CursorTracker::LowerBound(uint64_t seq) const {
  if (size_ == 0 || seq <= At(0).seq) return 0;
  if (seq > At(size_ - 1).seq) return size_;
  // Contiguous seqs: the offset from either end is the index (from the back also after a gap).
  uint64_t from_front = seq - At(0).seq;
  if (from_front < size_ && At(from_front).seq == seq) return from_front;
  uint64_t from_back = At(size_ - 1).seq - seq;
  if (from_back < size_ && At(size_ - 1 - from_back).seq == seq) return size_ - 1 - from_back;
  size_t lo = 0, hi = size_;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (At(mid).seq < seq) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo;
}

CursorTracker::Entry* CursorTracker::Find(uint64_t seq) {
  size_t i = LowerBound(seq);
  return (i < size_ && At(i).seq == seq) ? &At(i) : nullptr;
}

const CursorTracker::Entry* CursorTracker::Find(uint64_t seq) const {
  return const_cast<CursorTracker*>(this)->Find(seq);
}

bool CursorTracker::OnSent(uint64_t seq) {
  if (seq <= cursor_) return false;
  if (size_ == 0 || seq > At(size_ - 1).seq) {
    if (size_ == ring_.size()) {
      std::vector<Entry> grown(ring_.size() * 2);
      for (size_t i = 0; i < size_; ++i) grown[i] = At(i);
      ring_.swap(grown);
      head_ = 0;
    }
    At(size_++) = Entry{seq, State::kInFlight};
    ++in_flight_;
    return true;
  }
  Entry* e = Find(seq);
  if (e == nullptr || e->state != State::kFailed) return false;
  e->state = State::kInFlight;
  ++in_flight_;
  return true;
}

void CursorTracker::OnDelivered(uint64_t seq) {
  Entry* e = Find(seq);
  if (e == nullptr || e->state == State::kDelivered) return;
  if (e->state == State::kInFlight) --in_flight_;
  e->state = State::kDelivered;
  Advance();
}

void CursorTracker::OnFailed(uint64_t seq) {
  Entry* e = Find(seq);
  if (e == nullptr || e->state != State::kInFlight) return;
  --in_flight_;
  e->state = State::kFailed;
}

void CursorTracker::FailAllInFlight() {
  for (size_t i = 0; i < size_; ++i) {
    if (At(i).state == State::kInFlight) At(i).state = State::kFailed;
  }
  in_flight_ = 0;
}

void CursorTracker::ForgetMissing(uint64_t after, uint64_t before) {
  if (before <= after + 1) return;
  for (size_t i = LowerBound(after + 1); i < size_ && At(i).seq < before; ++i) {
    Entry& e = At(i);
    if (e.state == State::kInFlight) --in_flight_;
    e.state = State::kDelivered;
  }
  Advance();
}

bool CursorTracker::IsDelivered(uint64_t seq) const {
  const Entry* e = Find(seq);
  return e != nullptr && e->state == State::kDelivered;
}

void CursorTracker::Advance() {
  while (size_ > 0 && At(0).state == State::kDelivered) {
    cursor_ = At(0).seq;
    head_ = (head_ + 1) & (ring_.size() - 1);
    --size_;
  }
}

void CursorTracker::ShrinkIfIdle() {
  if (size_ == 0 && ring_.size() > kMinRing) Reset(cursor_);
}

}  // namespace edgeferry::forwarder
