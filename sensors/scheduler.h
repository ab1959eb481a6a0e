// The poll scheduler shared by local sensor inputs (internal to sensors/; tests include it).
//
// One timer thread decides what is due and hands it to a worker pool. A task never runs twice at
// once: while its read is in progress it is not dispatched again. When a read passes its timeout
// the scheduler counts it (on_timeout), marks the worker abandoned and starts a replacement, so a
// hung sensor costs one parked thread, never the others' schedule. An abandoned worker exits
// when its read finally returns.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "sensors/sensors.h"

namespace edgeferry::sensors {

struct TaskSpec {
  std::chrono::milliseconds interval{1000};
  std::chrono::milliseconds jitter{0};  // first run at a random point in [0, jitter]
  std::chrono::milliseconds timeout{2000};
  // The read is abandoned at timeout + grace: readers that enforce the deadline themselves (exec
  // kills its child at `deadline`) finish within the grace and count their own timeout.
  std::chrono::milliseconds grace{0};
  // The read. Runs on a worker thread, never concurrently with itself. `deadline` is when the
  // scheduler gives up on it (exec kills its child then). The timeout covers only this part.
  std::function<void(Clock::TimePoint deadline)> run;
  // Runs after `run` on the same worker unless the read timed out or the task was removed: it
  // appends what `run` read. Not covered by the timeout (a blocking Append is back-pressure, not
  // a hung sensor); Remove() waits for it.
  std::function<void()> commit;
  // Called on the timer thread once per read that passes its timeout. Must not block.
  std::function<void()> on_timeout;
};

class SensorScheduler {
 public:
  explicit SensorScheduler(Clock* clock, int workers);
  ~SensorScheduler();  // stops and joins (abandoned workers blocked in a read are detached)
  SensorScheduler(const SensorScheduler&) = delete;
  SensorScheduler& operator=(const SensorScheduler&) = delete;

  // Registers a task; starts the threads on first use. Returns its id.
  uint64_t Add(TaskSpec spec);
  // Unregisters. Waits for a commit in progress and for a read in progress unless that read is
  // past its timeout; after Remove returns, the task's commit never runs again.
  void Remove(uint64_t id);
  // Wakes the timer thread to re-check due times (tests call it after moving a FakeClock).
  void Wake();
  // Number of reads started since creation (ProgressTicks, benchmarks).
  uint64_t reads_started() const { return reads_started_.load(); }
  int live_workers() const;

 private:
  struct Task {
    TaskSpec spec;
    Clock::TimePoint next_due;
    bool queued = false;
    bool running = false;
    bool timed_out = false;
    bool committing = false;
    Clock::TimePoint started;
    uint64_t worker = 0;
    bool removed = false;
  };
  struct Core;  // shared with worker threads so an abandoned worker never outlives its state

  void TimerLoop();
  void StartWorkerLocked();

  Clock* clock_;
  int pool_size_;
  std::shared_ptr<Core> core_;
  std::thread timer_;
  std::atomic<uint64_t> reads_started_{0};
};

}  // namespace edgeferry::sensors
