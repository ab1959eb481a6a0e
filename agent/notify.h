// sd_notify(3) for a Type=notify service: READY=1, RELOADING=1, STOPPING=1, STATUS= and
// WATCHDOG=1. Every call is a no-op when NOTIFY_SOCKET is unset (the agent run from a shell).
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace edgeferry::agent {

// Thread-safe (sd_notify is). Reads WATCHDOG_USEC/WATCHDOG_PID once, at construction.
class Notifier {
 public:
  Notifier();

  // The keep-alive timeout the service manager asked for (WatchdogSec=), if any: WATCHDOG=1 must
  // come more often than that. nullopt when the watchdog is off or meant for another pid.
  std::optional<std::chrono::microseconds> watchdog_timeout() const { return watchdog_; }

  void Ready();
  void Reloading();
  void Stopping();
  // One line; newlines are replaced by spaces.
  void Status(std::string_view line);
  // Call only when the main loops made progress (see watchdog.h); never from a timer alone.
  void Watchdog();

 private:
  void Send(const std::string& state);
  std::optional<std::chrono::microseconds> watchdog_;
};

}  // namespace edgeferry::agent
