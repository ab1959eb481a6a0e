#include "agent/status.h"

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "tests/rig/rig.h"

namespace edgeferry::agent {
namespace {

using nlohmann::json;

Snapshot Example() {
  Snapshot s;
  s.pid = 4242;
  s.version = "0.1.0";
  s.device_id = "pump-7";
  s.config_path = "/etc/edgeferry/edgeferry.json";
  s.started_unix_ms = 1'700'000'000'000;
  s.updated_unix_ms = 1'700'000'090'000;
  s.buffer.records = 1234;
  s.buffer.bytes = 150'000;
  s.buffer.file_bytes = 4 << 20;
  s.buffer.max_bytes = 256 << 20;
  s.buffer.last_seq = 9000;
  s.buffer.oldest_undelivered_age_ms = 12'300;
  s.buffer.cursors["kafka"] = {7766, 1234};
  s.buffer.drops["drop_oldest"] = 5;
  s.kafka.delivered_records = 7766;
  s.kafka.purged_records = 12;
  s.kafka.last_delivery_unix_ms = 1'700'000'089'000;
  s.kafka.errors_by_kind["_MSG_TIMED_OUT"] = 3;
  s.kafka.backing_off = true;
  s.kafka.last_error = "broker down";
  InputSnapshot in{"sim", "simulated", "", {}};
  in.stats.received = 9000;
  in.stats.accepted = 9000;
  in.stats.state = "running";
  s.inputs.push_back(in);
  s.inputs.push_back({"plant", "mqtt", "InvalidArgument: bad uri", {}});
  return s;
}

TEST_CASE("HumanBytes and HumanDuration") {
  CHECK(HumanBytes(0) == "0 B");
  CHECK(HumanBytes(1023) == "1023 B");
  CHECK(HumanBytes(1536) == "1.5 KiB");
  CHECK(HumanBytes(256ull << 20) == "256.0 MiB");
  CHECK(HumanDuration(850) == "850 ms");
  CHECK(HumanDuration(12'340) == "12.3 s");
  CHECK(HumanDuration(245'000) == "4m 05s");
  CHECK(HumanDuration(7'380'000) == "2h 03m");
  CHECK(HumanDuration(273'600'000) == "3d 04h");
  CHECK(HumanDuration(-5) == "0 ms");
}

TEST_CASE("StatusLine: one line with backlog, oldest age, deliveries, drops, back-off") {
  Snapshot s = Example();
  CHECK(StatusLine(s) ==
        "backlog 1234 records (146.5 KiB), oldest 12.3 s, delivered 7766, dropped 5, kafka "
        "backing off");
  s.stalled_loops = {"forwarder"};
  CHECK(StatusLine(s).find("STALLED: forwarder") != std::string::npos);
}

TEST_CASE("DaemonJson: the status file carries inputs, kafka and the daemon") {
  json j = DaemonJson(Example());
  CHECK(j["daemon"]["pid"] == 4242);
  CHECK(j["kafka"]["delivered_records"] == 7766);
  CHECK(j["kafka"]["errors_by_kind"]["_MSG_TIMED_OUT"] == 3);
  CHECK(j["kafka"]["purged_records"] == 12);
  REQUIRE(j["inputs"].size() == 2);
  CHECK(j["inputs"][0]["state"] == "running");
  CHECK(j["inputs"][1]["state"] == "failed");
  CHECK(j["inputs"][1]["error"] == "InvalidArgument: bad uri");
}

TEST_CASE("FormatStatus: text for a running daemon") {
  Snapshot s = Example();
  json doc = DaemonJson(s);
  doc["daemon"]["running"] = true;
  doc["buffer"] = ToJson(s.buffer);
  doc["buffer_path"] = "/var/lib/edgeferry/buffer.db";
  std::string text = FormatStatus(doc, s.updated_unix_ms);
  CHECK(text.find("edgeferry 0.1.0: running, pid 4242, up 1m 30s, device pump-7\n") == 0);
  CHECK(text.find("  backlog        1234 records, 146.5 KiB (file 4.0 MiB of 256.0 MiB)\n") !=
        std::string::npos);
  CHECK(text.find("  oldest undelivered  12.3 s\n") != std::string::npos);
  CHECK(text.find("  cursor kafka   seq 7766, lag 1234 records\n") != std::string::npos);
  CHECK(text.find("  drops          drop_oldest 5\n") != std::string::npos);
  CHECK(text.find("  dead letters   none\n") != std::string::npos);
  CHECK(text.find("  last delivery  1.0 s ago\n") != std::string::npos);
  CHECK(text.find("  errors         _MSG_TIMED_OUT 3\n") != std::string::npos);
  CHECK(text.find("    error: InvalidArgument: bad uri\n") != std::string::npos);
}

TEST_CASE("WriteStatusFile replaces the file atomically and LiveDaemonPid finds this process") {
  rig::TempDir dir("edgeferry-status-file");
  config::BufferConfig cfg;
  cfg.path = (dir / "buffer.db").string();
  CHECK(!LiveDaemonPid(cfg).has_value());
  Snapshot s = Example();
  s.pid = static_cast<int>(getpid());
  REQUIRE(WriteStatusFile(StatusFilePath(cfg), s).ok());
  CHECK(!std::filesystem::exists(StatusFilePath(cfg) + ".tmp"));
  CHECK(LiveDaemonPid(cfg) == std::optional<int>(static_cast<int>(getpid())));
  s.pid = 0x3ffffffe;  // no such process
  REQUIRE(WriteStatusFile(StatusFilePath(cfg), s).ok());
  CHECK(!LiveDaemonPid(cfg).has_value());
  CHECK(WriteStatusFile((dir / "missing" / "x").string(), s).code() == Status::Code::kIOError);
}

TEST_CASE("ReadStatusFile: the runtime directory's file counts only for the same buffer") {
  rig::TempDir dir("edgeferry-status-run");
  std::filesystem::create_directories(dir / "run");
  config::BufferConfig cfg;
  cfg.path = (dir / "buffer.db").string();
  Snapshot s = Example();
  s.pid = static_cast<int>(getpid());
  s.buffer_path = (dir / "." / "buffer.db").string();  // same file, spelled differently
  REQUIRE(WriteStatusFile((dir / "run" / "status.json").string(), s).ok());
  auto found = ReadStatusFile(cfg, (dir / "run").string());
  REQUIRE(found.has_value());
  CHECK((*found)["daemon"]["device_id"] == "pump-7");
  CHECK(LiveDaemonPid(cfg, (dir / "run").string()) == std::optional<int>(s.pid));

  config::BufferConfig other;
  other.path = (dir / "other.db").string();
  CHECK(!ReadStatusFile(other, (dir / "run").string()).has_value());

  setenv("RUNTIME_DIRECTORY", (dir / "run").c_str(), 1);
  CHECK(DaemonStatusFilePath(cfg) == (dir / "run" / "status.json").string());
  unsetenv("RUNTIME_DIRECTORY");
  CHECK(DaemonStatusFilePath(cfg) == cfg.path + "-status.json");
}

}  // namespace
}  // namespace edgeferry::agent
