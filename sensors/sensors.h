// Inputs: where readings come from. An MQTT input subscribes to a broker; local sensor inputs
// (hwmon, thermal, iio, w1, system, exec, simulated) are polled by a shared SensorScheduler.
// Every input appends to a RecordSink and treats a reading as accepted only once Append returned
// OK (durable at the buffer's sync level); see sensors/README.md for the record formats and the
// MQTT acknowledgement contract.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "common/clock.h"
#include "common/seams.h"
#include "common/status.h"
#include "config/config.h"

namespace edgeferry::sensors {

// A snapshot of an input's counters. Counters only grow for the life of the Input object.
struct InputStats {
  uint64_t received = 0;  // messages / readings the input produced or took from the broker
  uint64_t accepted = 0;  // appended to the sink with OK (durable)
  uint64_t rejected = 0;  // refused by rule (oversized payload, ...); sum of rejected_by_reason
  std::map<std::string, uint64_t> rejected_by_reason;
  uint64_t errors =
      0;  // failed reads, failed appends, connection failures; sum of errors_by_reason
  std::map<std::string, uint64_t> errors_by_reason;
  uint64_t reconnects = 0;  // MQTT: successful connects after the first one
  // MQTT: "connected" (all connections), "degraded" (some), "disconnected" (none), "stopped".
  // Sensors: "running", "stopped".
  std::string state;
};

class Input {
 public:
  virtual ~Input() = default;  // stops the input if still running
  // The configured input name; also every record's `source`.
  virtual const std::string& name() const = 0;
  // Starts the input's own threads (or registers with its scheduler) and returns at once; an
  // MQTT input connects in the background and keeps retrying, so an unreachable broker is not an
  // error here. Errors: InvalidArgument for a config the input cannot run with.
  virtual Status Start() = 0;
  // Stops taking new readings and joins the input's threads. Every Append that had started
  // finishes first (so nothing accepted is lost); an MQTT message whose Append had not returned
  // OK is not acknowledged and the broker delivers it again. Idempotent.
  virtual void Stop() = 0;
  // Thread-safe.
  virtual InputStats Stats() const = 0;
  // Moves while the input's loop is alive (for a watchdog): an MQTT input ticks every 100 ms on
  // its ticker, on every pass of each connection's loop and on every message; a sensor input on
  // every scheduled read it starts.
  virtual uint64_t ProgressTicks() const = 0;
};

// Runs the reads of every local sensor input registered with it: one timer thread plus a small
// worker pool. A read that passes its timeout is counted and abandoned (exec children are
// killed); the sensor is not polled again until that read returns, and a replacement worker
// is started so that a hung sensor never delays the others. Thread-safe; inputs hold a
// shared_ptr, so it lives until the last input using it is destroyed.
class SensorScheduler;
std::shared_ptr<SensorScheduler> NewSensorScheduler(Clock* clock = SystemClock(), int workers = 2);

// Builds the input `cfg` describes (cfg.type "mqtt" or a sensor kind). `sink` and `clock` must
// outlive the input. Local sensor inputs are polled by `scheduler`; when null each sensor input
// gets a private one (the agent passes one shared scheduler for all of them).
// Errors: InvalidArgument naming the input and the offending setting.
Result<std::unique_ptr<Input>> CreateInput(const config::InputConfig& cfg,
                                           const std::string& device_id, RecordSink* sink,
                                           Clock* clock = SystemClock(),
                                           std::shared_ptr<SensorScheduler> scheduler = nullptr);

// What the MQTT input is built on, for `edgeferry --version`: e.g. "built-in MQTT 3.1.1/5
// client, OpenSSL 3.0.11 19 Sep 2023" (the OpenSSL found at run time).
std::string MqttClientVersion();

// "plant/{device}/+/{sensor}" against "plant/pump7/x/temp" -> {"device":"pump7","sensor":"temp"}.
// `+` matches any one level, `#` (last) the rest; a literal level must be equal. Returns false
// when the topic does not match the pattern. Exposed for tests and the agent's config check.
bool MatchTopicPattern(const std::string& pattern, const std::string& topic,
                       std::map<std::string, std::string>* captures);

}  // namespace edgeferry::sensors
