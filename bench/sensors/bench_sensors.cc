// bench_sensors: how fast the MQTT input gets messages durably into the real buffer, against the
// ceiling of a bare Paho subscriber reading the same stream from the same broker in the same run;
// and the CPU cost of the local sensor scheduler per 1,000 readings.
//
// Method (MQTT): each consumer first subscribes with a persistent session and goes away; N QoS 1
// messages are then published and queued by Mosquitto; the consumer reconnects and the clock
// runs from the first message to the N-th (durably appended, for edgeferry), so connection
// set-up is excluded. The publisher is
// therefore outside the measured window and never the bottleneck; both consumers face the same
// broker limits (max_inflight_messages 100, the rig's settings).
//
//   bench_sensors [--n 50000] [--n-full 3000] [--payload 100]
#include <fmt/format.h>
#include <sys/resource.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <thread>

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
double BareSubscriberRate(const rig::Mosquitto& broker, int n, size_t payload) {
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
  while (counter.count < n) std::this_thread::sleep_for(1ms);
  double rate = (n - 1) / Seconds(Clock::now() - start);
  c.disconnect()->wait();
  return rate;
}

// The MQTT input over the SQLite buffer at `sync`, with `connections` ($share when > 1).
double EdgeferryRate(const rig::Mosquitto& broker, int n, size_t payload, ef::config::SyncMode sync,
                     uint32_t connections) {
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
  while ((*in)->Stats().accepted < static_cast<uint64_t>(n)) std::this_thread::sleep_for(1ms);
  double rate = (n - 1) / Seconds(Clock::now() - start);
  (*in)->Stop();
  return rate;
}

// ---- A prototype, for measurement only: a minimal MQTT 3.1.1 subscriber (plain TCP, QoS 1) that
// appends every PUBLISH it has read so far in ONE Append and then sends their PUBACKs, in order.
// This is what Paho does not allow (it acks each message when its callback returns); the figure
// shows what batched acknowledgement after a group commit would give on the same broker.
namespace raw {

void Put16(std::string* b, uint16_t v) {
  b->push_back(static_cast<char>(v >> 8));
  b->push_back(static_cast<char>(v & 0xff));
}
void PutStr(std::string* b, const std::string& s) {
  Put16(b, static_cast<uint16_t>(s.size()));
  b->append(s);
}
std::string Packet(uint8_t type, const std::string& body) {
  std::string p(1, static_cast<char>(type));
  size_t len = body.size();
  do {
    uint8_t byte = len % 128;
    len /= 128;
    if (len) byte |= 0x80;
    p.push_back(static_cast<char>(byte));
  } while (len);
  return p + body;
}
void WriteAll(int fd, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n <= 0) throw std::runtime_error("raw mqtt: write failed");
    off += static_cast<size_t>(n);
  }
}

class Client {
 public:
  Client(int port, const std::string& client_id) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      throw std::runtime_error("raw mqtt: connect failed");
    }
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    std::string body;
    PutStr(&body, "MQTT");
    body.push_back(4);  // 3.1.1
    body.push_back(0);  // clean session off
    Put16(&body, 60);   // keepalive
    PutStr(&body, client_id);
    WriteAll(fd_, Packet(0x10, body));
    auto [type, pkt] = Next();
    if (type != 0x20 || pkt.size() < 2 || pkt[1] != 0) throw std::runtime_error("raw: CONNACK");
  }
  ~Client() {
    WriteAll(fd_, std::string("\xe0\x00", 2));
    ::close(fd_);
  }
  void Subscribe(const std::string& filter) {
    std::string body;
    Put16(&body, 1);
    PutStr(&body, filter);
    body.push_back(1);
    WriteAll(fd_, Packet(0x82, body));
    while (Next().first != 0x90) {
    }
  }
  // Reads packets; every complete PUBLISH already received is appended in one call, then acked.
  void Consume(ef::RecordSink* sink, int n, Clock::time_point* first) {
    int got = 0;
    while (got < n) {
      Fill(/*block=*/true);
      std::vector<ef::Record> batch;
      std::string acks;
      while (true) {
        auto pkt = TryParse();
        if (!pkt) {
          if (!Fill(/*block=*/false)) break;
          continue;
        }
        if ((pkt->first & 0xf0) != 0x30) continue;
        const std::string& b = pkt->second;
        size_t tl = (static_cast<uint8_t>(b[0]) << 8) | static_cast<uint8_t>(b[1]);
        ef::Record r;
        r.source = "raw";
        r.headers.push_back({"mqtt.topic", b.substr(2, tl)});
        size_t off = 2 + tl;
        if (pkt->first & 0x06) {  // QoS 1/2: packet id
          acks += Packet(0x40, b.substr(off, 2));
          off += 2;
        }
        r.payload = b.substr(off);
        batch.push_back(std::move(r));
      }
      if (batch.empty()) continue;
      if (got == 0) *first = Clock::now();
      got += static_cast<int>(batch.size());
      ef::Status st = sink->Append(std::move(batch));
      if (!st.ok()) throw std::runtime_error(st.ToString());
      WriteAll(fd_, acks);  // after the durable append, in order
    }
  }

 private:
  // Reads what is available (blocking for the first byte if asked). False if nothing was read.
  bool Fill(bool block) {
    char buf[1 << 16];
    ssize_t n = ::recv(fd_, buf, sizeof buf, block ? 0 : MSG_DONTWAIT);
    if (n == 0) throw std::runtime_error("raw mqtt: connection closed");
    if (n < 0) {
      if (!block && (errno == EAGAIN || errno == EWOULDBLOCK)) return false;
      throw std::runtime_error("raw mqtt: read failed");
    }
    in_.append(buf, static_cast<size_t>(n));
    return true;
  }
  std::optional<std::pair<uint8_t, std::string>> TryParse() {
    size_t len = 0, mult = 1, i = 1;
    while (true) {
      if (i >= in_.size()) return std::nullopt;
      uint8_t byte = static_cast<uint8_t>(in_[i++]);
      len += (byte & 0x7f) * mult;
      mult *= 128;
      if (!(byte & 0x80)) break;
    }
    if (in_.size() < i + len) return std::nullopt;
    auto out = std::make_pair(static_cast<uint8_t>(in_[0]), in_.substr(i, len));
    in_.erase(0, i + len);
    return out;
  }
  std::pair<uint8_t, std::string> Next() {
    while (true) {
      if (auto p = TryParse()) return *p;
      Fill(true);
    }
  }
  int fd_ = -1;
  std::string in_;
};

}  // namespace raw

double BatchedAckRate(const rig::Mosquitto& broker, int n, size_t payload,
                      ef::config::SyncMode sync) {
  rig::TempDir dir("ef-bench-raw");
  ef::config::BufferConfig bc;
  bc.path = (dir / "buffer.db").string();
  bc.sync = sync;
  bc.max_bytes = 2ull << 30;
  auto buf = ef::buffer::Buffer::Open(bc);
  if (!buf.ok()) throw std::runtime_error(buf.status().ToString());
  const std::string topic = rig::UniqueName("bench/raw");
  const std::string id = rig::UniqueName("raw");
  { raw::Client(broker.port(), id).Subscribe(topic); }
  PublishQueued(broker, topic, n, payload);
  raw::Client c(broker.port(), id);
  Clock::time_point first;
  c.Consume(buf->get(), n, &first);
  return (n - 1) / Seconds(Clock::now() - first);
}

double CpuSeconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
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
  int n = 50000, n_full = 3000;
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
    double bare = BareSubscriberRate(broker, n, payload);
    fmt::print("  bare Paho subscriber (ceiling)          {:>9.0f} msg/s  (n={})\n", bare, n);
    double normal = EdgeferryRate(broker, n, payload, ef::config::SyncMode::kNormal, 1);
    fmt::print(
        "  edgeferry sync=normal, 1 connection     {:>9.0f} msg/s  ratio {:.2f} "
        "(target >= 0.90)\n",
        normal, normal / bare);
    double raw_normal = BatchedAckRate(broker, n, payload, ef::config::SyncMode::kNormal);
    fmt::print(
        "  prototype batched-ack client, normal    {:>9.0f} msg/s  ratio {:.2f} "
        "(measurement only, not the product)\n",
        raw_normal, raw_normal / bare);
    double raw_full = BatchedAckRate(broker, n_full, payload, ef::config::SyncMode::kFull);
    fmt::print("  prototype batched-ack client, full      {:>9.0f} msg/s  ratio {:.3f} (n={})\n",
               raw_full, raw_full / bare, n_full);
    for (uint32_t c : {1u, 4u, 16u}) {
      double full = EdgeferryRate(broker, n_full, payload, ef::config::SyncMode::kFull, c);
      fmt::print(
          "  edgeferry sync=full, {:>2} connection(s)  {:>9.0f} msg/s  ratio {:.3f} (n={})\n", c,
          full, full / bare, n_full);
    }
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
