// KafkaCluster against a real Kafka 4.1 broker, produced to with librdkafka.
#include <doctest/doctest.h>
#include <librdkafka/rdkafka.h>
#include <stdlib.h>

#include <chrono>
#include <string>
#include <vector>

#include "tests/rig/rig.h"

namespace rig = edgeferry::rig;
using edgeferry::Header;
using namespace std::chrono_literals;

namespace {

struct Sent {
  std::string key;
  std::string value;
  int64_t timestamp_ms;
  std::vector<Header> headers;
  int32_t partition;
};

// Produces `records` with acks=all and the given compression; fails the test unless every
// delivery report is a success.
void Produce(const std::string& bootstrap, const std::string& topic,
             const std::vector<Sent>& records, const std::string& compression = "zstd") {
  char err[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  REQUIRE(rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap.c_str(), err, sizeof(err)) ==
          RD_KAFKA_CONF_OK);
  REQUIRE(rd_kafka_conf_set(conf, "acks", "all", err, sizeof(err)) == RD_KAFKA_CONF_OK);
  REQUIRE(rd_kafka_conf_set(conf, "compression.codec", compression.c_str(), err, sizeof(err)) ==
          RD_KAFKA_CONF_OK);
  REQUIRE(rd_kafka_conf_set(conf, "linger.ms", "50", err, sizeof(err)) == RD_KAFKA_CONF_OK);
  static int failures;
  failures = 0;
  rd_kafka_conf_set_dr_msg_cb(conf, [](rd_kafka_t*, const rd_kafka_message_t* m, void*) {
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) ++failures;
  });
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
  REQUIRE(rk != nullptr);
  for (const auto& r : records) {
    rd_kafka_headers_t* hdrs = rd_kafka_headers_new(r.headers.size());
    for (const auto& h : r.headers) {
      rd_kafka_header_add(hdrs, h.name.data(), static_cast<ssize_t>(h.name.size()), h.value.data(),
                          static_cast<ssize_t>(h.value.size()));
    }
    rd_kafka_resp_err_t e = rd_kafka_producev(
        rk, RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_PARTITION(r.partition),
        RD_KAFKA_V_KEY(r.key.data(), r.key.size()),
        RD_KAFKA_V_VALUE(const_cast<char*>(r.value.data()), r.value.size()),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_TIMESTAMP(r.timestamp_ms),
        RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_END);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) rd_kafka_headers_destroy(hdrs);
    REQUIRE(e == RD_KAFKA_RESP_ERR_NO_ERROR);
  }
  CHECK(rd_kafka_flush(rk, 30000) == RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_destroy(rk);
  CHECK(failures == 0);
}

std::vector<Sent> MakeRecords(int n, int partitions, const std::string& tag) {
  std::vector<Sent> out;
  for (int i = 0; i < n; ++i) {
    out.push_back(Sent{
        "key-" + std::to_string(i),
        tag + "-value-" + std::to_string(i),
        1'700'000'000'000 + i * 1000,
        {{"source", "rig-test"}, {"seq", std::to_string(i)}, {"bin", std::string("\0\xff", 2)}},
        i % partitions});
  }
  return out;
}

// Checks that `got` holds exactly `sent` (per partition in send order) with all fields.
void CheckExactly(const std::vector<rig::ConsumedRecord>& got, const std::vector<Sent>& sent,
                  const std::string& topic, int partitions) {
  REQUIRE(got.size() == sent.size());
  size_t idx = 0;
  for (int p = 0; p < partitions; ++p) {
    int64_t offset = 0;
    for (const auto& s : sent) {
      if (s.partition != p) continue;
      const auto& r = got[idx++];
      CHECK(r.topic == topic);
      CHECK(r.partition == p);
      CHECK(r.offset == offset++);
      REQUIRE(r.key.has_value());
      CHECK(*r.key == s.key);
      CHECK(r.value == s.value);
      CHECK(r.timestamp_ms == s.timestamp_ms);
      CHECK(r.headers == s.headers);
    }
  }
}

}  // namespace

TEST_CASE("One-node Kafka: topic, produce, ReadAll exact records, DumpLogSegments, stop/start") {
  auto start = std::chrono::steady_clock::now();
  auto kafka = rig::KafkaCluster::Start(1);
  MESSAGE("one-node Kafka ready in " << std::chrono::duration_cast<std::chrono::milliseconds>(
                                            std::chrono::steady_clock::now() - start)
                                            .count()
                                     << " ms at " << kafka->bootstrap());
  REQUIRE(kafka->owned());
  CHECK(kafka->bootstrap() == "127.0.0.1:" + std::to_string(kafka->port(0)));

  const std::string topic = rig::UniqueName("rig-one");
  kafka->CreateTopic(topic, 3);
  CHECK(kafka->LeaderOf(topic, 0) == 0);
  CHECK(kafka->LeaderOf(topic, 2) == 0);
  CHECK(kafka->LeaderOf(topic, 3) == -1);
  CHECK_THROWS_AS(kafka->CreateTopic(topic, 3), rig::RigError);

  auto sent = MakeRecords(30, 3, "a");
  Produce(kafka->bootstrap(), topic, sent, "zstd");
  auto got = kafka->ReadAll(topic, sent.size());
  CheckExactly(got, sent, topic, 3);

  std::string dump = kafka->DumpLogSegments(topic, 0);
  CHECK(dump.find("compresscodec: zstd") != std::string::npos);
  CHECK(dump.find("compresscodec: none") == std::string::npos);

  // A topic nobody created: ReadAll waits out its deadline and returns nothing.
  CHECK(kafka->ReadAll(rig::UniqueName("rig-absent"), 0, 500ms).empty());

  // Data survives a clean stop and a kill -9 of the only node.
  kafka->StopBroker(0);
  CHECK_FALSE(kafka->BrokerRunning(0));
  CHECK_FALSE(rig::PortOpen(kafka->port(0)));
  kafka->StartBroker(0);
  auto more = MakeRecords(5, 1, "b");
  Produce(kafka->bootstrap(), topic, more, "lz4");
  kafka->KillBroker(0);
  CHECK_FALSE(kafka->BrokerRunning(0));
  kafka->StartBroker(0);
  got = kafka->ReadAll(topic, sent.size() + more.size());
  CHECK(got.size() == sent.size() + more.size());
  auto p0 = std::count_if(got.begin(), got.end(), [](auto& r) { return r.partition == 0; });
  CHECK(p0 == 10 + 5);
  CHECK(got[10].value == "b-value-0");  // partition 0 offsets 10..14 came after the restart
}

TEST_CASE("Three-node Kafka: killing the partition leader leaves the topic readable") {
  auto start = std::chrono::steady_clock::now();
  auto kafka = rig::KafkaCluster::Start(3);
  MESSAGE("three-node Kafka ready in " << std::chrono::duration_cast<std::chrono::milliseconds>(
                                              std::chrono::steady_clock::now() - start)
                                              .count()
                                       << " ms at " << kafka->bootstrap());
  REQUIRE(kafka->nodes() == 3);
  const std::string topic = rig::UniqueName("rig-three");
  kafka->CreateTopic(topic, 1);  // replication 3 by default
  auto sent = MakeRecords(20, 1, "x");
  Produce(kafka->bootstrap(), topic, sent);

  int leader = kafka->LeaderOf(topic, 0);
  REQUIRE(leader >= 0);
  kafka->KillBroker(leader);
  CHECK(rig::WaitFor(
      [&] {
        int l = kafka->LeaderOf(topic, 0);
        return l >= 0 && l != leader;
      },
      30s));
  CheckExactly(kafka->ReadAll(topic, sent.size()), sent, topic, 1);
  // min.insync.replicas=2 with two of three up: acks=all still succeeds.
  auto more = MakeRecords(3, 1, "y");
  Produce(kafka->bootstrap(), topic, more);
  CHECK(kafka->ReadAll(topic, sent.size() + more.size()).size() == sent.size() + more.size());
}

TEST_CASE("Shared and external clusters serve records but refuse process control") {
  auto shared = rig::KafkaCluster::Shared();
  const std::string topic = rig::UniqueName("rig-shared");
  shared->CreateTopic(topic, 2);
  auto sent = MakeRecords(10, 2, "s");
  Produce(shared->bootstrap(), topic, sent);
  CheckExactly(shared->ReadAll(topic, sent.size()), sent, topic, 2);

  // EDGEFERRY_TEST_KAFKA turns Start() into a handle on that cluster.
  REQUIRE(setenv("EDGEFERRY_TEST_KAFKA", shared->bootstrap().c_str(), 1) == 0);
  auto external = rig::KafkaCluster::Start(1);
  unsetenv("EDGEFERRY_TEST_KAFKA");
  CHECK_FALSE(external->owned());
  CHECK(external->bootstrap() == shared->bootstrap());
  CHECK_THROWS_AS(external->KillBroker(0), rig::RigError);
  CHECK_THROWS_AS(external->StopBroker(0), rig::RigError);
  CHECK_THROWS_AS(external->DumpLogSegments(topic, 0), rig::RigError);
  CHECK(external->ReadAll(topic, sent.size()).size() == sent.size());
}
