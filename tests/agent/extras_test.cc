// Heartbeat records and dead letters through the running daemon, against a real Kafka.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "buffer/buffer.h"
#include "forwarder/forwarder.h"
#include "tests/agent/harness.h"

namespace edgeferry::agent_test {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

TEST_CASE("heartbeat: a record per interval on the heartbeat topic, through the buffer") {
  auto kafka = rig::KafkaCluster::Shared();
  rig::TempDir dir("edgeferry-heartbeat");
  std::string topic = rig::UniqueName("readings");
  std::string hb_topic = rig::UniqueName("heartbeat");
  kafka->CreateTopic(topic);
  kafka->CreateTopic(hb_topic);
  json cfg = SimulatedConfig(dir, kafka->bootstrap(), "hb-dev", topic, 10, 1);
  cfg["heartbeat"] = {{"enabled", true}, {"interval_s", 1}, {"topic", hb_topic}};
  Daemon agent(dir, WriteConfig(dir, cfg));

  auto beats = kafka->ReadAll(hb_topic, 3, 60s);
  REQUIRE_MESSAGE(beats.size() >= 3, agent.Log());
  REQUIRE(agent.Terminate() == std::optional<int>(0));
  int64_t last_uptime = -1;
  for (const auto& r : beats) {
    CHECK(r.key == std::optional<std::string>("hb-dev"));
    CHECK(HeaderValue(r, forwarder::kHeaderSource) == std::string("edgeferry"));
    CHECK(HeaderValue(r, "content-type") == std::string("application/json"));
    json body = json::parse(r.value);
    CHECK(body["device_id"] == "hb-dev");
    CHECK(body["version"].is_string());
    CHECK(body["backlog_records"].is_number_unsigned());
    CHECK(body["backlog_bytes"].is_number_unsigned());
    CHECK(body["drops"].is_object());
    CHECK(body["last_error"].is_string());
    CHECK(body["uptime_s"].get<int64_t>() >= last_uptime);
    last_uptime = body["uptime_s"].get<int64_t>();
  }
}

TEST_CASE("dead-letters: records Kafka refuses are listed and re-queued through the daemon") {
  auto kafka = rig::KafkaCluster::Shared();
  rig::TempDir dir("edgeferry-deadletters");
  std::string topic = rig::UniqueName("small");
  // The broker refuses records larger than 1000 bytes on this topic: permanent, dead-lettered.
  kafka->CreateTopic(topic, 1, 0, {{"max.message.bytes", "1000"}});
  json cfg = SimulatedConfig(dir, kafka->bootstrap(), "dl-dev", topic, 5, 1);
  cfg["inputs"][0]["payload_bytes"] = 4000;
  cfg["kafka"]["compression"] = "none";  // the padding would compress below the limit
  auto config = WriteConfig(dir, cfg);
  Daemon agent(dir, config);

  json list;
  REQUIRE_MESSAGE(
      rig::WaitFor(
          [&] {
            auto r = RunEdgeferry({"dead-letters", "list", "-c", config.string(), "--json"});
            if (r.exit_code != 0) return false;
            list = json::parse(r.out);
            return list.size() >= 3;
          },
          60s),
      agent.Log());
  std::vector<int64_t> ids;
  for (const auto& e : list) {
    CHECK(e["source"] == "sim");
    CHECK(e["reason"].get<std::string>().find("MSG_SIZE_TOO_LARGE") != std::string::npos);
    CHECK(e["payload_bytes"].get<size_t>() >= 4000);
    ids.push_back(e["id"].get<int64_t>());
  }
  auto text = RunEdgeferry({"dead-letters", "list", "-c", config.string()});
  CHECK(text.exit_code == 0);
  CHECK(text.out.find("MSG_SIZE_TOO_LARGE") != std::string::npos);

  uint64_t last_before = buffer::ReadStats((dir / "buffer.db").string())->last_seq;
  auto rq = RunEdgeferry({"dead-letters", "requeue", "-c", config.string(), std::to_string(ids[0]),
                          std::to_string(ids[1])});
  CHECK_MESSAGE(rq.exit_code == 0, rq.err);
  CHECK(rq.out == "re-queued 2 record(s)\n");
  // They are appended again with new seqs (and refused again by this topic).
  CHECK(buffer::ReadStats((dir / "buffer.db").string())->last_seq >= last_before + 2);
  auto after = RunEdgeferry({"dead-letters", "list", "-c", config.string(), "--json"});
  for (const auto& e : json::parse(after.out)) {
    CHECK(e["id"] != ids[0]);
    CHECK(e["id"] != ids[1]);
  }
  REQUIRE(agent.Terminate() == std::optional<int>(0));
}

}  // namespace
}  // namespace edgeferry::agent_test
