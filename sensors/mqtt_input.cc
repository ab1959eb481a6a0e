// The MQTT input: N connections (MqttSession, sensors/mqtt_session.h), each on its own thread,
// plus a ticker for the watchdog. The in-house client exists for the acknowledgement: PUBACKs go
// out only after the messages they acknowledge are durably in the buffer, many messages per
// append (see sensors/README.md, "MQTT input").
#include "sensors/mqtt_input.h"

#include <algorithm>
#include <atomic>
#include <thread>

#include <fmt/ranges.h>

#include "common/log.h"
#include "common/thread_name.h"
#include "sensors/mqtt_session.h"

namespace edgeferry::sensors {
namespace {

using namespace std::chrono_literals;

constexpr const char* kLog = "mqtt";

class MqttInput final : public Input {
 public:
  MqttInput(const config::InputConfig& cfg, const std::string& device_id, RecordSink* sink,
            Clock* clock) {
    core_.name = cfg.name;
    core_.kafka_topic = cfg.topic;
    core_.cfg = *cfg.mqtt;
    core_.sink = sink;
    core_.clock = clock;
    const auto& m = core_.cfg;
    base_id_ = m.client_id.empty() ? "edgeferry-" + device_id + "-" + cfg.name : m.client_id;
    uint32_t n = std::max<uint32_t>(1, m.connections);
    for (uint32_t i = 0; i < n; ++i) {
      sessions_.push_back(std::make_unique<mqtt::MqttSession>(
          &core_, n == 1 ? base_id_ : fmt::format("{}-{}", base_id_, i)));
    }
  }

  ~MqttInput() override { Stop(); }

  const std::string& name() const override { return core_.name; }

  Status Start() override {
    if (started_) return Status::Ok();
    const auto& m = core_.cfg;
    if (m.tls && !core_.tls) {
      auto tls = mqtt::TlsContext::Create(*m.tls);
      if (!tls.ok())
        return Status::InvalidArgument("input " + core_.name + ": " + tls.status().message());
      core_.tls = std::move(tls).value();
    }
    {
      std::lock_guard lock(core_.mu);
      core_.stopping = false;
    }
    started_ = true;
    EF_LOG(kInfo, kLog, "input {}: {} connection(s) to {} as {}{} (MQTT {})", core_.name,
           sessions_.size(), fmt::join(m.uris, ", "), base_id_, sessions_.size() > 1 ? "-<n>" : "",
           m.version == 5 ? "5" : "3.1.1");
    for (auto& s : sessions_) {
      threads_.emplace_back([session = s.get()] {
        SetThreadName("ef-mqtt");
        session->Run();
      });
    }
    // The watchdog's tick while every connection may be parked in a blocking Append (that is
    // back-pressure, not a hang).
    ticker_ = std::thread([this] {
      SetThreadName("ef-mqtt-tick");
      std::unique_lock lock(core_.mu);
      while (!core_.stopping) {
        core_.cv.wait_for(lock, 100ms);
        core_.ticks.fetch_add(1, std::memory_order_relaxed);
      }
    });
    return Status::Ok();
  }

  void Stop() override {
    if (!started_) return;
    {
      std::lock_guard lock(core_.mu);
      core_.stopping = true;
    }
    core_.cv.notify_all();
    for (auto& s : sessions_) s->RequestStop();
    // An Append in progress finishes first (Input::Stop's contract); its acks are then sent.
    for (auto& t : threads_) t.join();
    threads_.clear();
    ticker_.join();
    started_ = false;
    EF_LOG(kInfo, kLog, "input {}: stopped", core_.name);
  }

  InputStats Stats() const override {
    InputStats out;
    out.received = core_.received.load();
    out.accepted = core_.accepted.load();
    out.rejected = core_.rejected.load();
    out.errors = core_.errors.load();
    out.reconnects = core_.reconnects.load();
    {
      std::lock_guard lock(core_.mu);
      out.rejected_by_reason = core_.rejected_by_reason;
      out.errors_by_reason = core_.errors_by_reason;
    }
    if (!started_) {
      out.state = "stopped";
    } else {
      int connected = core_.connected.load();
      int n = static_cast<int>(sessions_.size());
      out.state = connected == n ? "connected" : connected == 0 ? "disconnected" : "degraded";
    }
    return out;
  }

  uint64_t ProgressTicks() const override { return core_.ticks.load(); }

 private:
  mutable mqtt::InputCore core_;
  std::string base_id_;
  std::vector<std::unique_ptr<mqtt::MqttSession>> sessions_;
  std::vector<std::thread> threads_;
  std::thread ticker_;
  std::atomic<bool> started_{false};
};

bool ValidFilter(const std::string& f) {
  if (f.empty()) return false;
  for (size_t i = 0; i < f.size(); ++i) {
    if (f[i] == '#' && (i + 1 != f.size() || (i > 0 && f[i - 1] != '/'))) return false;
    if (f[i] == '+' && ((i > 0 && f[i - 1] != '/') || (i + 1 < f.size() && f[i + 1] != '/'))) {
      return false;
    }
  }
  return true;
}

}  // namespace

Result<std::unique_ptr<Input>> MakeMqttInput(const config::InputConfig& cfg,
                                             const std::string& device_id, RecordSink* sink,
                                             Clock* clock) {
  auto bad = [&](const std::string& what) {
    return Status::InvalidArgument("input " + cfg.name + ": " + what);
  };
  if (!cfg.mqtt) return bad("type mqtt needs its mqtt settings");
  const auto& m = *cfg.mqtt;
  if (m.uris.empty()) return bad("mqtt.uris is empty");
  for (const auto& uri : m.uris) {
    auto addr = mqtt::ParseBrokerUri(uri);
    if (!addr.ok()) return bad("mqtt.uris: " + addr.status().message());
    if (addr->tls && !m.tls) return bad("mqtt.uris: " + uri + " needs mqtt.tls settings");
  }
  if (m.version != 3 && m.version != 5) {
    return bad(fmt::format("mqtt.version {} is not 3 (3.1.1) or 5", m.version));
  }
  if (m.subscriptions.empty()) return bad("mqtt.subscriptions is empty");
  for (const auto& s : m.subscriptions) {
    if (s.qos < 0 || s.qos > 2) {
      return bad(fmt::format("subscription {}: qos {} is not 0, 1 or 2", s.filter, s.qos));
    }
    std::string plain = s.filter;
    if (plain.rfind("$share/", 0) == 0) {
      size_t slash = plain.find('/', 7);
      if (slash == std::string::npos || slash == 7) {
        return bad("subscription " + s.filter + ": $share/<group>/<filter> expected");
      }
      plain = plain.substr(slash + 1);
    } else if (m.connections > 1) {
      return bad(
          fmt::format("connections is {} but subscription {} is not a $share/ filter: "
                      "every connection would get every message",
                      m.connections, s.filter));
    }
    if (!ValidFilter(plain)) return bad("subscription " + s.filter + " is not a valid filter");
  }
  if (m.connections == 0) return bad("mqtt.connections must be >= 1");
  if (m.reconnect_min_ms == 0 || m.reconnect_max_ms < m.reconnect_min_ms) {
    return bad("reconnect_min_ms must be > 0 and <= reconnect_max_ms");
  }
  return std::unique_ptr<Input>(std::make_unique<MqttInput>(cfg, device_id, sink, clock));
}

}  // namespace edgeferry::sensors
