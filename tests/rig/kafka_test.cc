// KafkaCluster against a real Kafka 4.1 broker, produced to with librdkafka.
#include <doctest/doctest.h>

#include <signal.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include "tests/rig/rig.h"
#include "tests/rig/selftest_util.h"

namespace rig = edgeferry::rig;
using namespace edgeferry::rig::selftest;
using namespace std::chrono_literals;

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

  // Values that zstd shrinks even alone: librdkafka sends a batch uncompressed when compressing
  // would not make it smaller, and on a loaded machine a batch can hold a single record (CI saw
  // "compresscodec: none" with 20-byte values, also with linger.ms at 10 s).
  auto sent = MakeRecords(30, 3, std::string(200, 'a'));
  Produce(kafka->bootstrap(), topic, sent, "zstd");
  auto got = kafka->ReadAll(topic, sent.size());
  CheckExactly(got, sent, topic, 3);

  std::string dump = kafka->DumpLogSegments(topic, 0);
  CHECK(dump.find("compresscodec: zstd") != std::string::npos);
  CHECK_MESSAGE(dump.find("compresscodec: none") == std::string::npos, dump);

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

TEST_CASE("edgeferry-rig down stops a Kafka whose kafka-up was killed mid-start") {
  rig::TempDir dir;
  const auto state = dir / "kafka.state";
  const std::filesystem::path pending = state.string() + ".pending";
  rig::Process up({EDGEFERRY_RIG_TOOL, "kafka-up", state.string()});
  // The broker's pid is noted as soon as it is spawned, before it is ready.
  REQUIRE(
      rig::WaitFor([&] { return rig::ReadFile(pending).find("pid=") != std::string::npos; }, 60s));
  up.Kill();
  const std::string text = rig::ReadFile(pending);
  const pid_t broker = std::stoi(text.substr(text.find("pid=") + 4));
  CHECK(::kill(broker, 0) == 0);  // outlived the killed `up`: this is the leak `down` must fix
  CHECK_FALSE(std::filesystem::exists(state));

  rig::Process down({EDGEFERRY_RIG_TOOL, "down", state.string()});
  CHECK(down.Wait(60s) == 0);
  CHECK(rig::WaitFor([&] { return ::kill(broker, 0) != 0; }, 10s));
  CHECK_FALSE(std::filesystem::exists(pending));
}
