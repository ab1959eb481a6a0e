// No loss between broker and buffer: the MQTT input runs over the real SQLite buffer in a child
// process (sensors_ingest) that is SIGKILLed at random moments while a publisher streams QoS 1 or
// QoS 2 messages. Every message the broker acknowledged to the publisher must be in the buffer
// after the last restart (duplicates are allowed: MQTT redelivers what was not acknowledged).
#include <doctest/doctest.h>
#include <fmt/format.h>

#include <atomic>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "buffer/buffer.h"
#include "tests/rig/rig.h"
#include "tests/sensors/mqtt_publisher.h"

namespace edgeferry::sensors {
namespace {

using namespace std::chrono_literals;

struct CrashRun {
  size_t acked = 0;
  size_t stored = 0;
  size_t distinct = 0;
  size_t missing = 0;
  int kills = 0;
};

CrashRun RunCrashTest(int qos, int version, const std::string& sync, int kills) {
  rig::Mosquitto broker;
  rig::TempDir dir;
  const std::string db = (dir / "buffer.db").string();
  const std::string id = rig::UniqueName("ingest");
  const std::string filter = "crash/#";
  auto spawn = [&] {
    rig::Process::Options o;
    o.stdout_path = dir / "ingest.log";
    return rig::Process({EDGEFERRY_SENSORS_INGEST, "--uri", broker.uri(), "--client-id", id,
                         "--filter", filter, "--qos", std::to_string(qos), "--version",
                         std::to_string(version), "--db", db, "--sync", sync, "--exit-on", "END"},
                        o);
  };
  rig::Process ingest = spawn();
  REQUIRE_MESSAGE(broker.WaitSubscribed(id, filter, 0, 20s), rig::LogTail(dir / "ingest.log"));

  std::atomic<bool> stop{false};
  std::mutex mu;
  std::vector<int> acked;
  std::thread publisher([&] {
    testing::Publisher pub(broker.uri(), rig::UniqueName("pub"), version);
    for (int i = 0; !stop; ++i) {
      if (pub.Publish("crash/x", std::to_string(i), qos)) {
        std::lock_guard lock(mu);
        acked.push_back(i);
      }
    }
  });

  CrashRun run;
  std::mt19937 rng(std::random_device{}());
  std::uniform_int_distribution<int> delay_ms(20, 400);
  for (int k = 0; k < kills; ++k) {
    // The crash point: a random moment in the stream (not a synchronisation).
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms(rng)));
    ingest.Kill();
    ++run.kills;
    ingest = spawn();
  }
  stop = true;
  publisher.join();
  {
    testing::Publisher pub(broker.uri(), rig::UniqueName("end"), version);
    REQUIRE(pub.Publish("crash/x", "END", qos));
  }
  // The last run stores everything queued for it, then the marker, then exits by itself.
  auto rc = ingest.Wait(120s);
  REQUIRE_MESSAGE(rc == std::optional<int>(0), rig::LogTail(dir / "ingest.log"));

  config::BufferConfig bc;
  bc.path = db;
  auto buf = buffer::Buffer::Open(bc);
  REQUIRE(buf.ok());
  std::set<std::string> got;
  uint64_t after = 0;
  while (true) {
    auto batch = (*buf)->ReadAfter(after, 10000, 64 << 20);
    REQUIRE(batch.ok());
    if (batch->empty()) break;
    for (const auto& r : *batch) {
      got.insert(r.record.payload);
      ++run.stored;
      after = r.seq;
    }
  }
  run.acked = acked.size();
  run.distinct = got.size();
  for (int i : acked) {
    if (!got.count(std::to_string(i))) {
      ++run.missing;
      if (run.missing <= 10) MESSAGE("acked but not in the buffer: ", i);
    }
  }
  MESSAGE(
      fmt::format("qos {} v{} sync={}: {} kills, {} acked by the broker, {} records stored "
                  "({} distinct, {} duplicates), {} missing",
                  qos, version, sync, run.kills, run.acked, run.stored, run.distinct,
                  run.stored - run.distinct, run.missing));
  return run;
}

TEST_CASE("mqtt crash: SIGKILL x20 during a QoS 1 stream (MQTT 5, sync=full) loses nothing") {
  CrashRun r = RunCrashTest(1, 5, "full", 20);
  CHECK(r.kills == 20);
  CHECK(r.acked > 500);
  CHECK(r.missing == 0);
}

TEST_CASE("mqtt crash: SIGKILL x20 during a QoS 2 stream (MQTT 5, sync=normal) loses nothing") {
  CrashRun r = RunCrashTest(2, 5, "normal", 20);
  CHECK(r.kills == 20);
  CHECK(r.acked > 500);
  CHECK(r.missing == 0);
}

TEST_CASE("mqtt crash: SIGKILL x20 during a QoS 2 stream (MQTT 3.1.1, sync=normal) loses nothing") {
  CrashRun r = RunCrashTest(2, 3, "normal", 20);
  CHECK(r.kills == 20);
  CHECK(r.acked > 500);
  CHECK(r.missing == 0);
}

}  // namespace
}  // namespace edgeferry::sensors
