// Decides whether the daemon may pet the systemd watchdog. Each main loop of the pipeline (the
// forwarder thread, each input, the buffer writer) exposes a progress counter that moves on every
// iteration, also while idle. A loop is stalled when its counter has not moved for longer than
// its allowance; the daemon sends WATCHDOG=1 only while no loop is stalled, so a hung loop makes
// systemd restart the service after WatchdogSec instead of a timer petting a dead pipeline.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/clock.h"

namespace edgeferry::agent {

// Not thread-safe: owned and called by the daemon's main loop.
class ProgressWatch {
 public:
  explicit ProgressWatch(Clock* clock) : clock_(clock) {}

  // Registers a loop. `ticks` is called from Stalled() and must be thread-safe. `allowance` is how
  // long the counter may stand still before the loop counts as hung (for a sensor input polled
  // every 60 s it must exceed the poll interval).
  void Add(std::string name, std::function<uint64_t()> ticks, std::chrono::milliseconds allowance);
  // Forgets every loop (before the pipeline is rebuilt on reload).
  void Clear() { loops_.clear(); }

  // Samples every counter; returns the names of the loops whose counter has not moved for longer
  // than their allowance, in registration order. Empty means healthy.
  std::vector<std::string> Stalled();

 private:
  struct Loop {
    std::string name;
    std::function<uint64_t()> ticks;
    std::chrono::milliseconds allowance;
    uint64_t last_ticks = 0;
    Clock::TimePoint last_moved;
  };
  Clock* clock_;
  std::vector<Loop> loops_;
};

}  // namespace edgeferry::agent
