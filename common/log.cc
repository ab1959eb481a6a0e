#include "common/log.h"

#include <atomic>
#include <cstdio>

namespace edgeferry {
namespace {

std::atomic<int> g_level{static_cast<int>(LogLevel::kInfo)};
std::mutex g_sink_mu;

void StderrSink(LogLevel level, std::string_view line) {
  // One fwrite per line so that lines from different threads do not interleave.
  std::string out = fmt::format("<{}>{}\n", static_cast<int>(level), line);
  std::fwrite(out.data(), 1, out.size(), stderr);
}

LogSink& Sink() {
  static LogSink sink = StderrSink;
  return sink;
}

}  // namespace

void SetLogLevel(LogLevel level) { g_level = static_cast<int>(level); }
LogLevel GetLogLevel() { return static_cast<LogLevel>(g_level.load()); }

bool ParseLogLevel(std::string_view name, LogLevel* out) {
  if (name == "error") *out = LogLevel::kError;
  else if (name == "warning") *out = LogLevel::kWarning;
  else if (name == "notice") *out = LogLevel::kNotice;
  else if (name == "info") *out = LogLevel::kInfo;
  else if (name == "debug") *out = LogLevel::kDebug;
  else return false;
  return true;
}

LogSink SetLogSink(LogSink sink) {
  std::lock_guard lock(g_sink_mu);
  LogSink old = std::move(Sink());
  Sink() = sink ? std::move(sink) : LogSink(StderrSink);
  return old;
}

void LogLine(LogLevel level, std::string_view component, std::string_view message) {
  std::string line = fmt::format("{}: {}", component, message);
  std::lock_guard lock(g_sink_mu);
  Sink()(level, line);
}

bool RateLimiter::Allow(std::string_view key, uint64_t* suppressed) {
  std::lock_guard lock(mu_);
  auto now = clock_->Now();
  auto it = entries_.find(key);
  if (it == entries_.end()) {
    entries_.emplace(std::string(key), Entry{now, 0});
    *suppressed = 0;
    return true;
  }
  if (now - it->second.last >= interval_) {
    *suppressed = it->second.suppressed;
    it->second = Entry{now, 0};
    return true;
  }
  ++it->second.suppressed;
  return false;
}

}  // namespace edgeferry
