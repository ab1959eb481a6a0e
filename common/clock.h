// Time behind a seam: logic asks a Clock, never std::chrono::*::now() directly, so tests can
// move time by hand (FakeClock) and retention, back-off and rate limits are testable.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace edgeferry {

class Clock {
 public:
  using Duration = std::chrono::steady_clock::duration;
  using TimePoint = std::chrono::steady_clock::time_point;

  virtual ~Clock() = default;
  // Monotonic time for deadlines and intervals.
  virtual TimePoint Now() const = 0;
  // Wall-clock time, milliseconds since the Unix epoch, for event and ingest timestamps.
  virtual int64_t NowUnixMs() const = 0;
};

// The process-wide real clock. Thread-safe, never null, lives for the whole process.
Clock* SystemClock();

// A clock that moves only when told. Thread-safe.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(int64_t unix_ms = 1'700'000'000'000) : unix_ms_(unix_ms) {}
  TimePoint Now() const override { return TimePoint(std::chrono::nanoseconds(steady_ns_.load())); }
  int64_t NowUnixMs() const override { return unix_ms_.load(); }
  void Advance(std::chrono::nanoseconds d) {
    steady_ns_ += d.count();
    unix_ms_ += std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
  }

 private:
  std::atomic<int64_t> steady_ns_{1'000'000'000};
  std::atomic<int64_t> unix_ms_;
};

}  // namespace edgeferry
