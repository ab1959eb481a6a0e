#include "agent/daemon.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include "agent/dead_letters.h"
#include "agent/metrics.h"
#include "agent/notify.h"
#include "agent/status.h"
#include "agent/version.h"
#include "agent/watchdog.h"
#include "buffer/buffer.h"
#include "common/log.h"
#include "common/thread_name.h"
#include "forwarder/forwarder.h"
#include "sensors/sensors.h"

namespace edgeferry::agent {

using namespace std::chrono_literals;
using nlohmann::json;

namespace {

// How often the main loop does its housekeeping (status file, metrics snapshot, watchdog).
constexpr std::chrono::milliseconds kTick = 1s;
// How often STATUS= is refreshed.
constexpr std::chrono::milliseconds kStatusLineEvery = 5s;
// Watchdog allowance for loops that tick continuously (forwarder) when no WatchdogSec is set.
constexpr std::chrono::milliseconds kDefaultAllowance = 15s;

// A sink that accepts nothing: CreateInput needs one to validate a config.
class NullSink final : public RecordSink {
 public:
  Status Append(std::vector<Record>) override { return Status::Aborted("validation only"); }
};

// The forwarder's view of the buffer, with the test-only hang switch (see daemon.h). When hung,
// every call blocks until released, exactly as a stuck disk or a deadlock inside the buffer
// would block the forwarder's loop.
class FaultableSource final : public RecordSource {
 public:
  explicit FaultableSource(RecordSource* inner) : inner_(inner) {}

  void SetHung(bool hung) {
    {
      std::lock_guard lock(mu_);
      hung_ = hung;
    }
    cv_.notify_all();
  }
  bool hung() {
    std::lock_guard lock(mu_);
    return hung_;
  }

  Result<size_t> ReadInto(uint64_t after_seq, size_t max_records, size_t max_bytes,
                          std::vector<StoredRecord>* out) override {
    Gate();
    return inner_->ReadInto(after_seq, max_records, max_bytes, out);
  }
  bool WaitForRecordsAfter(uint64_t after_seq, std::chrono::milliseconds max_wait) override {
    Gate();
    return inner_->WaitForRecordsAfter(after_seq, max_wait);
  }
  Result<uint64_t> LoadCursor(std::string_view name) override { return inner_->LoadCursor(name); }
  Status CommitCursor(std::string_view name, uint64_t seq) override {
    return inner_->CommitCursor(name, seq);
  }
  Status DeadLetter(const StoredRecord& record, std::string_view reason) override {
    return inner_->DeadLetter(record, reason);
  }

 private:
  void Gate() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [this] { return !hung_; });
  }
  RecordSource* inner_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool hung_ = false;
};

// Appends a heartbeat record every interval on its own thread, so that a full buffer in
// when_full=block mode stalls the heartbeat, not the main loop.
class Heartbeat {
 public:
  Heartbeat(config::HeartbeatConfig cfg, std::string device_id, RecordSink* sink, Clock* clock)
      : cfg_(std::move(cfg)), device_id_(std::move(device_id)), sink_(sink), clock_(clock) {}
  ~Heartbeat() { Stop(); }

  void Start() {
    thread_ = std::thread([this] {
      SetThreadName("ef-heartbeat");
      Loop();
    });
  }
  void Stop() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }
  // The body of the next heartbeat (the main loop refreshes it every tick).
  void SetPayload(std::string payload) {
    std::lock_guard lock(mu_);
    payload_ = std::move(payload);
  }
  uint64_t sent() const { return sent_.load(); }

 private:
  void Loop() {
    std::unique_lock lock(mu_);
    while (!stop_) {
      if (cv_.wait_for(lock, std::chrono::seconds(cfg_.interval_s), [this] { return stop_; }))
        break;
      Record r;
      r.source = "edgeferry";
      r.topic = cfg_.topic;
      r.key = device_id_;
      r.event_time_ms = clock_->NowUnixMs();
      r.payload = payload_;
      r.headers.push_back({"content-type", "application/json"});
      lock.unlock();
      std::vector<Record> batch;
      batch.push_back(std::move(r));
      Status st = sink_->Append(std::move(batch));
      lock.lock();
      if (st.ok()) {
        ++sent_;
      } else if (st.code() != Status::Code::kAborted) {
        EF_LOG(kWarning, "agent", "heartbeat not buffered: {}", st.ToString());
      }
    }
  }

  config::HeartbeatConfig cfg_;
  std::string device_id_;
  RecordSink* sink_;
  Clock* clock_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::string payload_ = "{}";
  std::atomic<uint64_t> sent_{0};
  std::thread thread_;
};

bool SameBuffer(const config::BufferConfig& a, const config::BufferConfig& b) {
  return a.path == b.path && a.sync == b.sync && a.max_bytes == b.max_bytes &&
         a.when_full == b.when_full && a.max_age_s == b.max_age_s &&
         a.group_commit_max_records == b.group_commit_max_records &&
         a.group_commit_max_delay_ms == b.group_commit_max_delay_ms &&
         a.normal_sync_interval_ms == b.normal_sync_interval_ms &&
         a.block_timeout_ms == b.block_timeout_ms;
}

void LogErrors(std::string_view what, const std::vector<config::ConfigError>& errors) {
  for (const auto& e : errors) EF_LOG(kError, "config", "{}{}", what, e.ToString());
}

// One pipeline generation: what a reload tears down and rebuilds. The buffer is not part of it.
struct InputSlot {
  std::string name;
  std::string type;
  std::string error;  // set when the input could not be created or started
  std::unique_ptr<sensors::Input> input;
};

class Daemon {
 public:
  Daemon(std::string config_path, Clock* clock)
      : config_path_(std::move(config_path)), clock_(clock) {}

  int Run(const sigset_t& signals);

 private:
  Status StartPipeline();
  void StopPipeline(std::chrono::milliseconds grace, bool drain);
  void StartExtras();  // metrics and heartbeat
  void StopExtras();
  // Returns false when neither the new nor the old config could start a pipeline: the daemon
  // then exits 1 and systemd restarts it.
  bool Reload();
  // Reload's teardown waits for appends in progress, which under when_full=block wait for space.
  // While it runs, this watches for SIGTERM/SIGINT; on one it cancels those appends and sets
  // stop_requested_, so that a stop signal during a stuck reload still stops the daemon.
  void StopPipelineForReload(const sigset_t& signals);
  void Tick(bool force_status_line);
  Snapshot TakeSnapshot();
  void ServeCliRequest();
  void RegisterWatch();
  std::chrono::milliseconds Allowance(std::chrono::milliseconds at_least) const;

  std::string config_path_;
  Clock* clock_;
  Notifier notifier_;
  config::Config cfg_;
  int64_t started_ms_ = 0;
  bool restart_needed_ = false;
  uint64_t reloads_ = 0;
  int64_t last_reload_ms_ = 0;
  std::vector<std::string> last_reload_errors_;
  bool faults_enabled_ = false;
  bool stop_requested_ = false;  // a stop signal arrived during a reload
  sigset_t signals_{};

  std::unique_ptr<buffer::Buffer> buffer_;
  std::unique_ptr<FaultableSource> source_;
  std::unique_ptr<forwarder::Forwarder> forwarder_;
  std::shared_ptr<sensors::SensorScheduler> scheduler_;
  std::vector<InputSlot> inputs_;
  std::unique_ptr<MetricsServer> metrics_;
  std::unique_ptr<Heartbeat> heartbeat_;

  std::unique_ptr<ProgressWatch> watch_;
  std::vector<std::string> stalled_;
  Clock::TimePoint last_status_line_{};
};

std::chrono::milliseconds Daemon::Allowance(std::chrono::milliseconds at_least) const {
  auto base = kDefaultAllowance;
  if (auto w = notifier_.watchdog_timeout()) {
    // Detect a hang within half the watchdog timeout, so systemd restarts us promptly.
    base = std::chrono::duration_cast<std::chrono::milliseconds>(*w / 2);
  }
  return std::max(base, at_least);
}

void Daemon::RegisterWatch() {
  watch_ = std::make_unique<ProgressWatch>(clock_);
  if (forwarder_) {
    auto* f = forwarder_.get();
    watch_->Add(
        "forwarder", [f] { return f->ProgressTicks(); }, Allowance(2s));
  }
  for (size_t i = 0; i < inputs_.size(); ++i) {
    auto& slot = inputs_[i];
    if (!slot.input) continue;
    const auto& ic = cfg_.inputs[i];
    std::chrono::milliseconds at_least = 10s;
    if (ic.sensor) {
      // A sensor input ticks once per poll: allow two polls plus a read timeout.
      at_least = std::chrono::milliseconds(2ull * ic.sensor->interval_ms + ic.sensor->jitter_ms +
                                           ic.sensor->timeout_ms) +
                 2s;
    }
    auto* in = slot.input.get();
    watch_->Add(
        "input " + slot.name, [in] { return in->ProgressTicks(); }, Allowance(at_least));
  }
}

Status Daemon::StartPipeline() {
  forwarder::Options opts;
  opts.device_id = cfg_.device_id;
  opts.clock = clock_;
  for (const auto& in : cfg_.inputs) {
    if (!in.topic.empty()) opts.input_topics[in.name] = in.topic;
  }
  auto fwd = forwarder::Forwarder::Create(cfg_.kafka, opts, source_.get());
  if (!fwd.ok()) return fwd.status();
  forwarder_ = std::move(fwd).value();
  if (Status st = forwarder_->Start(); !st.ok()) {
    forwarder_.reset();
    return st;
  }

  // Inputs last: from here on readings flow. One that cannot start is reported (log, status,
  // metrics) and the others run: a broken sensor must not stop the MQTT input.
  scheduler_ = sensors::NewSensorScheduler(clock_);
  inputs_.clear();
  for (size_t i = 0; i < cfg_.inputs.size(); ++i) {
    const auto& ic = cfg_.inputs[i];
    InputSlot slot{ic.name, ic.type, "", nullptr};
    if (!ic.enabled) {
      slot.error = "disabled in the config";
      inputs_.push_back(std::move(slot));
      continue;
    }
    auto in = sensors::CreateInput(ic, cfg_.device_id, buffer_.get(), clock_, scheduler_);
    if (!in.ok()) {
      slot.error = in.status().ToString();
    } else if (Status st = (*in)->Start(); !st.ok()) {
      slot.error = st.ToString();
    } else {
      slot.input = std::move(in).value();
    }
    if (!slot.error.empty()) {
      EF_LOG(kError, "agent", "input {} ({}) not running: {}", ic.name, ic.type, slot.error);
    } else {
      EF_LOG(kInfo, "agent", "input {} ({}) started", ic.name, ic.type);
    }
    inputs_.push_back(std::move(slot));
  }
  RegisterWatch();
  return Status::Ok();
}

void Daemon::StopPipeline(std::chrono::milliseconds grace, bool drain) {
  // Inputs first: Stop() returns after every Append that had started has finished, so from here
  // on nothing new enters the buffer.
  for (auto& slot : inputs_) {
    if (slot.input) slot.input->Stop();
  }
  if (heartbeat_) {
    heartbeat_->Stop();
    heartbeat_.reset();
  }
  if (source_) source_->SetHung(false);  // a test hang must not block shutdown
  if (forwarder_) {
    auto deadline = clock_->Now() + grace;
    if (drain && buffer_) {
      // On shutdown, let the forwarder catch up with what the inputs appended, within the grace
      // period, so that a clean stop leaves nothing behind while Kafka is reachable. A second
      // SIGTERM/SIGINT cuts this short.
      uint64_t last = buffer_->LastSeq();
      sigset_t term;
      sigemptyset(&term);
      sigaddset(&term, SIGTERM);
      sigaddset(&term, SIGINT);
      while (forwarder_->GetStats().cursor < last && clock_->Now() < deadline) {
        timespec ts{0, 50'000'000};
        if (sigtimedwait(&term, nullptr, &ts) > 0) {
          EF_LOG(kWarning, "agent", "second stop signal: not waiting for the backlog");
          break;
        }
      }
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock_->Now());
    forwarder_->Stop(std::max(left, std::chrono::milliseconds(0)));
    forwarder_.reset();
  }
  inputs_.clear();
  scheduler_.reset();
  watch_.reset();
}

void Daemon::StartExtras() {
  if (cfg_.metrics.enabled) {
    auto m = MetricsServer::Start(cfg_.metrics.listen);
    if (!m.ok()) {
      EF_LOG(kError, "agent", "metrics disabled: {}", m.status().ToString());
    } else {
      metrics_ = std::move(m).value();
      EF_LOG(kInfo, "agent", "metrics on http://{}/metrics", cfg_.metrics.listen);
    }
  }
  if (cfg_.heartbeat.enabled) {
    heartbeat_ = std::make_unique<Heartbeat>(cfg_.heartbeat, cfg_.device_id, buffer_.get(), clock_);
    heartbeat_->Start();
  }
}

void Daemon::StopExtras() {
  heartbeat_.reset();
  metrics_.reset();
}

Snapshot Daemon::TakeSnapshot() {
  Snapshot s;
  s.pid = static_cast<int>(getpid());
  s.version = kVersion;
  s.device_id = cfg_.device_id;
  s.config_path = config_path_;
  s.buffer_path = cfg_.buffer.path;
  s.started_unix_ms = started_ms_;
  s.updated_unix_ms = clock_->NowUnixMs();
  if (buffer_) s.buffer = buffer_->GetStats();
  if (forwarder_) s.kafka = forwarder_->GetStats();
  for (const auto& slot : inputs_) {
    InputSnapshot in{slot.name, slot.type, slot.error, {}};
    if (slot.input) in.stats = slot.input->Stats();
    s.inputs.push_back(std::move(in));
  }
  s.stalled_loops = stalled_;
  s.heartbeats = heartbeat_ ? heartbeat_->sent() : 0;
  s.restart_needed = restart_needed_;
  s.reloads = reloads_;
  s.last_reload_unix_ms = last_reload_ms_;
  s.last_reload_errors = last_reload_errors_;
  return s;
}

void Daemon::Tick(bool force_status_line) {
  stalled_ = watch_ ? watch_->Stalled() : std::vector<std::string>{};
  Snapshot snap = TakeSnapshot();

  // The watchdog is petted only while every loop moves. A hung loop is logged once per minute.
  if (stalled_.empty()) {
    if (notifier_.watchdog_timeout()) notifier_.Watchdog();
  } else {
    static RateLimiter limiter(std::chrono::minutes(1));
    uint64_t suppressed = 0;
    if (limiter.Allow("stalled", &suppressed)) {
      EF_LOG(kError, "agent", "main loop stalled: {}; not petting the systemd watchdog",
             stalled_.front());
    }
  }

  if (Status st = WriteStatusFile(DaemonStatusFilePath(cfg_.buffer), snap); !st.ok()) {
    static RateLimiter limiter(std::chrono::minutes(5));
    uint64_t suppressed = 0;
    if (limiter.Allow("status-file", &suppressed)) {
      EF_LOG(kWarning, "agent", "status file not written: {}", st.ToString());
    }
  }
  if (metrics_) metrics_->Publish(RenderMetrics(snap, snap.updated_unix_ms));
  if (heartbeat_) {
    json hb = {{"device_id", snap.device_id},
               {"version", snap.version},
               {"uptime_s", (snap.updated_unix_ms - snap.started_unix_ms) / 1000},
               {"backlog_records", snap.buffer.records},
               {"backlog_bytes", snap.buffer.bytes},
               {"oldest_undelivered_age_ms", snap.buffer.oldest_undelivered_age_ms},
               {"drops", snap.buffer.drops},
               {"last_error", snap.kafka.last_error},
               {"sent_unix_ms", snap.updated_unix_ms}};
    heartbeat_->SetPayload(hb.dump(-1, ' ', false, json::error_handler_t::replace));
  }
  auto now = clock_->Now();
  if (force_status_line || now - last_status_line_ >= kStatusLineEvery) {
    notifier_.Status(StatusLine(snap));
    last_status_line_ = now;
  }
}

bool Daemon::Reload() {
  notifier_.Reloading();
  EF_LOG(kInfo, "agent", "SIGHUP: reloading {}", config_path_);
  config::LoadResult lr = config::LoadFile(config_path_);
  std::vector<config::ConfigError> errors = lr.errors;
  if (errors.empty()) errors = ValidateComponents(*lr.config);
  ++reloads_;
  last_reload_ms_ = clock_->NowUnixMs();
  last_reload_errors_.clear();
  if (!errors.empty()) {
    LogErrors("reload rejected, the running config stays: ", errors);
    for (const auto& e : errors) last_reload_errors_.push_back(e.ToString());
    Tick(/*force_status_line=*/true);
    notifier_.Ready();
    return true;
  }
  config::Config next = std::move(*lr.config);
  if (!SameBuffer(next.buffer, cfg_.buffer)) {
    EF_LOG(kWarning, "agent",
           "reload: buffer settings changed; they take effect after a restart (the running "
           "buffer keeps its settings)");
    next.buffer = cfg_.buffer;
    restart_needed_ = true;
  }

  config::Config previous = cfg_;
  StopPipelineForReload(signals_);
  if (stop_requested_) return true;  // the main loop stops; no new pipeline
  cfg_ = std::move(next);
  LogLevel level;
  if (ParseLogLevel(cfg_.log_level, &level)) SetLogLevel(level);
  if (Status st = StartPipeline(); !st.ok()) {
    EF_LOG(kError, "agent", "reload: new pipeline did not start ({}); going back to the old config",
           st.ToString());
    StopPipeline(0ms, false);
    cfg_ = std::move(previous);
    if (Status st2 = StartPipeline(); !st2.ok()) {
      EF_LOG(kError, "agent", "the old config does not start either: {}; exiting", st2.ToString());
      return false;
    }
  }
  StartExtras();
  Tick(/*force_status_line=*/true);
  notifier_.Ready();
  EF_LOG(kInfo, "agent", "reload done: {} input(s)", inputs_.size());
  return true;
}

void Daemon::StopPipelineForReload(const sigset_t& signals) {
  // A reload must not wait for buffer space (when_full=block, Kafka down: that can be days), so
  // appends blocked now are cancelled: they stored nothing and acknowledged nothing (an MQTT
  // message stays unacknowledged and the broker redelivers it to the new pipeline); a local
  // sensor reading is counted as an append error. The new pipeline's appends wait again.
  buffer::Buffer* buf = buffer_.get();
  if (buf) buf->CancelBlockedAppends();
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  for (int s : {SIGTERM, SIGINT})
    if (sigismember(&signals, s) == 1) sigaddset(&stop_signals, s);
  std::atomic<bool> done{false};
  std::atomic<bool> stop{false};
  std::thread watcher([&] {
    SetThreadName("ef-reload");
    // Signals are blocked in every thread, so sigtimedwait here takes a pending one.
    while (!done.load()) {
      timespec ts{0, 50'000'000};
      int sig = sigtimedwait(&stop_signals, nullptr, &ts);
      if (sig == SIGTERM || sig == SIGINT) {
        EF_LOG(kInfo, "agent", "{} during reload: stopping after it",
               sig == SIGTERM ? "SIGTERM" : "SIGINT");
        stop = true;
        return;
      }
    }
  });
  StopExtras();
  StopPipeline(std::chrono::milliseconds(cfg_.kafka.shutdown_grace_ms), /*drain=*/false);
  done = true;
  watcher.join();
  stop_requested_ = stop.load();
  if (buf && !stop_requested_) buf->AllowBlockedAppends();
}

void Daemon::ServeCliRequest() {
  std::ifstream in(RequestPath(cfg_.buffer));
  json req;
  try {
    in >> req;
  } catch (const json::exception& e) {
    EF_LOG(kWarning, "agent", "SIGUSR1 without a readable request file: {}", e.what());
    return;
  }
  std::remove(RequestPath(cfg_.buffer).c_str());
  json resp = ServeRequest(*buffer_, req);
  EF_LOG(kInfo, "agent", "served CLI request {}: {}", req.value("op", std::string("?")),
         resp.value("ok", false) ? "ok" : resp.value("error", std::string()));
  std::string tmp = ResponsePath(cfg_.buffer) + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << resp.dump(-1, ' ', false, json::error_handler_t::replace) << '\n';
  }
  std::rename(tmp.c_str(), ResponsePath(cfg_.buffer).c_str());
}

int Daemon::Run(const sigset_t& signals) {
  started_ms_ = clock_->NowUnixMs();
  signals_ = signals;
  config::LoadResult lr = config::LoadFile(config_path_);
  if (lr.errors.empty()) lr.errors = ValidateComponents(*lr.config);
  if (!lr.errors.empty()) {
    LogErrors("", lr.errors);
    EF_LOG(kError, "agent",
           "{}: {} error(s); not starting (check with: edgeferry check-config -c {})", config_path_,
           lr.errors.size(), config_path_);
    return kExitBadConfig;
  }
  cfg_ = std::move(*lr.config);
  LogLevel level;
  if (ParseLogLevel(cfg_.log_level, &level)) SetLogLevel(level);
  faults_enabled_ = std::getenv("EDGEFERRY_TEST_FAULTS") != nullptr &&
                    std::string(std::getenv("EDGEFERRY_TEST_FAULTS")) == "1";
  EF_LOG(kInfo, "agent", "edgeferry {} (librdkafka {}) starting: device {}, config {}", kVersion,
         forwarder::LibrdkafkaVersion(), cfg_.device_id, config_path_);
  if (faults_enabled_)
    EF_LOG(kWarning, "agent", "test fault hooks enabled (EDGEFERRY_TEST_FAULTS)");

  auto buf = buffer::Buffer::Open(cfg_.buffer, clock_);
  if (!buf.ok()) {
    EF_LOG(kError, "agent", "buffer {}: {}", cfg_.buffer.path, buf.status().ToString());
    return kExitFailure;
  }
  buffer_ = std::move(buf).value();
  source_ = std::make_unique<FaultableSource>(buffer_.get());
  if (Status st = StartPipeline(); !st.ok()) {
    EF_LOG(kError, "agent", "kafka: {}", st.ToString());
    return st.code() == Status::Code::kInvalidArgument ? kExitBadConfig : kExitFailure;
  }
  StartExtras();
  Tick(/*force_status_line=*/true);
  notifier_.Ready();
  EF_LOG(kInfo, "agent", "ready: {} input(s), buffer {} ({} records held)", inputs_.size(),
         cfg_.buffer.path, buffer_->GetStats().records);

  std::chrono::milliseconds tick = kTick;
  if (auto w = notifier_.watchdog_timeout()) {
    tick = std::min(tick, std::chrono::duration_cast<std::chrono::milliseconds>(*w / 4));
    tick = std::max(tick, std::chrono::milliseconds(10));
  }
  auto next_tick = clock_->Now() + tick;
  bool stop = false;
  int exit_code = kExitOk;
  while (!stop) {
    auto wait = std::chrono::duration_cast<std::chrono::nanoseconds>(next_tick - clock_->Now());
    if (wait.count() < 0) wait = std::chrono::nanoseconds(0);
    timespec ts{static_cast<time_t>(wait.count() / 1'000'000'000),
                static_cast<long>(wait.count() % 1'000'000'000)};
    int sig = sigtimedwait(&signals, nullptr, &ts);
    switch (sig) {
      case SIGTERM:
      case SIGINT:
        EF_LOG(kInfo, "agent", "{}: stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
        stop = true;
        break;
      case SIGHUP:
        if (!Reload()) {
          stop = true;
          exit_code = kExitFailure;
        } else if (stop_requested_) {
          stop = true;
        }
        break;
      case SIGUSR1:
        ServeCliRequest();
        break;
      case SIGUSR2:
        if (faults_enabled_) {
          bool hang = !source_->hung();
          source_->SetHung(hang);
          EF_LOG(kWarning, "agent", "test fault: forwarder reads {}", hang ? "hung" : "released");
        }
        break;
      default:
        break;  // timeout or EINTR
    }
    if (!stop && clock_->Now() >= next_tick) {
      Tick(false);
      next_tick = clock_->Now() + tick;
    }
  }

  notifier_.Stopping();
  notifier_.Status("stopping: delivering what is in flight");
  // Before the inputs stop: their Stop waits for an Append in progress, which under
  // when_full=block (block_timeout_ms 0: for ever) waits for space that a Kafka outage never
  // frees. Cancelled appends stored nothing and their callers do not acknowledge them (an MQTT
  // message stays at the broker and is redelivered); appends that fit are still stored.
  buffer_->CancelBlockedAppends();
  StopPipeline(std::chrono::milliseconds(cfg_.kafka.shutdown_grace_ms), /*drain=*/true);
  StopExtras();
  buffer::Stats final_stats = buffer_->GetStats();
  auto cursor = final_stats.cursors.find(std::string(buffer::kForwarderCursor));
  // The cursor's lag, not `records`: delivered records may still be waiting for the writer's
  // trim (it runs after CommitCursor returns) and are not left for anyone.
  EF_LOG(kInfo, "agent", "stopped: cursor {}, last seq {}, {} record(s) left for the next start",
         cursor == final_stats.cursors.end() ? 0 : cursor->second.seq, final_stats.last_seq,
         cursor == final_stats.cursors.end() ? final_stats.records : cursor->second.lag_records);
  source_.reset();
  buffer_.reset();  // closes the database after its writer has committed everything queued
  std::remove(DaemonStatusFilePath(cfg_.buffer).c_str());
  return exit_code;
}

}  // namespace

std::vector<config::ConfigError> ValidateComponents(const config::Config& cfg) {
  std::vector<config::ConfigError> errors;
  for (const auto& msg : forwarder::ValidateKafkaConfig(cfg.kafka))
    errors.push_back({"/kafka", msg});
  NullSink sink;
  for (size_t i = 0; i < cfg.inputs.size(); ++i) {
    if (!cfg.inputs[i].enabled) continue;
    auto in = sensors::CreateInput(cfg.inputs[i], cfg.device_id, &sink);
    if (!in.ok()) errors.push_back({"/inputs/" + std::to_string(i), in.status().message()});
  }
  return errors;
}

int RunDaemon(const std::string& config_path) {
  // Block the signals we wait for before any thread exists, so that every thread inherits the
  // mask and sigtimedwait in this thread is the only place they are taken.
  sigset_t signals;
  sigemptyset(&signals);
  for (int s : {SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2}) sigaddset(&signals, s);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);  // a peer closing a socket is an error value, not a death

  Daemon daemon(config_path, SystemClock());
  return daemon.Run(signals);
}

}  // namespace edgeferry::agent
