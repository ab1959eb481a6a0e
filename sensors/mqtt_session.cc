#include "sensors/mqtt_session.h"

#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <random>

#include <fmt/format.h>

#include "sensors/sensors.h"

namespace edgeferry::sensors::mqtt {
namespace {

using namespace std::chrono_literals;

constexpr const char* kLog = "mqtt";
constexpr auto kConnectTimeout = 10s;
constexpr auto kWriteTimeout = 10s;
constexpr uint16_t kSubscribeId = 1;

// The largest packet we accept: the largest payload we would store, plus room for a topic
// (up to 64 KiB), properties and headers. Larger oversized payloads still reach us (and are
// refused by rule, counted and acknowledged) up to this size; MQTT 5 brokers drop anything larger
// than the Maximum Packet Size we announce.
uint32_t MaxPacketSize(const config::MqttInputConfig& cfg) {
  uint64_t n = static_cast<uint64_t>(cfg.max_payload_bytes) + 128 * 1024;
  return static_cast<uint32_t>(std::min<uint64_t>(n, kMaxRemainingLength + 5));
}

}  // namespace

void InputCore::Count(std::map<std::string, uint64_t>& by_reason, std::atomic<uint64_t>& total,
                      const std::string& reason) {
  total.fetch_add(1);
  std::lock_guard lock(mu);
  ++by_reason[reason];
}

void InputCore::Warn(const std::string& key, const std::string& text) {
  uint64_t suppressed = 0;
  if (limiter.Allow(key, &suppressed)) {
    EF_LOG(kWarning, kLog, "input {}: {}{}", name, text,
           suppressed ? fmt::format(" [{} similar suppressed]", suppressed) : std::string());
  }
}

bool InputCore::Stopping() {
  std::lock_guard lock(mu);
  return stopping;
}

MqttSession::MqttSession(InputCore* core, std::string client_id)
    : core_(core),
      client_id_(std::move(client_id)),
      level_(core->cfg.version == 5 ? kLevel5 : kLevel311),
      max_packet_size_(MaxPacketSize(core->cfg)) {}

Transport::Deadline MqttSession::DeadlineIn(std::chrono::milliseconds d) const {
  return std::chrono::steady_clock::now() + d;
}

void MqttSession::LogState(State s, const std::string& detail) {
  if (logged_ == s) return;
  logged_ = s;
  const char* name = s == State::kConnected ? "connected" : "disconnected";
  if (s == State::kConnected) {
    EF_LOG(kInfo, kLog, "input {}: {} {}: {}", core_->name, client_id_, name, detail);
  } else {
    EF_LOG(kWarning, kLog, "input {}: {} {}: {}", core_->name, client_id_, name, detail);
  }
}

void MqttSession::Run() {
  // OpenSSL writes with write(2), not send(MSG_NOSIGNAL): a broker that closed the connection
  // would raise SIGPIPE. Blocked on this thread it stays pending here and the write returns
  // EPIPE, whatever the embedding process does with the signal.
  sigset_t pipe;
  sigemptyset(&pipe);
  sigaddset(&pipe, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe, nullptr);
  std::mt19937 rng(std::random_device{}());
  const auto min_backoff = std::chrono::milliseconds(core_->cfg.reconnect_min_ms);
  const auto max_backoff = std::chrono::milliseconds(core_->cfg.reconnect_max_ms);
  auto backoff = min_backoff;
  transport_.ClearInterrupt();  // before the first Stopping() check: a Stop after it still wakes us
  while (!core_->Stopping()) {
    core_->ticks.fetch_add(1, std::memory_order_relaxed);
    std::string server;
    std::string error = Connect(&server);
    bool escalate = true;
    if (error.empty()) {
      append_failed_ = false;
      error = Receive();
      if (connected_) {
        connected_ = false;
        core_->connected.fetch_sub(1);
      }
      awaiting_suback_ = false;
      transport_.Close();
      if (core_->Stopping()) break;
      // An append failure is counted where it happened (append_<Code>); other ends count here.
      if (!append_failed_) core_->Count(core_->errors_by_reason, core_->errors, "connection_lost");
      // A connection that had been up reconnects at once (backoff from the minimum); one that
      // ended because the buffer refused a batch backs off like failed attempts do.
      if (!append_failed_) backoff = min_backoff;
      escalate = append_failed_;
    } else {
      transport_.Close();
      if (core_->Stopping()) break;
      core_->Count(core_->errors_by_reason, core_->errors, "connect");
    }
    // Capped exponential backoff with +-20% jitter so that many gateways do not reconnect in step.
    std::uniform_real_distribution<double> jitter(0.8, 1.2);
    auto wait = std::chrono::milliseconds(
        static_cast<int64_t>(static_cast<double>(backoff.count()) * jitter(rng)));
    LogState(State::kDisconnected, fmt::format("{}; retrying in {} ms (backoff up to {} ms)", error,
                                               wait.count(), max_backoff.count()));
    if (escalate) backoff = std::min(backoff * 2, max_backoff);
    const Clock::TimePoint until = core_->clock->Now() + wait;
    std::unique_lock lock(core_->mu);
    while (!core_->stopping && core_->clock->Now() < until) {
      auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(until - core_->clock->Now());
      core_->cv.wait_for(lock, std::clamp(left, 1ms, 100ms));
      core_->ticks.fetch_add(1, std::memory_order_relaxed);
    }
  }
  transport_.Close();
}

std::string MqttSession::Connect(std::string* server) {
  const auto& m = core_->cfg;
  std::vector<std::string> errors;
  for (const std::string& uri : m.uris) {
    if (core_->Stopping()) return "stopping";
    auto addr = ParseBrokerUri(uri);
    if (!addr.ok()) {
      errors.push_back(addr.status().message());
      continue;
    }
    if (addr->tls && !core_->tls) {
      errors.push_back(uri + ": TLS URI without TLS settings");
      continue;
    }
    const auto deadline = DeadlineIn(kConnectTimeout);
    Status st = transport_.Connect(*addr, addr->tls ? core_->tls.get() : nullptr, deadline);
    if (!st.ok()) {
      errors.push_back(uri + ": " + st.message());
      transport_.Close();
      continue;
    }
    Packet c;
    c.type = PacketType::kConnect;
    c.clean_start = false;  // a persistent session: the broker queues while we are away
    c.keep_alive_s = static_cast<uint16_t>(std::min<uint32_t>(m.keep_alive_s, 0xFFFF));
    c.client_id = client_id_;
    if (!m.username.empty()) c.username = m.username;
    if (!m.password.empty()) c.password = m.password;
    if (level_ == kLevel5) {
      c.properties.push_back({prop::kSessionExpiryInterval, m.session_expiry_s, {}, {}});
      c.properties.push_back(
          {prop::kReceiveMaximum, static_cast<uint32_t>(kMaxBatchMessages), {}, {}});
      c.properties.push_back({prop::kMaximumPacketSize, max_packet_size_, {}, {}});
      c.properties.push_back({prop::kTopicAliasMaximum, 0, {}, {}});
    }
    std::string out;
    if (!Encode(c, level_, &out)) {
      errors.push_back(uri +
                       ": CONNECT does not fit the protocol (client id or password over "
                       "65,535 bytes)");
      transport_.Close();
      continue;
    }
    st = transport_.WriteAll(out, deadline);
    if (!st.ok()) {
      errors.push_back(uri + ": sending CONNECT: " + st.message());
      transport_.Close();
      continue;
    }
    // Wait for CONNACK. Bytes after it (queued messages of a resumed session) stay in in_.
    in_.clear();
    in_pos_ = 0;
    skip_ = 0;
    std::string why;
    bool got = false;
    while (!got && why.empty()) {
      size_t consumed = 0;
      std::string err;
      DecodeStatus ds = Decode(in_, level_, max_packet_size_, &packet_, &consumed, &err);
      if (ds == DecodeStatus::kOk) {
        in_pos_ = consumed;
        got = true;
        break;
      }
      if (ds != DecodeStatus::kNeedMore) {
        why = ds == DecodeStatus::kMalformed ? err : "first packet too large";
        break;
      }
      if (core_->Stopping()) return "stopping";
      if (std::chrono::steady_clock::now() >= deadline) {
        why = "no CONNACK within 10 s";
        break;
      }
      if (transport_.WaitReadable(100ms)) {
        auto r = transport_.ReadAvailable(&in_, 64 * 1024);
        if (!r.ok()) why = r.status().message();
      }
    }
    if (got && packet_.type != PacketType::kConnack) {
      why = fmt::format("expected CONNACK, got {}", PacketTypeName(packet_.type));
    }
    if (!why.empty()) {
      core_->Count(core_->errors_by_reason, core_->errors, "protocol");
      errors.push_back(uri + ": " + why);
      transport_.Close();
      continue;
    }
    if (packet_.reason_code != 0) {
      std::string reason = ConnackReason(level_, packet_.reason_code);
      if (const Property* rs = FindProperty(packet_.properties, prop::kReasonString)) {
        reason += ": " + rs->value;
      }
      errors.push_back(uri + ": broker refused the connection: " + reason);
      transport_.Close();
      continue;
    }
    keep_alive_ = std::chrono::seconds(m.keep_alive_s);
    if (const Property* ka = FindProperty(packet_.properties, prop::kServerKeepAlive)) {
      keep_alive_ =
          std::chrono::seconds(ka->number);  // the broker's value wins (MQTT 5 3.2.2.3.14)
    }
    *server = uri;
    const bool session_present = packet_.session_present;
    session_info_ = session_present ? "session resumed" : "new session, subscribed";
    if (!session_present) {
      // A new session (first start, expired, or a broker that lost its state): subscribe, and
      // forget QoS 2 ids of a session that no longer exists. A resumed session keeps its
      // subscriptions (resubscribing would make 3.1.1 brokers resend retained messages).
      awaiting_rel_.clear();
      Packet s;
      s.type = PacketType::kSubscribe;
      s.packet_id = kSubscribeId;
      for (const auto& sub : m.subscriptions) {
        uint8_t opts = static_cast<uint8_t>(sub.qos);
        if (level_ == kLevel5) opts |= 1 << 4;  // retained messages only on a new subscription
        s.subscriptions.push_back({sub.filter, opts});
      }
      out.clear();
      if (!Encode(s, level_, &out)) {
        errors.push_back(uri + ": SUBSCRIBE does not fit the protocol");
        transport_.Close();
        continue;
      }
      st = transport_.WriteAll(out, DeadlineIn(kWriteTimeout));
      if (!st.ok()) {
        errors.push_back(uri + ": sending SUBSCRIBE: " + st.message());
        transport_.Close();
        continue;
      }
      awaiting_suback_ = true;
      server_ = uri;
    } else {
      server_ = uri;
      MarkConnected();
    }
    return std::string();
  }
  std::string all;
  for (const auto& e : errors) all += (all.empty() ? "" : "; ") + e;
  return all.empty() ? "no broker URI" : all;
}

void MqttSession::MarkConnected() {
  if (connected_) return;
  connected_ = true;
  core_->connected.fetch_add(1);
  if (ever_connected_) core_->reconnects.fetch_add(1);
  ever_connected_ = true;
  LogState(State::kConnected, fmt::format("{} ({})", server_, session_info_));
}

Record MqttSession::BuildRecord(const Packet& p, int64_t now_ms) const {
  const auto& cfg = core_->cfg;
  Record rec;
  rec.source = core_->name;
  rec.topic = core_->kafka_topic;
  rec.event_time_ms = now_ms;
  rec.payload = p.payload;
  rec.headers.reserve(5);
  rec.headers.push_back({"mqtt.topic", p.topic});
  rec.headers.push_back({"mqtt.qos", std::to_string(p.qos)});
  rec.headers.push_back({"mqtt.retain", p.retain ? "true" : "false"});
  rec.headers.push_back({"mqtt.received_ms", std::to_string(now_ms)});
  for (const Property& pr : p.properties) {
    if (pr.id == prop::kUserProperty) {
      rec.headers.push_back({pr.name, pr.value});
    } else if (pr.id == prop::kContentType) {
      rec.headers.push_back({"mqtt.content_type", pr.value});
    }
  }
  if (!cfg.topic_pattern.empty()) {
    std::map<std::string, std::string> captures;
    if (MatchTopicPattern(cfg.topic_pattern, p.topic, &captures)) {
      if (auto it = captures.find("key"); it != captures.end()) {
        rec.key = it->second;
      } else if (auto it2 = captures.find("device"); it2 != captures.end()) {
        rec.key = it2->second;
      }
      for (auto& [k, v] : captures) rec.headers.push_back({k, v});
    }
  }
  return rec;
}

bool MqttSession::Handle(Packet& p, std::string* why) {
  switch (p.type) {
    case PacketType::kPublish: {
      if (level_ == kLevel5 && FindProperty(p.properties, prop::kTopicAlias)) {
        *why = "PUBLISH with a topic alias, although we allow none (Topic Alias Maximum 0)";
        return false;
      }
      core_->ticks.fetch_add(1, std::memory_order_relaxed);
      if (p.qos == 2 &&
          (awaiting_rel_.count(p.packet_id) ||
           std::find(new_qos2_.begin(), new_qos2_.end(), p.packet_id) != new_qos2_.end())) {
        // A re-send of a QoS 2 message we already stored and PUBREC'd: acknowledge again only.
        AppendAck(PacketType::kPubrec, p.packet_id, &acks_);
        return true;
      }
      core_->received.fetch_add(1, std::memory_order_relaxed);
      if (p.payload.size() > core_->cfg.max_payload_bytes) {
        // Refused by rule, not lost: acknowledging tells the broker not to redeliver a message
        // that would be refused again for ever. Counted and logged.
        core_->Count(core_->rejected_by_reason, core_->rejected, "oversized");
        core_->Warn("oversized",
                    fmt::format("message on {} rejected: payload {} bytes > max_payload_bytes {}",
                                p.topic, p.payload.size(), core_->cfg.max_payload_bytes));
      } else {
        batch_bytes_ += p.payload.size() + p.topic.size();
        batch_.push_back(BuildRecord(p, core_->clock->NowUnixMs()));
      }
      if (p.qos == 1) {
        AppendAck(PacketType::kPuback, p.packet_id, &acks_);
      } else if (p.qos == 2) {
        AppendAck(PacketType::kPubrec, p.packet_id, &acks_);
        new_qos2_.push_back(p.packet_id);
      }
      return true;
    }
    case PacketType::kPubrel:
      AppendAck(PacketType::kPubcomp, p.packet_id, &acks_);
      awaiting_rel_.erase(p.packet_id);
      return true;
    case PacketType::kPingresp:
      return true;
    case PacketType::kSuback: {
      if (!awaiting_suback_ || p.packet_id != kSubscribeId) {
        *why = fmt::format("unexpected SUBACK (packet id {})", p.packet_id);
        return false;
      }
      awaiting_suback_ = false;
      const auto& subs = core_->cfg.subscriptions;
      if (p.reason_codes.size() != subs.size()) {
        *why =
            fmt::format("SUBACK with {} codes for {} filters", p.reason_codes.size(), subs.size());
        return false;
      }
      for (size_t i = 0; i < subs.size(); ++i) {
        uint8_t code = p.reason_codes[i];
        if (code >= 0x80) {
          core_->Count(core_->errors_by_reason, core_->errors, "subscribe");
          EF_LOG(kError, kLog, "input {}: broker refused subscription {}: {}", core_->name,
                 subs[i].filter, ReasonCodeName(code));
        } else if (code < subs[i].qos) {
          EF_LOG(kWarning, kLog, "input {}: broker granted subscription {} QoS {} (asked {})",
                 core_->name, subs[i].filter, code, subs[i].qos);
        }
      }
      MarkConnected();
      return true;
    }
    case PacketType::kDisconnect: {
      *why = "broker sent DISCONNECT: " + ReasonCodeName(p.reason_code);
      if (const Property* rs = FindProperty(p.properties, prop::kReasonString)) {
        *why += ": " + rs->value;
      }
      return false;
    }
    default:
      *why = fmt::format("unexpected {} from the broker", PacketTypeName(p.type));
      core_->Count(core_->errors_by_reason, core_->errors, "protocol");
      EF_LOG(kError, kLog, "input {}: {}: {}; dropping the connection", core_->name, client_id_,
             *why);
      return false;
  }
}

int MqttSession::SkipOversizedPublish(std::string_view rest, uint64_t total, std::string* why) {
  uint8_t first = 0;
  uint32_t remaining = 0;
  size_t header = 0;
  std::string err;
  if (DecodeFixedHeader(rest, &first, &remaining, &header, &err) != DecodeStatus::kOk) return 0;
  const uint8_t qos = (first >> 1) & 3;
  if (qos == 3) {
    *why = "malformed packet from the broker: PUBLISH with QoS 3";
    return -1;
  }
  if (rest.size() < header + 2) return 0;
  const size_t topic_len =
      (static_cast<uint8_t>(rest[header]) << 8) | static_cast<uint8_t>(rest[header + 1]);
  const size_t need = header + 2 + topic_len + (qos > 0 ? 2 : 0);
  if (need > total) {
    *why = "malformed packet from the broker: PUBLISH topic beyond the packet";
    return -1;
  }
  if (rest.size() < need) return 0;
  const std::string topic(rest.substr(header + 2, topic_len));
  uint16_t id = 0;
  if (qos > 0) {
    id = static_cast<uint16_t>((static_cast<uint8_t>(rest[need - 2]) << 8) |
                               static_cast<uint8_t>(rest[need - 1]));
  }
  const bool resend =
      qos == 2 && (awaiting_rel_.count(id) ||
                   std::find(new_qos2_.begin(), new_qos2_.end(), id) != new_qos2_.end());
  if (!resend) {
    core_->received.fetch_add(1, std::memory_order_relaxed);
    core_->Count(core_->rejected_by_reason, core_->rejected, "oversized");
    core_->Warn("oversized",
                fmt::format("message on {} rejected: packet of {} bytes > max_payload_bytes {}",
                            topic, total, core_->cfg.max_payload_bytes));
  }
  if (qos == 1) AppendAck(PacketType::kPuback, id, &acks_);
  if (qos == 2) {
    AppendAck(PacketType::kPubrec, id, &acks_);
    if (!resend) new_qos2_.push_back(id);
  }
  skip_ = total;
  return 1;
}

std::string MqttSession::Receive() {
  const Clock::TimePoint start = core_->clock->Now();
  Clock::TimePoint last_rx = start;
  Clock::TimePoint last_tx = start;
  std::string why;
  while (true) {
    core_->ticks.fetch_add(1, std::memory_order_relaxed);
    if (core_->Stopping()) {
      std::string out;
      Packet d;
      d.type = PacketType::kDisconnect;
      if (Encode(d, level_, &out)) (void)transport_.WriteAll(out, DeadlineIn(1s));
      return "stopped";
    }
    // Decode every complete packet already read, up to one batch.
    batch_.clear();
    batch_bytes_ = 0;
    acks_.clear();
    new_qos2_.clear();
    bool more = false;
    while (true) {
      if (batch_.size() >= kMaxBatchMessages || batch_bytes_ >= kMaxBatchBytes) {
        more = true;
        break;
      }
      if (skip_ > 0) {  // the rest of an oversized PUBLISH, already answered
        size_t n = std::min<uint64_t>(skip_, in_.size() - in_pos_);
        in_pos_ += n;
        skip_ -= n;
        if (skip_ > 0) break;
        continue;
      }
      size_t consumed = 0;
      std::string err;
      std::string_view rest(in_.data() + in_pos_, in_.size() - in_pos_);
      DecodeStatus ds = Decode(rest, level_, max_packet_size_, &packet_, &consumed, &err);
      if (ds == DecodeStatus::kNeedMore) break;
      if (ds == DecodeStatus::kTooLarge && (static_cast<uint8_t>(rest[0]) >> 4) == 3) {
        // A PUBLISH over our packet size limit (3.1.1 cannot tell the broker the limit): answer
        // it from its variable header and stream the payload past without buffering it.
        int r = SkipOversizedPublish(rest, consumed, &why);
        if (r < 0) {
          core_->Count(core_->errors_by_reason, core_->errors, "protocol");
          EF_LOG(kError, kLog, "input {}: {}: {}; dropping the connection", core_->name, client_id_,
                 why);
          return why;
        }
        if (r == 0) break;  // its variable header is not complete yet
        last_rx = core_->clock->Now();
        continue;
      }
      if (ds == DecodeStatus::kMalformed || ds == DecodeStatus::kTooLarge) {
        why = ds == DecodeStatus::kMalformed
                  ? "malformed packet from the broker: " + err
                  : fmt::format(
                        "packet of {} bytes from the broker exceeds our maximum packet "
                        "size {}",
                        consumed, max_packet_size_);
        core_->Count(core_->errors_by_reason, core_->errors, "protocol");
        EF_LOG(kError, kLog, "input {}: {}: {}; dropping the connection", core_->name, client_id_,
               why);
        return why;  // nothing of this round is acknowledged: the broker redelivers
      }
      in_pos_ += consumed;
      last_rx = core_->clock->Now();
      if (!Handle(packet_, &why)) {
        if (packet_.type == PacketType::kPublish) {
          core_->Count(core_->errors_by_reason, core_->errors, "protocol");
          EF_LOG(kError, kLog, "input {}: {}: {}; dropping the connection", core_->name, client_id_,
                 why);
        }
        return why;
      }
    }
    if (in_pos_ > 0) {
      in_.erase(0, in_pos_);
      in_pos_ = 0;
    }
    if (!batch_.empty()) {
      const size_t n = batch_.size();
      Status st = core_->sink->Append(std::move(batch_));
      batch_.clear();
      if (!st.ok()) {
        append_failed_ = true;
        core_->Count(core_->errors_by_reason, core_->errors,
                     "append_" + std::string(CodeName(st.code())));
        why = fmt::format(
            "the buffer refused {} message(s) ({}); each stays unacknowledged at the broker, "
            "which redelivers it",
            n, st.ToString());
        if (st.code() == Status::Code::kAborted || core_->Stopping()) {
          // Shutdown cancelled a blocked append (Buffer::CancelBlockedAppends): said every time.
          EF_LOG(kWarning, kLog, "input {}: {}", core_->name, why);
        } else {
          core_->Warn("append", why);
        }
        return why;
      }
      core_->accepted.fetch_add(n, std::memory_order_relaxed);
      // We did not read while the append ran: silence meanwhile is not the broker's.
      last_rx = std::max(last_rx, core_->clock->Now() - keep_alive_ / 2);
    }
    for (uint16_t id : new_qos2_) awaiting_rel_.insert(id);
    if (!acks_.empty()) {
      Status st = transport_.WriteAll(acks_, DeadlineIn(kWriteTimeout));
      if (!st.ok()) return "sending acknowledgements: " + st.message();
      last_tx = core_->clock->Now();
    }
    if (more) continue;

    if (keep_alive_.count() > 0) {
      const Clock::TimePoint now = core_->clock->Now();
      if (now - last_rx > keep_alive_ * 3 / 2) {
        return fmt::format(
            "nothing from the broker for {} ms (keep alive {} ms)",
            std::chrono::duration_cast<std::chrono::milliseconds>(now - last_rx).count(),
            keep_alive_.count());
      }
      if (now - last_tx >= keep_alive_ / 2) {
        std::string ping;
        Packet p;
        p.type = PacketType::kPingreq;
        (void)Encode(p, level_, &ping);
        Status st = transport_.WriteAll(ping, DeadlineIn(kWriteTimeout));
        if (!st.ok()) return "sending PINGREQ: " + st.message();
        last_tx = now;
      }
    }
    if (transport_.WaitReadable(100ms)) {
      auto r = transport_.ReadAvailable(&in_, kMaxBatchBytes);
      if (!r.ok() && !core_->Stopping()) return r.status().message();
    }
  }
}

}  // namespace edgeferry::sensors::mqtt
