#include "agent/notify.h"

#include <systemd/sd-daemon.h>

#include <algorithm>
#include <cstdint>

#include "common/log.h"

namespace edgeferry::agent {

Notifier::Notifier() {
  uint64_t usec = 0;
  // unset_environment=0: the variables stay so that a re-exec would see them too. sd_watchdog_
  // enabled checks WATCHDOG_PID against our pid, so an exec'd child never pets our dog.
  if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
    watchdog_ = std::chrono::microseconds(usec);
  }
}

void Notifier::Send(const std::string& state) {
  int r = sd_notify(0, state.c_str());
  if (r < 0) {
    static RateLimiter limiter(std::chrono::minutes(1));
    uint64_t suppressed = 0;
    if (limiter.Allow("sd_notify", &suppressed)) {
      EF_LOG(kWarning, "agent", "sd_notify failed: error {} ({} similar suppressed)", -r,
             suppressed);
    }
  }
}

void Notifier::Ready() { Send("READY=1"); }
void Notifier::Reloading() { Send("RELOADING=1"); }
void Notifier::Stopping() { Send("STOPPING=1"); }
void Notifier::Watchdog() { Send("WATCHDOG=1"); }

void Notifier::Status(std::string_view line) {
  std::string s(line);
  std::replace(s.begin(), s.end(), '\n', ' ');
  Send("STATUS=" + s);
}

}  // namespace edgeferry::agent
