// The whole agent (`edgeferry run`) SIGKILLed mid-drain 20 times against a real Kafka: zero lost,
// duplicates counted and bounded by the window: what was sent above the durably committed
// cursor, which the forwarder keeps within 2 x max_inflight_records.
// The backlog is written into the agent's buffer before the first start, so the exact set of
// records that must arrive is known.
#include <doctest/doctest.h>
#include <signal.h>

#include <algorithm>
#include <fstream>
#include <random>
#include <set>
#include <thread>

#include "buffer/buffer.h"
#include "forwarder/forwarder.h"
#include "tests/forwarder/readback.h"
#include "tests/forwarder/test_util.h"
#include "tests/rig/rig.h"

namespace edgeferry::forwarder {
namespace {

using namespace std::chrono_literals;

constexpr int kKills = 20;
// Each run drains 2,000-8,000 records past its start plus what a 0-20 ms pause lets through
// (about 6,000 at 300k records/s): 20 runs stay well inside the backlog.
constexpr uint64_t kBacklog = 500'000;
constexpr uint32_t kMaxInflight = 5000;
constexpr uint32_t kCommitIntervalMs = 100;

uint64_t CursorOf(const std::string& db) {
  auto st = buffer::ReadStats(db);
  if (!st.ok()) return 0;
  auto it = st->cursors.find(std::string(kCursorName));
  return it == st->cursors.end() ? 0 : it->second.seq;
}

TEST_CASE("agent SIGKILLed mid-drain 20 times: zero lost, duplicates bounded") {
  auto kafka = rig::KafkaCluster::Shared();
  std::string topic = rig::UniqueName("fwd-kill");
  kafka->CreateTopic(topic, 3);
  rig::TempDir dir("edgeferry-fwd-kill");
  std::string db = (dir / "buffer.db").string();

  // The backlog, written with the buffer library the agent uses.
  {
    config::BufferConfig bc;
    bc.path = db;
    auto b = buffer::Buffer::Open(bc);
    REQUIRE_MESSAGE(b.ok(), b.status().ToString());
    for (uint64_t done = 0; done < kBacklog; done += 10'000) {
      std::vector<Record> rs;
      for (uint64_t i = 0; i < 10'000; ++i) {
        Record r;
        r.source = "sim" + std::to_string((done + i) % 4);
        r.event_time_ms = 1'700'000'000'000 + static_cast<int64_t>(done + i);
        r.payload =
            "{\"n\":" + std::to_string(done + i) + ",\"pad\":\"" + std::string(60, 'x') + "\"}";
        rs.push_back(std::move(r));
      }
      REQUIRE(b.value()->Append(std::move(rs)).ok());
    }
    REQUIRE(b.value()->LastSeq() == kBacklog);
  }

  std::string cfg_path = (dir / "edgeferry.json").string();
  {
    std::ofstream f(cfg_path);
    f << "{\n"
      << "  \"device_id\": \"kill-test\",\n"
      << "  \"buffer\": {\"path\": \"" << db << "\", \"sync\": \"full\"},\n"
      << "  \"kafka\": {\"brokers\": [\"" << kafka->bootstrap() << "\"], \"topic_template\": \""
      << topic << "\", \"max_inflight_records\": " << kMaxInflight
      << ", \"cursor_commit_interval_ms\": " << kCommitIntervalMs
      << "},\n"
      // No live input: the backlog above is the exact set that must arrive.
      << "  \"inputs\": [{\"name\": \"sim\", \"type\": \"simulated\", \"enabled\": false}]\n"
      << "}\n";
  }
  rig::ProcessOptions po;
  po.stdout_path = dir / "agent.log";
  std::vector<std::string> argv = rig::EdgeferryCommand();
  argv.insert(argv.end(), {"run", "-c", cfg_path});

  std::mt19937 rng(12345);
  uint64_t last = 0;
  int kills = 0;
  for (; kills < kKills; ++kills) {
    rig::Process agent(argv, po);
    // Mid-drain: wait until this run has moved the cursor by a random number of records, then
    // kill after a short random pause (so not always right after a cursor commit). By progress,
    // not by time alone: a faster drain once used up the backlog before the 20th kill.
    uint64_t from = CursorOf(db);
    uint64_t target = from + 2000 + rng() % 6000;
    bool moved = rig::WaitFor([&] { return CursorOf(db) >= target || !agent.running(); }, 60s);
    INFO("agent log:\n" << rig::LogTail(dir / "agent.log"));
    REQUIRE(agent.running());
    REQUIRE(moved);
    std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 20));
    agent.Kill();
    last = CursorOf(db);
    if (last >= kBacklog) break;  // drained before all kills: the test needs a larger backlog
  }
  CHECK(kills == kKills);
  MESSAGE("cursor after " << kills << " kills: " << last << " of " << kBacklog);

  // Final run: drain everything, then a clean stop.
  {
    rig::Process agent(argv, po);
    REQUIRE(rig::WaitFor([&] { return CursorOf(db) == kBacklog || !agent.running(); }, 120s));
    INFO("agent log:\n" << rig::LogTail(dir / "agent.log"));
    REQUIRE(CursorOf(db) == kBacklog);
    agent.Signal(SIGTERM);
    auto rc = agent.Wait(30s);
    REQUIRE(rc.has_value());
    CHECK(*rc == 0);
  }

  std::set<uint64_t> expected;
  for (uint64_t s = 1; s <= kBacklog; ++s) expected.insert(s);
  std::vector<testing::Consumed> got = testing::ReadBack(*kafka, topic, kBacklog, 120s);
  auto check = testing::CheckDelivery(got, expected);
  MESSAGE("read " << check.total << ", unique " << check.unique << ", duplicates "
                  << check.duplicates << " after " << kills << " SIGKILLs ("
                  << static_cast<double>(check.duplicates) / std::max(kills, 1)
                  << " per kill, window " << 2 * kMaxInflight << ")");
  CHECK(check.missing.empty());
  CHECK(check.unexpected.empty());
  CHECK(check.order_error.empty());
  // After a kill the next run resends everything above the committed cursor; the forwarder
  // never has more than 2 x max_inflight_records sent above it (in flight or delivered but not
  // yet committed), so each kill adds at most one window of duplicates.
  CHECK(check.duplicates <= static_cast<size_t>(kills) * 2 * kMaxInflight);
}

}  // namespace
}  // namespace edgeferry::forwarder
