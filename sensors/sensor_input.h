// Local sensor inputs (internal to sensors/; tests include it): a SensorReader knows how to take
// readings from one kind of source; SensorInput polls it through the shared scheduler, turns the
// readings into JSON records and appends them, counting and rate-limit-logging failures.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/log.h"
#include "sensors/scheduler.h"
#include "sensors/sensors.h"

namespace edgeferry::sensors {

struct Reading {
  std::string sensor;  // "coretemp/Core 0", "cpu.usage", ...
  double value = 0;
  std::string unit;   // "C", "V", "%", "bytes", ... ; may be empty
  int64_t ts_ms = 0;  // 0: the time the poll finished
  size_t pad_to = 0;  // simulated: pad the JSON payload to at least this many bytes
};

// Where a reader reports a failure for one sensor (others in the same poll keep going).
// `reason` is a short stable word counted in InputStats::errors_by_reason: "missing",
// "permission", "io", "parse", "timeout", "exec", "crc".
using FailFn = std::function<void(const std::string& sensor, const std::string& reason,
                                  const std::string& detail)>;

class SensorReader {
 public:
  virtual ~SensorReader() = default;
  // Takes one round of readings. Runs on a scheduler worker; never concurrently with itself.
  virtual void Read(Clock::TimePoint deadline, std::vector<Reading>* out, const FailFn& fail) = 0;
};

// Builds the reader for cfg.type; InvalidArgument for an unknown kind or bad setting.
Result<std::unique_ptr<SensorReader>> MakeReader(const config::InputConfig& cfg, Clock* clock);

// The reading as the record payload: {"device":..,"sensor":..,"ts":..,"value":..,"unit":..}.
std::string ReadingJson(const std::string& device, const Reading& r);

// Errno -> failure reason word.
std::string ReasonForErrno(int err);

class SensorInput final : public Input {
 public:
  SensorInput(const config::InputConfig& cfg, std::string device_id, RecordSink* sink, Clock* clock,
              std::shared_ptr<SensorScheduler> scheduler, std::unique_ptr<SensorReader> reader);
  ~SensorInput() override;

  const std::string& name() const override { return name_; }
  Status Start() override;
  void Stop() override;
  InputStats Stats() const override;
  uint64_t ProgressTicks() const override;

  // Polling interval the scheduler uses (simulated inputs tick faster than their config says).
  static std::chrono::milliseconds PollInterval(const config::InputConfig& cfg);

 private:
  // Everything a read touches, shared with the scheduler's worker so that a read that returns
  // after Stop() (abandoned on timeout) finds it alive and sees `stopped`.
  struct State;
  std::string name_;
  std::shared_ptr<State> state_;
  std::shared_ptr<SensorScheduler> scheduler_;
  TaskSpec spec_;
  uint64_t task_id_ = 0;
  std::atomic<bool> started_{false};
};

}  // namespace edgeferry::sensors
