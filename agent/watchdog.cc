#include "agent/watchdog.h"

namespace edgeferry::agent {

void ProgressWatch::Add(std::string name, std::function<uint64_t()> ticks,
                        std::chrono::milliseconds allowance) {
  uint64_t now_ticks = ticks();
  loops_.push_back(Loop{std::move(name), std::move(ticks), allowance, now_ticks, clock_->Now()});
}

std::vector<std::string> ProgressWatch::Stalled() {
  std::vector<std::string> stalled;
  auto now = clock_->Now();
  for (auto& loop : loops_) {
    uint64_t t = loop.ticks();
    if (t != loop.last_ticks) {
      loop.last_ticks = t;
      loop.last_moved = now;
    } else if (now - loop.last_moved > loop.allowance) {
      stalled.push_back(loop.name);
    }
  }
  return stalled;
}

}  // namespace edgeferry::agent
