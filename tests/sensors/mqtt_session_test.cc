// The MQTT input's acknowledgement contract against a scripted broker on loopback (a test
// double that speaks the codec, so it can hold, reorder and corrupt packets a real Mosquitto
// would not): PUBACKs only after the durable append, many messages per append, in order; QoS 2
// duplicates not appended twice; no ack after a failed append; a malformed packet drops the
// connection and the input reconnects.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>

#include "sensors/mqtt_codec.h"
#include "sensors/sensors.h"
#include "tests/sensors/fake_sink.h"

namespace edgeferry::sensors::mqtt {
namespace {

using namespace std::chrono_literals;
using testing::FakeSink;

// A one-connection-at-a-time MQTT server on 127.0.0.1 driven step by step by the test.
class ScriptedBroker {
 public:
  explicit ScriptedBroker(uint8_t level) : level_(level) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(listen_fd_ >= 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(::listen(listen_fd_, 4) == 0);
    socklen_t len = sizeof a;
    REQUIRE(::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len) == 0);
    port_ = ntohs(a.sin_port);
  }
  ~ScriptedBroker() {
    CloseClient();
    ::close(listen_fd_);
  }
  int port() const { return port_; }
  std::string uri() const { return fmt::format("tcp://127.0.0.1:{}", port_); }

  bool Accept(std::chrono::milliseconds timeout = 10s) {
    CloseClient();
    pollfd p{listen_fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1) return false;
    fd_ = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    in_.clear();
    eof_ = false;
    return fd_ >= 0;
  }
  void CloseClient() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  // The next packet from the client, or nullopt on timeout / EOF (eof() tells which).
  std::optional<Packet> Read(std::chrono::milliseconds timeout = 10s) {
    auto end = std::chrono::steady_clock::now() + timeout;
    while (true) {
      Packet p;
      size_t consumed = 0;
      std::string err;
      DecodeStatus st = Decode(in_, level_, 1 << 20, &p, &consumed, &err);
      if (st == DecodeStatus::kOk) {
        in_.erase(0, consumed);
        return p;
      }
      REQUIRE_MESSAGE(st == DecodeStatus::kNeedMore, err);
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          end - std::chrono::steady_clock::now());
      if (left.count() <= 0) return std::nullopt;
      pollfd pf{fd_, POLLIN, 0};
      if (::poll(&pf, 1, static_cast<int>(left.count())) != 1) return std::nullopt;
      char buf[4096];
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) {
        eof_ = true;
        return std::nullopt;
      }
      in_.append(buf, static_cast<size_t>(n));
    }
  }
  // Reads until a packet that is not a PINGREQ (answered) arrives.
  std::optional<Packet> ReadSkippingPings(std::chrono::milliseconds timeout = 10s) {
    while (true) {
      auto p = Read(timeout);
      if (!p || p->type != PacketType::kPingreq) return p;
      Packet r;
      r.type = PacketType::kPingresp;
      Send(r);
    }
  }
  bool eof() const { return eof_; }
  void SendRaw(const std::string& bytes) {
    REQUIRE(::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) ==
            static_cast<ssize_t>(bytes.size()));
  }
  void Send(const Packet& p) {
    std::string b;
    REQUIRE(Encode(p, level_, &b));
    SendRaw(b);
  }
  std::string Publish(int qos, uint16_t id, const std::string& payload, bool dup = false) {
    Packet p;
    p.type = PacketType::kPublish;
    p.qos = static_cast<uint8_t>(qos);
    p.packet_id = id;
    p.dup = dup;
    p.topic = "t/x";
    p.payload = payload;
    std::string b;
    REQUIRE(Encode(p, level_, &b));
    return b;
  }
  // CONNECT -> CONNACK (no session) -> SUBSCRIBE -> SUBACK. Returns the CONNECT.
  Packet Handshake() {
    REQUIRE(Accept());
    auto c = Read();
    REQUIRE(c.has_value());
    REQUIRE(c->type == PacketType::kConnect);
    Packet ack;
    ack.type = PacketType::kConnack;
    Send(ack);
    auto s = Read();
    REQUIRE(s.has_value());
    REQUIRE(s->type == PacketType::kSubscribe);
    Packet sa;
    sa.type = PacketType::kSuback;
    sa.packet_id = s->packet_id;
    for (const auto& sub : s->subscriptions) sa.reason_codes.push_back(sub.options & 3);
    Send(sa);
    return *c;
  }

 private:
  uint8_t level_;
  int listen_fd_ = -1;
  int fd_ = -1;
  int port_ = 0;
  std::string in_;
  bool eof_ = false;
};

config::InputConfig Config(const ScriptedBroker& b, int version, int qos) {
  config::InputConfig cfg;
  cfg.name = "scripted";
  cfg.type = "mqtt";
  config::MqttInputConfig m;
  m.uris = {b.uri()};
  m.client_id = "scripted-client";
  m.version = version;
  m.subscriptions = {{"t/#", qos}};
  m.reconnect_min_ms = 20;
  m.reconnect_max_ms = 100;
  m.keep_alive_s = 30;
  cfg.mqtt = m;
  return cfg;
}

std::unique_ptr<Input> Start(const config::InputConfig& cfg, RecordSink* sink) {
  auto in = CreateInput(cfg, "gw", sink);
  REQUIRE_MESSAGE(in.ok(), in.status().ToString());
  REQUIRE((*in)->Start().ok());
  return std::move(in).value();
}

TEST_CASE(
    "mqtt session: PUBACKs only after the append returned, all read messages in one append, "
    "acks in order") {
  for (int version : {3, 5}) {
    CAPTURE(version);
    ScriptedBroker broker(version == 5 ? kLevel5 : kLevel311);
    FakeSink sink;
    sink.Block();
    auto input = Start(Config(broker, version, 1), &sink);
    Packet connect = broker.Handshake();
    CHECK(!connect.clean_start);
    CHECK(connect.client_id == "scripted-client");
    if (version == 5) {
      const Property* rm = FindProperty(connect.properties, prop::kReceiveMaximum);
      REQUIRE(rm != nullptr);
      CHECK(rm->number == 1000);
      CHECK(FindProperty(connect.properties, prop::kSessionExpiryInterval) != nullptr);
      const Property* ta = FindProperty(connect.properties, prop::kTopicAliasMaximum);
      REQUIRE(ta != nullptr);
      CHECK(ta->number == 0);
    }
    std::string five;
    for (uint16_t id = 1; id <= 5; ++id) five += broker.Publish(1, id, fmt::format("m{}", id));
    broker.SendRaw(five);  // one write: the client reads them together
    REQUIRE(sink.WaitForCalls(1, 10s));
    // The append is held by the buffer: no PUBACK may reach the broker meanwhile.
    auto early = broker.Read(300ms);
    CHECK(!early.has_value());
    CHECK(!broker.eof());
    sink.Unblock();
    for (uint16_t id = 1; id <= 5; ++id) {
      auto ack = broker.ReadSkippingPings();
      REQUIRE(ack.has_value());
      CHECK(ack->type == PacketType::kPuback);
      CHECK(ack->packet_id == id);
    }
    CHECK(sink.calls() == 1);  // one Append for the five messages
    auto recs = sink.records();
    REQUIRE(recs.size() == 5);
    for (size_t i = 0; i < 5; ++i) CHECK(recs[i].payload == fmt::format("m{}", i + 1));
    input->Stop();
  }
}

TEST_CASE(
    "mqtt session: QoS 2 is stored once, PUBREC after the append, a DUP re-send is not "
    "appended again") {
  for (int version : {3, 5}) {
    CAPTURE(version);
    ScriptedBroker broker(version == 5 ? kLevel5 : kLevel311);
    FakeSink sink;
    auto input = Start(Config(broker, version, 2), &sink);
    broker.Handshake();
    broker.SendRaw(broker.Publish(2, 7, "once"));
    auto rec = broker.ReadSkippingPings();
    REQUIRE(rec.has_value());
    CHECK(rec->type == PacketType::kPubrec);
    CHECK(rec->packet_id == 7);
    CHECK(sink.size() == 1);  // PUBREC came after the append
    broker.SendRaw(broker.Publish(2, 7, "once", /*dup=*/true));
    rec = broker.ReadSkippingPings();
    REQUIRE(rec.has_value());
    CHECK(rec->type == PacketType::kPubrec);
    Packet rel;
    rel.type = PacketType::kPubrel;
    rel.packet_id = 7;
    broker.Send(rel);
    auto comp = broker.ReadSkippingPings();
    REQUIRE(comp.has_value());
    CHECK(comp->type == PacketType::kPubcomp);
    CHECK(comp->packet_id == 7);
    // Released: the id may carry a new message now.
    broker.SendRaw(broker.Publish(2, 7, "again"));
    rec = broker.ReadSkippingPings();
    REQUIRE(rec.has_value());
    CHECK(rec->type == PacketType::kPubrec);
    auto recs = sink.records();
    REQUIRE(recs.size() == 2);
    CHECK(recs[0].payload == "once");
    CHECK(recs[0].headers[1].value == "2");  // mqtt.qos
    CHECK(recs[1].payload == "again");
    CHECK(input->Stats().received == 2);
    input->Stop();
  }
}

TEST_CASE("mqtt session: a failed append sends no ack and reconnects, the redelivery is stored") {
  ScriptedBroker broker(kLevel5);
  FakeSink sink;
  sink.FailWith(Status::IOError("disk gone"));
  auto input = Start(Config(broker, 5, 1), &sink);
  broker.Handshake();
  broker.SendRaw(broker.Publish(1, 3, "m"));
  // No PUBACK: the client drops the connection instead.
  auto p = broker.ReadSkippingPings();
  CHECK(!p.has_value());
  CHECK(broker.eof());
  CHECK(sink.size() == 0);
  sink.FailWith(Status::Ok());
  // Reconnect; the broker (session present) redelivers with DUP.
  REQUIRE(broker.Accept());
  auto c = broker.Read();
  REQUIRE(c.has_value());
  REQUIRE(c->type == PacketType::kConnect);
  Packet ack;
  ack.type = PacketType::kConnack;
  ack.session_present = true;
  broker.Send(ack);
  broker.SendRaw(broker.Publish(1, 3, "m", /*dup=*/true));
  p = broker.ReadSkippingPings();
  REQUIRE(p.has_value());
  CHECK(p->type == PacketType::kPuback);
  CHECK(p->packet_id == 3);
  CHECK(sink.size() == 1);
  CHECK(input->Stats().errors_by_reason["append_IOError"] == 1);
  input->Stop();
}

TEST_CASE(
    "mqtt session: malformed packets from the broker drop the connection, the input "
    "reconnects") {
  using namespace std::string_literals;
  ScriptedBroker broker(kLevel5);
  FakeSink sink;
  auto input = Start(Config(broker, 5, 1), &sink);
  const std::string garbage[] = {
      "\x36\x05\x00\x01t\x00\x01"s,                  // PUBLISH QoS 3
      "\x30\x04\x00\x02\xc3\x28"s,                   // invalid UTF-8 topic
      "\x3f\xff\xff\xff\xff\x01"s,                   // remaining length of 5 bytes
      "\x30\x06\x00\x01t\x02\x7f\x00"s,              // unknown property
      "\x20\x02\x00\x00"s,                           // a second CONNACK
      "\x32\x09\x00\x01t\x00\x01\x03\x23\x00\x01"s,  // topic alias we did not allow
  };
  for (const std::string& g : garbage) {
    broker.Handshake();
    broker.SendRaw(g);
    auto p = broker.ReadSkippingPings();
    CHECK(!p.has_value());
    CHECK(broker.eof());
  }
  // Still alive: a good message after the last reconnect is stored and acknowledged.
  broker.Handshake();
  broker.SendRaw(broker.Publish(1, 1, "fine"));
  auto p = broker.ReadSkippingPings();
  REQUIRE(p.has_value());
  CHECK(p->type == PacketType::kPuback);
  CHECK(sink.size() == 1);
  CHECK(input->Stats().errors_by_reason["protocol"] == 6);
  input->Stop();
}

TEST_CASE(
    "mqtt session: a PUBLISH over the packet size limit is refused by rule, acknowledged "
    "and streamed past") {
  for (int version : {3, 5}) {
    CAPTURE(version);
    ScriptedBroker broker(version == 5 ? kLevel5 : kLevel311);
    FakeSink sink;
    auto cfg = Config(broker, version, 2);
    cfg.mqtt->max_payload_bytes = 10;  // packet limit: 10 B + 128 KiB
    auto input = Start(cfg, &sink);
    broker.Handshake();
    // 1 MiB, QoS 1 then QoS 2, then a small one: all in one write.
    broker.SendRaw(broker.Publish(1, 1, std::string(1 << 20, 'x')) +
                   broker.Publish(2, 2, std::string(1 << 20, 'y')) + broker.Publish(1, 3, "small"));
    auto a = broker.ReadSkippingPings();
    REQUIRE(a.has_value());
    CHECK(a->type == PacketType::kPuback);
    CHECK(a->packet_id == 1);
    a = broker.ReadSkippingPings();
    REQUIRE(a.has_value());
    CHECK(a->type == PacketType::kPubrec);
    CHECK(a->packet_id == 2);
    a = broker.ReadSkippingPings();
    REQUIRE(a.has_value());
    CHECK(a->type == PacketType::kPuback);
    CHECK(a->packet_id == 3);
    auto recs = sink.records();
    REQUIRE(recs.size() == 1);
    CHECK(recs[0].payload == "small");
    auto st = input->Stats();
    CHECK(st.received == 3);
    CHECK(st.rejected_by_reason["oversized"] == 2);
    CHECK(st.errors == 0);
    input->Stop();
  }
}

TEST_CASE("mqtt session: keepalive pings, and a silent broker is dropped after 1.5 x keepalive") {
  ScriptedBroker broker(kLevel311);
  FakeSink sink;
  auto cfg = Config(broker, 3, 1);
  cfg.mqtt->keep_alive_s = 1;
  auto input = Start(cfg, &sink);
  broker.Handshake();
  auto ping = broker.Read(3s);
  REQUIRE(ping.has_value());
  CHECK(ping->type == PacketType::kPingreq);
  // Never answer: the client gives up on this connection and connects again.
  while (broker.Read(5s).has_value()) {
  }
  CHECK(broker.eof());
  REQUIRE(broker.Accept());
  auto c = broker.Read();
  REQUIRE(c.has_value());
  CHECK(c->type == PacketType::kConnect);
  input->Stop();
}

}  // namespace
}  // namespace edgeferry::sensors::mqtt
