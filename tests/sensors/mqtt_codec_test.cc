// The MQTT codec (sensors/mqtt_codec.h): every packet type in both versions round-trips,
// properties, remaining-length edge cases, truncated and malformed input, and random bytes
// (this runs under ASan in the asan preset's unit step).
#include <doctest/doctest.h>

#include <fmt/format.h>

#include <random>

#include "sensors/mqtt_codec.h"
#include "sensors/mqtt_transport.h"
#include "sensors/sensors.h"

namespace edgeferry::sensors::mqtt {
namespace {

constexpr uint32_t kMax = kMaxRemainingLength + 5;

Packet RoundTrip(const Packet& in, uint8_t level) {
  std::string bytes;
  REQUIRE(Encode(in, level, &bytes));
  Packet out;
  size_t consumed = 0;
  std::string err;
  REQUIRE_MESSAGE(Decode(bytes, level, kMax, &out, &consumed, &err) == DecodeStatus::kOk, err);
  CHECK(consumed == bytes.size());
  // Every proper prefix is incomplete, never an error or a crash.
  for (size_t n = 0; n < bytes.size(); ++n) {
    Packet scratch;
    std::string e;
    size_t c = 0;
    CHECK(Decode(std::string_view(bytes).substr(0, n), level, kMax, &scratch, &c, &e) ==
          DecodeStatus::kNeedMore);
  }
  return out;
}

Properties SomeProperties() {
  return {{prop::kUserProperty, 0, "site", "north"},
          {prop::kUserProperty, 0, "site", "south"},  // repeats are kept, in order
          {prop::kContentType, 0, {}, "application/json"},
          {prop::kMessageExpiryInterval, 3600, {}, {}},
          {prop::kCorrelationData, 0, {}, std::string("\0\1\xff", 3)},
          {prop::kSubscriptionIdentifier, 268'435'455, {}, {}},
          {prop::kPayloadFormatIndicator, 1, {}, {}},
          {prop::kTopicAliasMaximum, 0, {}, {}}};
}

std::string Hex(std::string_view bytes) {
  std::string s;
  for (unsigned char c : bytes) s += fmt::format("{:02x}", c);
  return s;
}

TEST_CASE("mqtt codec: CONNECT round-trips in 3.1.1 and 5, with and without will and credentials") {
  for (uint8_t level : {kLevel311, kLevel5}) {
    CAPTURE(level);
    Packet c;
    c.type = PacketType::kConnect;
    c.protocol_level = level;
    c.clean_start = false;
    c.keep_alive_s = 30;
    c.client_id = "edgeferry-gw1-plant";
    c.username = "user";
    c.password = std::string("p\0w", 3);
    if (level == kLevel5) {
      c.properties = {{prop::kSessionExpiryInterval, 604800, {}, {}},
                      {prop::kReceiveMaximum, 1000, {}, {}},
                      {prop::kMaximumPacketSize, 1 << 20, {}, {}}};
    }
    Packet out = RoundTrip(c, level);
    CHECK(out.type == PacketType::kConnect);
    CHECK(out.protocol_level == level);
    CHECK(!out.clean_start);
    CHECK(out.keep_alive_s == 30);
    CHECK(out.client_id == c.client_id);
    CHECK(out.username == c.username);
    CHECK(out.password == c.password);
    CHECK(out.properties == c.properties);
    CHECK(!out.will);

    c.will = true;
    c.will_qos = 1;
    c.will_retain = true;
    c.will_topic = "gw/status";
    c.will_payload = "offline";
    if (level == kLevel5) c.will_properties = {{prop::kWillDelayInterval, 5, {}, {}}};
    c.username.reset();
    c.password.reset();
    c.clean_start = true;
    out = RoundTrip(c, level);
    CHECK(out.will);
    CHECK(out.will_qos == 1);
    CHECK(out.will_retain);
    CHECK(out.will_topic == "gw/status");
    CHECK(out.will_payload == "offline");
    CHECK(out.will_properties == c.will_properties);
    CHECK(!out.username);
    CHECK(!out.password);
    CHECK(out.clean_start);
  }
  // The exact bytes of a minimal 3.1.1 CONNECT (spec 3.1): name, level 4, flags, keep alive, id.
  Packet c;
  c.type = PacketType::kConnect;
  c.clean_start = true;
  c.keep_alive_s = 60;
  c.client_id = "a";
  std::string bytes;
  REQUIRE(Encode(c, kLevel311, &bytes));
  CHECK(Hex(bytes) == "100d00044d5154540402003c000161");
}

TEST_CASE(
    "mqtt codec: CONNACK, acks, SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PING, DISCONNECT, AUTH") {
  for (uint8_t level : {kLevel311, kLevel5}) {
    CAPTURE(level);
    const bool v5 = level == kLevel5;
    Packet ca;
    ca.type = PacketType::kConnack;
    ca.session_present = true;
    ca.reason_code = v5 ? 0x86 : 4;
    if (v5)
      ca.properties = {{prop::kServerKeepAlive, 20, {}, {}}, {prop::kReasonString, 0, {}, "no"}};
    Packet out = RoundTrip(ca, level);
    CHECK(out.type == PacketType::kConnack);
    CHECK(out.session_present);
    CHECK(out.reason_code == ca.reason_code);
    CHECK(out.properties == ca.properties);

    for (PacketType t :
         {PacketType::kPuback, PacketType::kPubrec, PacketType::kPubrel, PacketType::kPubcomp}) {
      CAPTURE(PacketTypeName(t));
      Packet a;
      a.type = t;
      a.packet_id = 65535;
      out = RoundTrip(a, level);
      CHECK(out.type == t);
      CHECK(out.packet_id == 65535);
      CHECK(out.reason_code == 0);
      std::string fast;
      AppendAck(t, 65535, &fast);
      std::string slow;
      REQUIRE(Encode(a, level, &slow));
      CHECK(fast == slow);  // the 4-byte success ack is the same in both versions
      if (v5) {
        a.reason_code = 0x92;
        a.properties = {{prop::kReasonString, 0, {}, "gone"}};
        out = RoundTrip(a, level);
        CHECK(out.reason_code == 0x92);
        CHECK(out.properties == a.properties);
      }
    }

    Packet s;
    s.type = PacketType::kSubscribe;
    s.packet_id = 7;
    s.subscriptions = {{"plant/+/temp", 1}, {"$share/ef/s/#", static_cast<uint8_t>(v5 ? 0x12 : 2)}};
    if (v5) s.properties = {{prop::kSubscriptionIdentifier, 42, {}, {}}};
    out = RoundTrip(s, level);
    CHECK(out.packet_id == 7);
    CHECK(out.subscriptions == s.subscriptions);
    CHECK(out.properties == s.properties);

    Packet sa;
    sa.type = PacketType::kSuback;
    sa.packet_id = 7;
    sa.reason_codes = {1, 0x80};
    out = RoundTrip(sa, level);
    CHECK(out.reason_codes == sa.reason_codes);

    Packet u;
    u.type = PacketType::kUnsubscribe;
    u.packet_id = 8;
    u.filters = {"a/b", "c/#"};
    out = RoundTrip(u, level);
    CHECK(out.filters == u.filters);

    Packet ua;
    ua.type = PacketType::kUnsuback;
    ua.packet_id = 8;
    if (v5) ua.reason_codes = {0, 0x11};
    out = RoundTrip(ua, level);
    CHECK(out.packet_id == 8);
    CHECK(out.reason_codes == ua.reason_codes);

    for (PacketType t : {PacketType::kPingreq, PacketType::kPingresp, PacketType::kDisconnect}) {
      Packet p;
      p.type = t;
      std::string bytes;
      REQUIRE(Encode(p, level, &bytes));
      CHECK(bytes.size() == 2);
      CHECK(RoundTrip(p, level).type == t);
    }
    Packet auth;
    auth.type = PacketType::kAuth;
    auth.reason_code = 0x18;
    auth.properties = {{prop::kAuthenticationMethod, 0, {}, "SCRAM"},
                       {prop::kAuthenticationData, 0, {}, "xyz"}};
    std::string bytes;
    if (v5) {
      out = RoundTrip(auth, level);
      CHECK(out.reason_code == 0x18);
      CHECK(out.properties == auth.properties);
      Packet d;
      d.type = PacketType::kDisconnect;
      d.reason_code = 0x8E;
      d.properties = {{prop::kReasonString, 0, {}, "session taken over"}};
      out = RoundTrip(d, level);
      CHECK(out.reason_code == 0x8E);
      CHECK(out.properties == d.properties);
    } else {
      CHECK(!Encode(auth, level, &bytes));  // AUTH does not exist in 3.1.1
      CHECK(bytes.empty());
    }
  }
}

TEST_CASE(
    "mqtt codec: PUBLISH in both versions: QoS, flags, properties, binary and empty payloads") {
  for (uint8_t level : {kLevel311, kLevel5}) {
    for (int qos = 0; qos <= 2; ++qos) {
      CAPTURE(level);
      CAPTURE(qos);
      Packet p;
      p.type = PacketType::kPublish;
      p.qos = static_cast<uint8_t>(qos);
      p.dup = qos > 0;
      p.retain = qos == 1;
      p.topic = "plant/pump7/temp";
      p.packet_id = qos ? 4242 : 0;
      p.payload = std::string("\0\x01\xfe\xff binary", 11);
      if (level == kLevel5) p.properties = SomeProperties();
      Packet out = RoundTrip(p, level);
      CHECK(out.qos == qos);
      CHECK(out.dup == p.dup);
      CHECK(out.retain == p.retain);
      CHECK(out.topic == p.topic);
      CHECK(out.packet_id == p.packet_id);
      CHECK(out.payload == p.payload);
      CHECK(out.properties == p.properties);
      p.payload.clear();
      CHECK(RoundTrip(p, level).payload.empty());
    }
  }
}

TEST_CASE("mqtt codec: remaining length edge cases") {
  struct Case {
    uint32_t value;
    size_t header;
  };
  for (Case c : {Case{0, 2}, Case{127, 2}, Case{128, 3}, Case{16'383, 3}, Case{16'384, 4},
                 Case{2'097'151, 4}, Case{2'097'152, 5}, Case{268'435'455, 5}}) {
    CAPTURE(c.value);
    // A PUBLISH whose remaining length is exactly c.value (topic "t", QoS 0).
    Packet p;
    p.type = PacketType::kPublish;
    p.topic = "t";
    if (c.value < 3) continue;
    p.payload.assign(c.value - 3, 'x');
    std::string bytes;
    if (c.value > 4'000'000) {
      // Too big to build cheaply: check the header decoder on hand-made bytes.
      std::string head = {'\x30', '\xff', '\xff', '\xff', '\x7f'};
      uint8_t first;
      uint32_t rem;
      size_t hs;
      std::string err;
      REQUIRE(DecodeFixedHeader(head, &first, &rem, &hs, &err) == DecodeStatus::kOk);
      CHECK(rem == 268'435'455);
      CHECK(hs == 5);
      continue;
    }
    REQUIRE(Encode(p, kLevel311, &bytes));
    CHECK(bytes.size() == c.header + c.value);
    uint8_t first;
    uint32_t rem;
    size_t hs;
    std::string err;
    REQUIRE(DecodeFixedHeader(bytes, &first, &rem, &hs, &err) == DecodeStatus::kOk);
    CHECK(rem == c.value);
    CHECK(hs == c.header);
  }
  {
    // Zero-length PINGRESP, and a remaining length of 0 encoded in more bytes than needed
    // (allowed by the decoder: the value is what counts).
    std::string bytes = {'\xd0', '\x00'};
    Packet out;
    size_t consumed;
    std::string err;
    CHECK(Decode(bytes, kLevel5, kMax, &out, &consumed, &err) == DecodeStatus::kOk);
    CHECK(out.type == PacketType::kPingresp);
  }
  // A fifth continuation byte is malformed.
  std::string five = {'\x30', '\xff', '\xff', '\xff', '\xff', '\x01'};
  uint8_t first;
  uint32_t rem;
  size_t hs;
  std::string err;
  CHECK(DecodeFixedHeader(five, &first, &rem, &hs, &err) == DecodeStatus::kMalformed);
  CHECK(!err.empty());
  // Too large for the caller's limit: reported before the bytes are there, with the full size.
  Packet out;
  size_t consumed = 0;
  CHECK(Decode(std::string_view("\x30\xff\xff\x03", 4), kLevel5, 1000, &out, &consumed, &err) ==
        DecodeStatus::kTooLarge);
  CHECK(consumed == 4 + 65'535);
  // Encoding refuses a string over 65,535 bytes.
  Packet big;
  big.type = PacketType::kPublish;
  big.topic.assign(65'536, 't');
  std::string bytes;
  CHECK(!Encode(big, kLevel311, &bytes));
  CHECK(bytes.empty());
}

TEST_CASE("mqtt codec: malformed packets are reported with a reason, never accepted") {
  struct Case {
    const char* what;
    std::string bytes;
    uint8_t level;
  };
  using namespace std::string_literals;
  const Case cases[] = {
      {"reserved type 0", "\x00\x00"s, kLevel5},
      {"AUTH on 3.1.1", "\xf0\x00"s, kLevel311},
      {"PUBREL with flags 0", "\x60\x02\x00\x01"s, kLevel5},
      {"SUBACK with flags", "\x92\x03\x00\x01\x00"s, kLevel5},
      {"PUBLISH QoS 3", "\x36\x05\x00\x01t\x00\x01"s, kLevel5},
      {"PUBLISH QoS 0 with DUP", "\x38\x03\x00\x01t"s, kLevel311},
      {"PUBLISH packet id 0", "\x32\x05\x00\x01t\x00\x00"s, kLevel311},
      {"PUBLISH topic longer than packet", "\x30\x03\x00\x09t"s, kLevel311},
      {"PUBLISH invalid UTF-8 topic", "\x30\x04\x00\x02\xc3\x28"s, kLevel311},
      {"PUBLISH topic with NUL", "\x30\x04\x00\x02t\x00"s, kLevel311},
      {"PUBLISH topic with wildcard", "\x30\x04\x00\x02t#"s, kLevel311},
      {"PUBLISH empty topic without alias", "\x30\x03\x00\x00\x00"s, kLevel5},
      {"PUBLISH property length beyond packet", "\x30\x05\x00\x01t\x09\x01"s, kLevel5},
      {"PUBLISH unknown property", "\x30\x06\x00\x01t\x02\x7f\x00"s, kLevel5},
      {"PUBLISH property value truncated", "\x30\x06\x00\x01t\x02\x02\x00"s, kLevel5},
      {"PUBLISH user property missing value", "\x30\x09\x00\x01t\x05\x26\x00\x01k\x00"s, kLevel5},
      {"CONNACK reserved flags", "\x20\x02\x02\x00"s, kLevel311},
      {"CONNACK trailing bytes (3.1.1)", "\x20\x03\x00\x00\x00"s, kLevel311},
      {"PUBACK trailing bytes (3.1.1)", "\x40\x03\x00\x01\x00"s, kLevel311},
      {"PUBACK packet id 0", "\x40\x02\x00\x00"s, kLevel311},
      {"SUBACK without codes", "\x90\x02\x00\x01"s, kLevel311},
      {"PINGRESP with a body", "\xd0\x01\x00"s, kLevel311},
      {"DISCONNECT with a body (3.1.1)", "\xe0\x01\x00"s, kLevel311},
      {"CONNECT wrong protocol name", "\x10\x0c\x00\x04MQTX\x04\x02\x00\x3c\x00\x00"s, kLevel311},
      {"CONNECT level 3", "\x10\x0c\x00\x04MQTT\x03\x02\x00\x3c\x00\x00"s, kLevel311},
      {"CONNECT reserved flag", "\x10\x0c\x00\x04MQTT\x04\x03\x00\x3c\x00\x00"s, kLevel311},
      {"SUBSCRIBE without filters", "\x82\x02\x00\x01"s, kLevel311},
      {"SUBSCRIBE QoS 3", "\x82\x06\x00\x01\x00\x01t\x03"s, kLevel311},
  };
  for (const Case& c : cases) {
    CAPTURE(c.what);
    Packet out;
    size_t consumed = 0;
    std::string err;
    CHECK(Decode(c.bytes, c.level, kMax, &out, &consumed, &err) == DecodeStatus::kMalformed);
    CHECK(!err.empty());
  }
}

TEST_CASE("mqtt codec: random and mutated bytes never crash the decoder") {
  std::mt19937 rng(12345);
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_int_distribution<int> len(0, 64);
  // Valid packets to mutate: the decoder must survive every single-byte change and truncation.
  std::vector<std::string> seeds;
  for (uint8_t level : {kLevel311, kLevel5}) {
    Packet p;
    p.type = PacketType::kPublish;
    p.qos = 2;
    p.packet_id = 9;
    p.topic = "a/b";
    p.payload = "payload";
    if (level == kLevel5) p.properties = SomeProperties();
    std::string b;
    REQUIRE(Encode(p, level, &b));
    seeds.push_back(b);
    Packet c;
    c.type = PacketType::kConnect;
    c.client_id = "x";
    c.username = "u";
    c.password = "p";
    b.clear();
    REQUIRE(Encode(c, level, &b));
    seeds.push_back(b);
  }
  size_t ok = 0, malformed = 0;
  for (int i = 0; i < 200'000; ++i) {
    std::string bytes;
    if (i % 2 == 0) {
      int n = len(rng);
      for (int k = 0; k < n; ++k) bytes.push_back(static_cast<char>(byte(rng)));
    } else {
      bytes = seeds[static_cast<size_t>(i / 2) % seeds.size()];
      int flips = 1 + byte(rng) % 3;
      for (int k = 0; k < flips; ++k) {
        bytes[static_cast<size_t>(byte(rng)) % bytes.size()] = static_cast<char>(byte(rng));
      }
    }
    for (uint8_t level : {kLevel311, kLevel5}) {
      Packet out;
      size_t consumed = 0;
      std::string err;
      DecodeStatus st = Decode(bytes, level, 4096, &out, &consumed, &err);
      if (st == DecodeStatus::kOk) {
        ++ok;
        CHECK(consumed <= bytes.size());
        CHECK(consumed >= 2);
      } else if (st == DecodeStatus::kMalformed) {
        ++malformed;
        CHECK(!err.empty());
      }
    }
  }
  MESSAGE("random decode: ", ok, " decoded, ", malformed, " malformed");
  CHECK(ok > 0);
  CHECK(malformed > 0);
}

TEST_CASE("mqtt: broker URIs: schemes, default ports, IPv6, WebSockets refused") {
  auto a = ParseBrokerUri("tcp://127.0.0.1:1884");
  REQUIRE(a.ok());
  CHECK(a->host == "127.0.0.1");
  CHECK(a->port == 1884);
  CHECK(!a->tls);
  a = ParseBrokerUri("mqtts://broker.local");
  REQUIRE(a.ok());
  CHECK(a->port == 8883);
  CHECK(a->tls);
  a = ParseBrokerUri("mqtt://[::1]");
  REQUIRE(a.ok());
  CHECK(a->host == "::1");
  CHECK(a->port == 1883);
  a = ParseBrokerUri("ssl://[::1]:9000/path");
  REQUIRE(a.ok());
  CHECK(a->port == 9000);
  CHECK(a->tls);
  for (const char* bad : {"ws://h:80", "wss://h", "http://h", "tcp://:1883", "tcp://h:99999",
                          "tcp://h:x", "tcp://[::1"}) {
    CAPTURE(bad);
    auto r = ParseBrokerUri(bad);
    REQUIRE(!r.ok());
    CHECK(r.status().message().find(bad) != std::string::npos);
  }
  CHECK(ParseBrokerUri("wss://h").status().message().find("WebSockets") != std::string::npos);
}

TEST_CASE("mqtt: the client version names the OpenSSL it runs with") {
  std::string v = MqttClientVersion();
  CHECK(v.find("MQTT 3.1.1/5") != std::string::npos);
  CHECK(v.find("OpenSSL 3.") != std::string::npos);
}

}  // namespace
}  // namespace edgeferry::sensors::mqtt
