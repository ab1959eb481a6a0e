// One MQTT subscriber connection of the MQTT input (internal to sensors/; see sensors/README.md,
// "MQTT input"). MqttSession::Run is the body of the connection's own thread: connect (URIs in
// order), subscribe when the broker has no session, receive, append, acknowledge; reconnect with
// capped exponential backoff until RequestStop.
//
// The acknowledgement contract (why this client exists): every complete PUBLISH already on the
// socket (bounded by kMaxBatchMessages / kMaxBatchBytes) is appended in ONE RecordSink::Append;
// only when that returned OK are their PUBACKs (QoS 1) and PUBRECs (QoS 2) sent, in arrival
// order. A failed Append sends no ack and drops the connection, so the broker redelivers; a
// blocking Append stops reading the socket, so the broker queues.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_set>

#include "common/clock.h"
#include "common/log.h"
#include "common/seams.h"
#include "config/config.h"
#include "sensors/mqtt_codec.h"
#include "sensors/mqtt_transport.h"

namespace edgeferry::sensors::mqtt {

// Bounds of one read-append-ack round. kMaxBatchMessages is also the MQTT 5 Receive Maximum we
// announce, so the broker's in-flight window never exceeds one batch.
inline constexpr size_t kMaxBatchMessages = 1000;
inline constexpr size_t kMaxBatchBytes = 4u << 20;

// State shared by the input and its sessions; owned by the input, outlives the sessions' threads.
struct InputCore {
  std::string name;         // the input's name (record source, log lines)
  std::string kafka_topic;  // the input's topic override for records
  config::MqttInputConfig cfg;
  RecordSink* sink = nullptr;
  Clock* clock = nullptr;
  std::shared_ptr<TlsContext> tls;  // set iff cfg.tls

  std::mutex mu;
  std::condition_variable cv;  // stopping
  bool stopping = false;       // GUARDED_BY(mu)

  std::atomic<uint64_t> received{0}, accepted{0}, rejected{0}, errors{0}, reconnects{0}, ticks{0};
  std::atomic<int> connected{0};
  std::map<std::string, uint64_t> rejected_by_reason;  // GUARDED_BY(mu)
  std::map<std::string, uint64_t> errors_by_reason;    // GUARDED_BY(mu)
  RateLimiter limiter{std::chrono::seconds(30)};

  void Count(std::map<std::string, uint64_t>& by_reason, std::atomic<uint64_t>& total,
             const std::string& reason);
  // A warning rate-limited per key (at most one per 30 s, with the number suppressed).
  void Warn(const std::string& key, const std::string& text);
  bool Stopping();
};

class MqttSession {
 public:
  MqttSession(InputCore* core, std::string client_id);
  // The connection thread's body; returns after RequestStop (and after a started Append returned
  // and its acks were sent, if the socket still takes them).
  void Run();
  // Thread-safe: wakes the thread (shuts the socket down for reading). Also set core->stopping.
  void RequestStop() { transport_.Interrupt(); }
  const std::string& client_id() const { return client_id_; }

 private:
  enum class State { kConnecting, kConnected, kDisconnected };
  // One connection from CONNECT to its end. Returns why it ended (for the log).
  std::string Connect(std::string* server);
  std::string Receive();
  // An oversized PUBLISH at the start of `rest` (`total` bytes in all): counts and answers it
  // from its variable header and sets skip_. Returns 1 done, 0 need more bytes, -1 malformed.
  int SkipOversizedPublish(std::string_view rest, uint64_t total, std::string* why);
  // Handles the decoded packet; returns false with *why to drop the connection.
  bool Handle(Packet& p, std::string* why);
  void LogState(State s, const std::string& detail);
  void MarkConnected();
  Record BuildRecord(const Packet& p, int64_t now_ms) const;
  Transport::Deadline DeadlineIn(std::chrono::milliseconds d) const;

  InputCore* core_;
  const std::string client_id_;
  const uint8_t level_;
  const uint32_t max_packet_size_;
  Transport transport_;
  State logged_ = State::kConnecting;  // so that a first failure is logged
  bool ever_connected_ = false;
  bool connected_ = false;
  bool awaiting_suback_ = false;
  bool append_failed_ = false;  // the last connection ended because Append failed
  std::string server_;          // the URI of the current connection
  std::string session_info_;
  std::chrono::milliseconds keep_alive_{0};

  // QoS 2 packet ids whose PUBREC was sent (the message is durable) but whose PUBREL has not
  // come: a DUP re-send of one is acknowledged again without a second append. Kept while the
  // broker keeps the session; lost with the process (then a re-send is a duplicate record).
  std::unordered_set<uint16_t> awaiting_rel_;

  // One round's work, reused.
  std::string in_;
  size_t in_pos_ = 0;
  uint64_t skip_ = 0;  // bytes of an oversized PUBLISH still to discard
  std::vector<Record> batch_;
  size_t batch_bytes_ = 0;
  std::string acks_;
  std::vector<uint16_t> new_qos2_;
  Packet packet_;
};

}  // namespace edgeferry::sensors::mqtt
