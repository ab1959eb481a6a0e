// bench_sensors: how fast the MQTT input gets messages durably into the real buffer, against the
// ceiling of a bare Paho subscriber reading the same stream from the same broker in the same run;
// and the CPU cost of the local sensor scheduler per 1,000 readings.
//
// edgeferry is the real MQTT input (sensors/mqtt_session.cc: every PUBLISH already read is
// appended in one call, then acknowledged in order) over the real SQLite buffer, at sync normal
// and full, with 1, 4 and 16 connections ($share when > 1).
//
// Method (MQTT): each consumer first subscribes with a persistent session and goes away; N QoS 1
// messages are then published and queued by Mosquitto; the consumer reconnects and the clock
// runs from the first message to the N-th (durably appended, for edgeferry), so connection
// set-up is excluded. The publisher is
// therefore outside the measured window and never the bottleneck; both consumers face the same
// broker limits (max_inflight_messages 100, the rig's settings).
//
//   bench_sensors [--n 50000] [--n-full 20000] [--payload 100]
#include <fmt/format.h>
#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <thread>
#include <tuple>

#include "buffer/buffer.h"
#include "common/log.h"
#include "sensors/sensors.h"
#include "tests/rig/rig.h"
#include "tests/sensors/mqtt_publisher.h"

namespace ef = edgeferry;
namespace rig = edgeferry::rig;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// CPU time of this whole process. Inside a measured window only the consumer under test runs here
// (the publisher finished before it; Mosquitto is another process), so the difference is the
// consumer's cost, including the buffer's writer thread for edgeferry.
double CpuSeconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

// A consumer's rate (first message to the n-th) and its CPU cost over the same window.
struct Measured {
  double rate = 0;
  double cpu_s_per_million = 0;
};

// Publishes n QoS 1 messages with up to 1000 in flight; returns when the broker acked them all.
void PublishQueued(const rig::Mosquitto& broker, const std::string& topic, int n, size_t payload) {
  ef::sensors::testing::Publisher pub(broker.uri(), rig::UniqueName("benchpub"));
  std::deque<mqtt::delivery_token_ptr> window;
  std::string body(payload, 'p');
  for (int i = 0; i < n; ++i) {
    std::string msg = fmt::format("{:08d}", i) + body.substr(std::min<size_t>(8, payload));
    window.push_back(pub.PublishAsync(topic, msg, 1));
    if (window.size() >= 1000) {
      window.front()->wait();
      window.pop_front();
    }
  }
  for (auto& t : window) t->wait();
}

// The ceiling: a Paho async subscriber whose callback only counts.
Measured BareSubscriberRate(const rig::Mosquitto& broker, int n, size_t payload) {
  const std::string id = rig::UniqueName("bare");
  const std::string topic = "bench/bare";
  struct Counter : public mqtt::callback {
    std::atomic<int> count{0};
    void message_arrived(mqtt::const_message_ptr) override { ++count; }
  };
  auto connect = [&](mqtt::async_client& c) {
    mqtt::connect_options o;
    o.set_mqtt_version(MQTTVERSION_5);
    o.set_clean_start(false);
    o.set_properties({mqtt::property(mqtt::property::SESSION_EXPIRY_INTERVAL, 3600)});
    return c.connect(o)->get_connect_response().is_session_present();
  };
  {
    mqtt::async_client c(broker.uri(), id, mqtt::create_options(MQTTVERSION_5), nullptr);
    connect(c);
    c.subscribe(topic, 1)->wait();
    c.disconnect()->wait();
  }
  PublishQueued(broker, topic, n, payload);
  Counter counter;
  mqtt::async_client c(broker.uri(), id, mqtt::create_options(MQTTVERSION_5), nullptr);
  c.set_callback(counter);
  connect(c);
  // From the first message to the last: connection set-up is not part of the rate.
  while (counter.count < 1) std::this_thread::sleep_for(100us);
  auto start = Clock::now();
  double cpu0 = CpuSeconds();
  while (counter.count < n) std::this_thread::sleep_for(1ms);
  Measured m{(n - 1) / Seconds(Clock::now() - start), (CpuSeconds() - cpu0) * 1e6 / (n - 1)};
  c.disconnect()->wait();
  return m;
}

// The MQTT input over the SQLite buffer at `sync`, with `connections` ($share when > 1).
Measured EdgeferryRate(const rig::Mosquitto& broker, int n, size_t payload,
                       ef::config::SyncMode sync, uint32_t connections) {
  rig::TempDir dir("ef-bench");
  ef::config::BufferConfig bc;
  bc.path = (dir / "buffer.db").string();
  bc.sync = sync;
  bc.max_bytes = 2ull << 30;
  auto buf = ef::buffer::Buffer::Open(bc);
  if (!buf.ok()) throw std::runtime_error(buf.status().ToString());

  const std::string topic = rig::UniqueName("bench/ef");
  ef::config::InputConfig cfg;
  cfg.name = "bench";
  cfg.type = "mqtt";
  ef::config::MqttInputConfig m;
  m.uris = {broker.uri()};
  m.client_id = rig::UniqueName("ef");
  m.connections = connections;
  m.subscriptions = {{connections > 1 ? "$share/bench/" + topic : topic, 1}};
  cfg.mqtt = m;
  {
    auto in = ef::sensors::CreateInput(cfg, "bench", buf->get());
    if (!in.ok()) throw std::runtime_error(in.status().ToString());
    (void)(*in)->Start();
    while ((*in)->Stats().state != "connected") std::this_thread::sleep_for(5ms);
    (*in)->Stop();
  }
  PublishQueued(broker, topic, n, payload);
  auto in = ef::sensors::CreateInput(cfg, "bench", buf->get());
  (void)(*in)->Start();
  while ((*in)->Stats().accepted < 1) std::this_thread::sleep_for(100us);
  auto start = Clock::now();
  double cpu0 = CpuSeconds();
  while ((*in)->Stats().accepted < static_cast<uint64_t>(n)) std::this_thread::sleep_for(1ms);
  Measured measured{(n - 1) / Seconds(Clock::now() - start), (CpuSeconds() - cpu0) * 1e6 / (n - 1)};
  (*in)->Stop();
  // The figure counts only if exactly the n messages were stored once (no redelivery inflated
  // it): say so otherwise.
  ef::sensors::InputStats st = (*in)->Stats();
  uint64_t stored = (*buf)->GetStats().last_seq;
  if (stored != static_cast<uint64_t>(n) || st.errors != 0 || st.accepted != stored) {
    fmt::print("  !! check failed: {} stored, {} accepted, {} errors for {} published\n", stored,
               st.accepted, st.errors, n);
  }
  return measured;
}

// Accepts and counts; costs nothing, so the figure is the scheduler + readers + JSON.
class NullSink final : public ef::RecordSink {
 public:
  ef::Status Append(std::vector<ef::Record> records) override {
    count += records.size();
    return ef::Status::Ok();
  }
  std::atomic<uint64_t> count{0};
};

void SchedulerCost(const std::string& label, const ef::config::InputConfig& cfg,
                   std::chrono::seconds duration) {
  NullSink sink;
  auto sched = ef::sensors::NewSensorScheduler();
  auto in = ef::sensors::CreateInput(cfg, "bench", &sink, ef::SystemClock(), sched);
  if (!in.ok()) throw std::runtime_error(in.status().ToString());
  double cpu0 = CpuSeconds();
  auto t0 = Clock::now();
  (void)(*in)->Start();
  std::this_thread::sleep_for(duration);  // the measurement window
  (*in)->Stop();
  double cpu = CpuSeconds() - cpu0;
  double wall = Seconds(Clock::now() - t0);
  uint64_t n = sink.count.load();
  fmt::print(
      "  {:<44} {:>8} readings in {:.1f} s: {:.3f} ms CPU per 1,000 readings ({:.1f}% of one "
      "core)\n",
      label, n, wall, n ? cpu * 1e6 / static_cast<double>(n) : 0.0, 100.0 * cpu / wall);
}

}  // namespace

int main(int argc, char** argv) {
  int n = 50000, n_full = 20000;
  size_t payload = 100;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i];
    if (k == "--n") n = std::stoi(argv[i + 1]);
    if (k == "--n-full") n_full = std::stoi(argv[i + 1]);
    if (k == "--payload") payload = std::stoul(argv[i + 1]);
  }
  ef::SetLogLevel(ef::LogLevel::kWarning);
  double load[3] = {0, 0, 0};
  if (getloadavg(load, 3) < 0) load[0] = -1;
  fmt::print("bench_sensors (load average {:.2f}, {} CPUs: compare figures within one run only)\n",
             load[0], std::thread::hardware_concurrency());
  try {
    rig::Mosquitto broker;
    fmt::print("MQTT -> buffer, QoS 1, {}-byte payloads, messages queued at Mosquitto first\n",
               payload);
    Measured bare = BareSubscriberRate(broker, n, payload);
    fmt::print(
        "  bare Paho subscriber (ceiling)            {:>9.0f} msg/s  {:5.2f} CPU-s/M  (n={})\n",
        bare.rate, bare.cpu_s_per_million, n);
    for (auto [sync, name, count] : {std::tuple{ef::config::SyncMode::kNormal, "normal", n},
                                     std::tuple{ef::config::SyncMode::kFull, "full", n_full}}) {
      for (uint32_t c : {1u, 4u, 16u}) {
        Measured ef = EdgeferryRate(broker, count, payload, sync, c);
        fmt::print(
            "  edgeferry sync={:<6} {:>2} connection(s)  {:>9.0f} msg/s  {:5.2f} CPU-s/M  ratio "
            "{:.2f}{} (n={})\n",
            name, c, ef.rate, ef.cpu_s_per_million, ef.rate / bare.rate,
            sync == ef::config::SyncMode::kNormal && c == 1 ? " (target >= 0.90)" : "", count);
      }
    }
    // The ceiling again, so that a drift of the shared machine during the run shows.
    Measured bare2 = BareSubscriberRate(broker, n, payload);
    fmt::print("  bare Paho subscriber again              {:>9.0f} msg/s  {:5.2f} CPU-s/M\n",
               bare2.rate, bare2.cpu_s_per_million);
  } catch (const std::exception& e) {
    fmt::print(stderr, "MQTT part failed: {}\n", e.what());
    return 1;
  }

  fmt::print("Local sensor scheduler CPU cost (null sink: scheduler + reader + JSON record)\n");
  {
    ef::config::InputConfig cfg;
    cfg.name = "sim";
    cfg.type = "simulated";
    cfg.sensor = ef::config::SensorInputConfig{};
    cfg.sensor->sensors = 10;
    cfg.sensor->rate_hz = 1000;
    SchedulerCost("simulated, 10 sensors x 1000 Hz", cfg, 5s);
  }
  {
    rig::TempDir tree("ef-bench-sysfs");
    for (int c = 0; c < 5; ++c) {
      auto dir = tree.path() / "class/hwmon" / fmt::format("hwmon{}", c);
      std::filesystem::create_directories(dir);
      std::ofstream(dir / "name") << "chip" << c << "\n";
      for (int t = 1; t <= 10; ++t) {
        std::ofstream(dir / fmt::format("temp{}_input", t)) << 40000 + t << "\n";
        std::ofstream(dir / fmt::format("temp{}_label", t)) << "sensor " << t << "\n";
      }
    }
    ef::config::InputConfig cfg;
    cfg.name = "hw";
    cfg.type = "hwmon";
    cfg.sensor = ef::config::SensorInputConfig{};
    cfg.sensor->sysfs_root = tree.path().string();
    cfg.sensor->interval_ms = 10;
    SchedulerCost("hwmon fake tree, 50 channels every 10 ms", cfg, 5s);
  }
  return 0;
}
