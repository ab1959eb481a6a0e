// Issue 2's end-to-end slice: a simulated input -> the SQLite buffer -> a real Kafka, wired by
// `edgeferry run -c FILE` as a child process; the records are read back from the broker.
#include <doctest/doctest.h>
#include <signal.h>

#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "buffer/buffer.h"
#include "forwarder/forwarder.h"
#include "tests/agent/harness.h"

namespace edgeferry::agent_test {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

TEST_CASE("run: simulated readings arrive in Kafka exactly once, with key, timestamp, headers") {
  auto kafka = rig::KafkaCluster::Shared();
  rig::TempDir dir("edgeferry-e2e");
  std::string topic = rig::UniqueName("e2e");
  std::string device = rig::UniqueName("dev");
  kafka->CreateTopic(topic, 2);
  auto config = WriteConfig(dir, SimulatedConfig(dir, kafka->bootstrap(), device, topic, 50, 2));

  Daemon agent(dir, config);
  // Let it produce for a while: at 50 Hz x 2 sensors, 200 readings take about 2 s.
  auto some = kafka->ReadAll(topic, 200, 60s);
  REQUIRE_MESSAGE(some.size() >= 200, agent.Log());

  auto code = agent.Terminate();
  REQUIRE_MESSAGE(code.has_value(), agent.Log());
  CHECK_MESSAGE(*code == 0, agent.Log());

  // A clean stop with Kafka up leaves nothing behind: the cursor is at the last seq.
  BufferState buf = ReadBuffer((dir / "buffer.db").string());
  CHECK(buf.last_seq >= 200);
  CHECK_MESSAGE(buf.cursor == buf.last_seq, agent.Log());
  CHECK(buf.records == 0);

  auto records = kafka->ReadAll(topic, buf.last_seq, 60s);
  REQUIRE(records.size() == buf.last_seq);

  std::set<uint64_t> seqs;
  std::map<std::string, int64_t> last_ts_by_sensor;
  for (const auto& r : records) {
    auto seq = HeaderValue(r, forwarder::kHeaderSeq);
    REQUIRE(seq.has_value());
    CHECK_MESSAGE(seqs.insert(std::stoull(*seq)).second, "duplicate seq " << *seq);
    CHECK(HeaderValue(r, forwarder::kHeaderDevice) == device);
    CHECK(HeaderValue(r, forwarder::kHeaderSource) == std::string("sim"));
    // The key defaults to kafka.key_template "{device}.{input}".
    REQUIRE(r.key.has_value());
    CHECK(*r.key == device + ".sim");

    auto sensor = HeaderValue(r, "sensor");
    REQUIRE(sensor.has_value());
    json payload = json::parse(r.value);
    CHECK(payload["device"] == device);
    CHECK(payload["sensor"] == *sensor);
    CHECK(payload["unit"] == "C");
    // The Kafka timestamp is the reading's event time (CreateTime), the "ts" in the payload.
    CHECK(r.timestamp_ms == payload["ts"].get<int64_t>());
    last_ts_by_sensor[*sensor] = std::max(last_ts_by_sensor[*sensor], r.timestamp_ms);
  }
  // Every seq from 1 to the last one, none missing.
  REQUIRE(!seqs.empty());
  CHECK(*seqs.begin() == 1);
  CHECK(*seqs.rbegin() == buf.last_seq);
  CHECK(seqs.size() == buf.last_seq);
  // Both simulated sensors produced.
  CHECK(last_ts_by_sensor.size() == 2);
  CHECK(last_ts_by_sensor.count("sim-0") == 1);
  CHECK(last_ts_by_sensor.count("sim-1") == 1);
}

TEST_CASE(
    "run: a restart resumes from the cursor and records buffered while Kafka was unknown arrive") {
  auto kafka = rig::KafkaCluster::Shared();
  rig::TempDir dir("edgeferry-e2e");
  std::string topic = rig::UniqueName("resume");
  std::string device = rig::UniqueName("dev");
  kafka->CreateTopic(topic, 1);

  // First run: a broker address where nothing listens, so everything stays in the buffer.
  int dead_port = rig::FreeLoopbackPort();
  auto offline =
      SimulatedConfig(dir, "127.0.0.1:" + std::to_string(dead_port), device, topic, 100, 1);
  offline["kafka"]["shutdown_grace_ms"] = 1000;  // nothing can be delivered: do not wait long
  auto offline_path = WriteConfig(dir, offline, "offline.json");
  {
    Daemon agent(dir, offline_path);
    REQUIRE(rig::WaitFor(
        [&] {
          auto st = buffer::ReadStats((dir / "buffer.db").string());
          return st.ok() && st->last_seq >= 100;
        },
        30s));
    auto code = agent.Terminate();
    REQUIRE(code.has_value());
    CHECK_MESSAGE(*code == 0, agent.Log());
  }
  BufferState held = ReadBuffer((dir / "buffer.db").string());
  CHECK(held.cursor == 0);
  CHECK(held.records == held.last_seq);

  // Second run against the real broker: the backlog goes out, then the new readings.
  auto online_path = WriteConfig(
      dir, SimulatedConfig(dir, kafka->bootstrap(), device, topic, 100, 1), "online.json");
  Daemon agent(dir, online_path);
  auto records = kafka->ReadAll(topic, held.last_seq + 50, 60s);
  REQUIRE_MESSAGE(records.size() >= held.last_seq + 50, agent.Log());
  auto code = agent.Terminate();
  REQUIRE(code.has_value());
  CHECK_MESSAGE(*code == 0, agent.Log());
  BufferState done = ReadBuffer((dir / "buffer.db").string());
  CHECK(done.cursor == done.last_seq);
  records = kafka->ReadAll(topic, done.last_seq, 60s);
  std::set<uint64_t> seqs;
  for (const auto& r : records)
    seqs.insert(std::stoull(HeaderValue(r, forwarder::kHeaderSeq).value()));
  CHECK(records.size() == done.last_seq);
  CHECK(seqs.size() == done.last_seq);
  CHECK(*seqs.rbegin() == done.last_seq);
}

}  // namespace
}  // namespace edgeferry::agent_test

namespace edgeferry::agent_test {
namespace {

using namespace std::chrono_literals;

TEST_CASE("run: after kill -9 and a restart every buffered seq still reaches Kafka") {
  auto kafka = rig::KafkaCluster::Shared();
  rig::TempDir dir("edgeferry-e2e-kill");
  std::string topic = rig::UniqueName("kill");
  kafka->CreateTopic(topic);
  auto config =
      WriteConfig(dir, SimulatedConfig(dir, kafka->bootstrap(), "kill-dev", topic, 200, 1));
  {
    Daemon agent(dir, config);
    REQUIRE_MESSAGE(kafka->ReadAll(topic, 200, 60s).size() >= 200, agent.Log());
    agent.process().Kill();  // no shutdown: in-flight records and the cursor commit are cut off
  }
  uint64_t last_after_kill = ReadBuffer((dir / "buffer.db").string()).last_seq;
  Daemon agent(dir, config);
  REQUIRE_MESSAGE(kafka->ReadAll(topic, last_after_kill + 200, 60s).size() >= last_after_kill + 200,
                  agent.Log());
  REQUIRE(agent.Terminate() == std::optional<int>(0));
  BufferState buf = ReadBuffer((dir / "buffer.db").string());
  CHECK(buf.cursor == buf.last_seq);
  auto records = kafka->ReadAll(topic, buf.last_seq, 60s);
  std::set<uint64_t> seqs;
  for (const auto& r : records)
    seqs.insert(std::stoull(HeaderValue(r, forwarder::kHeaderSeq).value()));
  // At-least-once: resends after the kill may duplicate, but no seq is missing.
  CHECK(seqs.size() == buf.last_seq);
  CHECK(*seqs.begin() == 1);
  CHECK(*seqs.rbegin() == buf.last_seq);
  MESSAGE("records in Kafka: " << records.size() << ", distinct seqs: " << seqs.size()
                               << ", duplicates from the kill: " << records.size() - seqs.size());
}

}  // namespace
}  // namespace edgeferry::agent_test
