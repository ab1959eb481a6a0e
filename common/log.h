// Logging to stderr with systemd priority prefixes ("<3>" error, "<4>" warning, "<6>" info,
// "<7>" debug) so that journald keeps the levels. Thread-safe.
//
//   EF_LOG(kWarning, "buffer", "disk full at {}: {}", path, st.ToString());
//
// Repeated errors go through RateLimiter so that an outage logs its cause once, not a flood.
#pragma once

#include <fmt/format.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <string_view>

#include "common/clock.h"

namespace edgeferry {

enum class LogLevel : int { kError = 3, kWarning = 4, kNotice = 5, kInfo = 6, kDebug = 7 };

// Messages above this level are dropped. Default kInfo. Thread-safe.
void SetLogLevel(LogLevel level);
LogLevel GetLogLevel();
bool ParseLogLevel(std::string_view name, LogLevel* out);

// Where lines go; default writes to stderr. Tests install a capturing sink. Returns the old sink.
using LogSink = std::function<void(LogLevel, std::string_view line)>;
LogSink SetLogSink(LogSink sink);

void LogLine(LogLevel level, std::string_view component, std::string_view message);

#define EF_LOG(level, component, ...)                                               \
  do {                                                                              \
    if (static_cast<int>(::edgeferry::LogLevel::level) <=                           \
        static_cast<int>(::edgeferry::GetLogLevel())) {                             \
      ::edgeferry::LogLine(::edgeferry::LogLevel::level, component,                 \
                           ::fmt::format(__VA_ARGS__));                             \
    }                                                                               \
  } while (0)

// Lets the first occurrence of each key through, then at most one line per `interval`, which
// reports how many were suppressed in between. Thread-safe.
class RateLimiter {
 public:
  explicit RateLimiter(std::chrono::milliseconds interval, Clock* clock = SystemClock())
      : interval_(interval), clock_(clock) {}
  // True if a line for `key` may be logged now; *suppressed gets the number swallowed since.
  bool Allow(std::string_view key, uint64_t* suppressed);

 private:
  struct Entry {
    Clock::TimePoint last;
    uint64_t suppressed = 0;
  };
  std::chrono::milliseconds interval_;
  Clock* clock_;
  std::mutex mu_;
  std::map<std::string, Entry, std::less<>> entries_;
};

}  // namespace edgeferry
