#include "sensors/sensor_input.h"

#include <fmt/format.h>
#include <fnmatch.h>

#include <cerrno>
#include <cmath>
#include <random>

#include "sensors/readers.h"

namespace edgeferry::sensors {
namespace {

void AppendJsonString(std::string* out, const std::string& s) {
  out->push_back('"');
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      default:
        if (c < 0x20) {
          out->append(fmt::format("\\u{:04x}", c));
        } else {
          out->push_back(static_cast<char>(c));
        }
    }
  }
  out->push_back('"');
}

}  // namespace

std::string ReadingJson(const std::string& device, const Reading& r) {
  std::string out;
  out.reserve(96 + r.pad_to);
  out.append("{\"device\":");
  AppendJsonString(&out, device);
  out.append(",\"sensor\":");
  AppendJsonString(&out, r.sensor);
  out.append(fmt::format(",\"ts\":{},\"value\":{},\"unit\":", r.ts_ms, r.value));
  AppendJsonString(&out, r.unit);
  if (r.pad_to > out.size() + 1) {
    // ,"pad":"xxxx"} : 10 bytes of framing around the filler.
    size_t fill = r.pad_to > out.size() + 10 ? r.pad_to - out.size() - 10 : 0;
    out.append(",\"pad\":\"");
    out.append(fill, 'x');
    out.push_back('"');
  }
  out.push_back('}');
  return out;
}

std::string ReasonForErrno(int err) {
  switch (err) {
    case ENOENT:
    case ENODEV:
    case ENXIO:
      return "missing";
    case EACCES:
    case EPERM:
      return "permission";
    default:
      return "io";
  }
}

bool MatchesAny(const std::vector<std::string>& globs, const std::string& name) {
  if (globs.empty()) return true;
  for (const auto& g : globs) {
    if (fnmatch(g.c_str(), name.c_str(), 0) == 0) return true;
  }
  return false;
}

bool MatchesAny(const std::vector<std::string>& globs, std::initializer_list<std::string> names) {
  if (globs.empty()) return true;
  for (const auto& n : names) {
    if (MatchesAny(globs, n)) return true;
  }
  return false;
}

struct SensorInput::State {
  std::string name;
  std::string device;
  std::string topic;
  RecordSink* sink;
  Clock* clock;
  std::unique_ptr<SensorReader> reader;
  std::vector<Reading> pending;  // filled by the read, appended by the commit

  std::atomic<uint64_t> received{0}, accepted{0}, errors{0}, ticks{0};
  mutable std::mutex mu;  // guards errors_by_reason
  std::map<std::string, uint64_t> errors_by_reason;
  RateLimiter limiter{std::chrono::seconds(60)};

  void Fail(const std::string& sensor, const std::string& reason, const std::string& detail) {
    errors.fetch_add(1);
    {
      std::lock_guard lock(mu);
      ++errors_by_reason[reason];
    }
    uint64_t suppressed = 0;
    if (limiter.Allow(sensor + "\n" + reason, &suppressed)) {
      EF_LOG(kWarning, "sensors", "input {}: sensor {}: {} ({}){}", name, sensor, detail, reason,
             suppressed ? fmt::format(" [{} similar suppressed]", suppressed) : std::string());
    }
  }
};

SensorInput::SensorInput(const config::InputConfig& cfg, std::string device_id, RecordSink* sink,
                         Clock* clock, std::shared_ptr<SensorScheduler> scheduler,
                         std::unique_ptr<SensorReader> reader)
    : name_(cfg.name), state_(std::make_shared<State>()), scheduler_(std::move(scheduler)) {
  state_->name = cfg.name;
  state_->device = std::move(device_id);
  state_->topic = cfg.topic;
  state_->sink = sink;
  state_->clock = clock;
  state_->reader = std::move(reader);
  const config::SensorInputConfig& s = *cfg.sensor;
  spec_.interval = PollInterval(cfg);
  spec_.jitter = std::chrono::milliseconds(s.jitter_ms);
  spec_.timeout = std::chrono::milliseconds(s.timeout_ms);
  spec_.grace = std::chrono::milliseconds(250);
  std::shared_ptr<State> st = state_;
  spec_.run = [st](Clock::TimePoint deadline) {
    st->ticks.fetch_add(1, std::memory_order_relaxed);
    st->pending.clear();
    st->reader->Read(deadline, &st->pending,
                     [&](const std::string& sensor, const std::string& reason,
                         const std::string& detail) { st->Fail(sensor, reason, detail); });
  };
  spec_.commit = [st] {
    if (st->pending.empty()) return;
    int64_t now_ms = st->clock->NowUnixMs();
    std::vector<Record> records;
    records.reserve(st->pending.size());
    for (Reading& r : st->pending) {
      if (!std::isfinite(r.value)) {
        st->Fail(r.sensor, "parse", "value is not a finite number");
        continue;
      }
      if (r.ts_ms == 0) r.ts_ms = now_ms;
      Record rec;
      rec.source = st->name;
      rec.topic = st->topic;
      rec.event_time_ms = r.ts_ms;
      rec.payload = ReadingJson(st->device, r);
      rec.headers.push_back({"sensor", r.sensor});
      records.push_back(std::move(rec));
    }
    st->pending.clear();
    if (records.empty()) return;
    size_t n = records.size();
    st->received.fetch_add(n);
    Status s = st->sink->Append(std::move(records));
    if (s.ok()) {
      st->accepted.fetch_add(n);
    } else {
      // A local reading that the buffer refused is gone (sensors cannot be re-read in the past);
      // counted per reason so that drops under when_full=drop_newest are visible.
      st->Fail("*", "append_" + std::string(CodeName(s.code())), s.ToString());
    }
  };
  spec_.on_timeout = [st, timeout = s.timeout_ms] {
    st->Fail("*", "timeout", fmt::format("read took longer than {} ms", timeout));
  };
}

SensorInput::~SensorInput() { Stop(); }

std::chrono::milliseconds SensorInput::PollInterval(const config::InputConfig& cfg) {
  const config::SensorInputConfig& s = *cfg.sensor;
  if (cfg.type == "simulated") {
    // The simulated input emits rate_hz readings per second per sensor by catching up to the
    // clock on each tick; the tick is the reading period, bounded to [10 ms, 1 s].
    double period_ms = s.rate_hz > 0 ? 1000.0 / s.rate_hz : 1000.0;
    if (period_ms < 10) period_ms = 10;
    if (period_ms > 1000) period_ms = 1000;
    return std::chrono::milliseconds(static_cast<int64_t>(period_ms));
  }
  return std::chrono::milliseconds(s.interval_ms == 0 ? 1 : s.interval_ms);
}

Status SensorInput::Start() {
  if (started_) return Status::Ok();
  started_ = true;
  task_id_ = scheduler_->Add(spec_);
  EF_LOG(kInfo, "sensors", "input {}: polling every {} ms", name_, spec_.interval.count());
  return Status::Ok();
}

void SensorInput::Stop() {
  if (!started_) return;
  started_ = false;
  scheduler_->Remove(task_id_);
}

InputStats SensorInput::Stats() const {
  InputStats out;
  out.received = state_->received.load();
  out.accepted = state_->accepted.load();
  out.errors = state_->errors.load();
  {
    std::lock_guard lock(state_->mu);
    out.errors_by_reason = state_->errors_by_reason;
  }
  out.state = started_ ? "running" : "stopped";
  return out;
}

uint64_t SensorInput::ProgressTicks() const { return state_->ticks.load(); }

// ---------------------------------------------------------------------------------------------
// simulated

namespace {

class SimulatedReader final : public SensorReader {
 public:
  SimulatedReader(const config::SensorInputConfig& cfg, Clock* clock)
      : cfg_(cfg), clock_(clock), start_(clock->Now()), start_unix_ms_(clock->NowUnixMs()) {}

  void Read(Clock::TimePoint, std::vector<Reading>* out, const FailFn&) override {
    if (cfg_.rate_hz <= 0 || cfg_.sensors == 0) return;
    double elapsed_s = std::chrono::duration<double>(clock_->Now() - start_).count();
    // The first reading is at t=0, then one every 1/rate seconds.
    uint64_t due = static_cast<uint64_t>(std::floor(elapsed_s * cfg_.rate_hz)) + 1;
    // After a stall (blocked buffer, suspended process) skip ahead instead of bursting more
    // than two seconds' worth.
    uint64_t cap = static_cast<uint64_t>(std::ceil(cfg_.rate_hz * 2)) + 1;
    if (due > emitted_ + cap) emitted_ = due - cap;
    for (; emitted_ < due; ++emitted_) {
      double t_s = static_cast<double>(emitted_) / cfg_.rate_hz;
      int64_t ts = start_unix_ms_ + static_cast<int64_t>(t_s * 1000.0);
      for (uint32_t i = 0; i < cfg_.sensors; ++i) {
        Reading r;
        r.sensor = fmt::format("sim-{}", i);
        r.value = Value(t_s, i);
        r.unit = "C";
        r.ts_ms = ts;
        r.pad_to = cfg_.payload_bytes;
        out->push_back(std::move(r));
      }
    }
  }

 private:
  double Value(double t_s, uint32_t i) {
    if (cfg_.waveform == "random") return 20.0 + uniform_(rng_);
    if (cfg_.waveform == "ramp") return static_cast<double>(emitted_ % 100);
    if (cfg_.waveform == "constant") return 20.0 + i;
    // sine: one-minute period, each sensor phase-shifted.
    return std::round((20.0 + 5.0 * std::sin(2 * M_PI * t_s / 60.0 + i)) * 1000.0) / 1000.0;
  }

  config::SensorInputConfig cfg_;
  Clock* clock_;
  Clock::TimePoint start_;
  int64_t start_unix_ms_;
  uint64_t emitted_ = 0;  // readings per sensor emitted so far
  std::mt19937 rng_{12345};
  std::uniform_real_distribution<double> uniform_{-5.0, 5.0};
};

}  // namespace

std::unique_ptr<SensorReader> MakeSimulatedReader(const config::SensorInputConfig& cfg,
                                                  Clock* clock) {
  return std::make_unique<SimulatedReader>(cfg, clock);
}

Result<std::unique_ptr<SensorReader>> MakeReader(const config::InputConfig& cfg, Clock* clock) {
  const config::SensorInputConfig& s = *cfg.sensor;
  const std::string& kind = cfg.type;
  if (kind == "simulated") {
    if (!(s.rate_hz > 0)) {
      return Status::InvalidArgument("input " + cfg.name + ": rate_hz must be > 0");
    }
    if (s.waveform != "sine" && s.waveform != "random" && s.waveform != "ramp" &&
        s.waveform != "constant") {
      return Status::InvalidArgument("input " + cfg.name + ": waveform \"" + s.waveform +
                                     "\" is not one of sine, random, ramp, constant");
    }
    return MakeSimulatedReader(s, clock);
  }
  if (kind == "hwmon") return MakeHwmonReader(s);
  if (kind == "thermal") return MakeThermalReader(s);
  if (kind == "iio") return MakeIioReader(s);
  if (kind == "w1") return MakeW1Reader(s);
  if (kind == "system") {
    for (const auto& m : s.metrics) {
      if (m != "cpu" && m != "memory" && m != "load" && m != "disk" && m != "net") {
        return Status::InvalidArgument("input " + cfg.name + ": metric \"" + m +
                                       "\" is not one of cpu, memory, load, disk, net");
      }
    }
    return MakeSystemReader(s);
  }
  if (kind == "exec") {
    if (s.command.empty()) {
      return Status::InvalidArgument("input " + cfg.name + ": exec needs a command");
    }
    if (s.format != "json" && s.format != "kv") {
      return Status::InvalidArgument("input " + cfg.name + ": format \"" + s.format +
                                     "\" is not json or kv");
    }
    return MakeExecReader(s, clock);
  }
  return Status::InvalidArgument("input " + cfg.name + ": unknown type \"" + kind + "\"");
}

}  // namespace edgeferry::sensors
