// The MQTT input against a real Mosquitto from the rig.
#include <doctest/doctest.h>

#include <fmt/format.h>

#include <fstream>
#include <set>

#include "sensors/sensors.h"
#include "tests/rig/rig.h"
#include "tests/sensors/cut_proxy.h"
#include "tests/sensors/fake_sink.h"
#include "tests/sensors/mqtt_publisher.h"

namespace edgeferry::sensors {
namespace {

using namespace std::chrono_literals;
using testing::FakeSink;
using testing::Publisher;

config::InputConfig MqttConfig(const rig::Mosquitto& broker, const std::string& client_id,
                               std::vector<config::MqttSubscription> subs, int version = 5) {
  config::InputConfig cfg;
  cfg.name = "plant";
  cfg.type = "mqtt";
  config::MqttInputConfig m;
  m.uris = {broker.uri()};
  m.client_id = client_id;
  m.version = version;
  m.subscriptions = std::move(subs);
  m.reconnect_min_ms = 50;
  m.reconnect_max_ms = 500;
  m.keep_alive_s = 5;
  cfg.mqtt = m;
  return cfg;
}

std::string Header(const Record& r, const std::string& name) {
  for (const auto& h : r.headers) {
    if (h.name == name) return h.value;
  }
  return "<none>";
}

std::unique_ptr<Input> StartInput(const config::InputConfig& cfg, RecordSink* sink) {
  auto in = CreateInput(cfg, "gw1", sink);
  REQUIRE_MESSAGE(in.ok(), in.status().ToString());
  REQUIRE((*in)->Start().ok());
  return std::move(in).value();
}

TEST_CASE("mqtt: QoS 0, 1 and 2 on MQTT 5 and 3.1.1 arrive with topic, qos, key and headers") {
  rig::Mosquitto broker;
  for (int version : {5, 3}) {
    CAPTURE(version);
    FakeSink sink;
    std::string id = rig::UniqueName("in");
    auto cfg = MqttConfig(broker, id, {{"plant/+/+", 2}}, version);
    cfg.mqtt->topic_pattern = "plant/{device}/{sensor}";
    cfg.topic = "kafka.plant";
    auto input = StartInput(cfg, &sink);
    REQUIRE(broker.WaitSubscribed(id, "plant/+/+"));

    Publisher pub(broker.uri(), rig::UniqueName("pub"), version);
    REQUIRE(pub.connected());
    mqtt::properties props;
    if (version == 5) {
      props.add(mqtt::property(mqtt::property::USER_PROPERTY, "site", "north"));
      props.add(mqtt::property(mqtt::property::CONTENT_TYPE, "application/json"));
    }
    for (int qos : {0, 1, 2}) {
      for (int i = 0; i < 10; ++i) {
        REQUIRE(pub.Publish(fmt::format("plant/pump{}/temp", qos), fmt::format("q{}-{}", qos, i),
                            qos, false, props));
      }
    }
    REQUIRE(sink.WaitForCount(30, 20s));
    input->Stop();
    auto recs = sink.records();
    CHECK(recs.size() == 30);
    std::map<int, std::vector<std::string>> by_qos;
    for (const auto& r : recs) {
      int qos = std::stoi(Header(r, "mqtt.qos"));
      by_qos[qos].push_back(r.payload);
      CHECK(r.source == "plant");
      CHECK(r.topic == "kafka.plant");
      CHECK(Header(r, "mqtt.retain") == "false");
      CHECK(r.key.rfind("pump", 0) == 0);
      CHECK(Header(r, "device") == r.key);
      CHECK(Header(r, "sensor") == "temp");
      CHECK(Header(r, "mqtt.topic") == "plant/" + r.key + "/temp");
      CHECK(r.event_time_ms > 0);
      if (version == 5) {
        CHECK(Header(r, "site") == "north");
        CHECK(Header(r, "mqtt.content_type") == "application/json");
      }
    }
    // Per QoS, in publish order (one publisher, one subscription). QoS 2 is QoS 2 on 3.1.1 too:
    // our client sends PUBREC only after the durable append.
    std::vector<std::string> q0, q1, q2;
    for (int i = 0; i < 10; ++i) {
      q0.push_back(fmt::format("q0-{}", i));
      q1.push_back(fmt::format("q1-{}", i));
      q2.push_back(fmt::format("q2-{}", i));
    }
    CHECK(by_qos[0] == q0);
    CHECK(by_qos[1] == q1);
    CHECK(by_qos[2] == q2);
    InputStats st = input->Stats();
    CHECK(st.received == 30);
    CHECK(st.accepted == 30);
    CHECK(st.errors == 0);
    CHECK(st.state == "stopped");
  }
}

TEST_CASE("mqtt: retained, binary, empty and oversized payloads") {
  rig::Mosquitto broker;
  Publisher pub(broker.uri(), rig::UniqueName("pub"));
  std::string binary;
  for (int i = 0; i < 256; ++i) binary.push_back(static_cast<char>(i));
  binary += std::string("\0\0\xff", 3);
  REQUIRE(pub.Publish("dev/retained", "kept", 1, /*retain=*/true));

  FakeSink sink;
  std::string id = rig::UniqueName("in");
  auto cfg = MqttConfig(broker, id, {{"dev/#", 1}});
  cfg.mqtt->max_payload_bytes = 1000;
  auto input = StartInput(cfg, &sink);
  REQUIRE(sink.WaitForCount(1, 20s));  // the retained message, sent on subscribe
  REQUIRE(pub.Publish("dev/bin", binary, 1));
  REQUIRE(pub.Publish("dev/big", std::string(1001, 'x'), 1));  // over max_payload_bytes
  REQUIRE(pub.Publish("dev/empty", "", 1));
  REQUIRE(pub.Publish("dev/edge", std::string(1000, 'y'), 1));  // exactly the limit
  REQUIRE(sink.WaitForCount(4, 20s));
  REQUIRE(testing::Eventually([&] { return input->Stats().received == 5; }));
  input->Stop();
  auto recs = sink.records();
  REQUIRE(recs.size() == 4);
  CHECK(recs[0].payload == "kept");
  CHECK(Header(recs[0], "mqtt.retain") == "true");
  CHECK(recs[1].payload == binary);
  CHECK(Header(recs[1], "mqtt.retain") == "false");
  CHECK(recs[2].payload.empty());
  CHECK(recs[3].payload == std::string(1000, 'y'));
  InputStats st = input->Stats();
  CHECK(st.rejected == 1);
  CHECK(st.rejected_by_reason["oversized"] == 1);
  CHECK(st.accepted == 4);
}

TEST_CASE("mqtt: messages published while the input is stopped arrive after it starts") {
  rig::Mosquitto broker;
  std::string id = rig::UniqueName("in");
  auto cfg = MqttConfig(broker, id, {{"resume/#", 1}});
  {
    FakeSink sink;
    auto input = StartInput(cfg, &sink);
    REQUIRE(broker.WaitSubscribed(id, "resume/#"));
    input->Stop();
  }
  Publisher pub(broker.uri(), rig::UniqueName("pub"));
  for (int i = 0; i < 200; ++i) REQUIRE(pub.Publish("resume/x", std::to_string(i), 1));
  FakeSink sink;
  auto input = StartInput(cfg, &sink);
  REQUIRE(sink.WaitForCount(200, 30s));
  input->Stop();
  auto recs = sink.records();
  REQUIRE(recs.size() == 200);
  for (int i = 0; i < 200; ++i) CHECK(recs[i].payload == std::to_string(i));
  // The session was resumed: no second SUBSCRIBE.
  CHECK(broker.SubscriptionCount(id, "resume/#") == 1);
}

TEST_CASE("mqtt: broker restart without persistence: reconnect and resubscribe") {
  rig::Mosquitto::Options opts;
  opts.persistence = false;  // the restarted broker has no session: the input must resubscribe
  rig::Mosquitto broker(opts);
  FakeSink sink;
  std::string id = rig::UniqueName("in");
  auto input = StartInput(MqttConfig(broker, id, {{"r/#", 1}}), &sink);
  REQUIRE(broker.WaitSubscribed(id, "r/#"));
  {
    Publisher pub(broker.uri(), rig::UniqueName("pub"));
    REQUIRE(pub.Publish("r/1", "before", 1));
  }
  REQUIRE(sink.WaitForCount(1, 20s));
  broker.Stop();
  REQUIRE(testing::Eventually([&] { return input->Stats().state == "disconnected"; }));
  broker.Start();
  REQUIRE(broker.WaitSubscribed(id, "r/#", 1, 30s));
  REQUIRE(testing::Eventually([&] { return input->Stats().state == "connected"; }));
  {
    Publisher pub(broker.uri(), rig::UniqueName("pub"));
    REQUIRE(pub.Publish("r/2", "after", 1));
  }
  REQUIRE(sink.WaitForCount(2, 20s));
  InputStats st = input->Stats();
  CHECK(st.reconnects >= 1);
  input->Stop();
  auto recs = sink.records();
  CHECK(recs.size() == 2);
  CHECK(recs[1].payload == "after");
}

TEST_CASE("mqtt: broker restart with persistence: session resumes, queued messages arrive") {
  rig::Mosquitto broker;
  FakeSink sink;
  std::string id = rig::UniqueName("in");
  auto input = StartInput(MqttConfig(broker, id, {{"p/#", 1}}), &sink);
  REQUIRE(broker.WaitSubscribed(id, "p/#"));
  broker.Stop();
  broker.Start();
  REQUIRE(testing::Eventually([&] { return input->Stats().reconnects >= 1; }, 30s));
  Publisher pub(broker.uri(), rig::UniqueName("pub"));
  for (int i = 0; i < 50; ++i) REQUIRE(pub.Publish("p/x", std::to_string(i), 1));
  REQUIRE(sink.WaitForCount(50, 20s));
  input->Stop();
  CHECK(broker.SubscriptionCount(id, "p/#") == 1);  // resumed, not resubscribed
  CHECK(sink.size() == 50);
}

TEST_CASE("mqtt: 4 connections with a shared subscription take every message exactly once") {
  rig::Mosquitto broker;
  FakeSink sink;
  std::string id = rig::UniqueName("in");
  auto cfg = MqttConfig(broker, id, {{"$share/ef/s/#", 1}});
  cfg.mqtt->connections = 4;
  auto input = StartInput(cfg, &sink);
  for (int i = 0; i < 4; ++i) {
    REQUIRE(broker.WaitSubscribed(fmt::format("{}-{}", id, i), "$share/ef/s/#"));
  }
  REQUIRE(testing::Eventually([&] { return input->Stats().state == "connected"; }));
  Publisher pub(broker.uri(), rig::UniqueName("pub"));
  for (int i = 0; i < 400; ++i) REQUIRE(pub.Publish("s/x", std::to_string(i), 1));
  REQUIRE(sink.WaitForCount(400, 30s));
  input->Stop();
  std::set<std::string> got;
  for (const auto& r : sink.records()) got.insert(r.payload);
  CHECK(got.size() == 400);
  CHECK(sink.size() == 400);

  // Without $share, more than one connection is a config error that says why.
  auto bad = MqttConfig(broker, id, {{"s/#", 1}});
  bad.mqtt->connections = 2;
  auto r = CreateInput(bad, "gw1", &sink);
  REQUIRE(!r.ok());
  CHECK(r.status().message().find("$share") != std::string::npos);
}

// Publishes lines 0..n-1 (QoS 1) from a separate mosquitto_pub process. The back-pressure tests
// cannot use an in-process Paho publisher: Paho runs every client's callbacks on one receive
// thread, which the blocked input holds (see sensors/README.md).
int PublishLines(const rig::Mosquitto& broker, const std::string& topic, int first, int n) {
  rig::Process p({"sh", "-c",
                  fmt::format("seq {} {} | mosquitto_pub -h 127.0.0.1 -p {} -q 1 -t {} -l", first,
                              first + n - 1, broker.port(), topic)});
  return p.Wait(30s).value_or(-1);
}

TEST_CASE("mqtt: a failing or blocked buffer holds messages back, none is lost or doubled") {
  rig::Mosquitto broker;
  FakeSink sink;
  std::string id = rig::UniqueName("in");
  auto input = StartInput(MqttConfig(broker, id, {{"bp/#", 1}}), &sink);
  REQUIRE(broker.WaitSubscribed(id, "bp/#"));

  // Refusals (e.g. block mode timing out) are retried; the message is appended once it is taken.
  sink.FailWith(Status::Unavailable("buffer full (block)"));
  REQUIRE(PublishLines(broker, "bp/a", 0, 1) == 0);
  REQUIRE(sink.WaitForCalls(3, 20s));
  CHECK(sink.size() == 0);
  sink.FailWith(Status::Ok());
  REQUIRE(sink.WaitForCount(1, 20s));

  // A blocking buffer: the input takes nothing more while blocked; everything comes after.
  sink.Block();
  size_t calls = sink.calls();
  REQUIRE(PublishLines(broker, "bp/b", 1, 30) == 0);
  REQUIRE(sink.WaitForCalls(calls + 1, 20s));  // one Append is in progress and blocked
  CHECK(sink.size() == 1);
  CHECK(sink.calls() == calls + 1);
  // The input stays alive for the watchdog while its callback is held by the buffer.
  uint64_t ticks = input->ProgressTicks();
  REQUIRE(testing::Eventually([&] { return input->ProgressTicks() > ticks + 2; }));
  sink.Unblock();
  REQUIRE(sink.WaitForCount(31, 30s));
  input->Stop();
  auto recs = sink.records();
  REQUIRE(recs.size() == 31);
  for (int i = 0; i < 31; ++i) CHECK(recs[i].payload == std::to_string(i));
  InputStats st = input->Stats();
  CHECK(st.errors_by_reason["append_Unavailable"] >= 3);
  CHECK(st.accepted == 31);
}

TEST_CASE("mqtt: config errors name the input and the setting") {
  FakeSink sink;
  config::InputConfig cfg;
  cfg.name = "m1";
  cfg.type = "mqtt";
  config::MqttInputConfig m;
  cfg.mqtt = m;
  auto r = CreateInput(cfg, "gw", &sink);
  REQUIRE(!r.ok());
  CHECK(r.status().message() == "input m1: mqtt.uris is empty");
  cfg.mqtt->uris = {"tcp://127.0.0.1:1"};
  cfg.mqtt->subscriptions = {{"a/#/b", 1}};
  r = CreateInput(cfg, "gw", &sink);
  REQUIRE(!r.ok());
  CHECK(r.status().message().find("a/#/b") != std::string::npos);
  cfg.mqtt->subscriptions = {{"a/b", 3}};
  r = CreateInput(cfg, "gw", &sink);
  REQUIRE(!r.ok());
  CHECK(r.status().message().find("qos 3") != std::string::npos);
}

TEST_CASE("mqtt: an unreachable broker is retried in the background, not an error at Start") {
  FakeSink sink;
  int port = rig::FreeLoopbackPort();
  config::InputConfig cfg;
  cfg.name = "m1";
  cfg.type = "mqtt";
  config::MqttInputConfig m;
  m.uris = {fmt::format("tcp://127.0.0.1:{}", port)};
  m.subscriptions = {{"x/#", 1}};
  m.reconnect_min_ms = 20;
  m.reconnect_max_ms = 80;
  cfg.mqtt = m;
  auto input = StartInput(cfg, &sink);
  REQUIRE(testing::Eventually([&] { return input->Stats().errors_by_reason["connect"] >= 3; }));
  CHECK(input->Stats().state == "disconnected");
  uint64_t ticks = input->ProgressTicks();
  REQUIRE(testing::Eventually([&] { return input->ProgressTicks() > ticks; }));
  input->Stop();
}

}  // namespace
}  // namespace edgeferry::sensors

namespace edgeferry::sensors {
namespace {

TEST_CASE(
    "mqtt: TLS with CA and client certificate (hostname verified), refused without the certificate "
    "or with a wrong CA") {
  rig::Mosquitto::Options opts;
  opts.tls = true;
  opts.require_client_cert = true;
  rig::Mosquitto broker(opts);
  std::string id = rig::UniqueName("tls");
  auto cfg = MqttConfig(broker, id, {{"tls/#", 1}});
  cfg.mqtt->uris = {broker.tls_uri()};
  config::TlsConfig tls;
  tls.ca_file = broker.ca_file().string();
  tls.cert_file = broker.client_cert_file().string();
  tls.key_file = broker.client_key_file().string();
  tls.verify_hostname = true;
  cfg.mqtt->tls = tls;
  {
    FakeSink sink;
    auto input = StartInput(cfg, &sink);
    REQUIRE(broker.WaitSubscribed(id, "tls/#"));
    Publisher pub(broker.uri(), rig::UniqueName("pub"));  // the plain listener
    REQUIRE(pub.Publish("tls/a", "over tls", 1));
    REQUIRE(sink.WaitForCount(1, 20s));
    input->Stop();
    CHECK(sink.records().at(0).payload == "over tls");
  }
  {
    // Without the client certificate the broker refuses: retried, counted, never connected.
    FakeSink sink;
    auto no_cert = cfg;
    no_cert.mqtt->client_id = rig::UniqueName("tls-nocert");
    no_cert.mqtt->tls->cert_file.clear();
    no_cert.mqtt->tls->key_file.clear();
    auto input = StartInput(no_cert, &sink);
    REQUIRE(testing::Eventually([&] { return input->Stats().errors_by_reason["connect"] >= 2; }));
    CHECK(input->Stats().state == "disconnected");
    input->Stop();
  }
  {
    // A CA that did not sign the server certificate: verification fails.
    FakeSink sink;
    auto wrong_ca = cfg;
    wrong_ca.mqtt->client_id = rig::UniqueName("tls-wrongca");
    wrong_ca.mqtt->tls->ca_file = broker.client_cert_file().string();
    auto input = StartInput(wrong_ca, &sink);
    REQUIRE(testing::Eventually([&] { return input->Stats().errors_by_reason["connect"] >= 2; }));
    CHECK(input->Stats().state == "disconnected");
    input->Stop();
  }
}

TEST_CASE("mqtt: failover to the next URI when the first broker is down") {
  rig::Mosquitto broker;
  FakeSink sink;
  std::string id = rig::UniqueName("fo");
  auto cfg = MqttConfig(broker, id, {{"fo/#", 1}});
  cfg.mqtt->uris = {fmt::format("tcp://127.0.0.1:{}", rig::FreeLoopbackPort()), broker.uri()};
  auto input = StartInput(cfg, &sink);
  REQUIRE(broker.WaitSubscribed(id, "fo/#"));
  Publisher pub(broker.uri(), rig::UniqueName("pub"));
  REQUIRE(pub.Publish("fo/x", "via second uri", 1));
  REQUIRE(sink.WaitForCount(1, 20s));
  input->Stop();
  CHECK(input->Stats().state == "stopped");
}

}  // namespace
}  // namespace edgeferry::sensors

namespace edgeferry::sensors {
namespace {

TEST_CASE("mqtt: username and password, a wrong password is retried and counted") {
  rig::TempDir dir;
  std::string pwfile = (dir / "passwd").string();
  rig::Process mk({"mosquitto_passwd", "-b", "-c", pwfile, "edgeferry", "s3cret"});
  REQUIRE(mk.Wait(10s) == std::optional<int>(0));
  rig::Mosquitto::Options opts;
  opts.extra_config = "allow_anonymous false\npassword_file " + pwfile + "\n";
  rig::Mosquitto broker(opts);
  {
    FakeSink sink;
    std::string id = rig::UniqueName("auth");
    auto cfg = MqttConfig(broker, id, {{"auth/#", 1}});
    cfg.mqtt->username = "edgeferry";
    cfg.mqtt->password = "s3cret";
    auto input = StartInput(cfg, &sink);
    REQUIRE(broker.WaitSubscribed(id, "auth/#"));
    REQUIRE(testing::Eventually([&] { return input->Stats().state == "connected"; }));
    input->Stop();
  }
  {
    FakeSink sink;
    std::string id = rig::UniqueName("auth-bad");
    auto cfg = MqttConfig(broker, id, {{"auth/#", 1}});
    cfg.mqtt->username = "edgeferry";
    cfg.mqtt->password = "wrong";
    auto input = StartInput(cfg, &sink);
    REQUIRE(testing::Eventually([&] { return input->Stats().errors_by_reason["connect"] >= 2; }));
    CHECK(input->Stats().state == "disconnected");
    CHECK(broker.SubscriptionCount(id, "auth/#") == 0);
    input->Stop();
  }
}

}  // namespace
}  // namespace edgeferry::sensors

namespace edgeferry::sensors {
namespace {

void NetworkCutCase(bool blackhole) {
  rig::Mosquitto broker;
  testing::CutProxy proxy(broker.port());
  FakeSink sink;
  std::string id = rig::UniqueName("cut");
  auto cfg = MqttConfig(broker, id, {{"cut/#", 1}});
  cfg.mqtt->uris = {fmt::format("tcp://127.0.0.1:{}", proxy.port())};
  cfg.mqtt->keep_alive_s = 1;  // a silent partition is found by keepalive
  auto input = StartInput(cfg, &sink);
  REQUIRE(broker.WaitSubscribed(id, "cut/#"));
  REQUIRE(testing::Eventually([&] { return input->Stats().state == "connected"; }));
  Publisher pub(broker.uri(), rig::UniqueName("pub"));  // straight to the broker
  REQUIRE(pub.Publish("cut/x", "before", 1));
  REQUIRE(sink.WaitForCount(1, 20s));

  if (blackhole) {
    proxy.Blackhole();
  } else {
    proxy.Close();
  }
  REQUIRE(testing::Eventually([&] { return input->Stats().state == "disconnected"; }, 30s));
  for (int i = 0; i < 20; ++i) REQUIRE(pub.Publish("cut/x", fmt::format("during-{}", i), 1));
  proxy.Restore();
  REQUIRE(sink.WaitForCount(21, 40s));
  REQUIRE(pub.Publish("cut/x", "after", 1));
  REQUIRE(sink.WaitForCount(22, 20s));
  input->Stop();
  auto recs = sink.records();
  std::set<std::string> got;
  for (const auto& r : recs) got.insert(r.payload);
  CHECK(got.count("before") == 1);
  CHECK(got.count("after") == 1);
  for (int i = 0; i < 20; ++i) CHECK(got.count(fmt::format("during-{}", i)) == 1);
  CHECK(input->Stats().reconnects >= 1);
  // The broker kept the session through the cut: no second SUBSCRIBE.
  CHECK(broker.SubscriptionCount(id, "cut/#") == 1);
}

TEST_CASE("mqtt: network cut (connections reset): reconnect, queued messages arrive") {
  NetworkCutCase(false);
}

TEST_CASE("mqtt: silent network partition: keepalive notices, reconnect, nothing lost") {
  NetworkCutCase(true);
}

}  // namespace
}  // namespace edgeferry::sensors

namespace edgeferry::sensors {
namespace {

// A CA and a server certificate for "wrong.example" only (not 127.0.0.1), made with the openssl
// tool in `dir`.
void MakeWrongNameCertificates(const rig::TempDir& dir) {
  const std::string d = dir.path().string() + "/";
  {
    std::ofstream ext(d + "server.ext");
    ext << "subjectAltName=DNS:wrong.example\n";
  }
  const std::vector<std::vector<std::string>> steps = {
      {"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
       "-nodes", "-days", "2", "-subj", "/CN=other CA", "-keyout", d + "ca.key", "-out",
       d + "ca.crt"},
      {"openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
       "-subj", "/CN=wrong.example", "-keyout", d + "server.key", "-out", d + "server.csr"},
      {"openssl", "x509", "-req", "-in", d + "server.csr", "-CA", d + "ca.crt", "-CAkey",
       d + "ca.key", "-CAcreateserial", "-days", "2", "-extfile", d + "server.ext", "-out",
       d + "server.crt"},
  };
  for (const auto& argv : steps) {
    rig::Process::Options o;
    o.stdout_path = dir / "openssl.log";
    rig::Process p(argv, o);
    REQUIRE_MESSAGE(p.Wait(30s) == std::optional<int>(0), rig::LogTail(dir / "openssl.log"));
  }
}

TEST_CASE("mqtt: TLS hostname verification refuses a server certificate for another name") {
  rig::TempDir certs;
  MakeWrongNameCertificates(certs);
  int tls_port = rig::FreeLoopbackPort();
  rig::Mosquitto::Options opts;
  opts.extra_config = fmt::format(
      "listener {} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate false\n",
      tls_port, (certs / "ca.crt").string(), (certs / "server.crt").string(),
      (certs / "server.key").string());
  rig::Mosquitto broker(opts);
  std::string id = rig::UniqueName("tls-name");
  auto cfg = MqttConfig(broker, id, {{"name/#", 1}});
  cfg.mqtt->uris = {fmt::format("ssl://127.0.0.1:{}", tls_port)};
  config::TlsConfig tls;
  tls.ca_file = (certs / "ca.crt").string();  // the chain is trusted; only the name is wrong
  tls.verify_hostname = true;
  cfg.mqtt->tls = tls;
  {
    // Refused at every attempt (logged once as "certificate verify failed: hostname mismatch"),
    // retried, never subscribed.
    FakeSink sink;
    auto input = StartInput(cfg, &sink);
    REQUIRE(testing::Eventually([&] { return input->Stats().errors_by_reason["connect"] >= 3; }));
    CHECK(input->Stats().state == "disconnected");
    input->Stop();
    CHECK(broker.SubscriptionCount(id, "name/#") == 0);
  }
  {
    // The same chain without hostname verification connects: the name was the only problem.
    FakeSink sink;
    cfg.mqtt->tls->verify_hostname = false;
    auto input = StartInput(cfg, &sink);
    REQUIRE(broker.WaitSubscribed(id, "name/#"));
    Publisher pub(broker.uri(), rig::UniqueName("pub"));
    REQUIRE(pub.Publish("name/x", "trusted chain", 1));
    REQUIRE(sink.WaitForCount(1, 20s));
    input->Stop();
    CHECK(sink.records().at(0).payload == "trusted chain");
  }
}

}  // namespace
}  // namespace edgeferry::sensors
