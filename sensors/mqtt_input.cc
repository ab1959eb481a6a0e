// MQTT input on Paho MQTT C++ (async_client) over Paho C 1.3.
//
// Acknowledgement: Paho C delivers a QoS 1 PUBLISH (and a QoS 2 one on MQTT 5) to
// message_arrived on its receive thread, and sends the PUBACK / PUBREC only when the callback
// returns (MQTTProtocol_handlePublishes -> Protocol_processPublication -> MQTTAsync_deliverMessage,
// then MQTTPacket_send_puback). So OnMessage returns only after RecordSink::Append returned OK,
// i.e. after the record is durable at the buffer's sync level. There is no way to refuse a
// message from the callback (the C++ wrapper always reports it delivered), so when Append fails
// we retry here, holding the receive thread: that is the back-pressure (the broker queues).
//
// Consequences of Paho's design, measured and documented in README.md:
//  - The receive thread is one per process and runs callbacks with Paho's global mutex held:
//    callbacks of all connections are serialised, and no Paho call from another thread can
//    proceed while one is blocked. N connections therefore do not run appends in parallel.
//  - While a callback blocks, keepalive is not serviced; the broker or Paho drops the connection
//    and redelivers the unacknowledged message after reconnect (a duplicate, never a loss).
//  - MQTT 3.1.1 QoS 2 is acknowledged (PUBREC) before delivery, and Paho's persistence does not
//    fsync: we subscribe with QoS 1 instead on 3.1.1 (at-least-once with ack-after-durable).
#include "sensors/mqtt_input.h"

#include <mqtt/async_client.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <random>
#include <thread>

#include <fmt/ranges.h>

#include "common/log.h"

namespace edgeferry::sensors {
namespace {

using namespace std::chrono_literals;

constexpr const char* kLog = "mqtt";

class MqttInput;

// State shared by the input, the supervisor thread and Paho's callback thread. Held by
// shared_ptr so that a callback abandoned at Stop (see Stop) never touches freed memory.
struct Core {
  std::string name;
  std::string device;
  std::string topic;
  config::MqttInputConfig cfg;
  RecordSink* sink = nullptr;
  Clock* clock = nullptr;

  std::mutex mu;
  std::condition_variable cv;  // stop, connection lost, abandoned, disconnect done
  bool stopping = false;       // GUARDED_BY(mu)
  bool abandoned = false;      // a callback gave up on a message at Stop: never ack it
  int in_callback = 0;         // callbacks running now

  std::atomic<uint64_t> received{0}, accepted{0}, rejected{0}, errors{0}, reconnects{0}, ticks{0};
  std::map<std::string, uint64_t> rejected_by_reason;  // GUARDED_BY(mu)
  std::map<std::string, uint64_t> errors_by_reason;    // GUARDED_BY(mu)
  RateLimiter limiter{std::chrono::seconds(30)};

  void Count(std::map<std::string, uint64_t>& by_reason, std::atomic<uint64_t>& total,
             const std::string& reason) {
    total.fetch_add(1);
    std::lock_guard lock(mu);
    ++by_reason[reason];
  }
  void Warn(const std::string& key, const std::string& text) {
    uint64_t suppressed = 0;
    if (limiter.Allow(key, &suppressed)) {
      EF_LOG(kWarning, kLog, "input {}: {}{}", name, text,
             suppressed ? fmt::format(" [{} similar suppressed]", suppressed) : std::string());
    }
  }
};

enum class ConnState { kDisconnected, kConnecting, kConnected };

const char* StateName(ConnState s) {
  switch (s) {
    case ConnState::kDisconnected:
      return "disconnected";
    case ConnState::kConnecting:
      return "connecting";
    case ConnState::kConnected:
      return "connected";
  }
  return "?";
}

struct Conn;

// Paho's callback object for one connection. Runs on Paho's threads: never throws.
class Callback final : public virtual mqtt::callback {
 public:
  Callback(std::shared_ptr<Core> core, Conn* conn) : core_(std::move(core)), conn_(conn) {}
  void connection_lost(const std::string& cause) override;
  void message_arrived(mqtt::const_message_ptr msg) override;

 private:
  void OnMessage(const mqtt::message& msg);
  std::shared_ptr<Core> core_;
  Conn* conn_;
};

struct Conn {
  int index = 0;
  std::string client_id;
  std::unique_ptr<mqtt::async_client> client;
  std::unique_ptr<Callback> callback;
  std::atomic<bool> lost{false};               // set by connection_lost, consumed by the supervisor
  ConnState state = ConnState::kDisconnected;  // supervisor thread only
  ConnState logged = ConnState::kConnecting;   // so that a first failure is logged
  bool ever_connected = false;
  std::chrono::milliseconds backoff{0};
  Clock::TimePoint next_attempt{};
  std::string last_error;
};

void Callback::connection_lost(const std::string& cause) {
  try {
    conn_->lost = true;
    {
      std::lock_guard lock(core_->mu);
      conn_->last_error = cause.empty() ? "connection lost" : cause;
    }
    core_->cv.notify_all();
  } catch (...) {
  }
}

void Callback::message_arrived(mqtt::const_message_ptr msg) {
  // Fence: nothing may propagate into Paho's C thread.
  try {
    if (msg) OnMessage(*msg);
  } catch (const std::exception& e) {
    core_->Count(core_->errors_by_reason, core_->errors, "internal");
    EF_LOG(kError, kLog, "input {}: message handling failed: {}", core_->name, e.what());
  } catch (...) {
    core_->Count(core_->errors_by_reason, core_->errors, "internal");
  }
}

std::string PropString(const MQTTLenString& s) {
  return s.data ? std::string(s.data, static_cast<size_t>(s.len)) : std::string();
}

void Callback::OnMessage(const mqtt::message& msg) {
  Core& c = *core_;
  c.ticks.fetch_add(1, std::memory_order_relaxed);
  c.received.fetch_add(1, std::memory_order_relaxed);
  const std::string& topic = msg.get_topic();
  const mqtt::binary_ref& payload = msg.get_payload_ref();
  size_t payload_size = payload ? payload.size() : 0;
  if (payload_size > c.cfg.max_payload_bytes) {
    // Refused by rule, not lost: acknowledging it tells the broker not to redeliver a message
    // that would be refused again for ever. Counted and logged.
    c.Count(c.rejected_by_reason, c.rejected, "oversized");
    c.Warn("oversized", fmt::format("message on {} rejected: payload {} bytes > max_payload_bytes "
                                    "{}",
                                    topic, payload_size, c.cfg.max_payload_bytes));
    return;
  }

  int64_t now_ms = c.clock->NowUnixMs();
  Record rec;
  rec.source = c.name;
  rec.topic = c.topic;
  rec.event_time_ms = now_ms;
  if (payload_size) rec.payload.assign(payload.data(), payload_size);
  rec.headers.push_back({"mqtt.topic", topic});
  rec.headers.push_back({"mqtt.qos", std::to_string(msg.get_qos())});
  rec.headers.push_back({"mqtt.retain", msg.is_retained() ? "true" : "false"});
  rec.headers.push_back({"mqtt.received_ms", std::to_string(now_ms)});
  const MQTTProperties& props = msg.get_properties().c_struct();
  for (int i = 0; i < props.count; ++i) {
    const MQTTProperty& p = props.array[i];
    if (p.identifier == MQTTPROPERTY_CODE_USER_PROPERTY) {
      rec.headers.push_back({PropString(p.value.data), PropString(p.value.value)});
    } else if (p.identifier == MQTTPROPERTY_CODE_CONTENT_TYPE) {
      rec.headers.push_back({"mqtt.content_type", PropString(p.value.data)});
    }
  }
  if (!c.cfg.topic_pattern.empty()) {
    std::map<std::string, std::string> captures;
    if (MatchTopicPattern(c.cfg.topic_pattern, topic, &captures)) {
      if (auto it = captures.find("key"); it != captures.end()) {
        rec.key = it->second;
      } else if (auto it2 = captures.find("device"); it2 != captures.end()) {
        rec.key = it2->second;
      }
      for (auto& [k, v] : captures) rec.headers.push_back({k, v});
    }
  }

  {
    std::lock_guard lock(c.mu);
    ++c.in_callback;
  }
  std::chrono::milliseconds backoff = 10ms;
  while (true) {
    Status st = c.sink->Append({rec});
    if (st.ok()) {
      c.accepted.fetch_add(1, std::memory_order_relaxed);
      break;
    }
    c.Count(c.errors_by_reason, c.errors, "append_" + std::string(CodeName(st.code())));
    c.Warn("append", fmt::format("buffer refused a message from {} ({}); holding it unacknowledged "
                                 "and retrying",
                                 topic, st.ToString()));
    std::unique_lock lock(c.mu);
    if (c.stopping) {
      // We cannot store it and must not return (returning sends the PUBACK). Park this Paho
      // thread until the process exits: the broker keeps the message and redelivers it to the
      // next run. Stop() sees `abandoned` and leaks the client instead of destroying it.
      c.abandoned = true;
      --c.in_callback;
      c.cv.notify_all();
      EF_LOG(kError, kLog,
             "input {}: stopping with a message from {} that the buffer did not take; it stays "
             "unacknowledged at the broker",
             c.name, topic);
      c.cv.wait(lock, [] { return false; });
    }
    c.cv.wait_for(lock, backoff, [&] { return c.stopping; });
    backoff = std::min<std::chrono::milliseconds>(backoff * 2, 1000ms);
    c.ticks.fetch_add(1, std::memory_order_relaxed);
  }
  std::lock_guard lock(c.mu);
  --c.in_callback;
  c.cv.notify_all();
}

class MqttInput final : public Input {
 public:
  MqttInput(const config::InputConfig& cfg, const std::string& device_id, RecordSink* sink,
            Clock* clock)
      : core_(std::make_shared<Core>()) {
    core_->name = cfg.name;
    core_->device = device_id;
    core_->topic = cfg.topic;
    core_->cfg = *cfg.mqtt;
    core_->sink = sink;
    core_->clock = clock;
    const auto& m = core_->cfg;
    std::string base =
        m.client_id.empty() ? "edgeferry-" + device_id + "-" + cfg.name : m.client_id;
    uint32_t n = std::max<uint32_t>(1, m.connections);
    for (uint32_t i = 0; i < n; ++i) {
      auto conn = std::make_unique<Conn>();
      conn->index = static_cast<int>(i);
      conn->client_id = n == 1 ? base : fmt::format("{}-{}", base, i);
      conns_.push_back(std::move(conn));
    }
  }

  ~MqttInput() override { Stop(); }

  const std::string& name() const override { return core_->name; }

  Status Start() override {
    if (started_) return Status::Ok();
    const auto& m = core_->cfg;
    try {
      for (auto& conn : conns_) {
        // No client persistence: QoS 1/2 state that matters lives at the broker (persistent
        // session) and in our buffer; Paho's file store would not be fsync'd anyway.
        mqtt::create_options co(m.version == 5 ? MQTTVERSION_5 : MQTTVERSION_3_1_1);
        conn->client =
            std::make_unique<mqtt::async_client>(m.uris.front(), conn->client_id, co, nullptr);
        conn->callback = std::make_unique<Callback>(core_, conn.get());
        conn->client->set_callback(*conn->callback);
        conn->backoff = std::chrono::milliseconds(m.reconnect_min_ms);
        conn->next_attempt = core_->clock->Now();
      }
    } catch (const std::exception& e) {
      conns_.clear();
      return Status::InvalidArgument("input " + core_->name + ": " + e.what());
    }
    {
      std::lock_guard lock(core_->mu);
      core_->stopping = false;
    }
    started_ = true;
    EF_LOG(kInfo, kLog, "input {}: {} connection(s) to {} as {}{}", core_->name, conns_.size(),
           fmt::join(m.uris, ", "), conns_.front()->client_id, conns_.size() > 1 ? "-<n>" : "");
    supervisor_ = std::thread([this] { Supervise(); });
    return Status::Ok();
  }

  void Stop() override {
    if (!started_) return;
    started_ = false;
    {
      std::lock_guard lock(core_->mu);
      core_->stopping = true;
    }
    core_->cv.notify_all();
    supervisor_.join();

    // Disconnect on a helper thread: MQTTAsync_disconnect takes Paho's global mutex, which a
    // callback blocked in Append holds. A callback that completes its Append lets it through; one
    // that gives up (abandoned) never will.
    auto done = std::make_shared<std::atomic<bool>>(false);
    std::shared_ptr<Core> core = core_;
    std::vector<mqtt::async_client*> clients;
    for (auto& conn : conns_) clients.push_back(conn->client.get());
    std::thread disconnector([clients, done, core] {
      for (auto* cli : clients) {
        try {
          if (cli->is_connected()) cli->disconnect(0)->wait_for(5s);
        } catch (const std::exception&) {
        }
      }
      *done = true;
      core->cv.notify_all();
    });
    {
      std::unique_lock lock(core_->mu);
      core_->cv.wait(lock, [&] { return done->load() || core_->abandoned; });
    }
    if (done->load()) {
      disconnector.join();
      for (auto& conn : conns_) {
        conn->client.reset();  // MQTTAsync_destroy: no callbacks after this
        conn->callback.reset();
      }
    } else {
      // A Paho thread is parked in our callback with an unacknowledged message: destroying the
      // client would deadlock. Leak the clients (and the disconnector) to the process exit.
      disconnector.detach();
      for (auto& conn : conns_) {
        (void)conn->client.release();
        (void)conn->callback.release();
        (void)conn.release();
      }
      conns_.clear();
    }
    EF_LOG(kInfo, kLog, "input {}: stopped", core_->name);
  }

  InputStats Stats() const override {
    InputStats out;
    out.received = core_->received.load();
    out.accepted = core_->accepted.load();
    out.rejected = core_->rejected.load();
    out.errors = core_->errors.load();
    out.reconnects = core_->reconnects.load();
    std::lock_guard lock(core_->mu);
    out.rejected_by_reason = core_->rejected_by_reason;
    out.errors_by_reason = core_->errors_by_reason;
    if (!started_) {
      out.state = "stopped";
    } else {
      int connected = connected_.load();
      int n = static_cast<int>(conns_.size());
      out.state = connected == n ? "connected" : connected == 0 ? "disconnected" : "degraded";
    }
    return out;
  }

  uint64_t ProgressTicks() const override { return core_->ticks.load(); }

 private:
  void Supervise() {
    std::mt19937 rng(std::random_device{}());
    std::unique_lock lock(core_->mu);
    while (!core_->stopping) {
      lock.unlock();
      core_->ticks.fetch_add(1, std::memory_order_relaxed);
      // While a message callback runs (possibly held by a blocking buffer), every Paho call would
      // wait for Paho's global mutex, which the callback thread holds: do not connect then, so
      // this loop keeps ticking for the watchdog and Stop stays responsive.
      bool callback_busy;
      {
        std::lock_guard busy_lock(core_->mu);
        callback_busy = core_->in_callback > 0;
      }
      for (auto& conn : conns_) {
        if (conn->lost.exchange(false) && conn->state == ConnState::kConnected) {
          SetState(*conn, ConnState::kDisconnected);
          ScheduleRetry(*conn, rng, false);
        }
        if (!callback_busy && conn->state == ConnState::kDisconnected &&
            core_->clock->Now() >= conn->next_attempt) {
          Connect(*conn, rng);
        }
      }
      lock.lock();
      core_->cv.wait_for(lock, 100ms);
    }
  }

  void SetState(Conn& conn, ConnState s) {
    if (s == ConnState::kConnected && conn.state != ConnState::kConnected) ++connected_;
    if (s != ConnState::kConnected && conn.state == ConnState::kConnected) --connected_;
    conn.state = s;
  }

  // Logs a state change once (not every failed attempt of a long outage).
  void LogState(Conn& conn, ConnState s, const std::string& detail) {
    if (conn.logged == s) return;
    conn.logged = s;
    LogLevel level = s == ConnState::kConnected ? LogLevel::kInfo : LogLevel::kWarning;
    if (static_cast<int>(level) <= static_cast<int>(GetLogLevel())) {
      LogLine(level, kLog,
              fmt::format("input {}: {} {}{}", core_->name, conn.client_id, StateName(s),
                          detail.empty() ? "" : ": " + detail));
    }
  }

  void ScheduleRetry(Conn& conn, std::mt19937& rng, bool failed_attempt) {
    std::string err;
    {
      std::lock_guard lock(core_->mu);
      err = conn.last_error;
    }
    LogState(conn, ConnState::kDisconnected,
             fmt::format("{}; retrying in {} ms (backoff up to {} ms)", err, conn.backoff.count(),
                         core_->cfg.reconnect_max_ms));
    // Capped exponential backoff with +-20% jitter so that many gateways do not reconnect in step.
    std::uniform_real_distribution<double> jitter(0.8, 1.2);
    auto wait = std::chrono::milliseconds(
        static_cast<int64_t>(static_cast<double>(conn.backoff.count()) * jitter(rng)));
    conn.next_attempt = core_->clock->Now() + wait;
    if (failed_attempt) {
      conn.backoff =
          std::min(conn.backoff * 2, std::chrono::milliseconds(core_->cfg.reconnect_max_ms));
    }
  }

  mqtt::connect_options ConnectOptions() const {
    const auto& m = core_->cfg;
    mqtt::connect_options o;
    o.set_mqtt_version(m.version == 5 ? MQTTVERSION_5 : MQTTVERSION_3_1_1);
    o.set_keep_alive_interval(std::chrono::seconds(m.keep_alive_s));
    o.set_connect_timeout(10s);
    if (m.version == 5) {
      o.set_clean_start(false);
      mqtt::properties props;
      props.add(mqtt::property(mqtt::property::SESSION_EXPIRY_INTERVAL,
                               static_cast<int32_t>(m.session_expiry_s)));
      o.set_properties(props);
    } else {
      o.set_clean_session(false);
    }
    if (!m.username.empty()) o.set_user_name(m.username);
    if (!m.password.empty()) o.set_password(m.password);
    if (m.uris.size() > 1) {
      o.set_servers(std::make_shared<mqtt::string_collection>(m.uris));
    }
    if (m.tls) {
      mqtt::ssl_options ssl;
      if (!m.tls->ca_file.empty()) ssl.set_trust_store(m.tls->ca_file);
      if (!m.tls->cert_file.empty()) ssl.set_key_store(m.tls->cert_file);
      if (!m.tls->key_file.empty()) ssl.set_private_key(m.tls->key_file);
      if (!m.tls->key_password.empty()) ssl.set_private_key_password(m.tls->key_password);
      ssl.set_enable_server_cert_auth(true);
      ssl.set_verify(m.tls->verify_hostname);
      // No ssl.set_error_handler: Paho C++ 1.2 passes the address of the ssl_options object as
      // the callback's context, and connect_options copies it, so the handler would run on a
      // destroyed object (it crashed on a failed certificate verification in our TLS test). TLS
      // failures show up as the connect error ("TCP/TLS connect failure") instead.
      o.set_ssl(std::move(ssl));
    }
    return o;
  }

  // Waits for a Paho token without ignoring Stop. Returns false if stopping.
  bool WaitToken(const mqtt::token_ptr& tok) {
    while (!tok->wait_for(100ms)) {
      std::lock_guard lock(core_->mu);
      if (core_->stopping) return false;
    }
    return true;
  }

  void Connect(Conn& conn, std::mt19937& rng) {
    SetState(conn, ConnState::kConnecting);
    std::string error;
    try {
      mqtt::token_ptr tok = conn.client->connect(ConnectOptions());
      if (!WaitToken(tok)) return;
      mqtt::connect_response rsp = tok->get_connect_response();
      bool session_present = rsp.is_session_present();
      if (!session_present) {
        // A new session (first start, expired, or a broker that lost its state): subscribe.
        // With a present session the broker kept our subscriptions and queued messages, and
        // resubscribing would make MQTT 3.1.1 brokers resend retained messages.
        if (!Subscribe(conn)) return;
      }
      conn.lost = false;
      SetState(conn, ConnState::kConnected);
      if (conn.ever_connected) core_->reconnects.fetch_add(1);
      conn.ever_connected = true;
      conn.backoff = std::chrono::milliseconds(core_->cfg.reconnect_min_ms);
      LogState(conn, ConnState::kConnected,
               fmt::format("{} (session {})", rsp.get_server_uri(),
                           session_present ? "resumed" : "new, subscribed"));
      return;
    } catch (const mqtt::exception& e) {
      error = e.what();
    } catch (const std::exception& e) {
      error = e.what();
    }
    core_->Count(core_->errors_by_reason, core_->errors, "connect");
    {
      std::lock_guard lock(core_->mu);
      conn.last_error = error;
    }
    SetState(conn, ConnState::kDisconnected);
    ScheduleRetry(conn, rng, true);
  }

  // Throws mqtt::exception on failure (caller counts and retries the whole connect).
  bool Subscribe(Conn& conn) {
    const auto& m = core_->cfg;
    if (m.subscriptions.empty()) return true;
    auto filters = std::make_shared<mqtt::string_collection>();
    mqtt::iasync_client::qos_collection qos;
    std::vector<mqtt::subscribe_options> opts;
    for (const auto& s : m.subscriptions) {
      filters->push_back(s.filter);
      // 3.1.1: QoS 2 would be PUBREC'd before we see it; QoS 1 is acked after the durable write.
      qos.push_back(m.version == 5 ? s.qos : std::min(s.qos, 1));
      opts.emplace_back(false, false, mqtt::subscribe_options::SEND_RETAINED_ON_NEW);
    }
    mqtt::token_ptr tok = m.version == 5 ? conn.client->subscribe(filters, qos, opts)
                                         : conn.client->subscribe(filters, qos);
    if (!WaitToken(tok)) return false;
    auto codes = tok->get_subscribe_response().get_reason_codes();
    for (size_t i = 0; i < codes.size() && i < m.subscriptions.size(); ++i) {
      if (codes[i] >= 0x80) {
        core_->Count(core_->errors_by_reason, core_->errors, "subscribe");
        EF_LOG(kError, kLog, "input {}: broker refused subscription {} (reason code {})",
               core_->name, m.subscriptions[i].filter, static_cast<int>(codes[i]));
      }
    }
    return true;
  }

  std::shared_ptr<Core> core_;
  std::vector<std::unique_ptr<Conn>> conns_;
  std::thread supervisor_;
  std::atomic<bool> started_{false};
  std::atomic<int> connected_{0};
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
