// Heartbeat records and dead letters through the running daemon, against a real Kafka.
#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
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

TEST_CASE("a second agent on the same buffer exits 1 naming the running agent, and the first goes on") {
  auto kafka = rig::KafkaCluster::Shared();
  rig::TempDir dir("edgeferry-twice");
  std::string topic = rig::UniqueName("twice");
  kafka->CreateTopic(topic);
  auto config =
      WriteConfig(dir, SimulatedConfig(dir, kafka->bootstrap(), "twice-dev", topic, 20, 1));
  Daemon agent(dir, config);
  REQUIRE_MESSAGE(kafka->ReadAll(topic, 5, 60s).size() >= 5, agent.Log());

  // The buffer lock is waited for (10 s), then the second agent gives up before touching it.
  auto second = RunEdgeferry({"run", "-c", config.string()}, {}, 60s);
  CHECK(second.exit_code == 1);
  std::string said = second.out + second.err;
  CHECK_MESSAGE(said.find("in use by another process (pid " +
                          std::to_string(agent.process().pid()) + ")") != std::string::npos,
                said);
  CHECK(said.find((dir.path() / "buffer.db.lock").string()) != std::string::npos);

  // The first agent still owns the buffer and still delivers.
  uint64_t before = buffer::ReadStats((dir / "buffer.db").string())->last_seq;
  REQUIRE(rig::WaitFor(
      [&] { return buffer::ReadStats((dir / "buffer.db").string())->last_seq >= before + 5; },
      30s));
  auto status = RunEdgeferry({"status", "-c", config.string(), "--json"});
  CHECK(status.exit_code == 0);
  REQUIRE(agent.Terminate() == std::optional<int>(0));
}

TEST_CASE("sensors: a file the agent may not read fails only its sensor, counted as permission") {
  namespace fs = std::filesystem;
  rig::TempDir dir("edgeferry-perm");
  const fs::path chip = dir.path() / "sys/class/hwmon/hwmon0";
  fs::create_directories(chip);
  auto write = [&](const std::string& name, const std::string& text) {
    std::ofstream(chip / name) << text;
  };
  write("name", "board\n");
  write("temp1_input", "41000\n");
  write("temp2_input", "42000\n");
  fs::permissions(chip / "temp2_input", fs::perms::none);
  std::vector<std::string> run_as;
  if (::geteuid() == 0) {
    // Root reads any file, so the agent runs as nobody for the permission to apply (as the
    // packaged unit runs it as its own user); nobody must be able to write its buffer.
    run_as = {"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"};
    for (fs::path p = dir.path(); p != p.parent_path(); p = p.parent_path()) {
      if (p == dir.path()) {
        fs::permissions(p, fs::perms::all);
      } else if ((fs::status(p).permissions() & fs::perms::others_exec) == fs::perms::none) {
        FAIL("the test directory's parent " << p << " is not searchable by other users");
      }
    }
    for (const auto& e : fs::recursive_directory_iterator(dir.path() / "sys")) {
      if (e.is_directory()) fs::permissions(e.path(), fs::perms::all);
    }
  }
  json cfg = {{"device_id", "perm-dev"},
              {"kafka", {{"brokers", {"127.0.0.1:1"}}}},  // nothing listens: records stay put
              {"buffer", {{"path", (dir.path() / "buffer.db").string()}}},
              {"inputs",
               {{{"name", "board"},
                 {"type", "hwmon"},
                 {"interval_ms", 100},
                 {"sysfs_root", (dir.path() / "sys").string()}}}}};
  auto config = WriteConfig(dir, cfg);
  Daemon agent(dir, config, {}, run_as);
  std::string last;
  REQUIRE_MESSAGE(rig::WaitFor(
                      [&] {
                        auto r = RunEdgeferry({"status", "-c", config.string(), "--json"});
                        last = r.out + r.err;
                        if (r.exit_code != 0) return false;
                        const json in = json::parse(r.out)["inputs"][0];
                        return in["accepted"].get<uint64_t>() >= 5 &&
                               in["errors_by_reason"].value("permission", 0) >= 5;
                      },
                      30s),
                  last << "\n"
                       << agent.Log());
  json in = json::parse(RunEdgeferry({"status", "-c", config.string(), "--json"}).out)["inputs"][0];
  CHECK(in["state"] == "running");
  CHECK(in["errors_by_reason"].size() == 1);  // permission only: the readable sensor never fails
  REQUIRE(agent.Terminate(30s) == std::optional<int>(0));
  const std::string log = agent.Log();
  CHECK_MESSAGE(log.find("temp2_input: Permission denied") != std::string::npos, log);

  config::BufferConfig bc;
  bc.path = (dir.path() / "buffer.db").string();
  auto buf = buffer::Buffer::Open(bc);
  REQUIRE_MESSAGE(buf.ok(), buf.status().ToString());
  auto got = (*buf)->ReadAfter(0, SIZE_MAX, SIZE_MAX);
  REQUIRE(got.ok());
  REQUIRE(got->size() >= 5);
  for (const auto& r : *got) {
    json reading = json::parse(r.record.payload);
    CHECK(reading["sensor"] == "board/temp1");
    CHECK(reading["value"].get<double>() == doctest::Approx(41.0));
  }
}

}  // namespace
}  // namespace edgeferry::agent_test
