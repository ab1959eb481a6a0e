#include "forwarder/cursor_tracker.h"

#include <algorithm>

namespace edgeferry::forwarder {

void CursorTracker::Reset(uint64_t cursor) {
  cursor_ = cursor;
  in_flight_ = 0;
  entries_.clear();
}

CursorTracker::Entry* CursorTracker::Find(uint64_t seq) {
  auto it = std::lower_bound(entries_.begin(), entries_.end(), seq,
                             [](const Entry& e, uint64_t s) { return e.seq < s; });
  return (it != entries_.end() && it->seq == seq) ? &*it : nullptr;
}

const CursorTracker::Entry* CursorTracker::Find(uint64_t seq) const {
  return const_cast<CursorTracker*>(this)->Find(seq);
}

bool CursorTracker::OnSent(uint64_t seq) {
  if (seq <= cursor_) return false;
  if (entries_.empty() || seq > entries_.back().seq) {
    entries_.push_back({seq, State::kInFlight});
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
  for (Entry& e : entries_) {
    if (e.state == State::kInFlight) e.state = State::kFailed;
  }
  in_flight_ = 0;
}

void CursorTracker::ForgetMissing(uint64_t after, uint64_t before) {
  if (before <= after + 1) return;
  auto it = std::upper_bound(entries_.begin(), entries_.end(), after,
                             [](uint64_t s, const Entry& e) { return s < e.seq; });
  for (; it != entries_.end() && it->seq < before; ++it) {
    if (it->state == State::kInFlight) --in_flight_;
    it->state = State::kDelivered;
  }
  Advance();
}

bool CursorTracker::IsDelivered(uint64_t seq) const {
  const Entry* e = Find(seq);
  return e != nullptr && e->state == State::kDelivered;
}

void CursorTracker::Advance() {
  while (!entries_.empty() && entries_.front().state == State::kDelivered) {
    cursor_ = entries_.front().seq;
    entries_.pop_front();
  }
}

}  // namespace edgeferry::forwarder
