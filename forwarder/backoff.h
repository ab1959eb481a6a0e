// Capped exponential back-off on a Clock: initial, 2x initial, 4x ... up to max; Reset() after a
// success. No jitter: one device has one producer, there is no herd to spread.
// Not thread-safe (the forwarder thread owns it).
#pragma once

#include <algorithm>
#include <chrono>

#include "common/clock.h"

namespace edgeferry::forwarder {

class Backoff {
 public:
  Backoff(std::chrono::milliseconds initial, std::chrono::milliseconds max, Clock* clock)
      : initial_(std::max(initial, std::chrono::milliseconds(1))),
        max_(std::max(max, initial_)),
        clock_(clock) {}

  // A failure: the next attempt may start after the returned delay (from now).
  std::chrono::milliseconds Fail() {
    std::chrono::milliseconds delay = next_;
    next_ = std::min(max_, next_ * 2);
    ready_at_ = clock_->Now() + delay;
    ++failures_;
    return delay;
  }
  // A success: the next failure waits `initial` again.
  void Reset() {
    next_ = initial_;
    failures_ = 0;
  }
  // True once the delay of the last failure has passed.
  bool Ready() const { return clock_->Now() >= ready_at_; }
  // Time left until Ready() (zero if ready).
  std::chrono::milliseconds Remaining() const {
    auto left = ready_at_ - clock_->Now();
    if (left <= Clock::Duration::zero()) return std::chrono::milliseconds(0);
    return std::chrono::ceil<std::chrono::milliseconds>(left);
  }
  uint64_t consecutive_failures() const { return failures_; }

 private:
  std::chrono::milliseconds initial_;
  std::chrono::milliseconds max_;
  Clock* clock_;
  std::chrono::milliseconds next_ = initial_;
  Clock::TimePoint ready_at_{};
  uint64_t failures_ = 0;
};

}  // namespace edgeferry::forwarder
