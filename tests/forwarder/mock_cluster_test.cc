// The forwarder against librdkafka's in-process mock cluster, for protocol errors a real broker
// cannot produce on demand: NOT_LEADER_FOR_PARTITION, REQUEST_TIMED_OUT, MESSAGE_TOO_LARGE,
// brokers down and up, a fatal idempotent-producer error. No external process.
#include <doctest/doctest.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>

#include "forwarder/forwarder.h"
#include "tests/forwarder/memory_source.h"
#include "tests/forwarder/test_util.h"

namespace edgeferry::forwarder {
namespace {

using namespace std::chrono_literals;
using testing::MemorySource;

// An in-process mock cluster; the rd_kafka_t it hangs off exists only to own it.
class MockCluster {
 public:
  explicit MockCluster(int brokers) {
    char errstr[256];
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "0", errstr, sizeof errstr);
    rk_ = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (rk_ == nullptr) {
      rd_kafka_conf_destroy(conf);
      throw std::runtime_error(errstr);
    }
    mc_ = rd_kafka_mock_cluster_new(rk_, brokers);
    if (mc_ == nullptr) throw std::runtime_error("rd_kafka_mock_cluster_new failed");
    brokers_ = brokers;
  }
  ~MockCluster() {
    rd_kafka_mock_cluster_destroy(mc_);
    rd_kafka_destroy(rk_);
  }
  std::string bootstrap() const { return rd_kafka_mock_cluster_bootstraps(mc_); }
  std::vector<std::string> brokers() const {
    std::vector<std::string> out;
    std::stringstream ss(bootstrap());
    for (std::string b; std::getline(ss, b, ',');) out.push_back(b);
    return out;
  }
  rd_kafka_mock_cluster_t* get() { return mc_; }
  void CreateTopic(const std::string& name, int partitions) {
    REQUIRE(rd_kafka_mock_topic_create(mc_, name.c_str(), partitions, std::min(3, brokers_)) ==
            RD_KAFKA_RESP_ERR_NO_ERROR);
  }
  void SetAllBrokersDown(bool down) {
    for (int id = 1; id <= brokers_; ++id) {
      if (down) {
        rd_kafka_mock_broker_set_down(mc_, id);
      } else {
        rd_kafka_mock_broker_set_up(mc_, id);
      }
    }
  }

 private:
  rd_kafka_t* rk_ = nullptr;
  rd_kafka_mock_cluster_t* mc_ = nullptr;
  int brokers_ = 0;
};

// Kafka protocol ApiKey of Produce requests (librdkafka keeps its RD_KAFKAP_* names internal).
constexpr int16_t kApiKeyProduce = 0;
constexpr const char* kTopic = "fwd-mock";
const std::vector<std::string> kInputs = {"temp", "humidity", "plant-mqtt"};

config::KafkaConfig MockConfig(const MockCluster& mc) {
  config::KafkaConfig c;
  c.brokers = mc.brokers();
  c.topic_template = kTopic;
  c.linger_ms = 5;
  c.backoff_initial_ms = 50;
  c.backoff_max_ms = 400;
  c.message_timeout_ms = 3000;
  c.cursor_commit_interval_ms = 20;
  c.shutdown_grace_ms = 5000;
  c.properties["retry.backoff.ms"] = "20";
  c.properties["reconnect.backoff.max.ms"] = "500";  // reconnect soon after brokers come back
  c.properties["log_level"] = "3";
  return c;
}

std::set<uint64_t> Append(MemorySource& src, size_t n, size_t payload_bytes = 20) {
  std::set<uint64_t> seqs;
  static int64_t t = 1'700'000'000'000;
  for (size_t i = 0; i < n; ++i) {
    Record r;
    r.source = kInputs[i % kInputs.size()];
    r.event_time_ms = ++t;
    r.payload.assign(1, 'v');  // not "v" + ...: GCC 12 -O3 warns falsely (-Wrestrict)
    r.payload += std::to_string(i);
    if (r.payload.size() < payload_bytes) r.payload.resize(payload_bytes, '.');
    r.headers.push_back({"unit", "C"});
    seqs.insert(src.Append(std::move(r)));
  }
  return seqs;
}

std::unique_ptr<Forwarder> StartForwarder(const config::KafkaConfig& c, MemorySource* src) {
  auto f = Forwarder::Create(c, "dev-1", src);
  REQUIRE_MESSAGE(f.ok(), f.status().ToString());
  REQUIRE(f.value()->Start().ok());
  return std::move(f).value();
}

// "KIND=n KIND=n " from Stats::errors_by_kind, for test messages.
std::string ErrorKinds(const Stats& st) {
  std::string kinds;
  for (const auto& [kind, n] : st.errors_by_kind) kinds += kind + "=" + std::to_string(n) + " ";
  return kinds;
}

void RequireNoLoss(const MockCluster& mc, const std::set<uint64_t>& expected,
                   size_t* dups = nullptr) {
  auto got = testing::ReadTopic(mc.bootstrap(), kTopic, expected.size(), 20s);
  auto check = testing::CheckDelivery(got, expected);
  INFO("read " << check.total << " unique " << check.unique << " missing " << check.missing.size()
               << " unexpected " << check.unexpected.size() << " order: " << check.order_error);
  CHECK(check.missing.empty());
  CHECK(check.unexpected.empty());
  CHECK(check.order_error.empty());
  if (dups != nullptr) *dups = check.duplicates;
}

TEST_CASE("mock: records arrive with key, timestamp, headers - cursor committed - stop is clean") {
  MockCluster mc(3);
  mc.CreateTopic(kTopic, 4);
  MemorySource src;
  auto expected = Append(src, 3000);
  auto fwd = StartForwarder(MockConfig(mc), &src);
  REQUIRE(testing::WaitUntil([&] { return src.cursor() == src.last_seq(); }, 20s));
  fwd->Stop(5s);
  auto st = fwd->GetStats();
  CHECK(st.delivered_records == 3000);
  CHECK(st.inflight_records == 0);
  CHECK(st.committed_cursor == src.last_seq());
  CHECK(st.dead_lettered == 0);

  auto got = testing::ReadTopic(mc.bootstrap(), kTopic, 3000, 20s);
  auto check = testing::CheckDelivery(got, expected);
  CHECK(check.ok());
  CHECK(check.total == 3000);  // no fault, no duplicates
  // Spot-check one record's routing and metadata.
  bool found = false;
  for (const auto& c : got) {
    if (testing::HeaderValue(c, kHeaderSeq) != "2") continue;
    found = true;
    CHECK(c.key == "dev-1.humidity");
    CHECK(c.value.rfind("v1", 0) == 0);
    CHECK(testing::HeaderValue(c, "unit") == "C");
    CHECK(testing::HeaderValue(c, kHeaderDevice) == "dev-1");
    CHECK(testing::HeaderValue(c, kHeaderSource) == "humidity");
    CHECK(c.timestamp_ms > 1'700'000'000'000);
  }
  CHECK(found);
}

TEST_CASE("mock: NOT_LEADER_FOR_PARTITION and REQUEST_TIMED_OUT on produce lose nothing") {
  MockCluster mc(3);
  mc.CreateTopic(kTopic, 4);
  MemorySource src;
  auto expected = Append(src, 500);
  rd_kafka_mock_push_request_errors(
      mc.get(), kApiKeyProduce, 6, RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
      RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT, RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
      RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT, RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
      RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT);
  auto fwd = StartForwarder(MockConfig(mc), &src);
  for (int i = 0; i < 5; ++i) {
    // More errors while the stream runs.
    rd_kafka_mock_push_request_errors(mc.get(), kApiKeyProduce, 2,
                                      RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
                                      RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT);
    auto more = Append(src, 200);
    expected.insert(more.begin(), more.end());
  }
  REQUIRE(testing::WaitUntil([&] { return src.cursor() == src.last_seq(); }, 30s));
  fwd->Stop(5s);
  CHECK(src.dead_letters().empty());
  size_t dups = 0;
  RequireNoLoss(mc, expected, &dups);
  MESSAGE("duplicates after injected errors: " << dups);
}

TEST_CASE("mock: a record larger than message.max.bytes is dead-lettered - the stream continues") {
  MockCluster mc(1);
  mc.CreateTopic(kTopic, 2);
  MemorySource src;
  auto c = MockConfig(mc);
  c.properties["message.max.bytes"] = "20000";
  c.batch_bytes = 16000;
  auto before = Append(src, 100);
  Record big;
  big.source = "temp";
  big.payload.assign(50000, 'x');
  uint64_t big_seq = src.Append(big);
  Record bad_topic;
  bad_topic.source = "temp";
  bad_topic.topic = "not a topic!";
  bad_topic.payload = "x";
  uint64_t bad_topic_seq = src.Append(bad_topic);
  auto after = Append(src, 100);
  auto fwd = StartForwarder(c, &src);
  REQUIRE(testing::WaitUntil([&] { return src.cursor() == src.last_seq(); }, 20s));
  fwd->Stop(5s);
  auto dl = src.dead_letters();
  REQUIRE(dl.size() == 2);
  CHECK(dl[0].record.seq == big_seq);
  CHECK(dl[0].reason.find("MSG_SIZE_TOO_LARGE") != std::string::npos);
  CHECK(dl[1].record.seq == bad_topic_seq);
  CHECK(dl[1].reason.find("invalid Kafka topic name") != std::string::npos);
  CHECK(fwd->GetStats().dead_lettered == 2);
  std::set<uint64_t> expected = before;
  expected.insert(after.begin(), after.end());
  RequireNoLoss(mc, expected);
}

TEST_CASE("mock: broker-side MESSAGE_TOO_LARGE: the record at fault is dead-lettered alone") {
  // Two errors: the first fails a batch (every record in it becomes a suspect, sent alone), the
  // second fails the first suspect again, alone: that one is dead-lettered, the rest delivered.
  // The errors also make librdkafka 2.0.2 raise fatal _GAPLESS_GUARANTEE errors (the producer is
  // recreated at least once in every run). Once, under qemu, their timing let the second error
  // miss the suspect sent alone: it was resent, the mock took it, nothing was dead-lettered and
  // nothing lost. So a run without a dead letter is checked for no loss, and the scenario is run
  // again, up to three times, until the record at fault has been isolated.
  bool isolated = false;
  for (int attempt = 1; attempt <= 3 && !isolated; ++attempt) {
    MockCluster mc(1);
    mc.CreateTopic(kTopic, 1);
    MemorySource src;
    auto c = MockConfig(mc);
    auto fwd = StartForwarder(c, &src);
    rd_kafka_mock_push_request_errors(mc.get(), kApiKeyProduce, 2,
                                      RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE,
                                      RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE);
    auto expected = Append(src, 50);
    REQUIRE(testing::WaitUntil([&] { return src.cursor() == src.last_seq(); }, 20s));
    auto more = Append(src, 50);
    expected.insert(more.begin(), more.end());
    REQUIRE(testing::WaitUntil([&] { return src.cursor() == src.last_seq(); }, 20s));
    fwd->Stop(5s);
    auto dl = src.dead_letters();
    auto st = fwd->GetStats();
    MESSAGE("attempt " << attempt << ": dead-lettered " << dl.size() << ", producer restarts "
                       << st.producer_restarts << ", failures " << st.delivery_failures);
    REQUIRE(dl.size() <= 1);
    if (dl.size() == 1) {
      CHECK(dl[0].reason.find("MSG_SIZE_TOO_LARGE") != std::string::npos);
      CHECK(st.dead_lettered == 1);
      expected.erase(dl[0].record.seq);
      isolated = true;
    }
    RequireNoLoss(mc, expected);
  }
  CHECK(isolated);
}

TEST_CASE("mock: all brokers down, records keep coming, brokers up: every record arrives") {
  MockCluster mc(3);
  mc.CreateTopic(kTopic, 4);
  MemorySource src;
  auto c = MockConfig(mc);
  c.message_timeout_ms = 1000;  // expire queued records during the outage: must not lose them
  auto expected = Append(src, 200);
  auto fwd = StartForwarder(c, &src);
  REQUIRE(testing::WaitUntil([&] { return src.cursor() == src.last_seq(); }, 20s));
  mc.SetAllBrokersDown(true);
  uint64_t cursor_at_outage = src.cursor();
  for (int i = 0; i < 5; ++i) {
    auto more = Append(src, 100);
    expected.insert(more.begin(), more.end());
  }
  // Wait until librdkafka has expired records (failed delivery reports) at least twice.
  REQUIRE(testing::WaitUntil([&] { return fwd->GetStats().delivery_failures >= 2; }, 20s));
  CHECK(fwd->GetStats().backing_off);
  CHECK(src.cursor() == cursor_at_outage);
  uint64_t ticks = fwd->ProgressTicks();
  REQUIRE(testing::WaitUntil([&] { return fwd->ProgressTicks() > ticks + 10; }, 5s));
  mc.SetAllBrokersDown(false);
  REQUIRE(testing::WaitUntil([&] { return src.cursor() == src.last_seq(); }, 30s));
  fwd->Stop(5s);
  auto st = fwd->GetStats();
  MESSAGE("failures " << st.delivery_failures << " resent " << st.resent_records << " restarts "
                      << st.producer_restarts);
  CHECK(st.resent_records > 0);
  CHECK(src.dead_letters().empty());
  RequireNoLoss(mc, expected);
}

TEST_CASE("mock: a fatal idempotent-producer error recreates the producer - nothing is lost") {
  MockCluster mc(3);
  mc.CreateTopic(kTopic, 4);
  MemorySource src;
  auto c = MockConfig(mc);
  c.max_inflight_records = 200;
  auto expected = Append(src, 2000);
  auto fwd = StartForwarder(c, &src);
  REQUIRE(testing::WaitUntil([&] { return fwd->GetStats().delivered_records > 0; }, 10s));
  fwd->InjectFatalErrorForTesting();
  REQUIRE(testing::WaitUntil([&] { return fwd->GetStats().producer_restarts >= 1; }, 10s));
  auto more = Append(src, 1000);
  expected.insert(more.begin(), more.end());
  REQUIRE(testing::WaitUntil([&] { return src.cursor() == src.last_seq(); }, 30s));
  fwd->Stop(5s);
  CHECK(fwd->GetStats().producer_restarts == 1);
  size_t dups = 0;
  RequireNoLoss(mc, expected, &dups);
  CHECK(dups <= 200);  // only the in-flight window may be sent twice
  MESSAGE("duplicates after a fatal error: " << dups);
}

TEST_CASE("mock: OUT_OF_ORDER_SEQUENCE_NUMBER from the broker loses nothing") {
  MockCluster mc(1);
  mc.CreateTopic(kTopic, 1);
  MemorySource src;
  auto expected = Append(src, 300);
  auto fwd = StartForwarder(MockConfig(mc), &src);
  REQUIRE(testing::WaitUntil([&] { return src.cursor() >= 100; }, 10s));
  rd_kafka_mock_push_request_errors(mc.get(), kApiKeyProduce, 1,
                                    RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER);
  auto more = Append(src, 300);
  expected.insert(more.begin(), more.end());
  REQUIRE(testing::WaitUntil([&] { return src.cursor() == src.last_seq(); }, 30s));
  fwd->Stop(5s);
  auto st = fwd->GetStats();
  MESSAGE("producer restarts " << st.producer_restarts << ", failures " << st.delivery_failures);
  RequireNoLoss(mc, expected);
}

// Waits up to 60 s for the forwarder to deliver everything in `src`, keeping the highest value of
// `field` (by default the records in flight) seen on the way in *peak.
bool DrainTrackingPeak(Forwarder& fwd, MemorySource& src, uint64_t* peak,
                       uint64_t Stats::*field = &Stats::inflight_records) {
  return testing::WaitUntil(
      [&] {
        *peak = std::max(*peak, fwd.GetStats().*field);
        return src.cursor() == src.last_seq();
      },
      60s);
}

TEST_CASE("mock: in-flight records stay within max_inflight_records whatever the backlog") {
  MockCluster mc(1);
  mc.CreateTopic(kTopic, 2);
  rd_kafka_mock_broker_set_rtt(mc.get(), 1, 20);
  MemorySource src;
  auto c = MockConfig(mc);
  c.max_inflight_records = 64;
  auto expected = Append(src, 5000);
  auto fwd = StartForwarder(c, &src);
  uint64_t peak = 0;
  REQUIRE(DrainTrackingPeak(*fwd, src, &peak));
  fwd->Stop(5s);
  CHECK(peak > 0);
  CHECK(peak <= 64);
  RequireNoLoss(mc, expected);
}

// The bytes cap holds too. The reader reads ahead up to 256 KiB whatever is in flight, so it is
// SendBatch that stops at max_inflight_bytes: 1 KiB records, a 16 KiB cap, a record cap far above.
TEST_CASE("mock: in-flight bytes stay within max_inflight_bytes whatever the backlog") {
  MockCluster mc(1);
  mc.CreateTopic(kTopic, 2);
  rd_kafka_mock_broker_set_rtt(mc.get(), 1, 20);
  MemorySource src;
  auto c = MockConfig(mc);
  c.max_inflight_records = 1000;
  c.max_inflight_bytes = 16 * 1024;
  auto expected = Append(src, 1000, 1024);
  auto fwd = StartForwarder(c, &src);
  uint64_t peak = 0;
  REQUIRE(DrainTrackingPeak(*fwd, src, &peak, &Stats::inflight_bytes));
  fwd->Stop(5s);
  CHECK(peak > 8 * 1024);  // the cap is what limits, not something smaller
  CHECK(peak <= 16 * 1024);
  RequireNoLoss(mc, expected);
}

// What a crash could resend is everything sent above the committed cursor, so that (not just
// what is in flight) must stay within its own cap, twice max_inflight_records. With a commit
// interval far longer than the test, only the early commits keep the drain going.
TEST_CASE(
    "mock: sent-but-uncommitted records stay within twice max_inflight_records - early "
    "commits") {
  MockCluster mc(1);
  mc.CreateTopic(kTopic, 2);
  MemorySource src;
  auto c = MockConfig(mc);
  c.max_inflight_records = 64;
  c.cursor_commit_interval_ms = 600'000;
  auto expected = Append(src, 3000);
  auto fwd = StartForwarder(c, &src);
  uint64_t peak = 0;
  REQUIRE(testing::WaitUntil(
      [&] {
        auto st = fwd->GetStats();
        peak = std::max(peak, st.uncommitted_records);
        return src.cursor() == src.last_seq();
      },
      60s));
  auto st = fwd->GetStats();
  fwd->Stop(5s);
  MESSAGE("peak uncommitted " << peak << ", commits " << src.commits());
  CHECK(peak > 0);
  CHECK(peak <= 2 * 64);
  CHECK(src.commits() >= 3000 / 128);  // committed every window or so, not per interval
  // Every delivery report fed the latency figures.
  CHECK(st.delivery_latency.count == st.delivered_records);
  CHECK(st.max_delivery_latency_ms >= st.last_delivery_latency_ms);
  CHECK(st.delivery_latency.sum_ms > 0);
  RequireNoLoss(mc, expected);
}

TEST_CASE("mock: restart resumes from the committed cursor without duplicates after a clean stop") {
  MockCluster mc(1);
  mc.CreateTopic(kTopic, 2);
  MemorySource src;
  auto expected = Append(src, 400);
  {
    auto fwd = StartForwarder(MockConfig(mc), &src);
    REQUIRE(testing::WaitUntil([&] { return src.cursor() == src.last_seq(); }, 20s));
    fwd->Stop(5s);
  }
  auto more = Append(src, 400);
  expected.insert(more.begin(), more.end());
  auto fwd = StartForwarder(MockConfig(mc), &src);
  REQUIRE(testing::WaitUntil([&] { return src.cursor() == src.last_seq(); }, 20s));
  fwd->Stop(5s);
  CHECK(fwd->GetStats().delivered_records == 400);
  size_t dups = 1;
  RequireNoLoss(mc, expected, &dups);
  CHECK(dups == 0);
}

TEST_CASE("mock: records trimmed from the source while undelivered do not stall the cursor") {
  MockCluster mc(1);
  mc.CreateTopic(kTopic, 1);
  MemorySource src;
  auto c = MockConfig(mc);
  c.message_timeout_ms = 500;
  auto fwd = StartForwarder(c, &src);
  mc.SetAllBrokersDown(true);
  Append(src, 100);
  REQUIRE(testing::WaitUntil([&] { return fwd->GetStats().delivery_failures >= 1; }, 10s));
  src.Trim(50);  // drop_oldest pushed out 1..50 during the outage
  src.SkipSeqs(7);
  auto after = Append(src, 50);
  mc.SetAllBrokersDown(false);
  REQUIRE(testing::WaitUntil([&] { return src.cursor() == src.last_seq(); }, 30s));
  fwd->Stop(5s);
  std::set<uint64_t> expected;
  for (uint64_t s = 51; s <= 100; ++s) expected.insert(s);
  expected.insert(after.begin(), after.end());
  auto got = testing::ReadTopic(mc.bootstrap(), kTopic, expected.size(), 20s);
  auto check = testing::CheckDelivery(got, expected);
  CHECK(check.missing.empty());
  CHECK(check.order_error.empty());
}

TEST_CASE("mock: a hole of trimmed seqs wider than the window - records sharing a slot wait") {
  // The forwarder keeps a record in flight in the slot seq mod its table's size, which for 10 in
  // flight stays at its least, 1,024. 1..5 and, after 1,019 trimmed seqs, 1025..1029 fall on the
  // same slots: 1025 must wait for 1's report. Taking its slot, 1's report would count as
  // 1025's and the cursor never pass 1.
  MockCluster mc(1);
  mc.CreateTopic(kTopic, 1);
  REQUIRE(rd_kafka_mock_broker_set_rtt(mc.get(), 1, 300) == RD_KAFKA_RESP_ERR_NO_ERROR);
  MemorySource src;
  auto c = MockConfig(mc);
  c.max_inflight_records = 10;
  auto expected = Append(src, 5);
  auto fwd = StartForwarder(c, &src);
  REQUIRE(testing::WaitUntil([&] { return fwd->GetStats().inflight_records == 5; }, 10s));
  src.SkipSeqs(1019);
  auto after = Append(src, 5);
  REQUIRE(*after.begin() == 1025);
  expected.insert(after.begin(), after.end());
  REQUIRE(testing::WaitUntil([&] { return src.cursor() == src.last_seq(); }, 20s));
  fwd->Stop(5s);
  CHECK(fwd->GetStats().delivered_records == 10);
  size_t dups = 1;
  RequireNoLoss(mc, expected, &dups);
  CHECK(dups == 0);
}

// The slot table starts small and doubles while records are in flight (SlotOf): every record
// must keep its slot across the moves, or its delivery report finds none and the cursor stops.
// A slow broker (300 ms) keeps thousands in flight, so the table grows from 1,024 (to 16,384 at
// most) with reports outstanding; then, caught up, it shrinks, and a second backlog grows it again.
TEST_CASE("mock: the in-flight slot table grows and shrinks with records in flight - none lost") {
  MockCluster mc(1);
  mc.CreateTopic(kTopic, 3);
  REQUIRE(rd_kafka_mock_broker_set_rtt(mc.get(), 1, 300) == RD_KAFKA_RESP_ERR_NO_ERROR);
  MemorySource src;
  auto c = MockConfig(mc);
  c.max_inflight_records = 6000;
  auto expected = Append(src, 20'000);
  auto fwd = StartForwarder(c, &src);
  uint64_t peak = 0;
  REQUIRE(DrainTrackingPeak(*fwd, src, &peak));
  CHECK(peak > 2048);  // more than the table held before it grew
  auto more = Append(src, 20'000);
  expected.insert(more.begin(), more.end());
  REQUIRE(testing::WaitUntil([&] { return src.cursor() == src.last_seq(); }, 60s));
  fwd->Stop(5s);
  CHECK(fwd->GetStats().delivered_records == 40'000);
  CHECK(fwd->GetStats().delivery_failures == 0);
  size_t dups = 1;
  RequireNoLoss(mc, expected, &dups);
  CHECK(dups == 0);
}

}  // namespace
}  // namespace edgeferry::forwarder

namespace edgeferry::forwarder {
namespace {

TEST_CASE("mock: a long outage recreates the producer every few failed rounds - nothing is lost") {
  MockCluster mc(1);
  mc.CreateTopic(kTopic, 2);
  MemorySource src;
  auto c = MockConfig(mc);
  c.message_timeout_ms = 200;
  c.backoff_initial_ms = 10;
  c.backoff_max_ms = 50;
  auto expected = Append(src, 100);
  auto fwd = StartForwarder(c, &src);
  REQUIRE(testing::WaitUntil([&] { return src.cursor() == src.last_seq(); }, 20s));
  mc.SetAllBrokersDown(true);
  auto more = Append(src, 300);
  expected.insert(more.begin(), more.end());
  // Five failed rounds in a row: a fresh producer (librdkafka 2.0.2 can stay stuck on metadata).
  REQUIRE(testing::WaitUntil([&] { return fwd->GetStats().producer_restarts >= 1; }, 60s));
  CHECK(src.cursor() == 100);
  mc.SetAllBrokersDown(false);
  REQUIRE(testing::WaitUntil([&] { return src.cursor() == src.last_seq(); }, 60s));
  fwd->Stop(5s);
  CHECK(src.dead_letters().empty());
  RequireNoLoss(mc, expected);
}

}  // namespace
}  // namespace edgeferry::forwarder

namespace edgeferry::forwarder {
namespace {

// A MemorySource that, on every cursor commit, checks against the mock cluster itself that the
// committed cursor does not pass a record the cluster does not hold: before the commit is
// stored, a consumer of its own reads the topic until every seq <= the new cursor has been seen
// (an acknowledged record is in the log at once) or 5 s pass, which counts as a violation.
// Records in the log whose delivery report said "failed" (a timed-out request the broker did
// apply) are fine: the promise is only that the cursor never runs ahead of the log.
class LogCheckingSource : public MemorySource {
 public:
  LogCheckingSource(const std::string& bootstrap, const std::string& topic, int partitions) {
    char errstr[512];
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap.c_str(), errstr, sizeof errstr);
    rd_kafka_conf_set(conf, "group.id", "edgeferry-log-check", errstr, sizeof errstr);
    rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, sizeof errstr);
    rd_kafka_conf_set(conf, "fetch.wait.max.ms", "10", errstr, sizeof errstr);
    // Back on a broker that was down within 100 ms: with librdkafka's default (up to 10 s) the
    // check missed a log that did hold the records ("cursor 180 committed while the log held
    // only 1..64"; the full read at the end of the test found every seq, in order).
    rd_kafka_conf_set(conf, "reconnect.backoff.ms", "10", errstr, sizeof errstr);
    rd_kafka_conf_set(conf, "reconnect.backoff.max.ms", "100", errstr, sizeof errstr);
    rd_kafka_conf_set(conf, "log_level", "0", errstr, sizeof errstr);
    rk_ = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    if (rk_ == nullptr) {
      rd_kafka_conf_destroy(conf);
      throw std::runtime_error(std::string("consumer: ") + errstr);
    }
    rd_kafka_topic_partition_list_t* parts = rd_kafka_topic_partition_list_new(partitions);
    for (int p = 0; p < partitions; ++p) {
      rd_kafka_topic_partition_list_add(parts, topic.c_str(), p)->offset =
          RD_KAFKA_OFFSET_BEGINNING;
    }
    rd_kafka_assign(rk_, parts);
    rd_kafka_topic_partition_list_destroy(parts);
  }
  ~LogCheckingSource() override {
    rd_kafka_consumer_close(rk_);
    rd_kafka_destroy(rk_);
  }

  Status CommitCursor(std::string_view name, uint64_t seq) override {
    {
      std::lock_guard lock(check_mu_);
      ++checked_commits_;
      auto end = std::chrono::steady_clock::now() + 5s;
      while (contiguous_ < seq && std::chrono::steady_clock::now() < end) {
        rd_kafka_message_t* m = rd_kafka_consumer_poll(rk_, 20);
        if (m == nullptr) continue;
        if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
          rd_kafka_headers_t* hdrs = nullptr;
          const void* val = nullptr;
          size_t size = 0;
          if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR &&
              rd_kafka_header_get_last(hdrs, kHeaderSeq, &val, &size) ==
                  RD_KAFKA_RESP_ERR_NO_ERROR) {
            seen_.insert(std::stoull(std::string(static_cast<const char*>(val), size)));
          }
        }
        rd_kafka_message_destroy(m);
        while (seen_.count(contiguous_ + 1) > 0) ++contiguous_;
      }
      if (contiguous_ < seq) {
        violations_.push_back("cursor " + std::to_string(seq) + " committed while the log held " +
                              "only 1.." + std::to_string(contiguous_) + " without a gap");
      }
    }
    return MemorySource::CommitCursor(name, seq);
  }

  std::vector<std::string> violations() {
    std::lock_guard lock(check_mu_);
    return violations_;
  }
  uint64_t checked_commits() {
    std::lock_guard lock(check_mu_);
    return checked_commits_;
  }

 private:
  std::mutex check_mu_;
  rd_kafka_t* rk_ = nullptr;
  std::set<uint64_t> seen_;
  uint64_t contiguous_ = 0;  // 1..contiguous_ all seen in the log
  std::vector<std::string> violations_;
  uint64_t checked_commits_ = 0;
};

// Six keys (the record's own key) over three partitions, so that several keys share a partition
// whose requests time out.
std::set<uint64_t> AppendKeyed(MemorySource& src, size_t n) {
  std::set<uint64_t> seqs;
  static int64_t t = 1'750'000'000'000;
  static uint64_t i = 0;
  for (size_t k = 0; k < n; ++k, ++i) {
    Record r;
    r.source = "temp";
    r.key = "k" + std::to_string(i % 6);
    r.event_time_ms = ++t;
    r.payload = "race-" + std::to_string(i);
    seqs.insert(src.Append(std::move(r)));
  }
  return seqs;
}

// kTopic with `partitions` partitions, partition p led by broker p + 1, so that a fault on
// one broker hits exactly one partition.
void CreateTopicLedByOneBrokerEach(MockCluster& mc, int partitions) {
  mc.CreateTopic(kTopic, partitions);
  for (int p = 0; p < partitions; ++p) {
    REQUIRE(rd_kafka_mock_partition_set_leader(mc.get(), kTopic, p, p + 1) ==
            RD_KAFKA_RESP_ERR_NO_ERROR);
  }
}

// The window the session notes called risky: kafka.message_timeout_ms expires for some produce
// requests (their responses are held back longer than the timeout; some of them the broker did
// apply, some it rejected) while other requests, on other partition leaders and on the same one,
// succeed. The forwarder then purges its queue, waits for every delivery report of the old round
// and rewinds to its cursor. Asserted: the cursor committed is never ahead of what the cluster's
// log holds (checked at each commit), every seq arrives, per key the first occurrences are in seq
// order, nothing is dead-lettered, and the timeouts really happened.
TEST_CASE("mock: produce requests timing out while others succeed - cursor never passes the log") {
  MockCluster mc(3);
  constexpr int kPartitions = 3;
  CreateTopicLedByOneBrokerEach(mc, kPartitions);
  LogCheckingSource src(mc.bootstrap(), kTopic, kPartitions);
  auto c = MockConfig(mc);
  c.message_timeout_ms = 800;
  c.linger_ms = 2;
  c.batch_bytes = 2000;  // many small requests, so that some succeed around the slow ones
  c.max_inflight_records = 400;
  c.cursor_commit_interval_ms = 50;
  auto expected = AppendKeyed(src, 600);

  // Broker 1 (leader of partition 0): applied-but-late (times out, the records are in the log),
  // rejected-and-late (times out, not in the log), then the same rejection for the requests
  // behind it, and prompt successes. Broker 2 (partition 1): slow but within the timeout.
  // Broker 3 (partition 2): prompt.
  // Why the requests behind the rejected one are rejected too: a real broker that refuses one
  // request refuses the next ones of the same producer epoch (NOT_LEADER while it is not the
  // leader, else OUT_OF_ORDER_SEQUENCE_NUMBER: their sequence skips the refused records). The
  // mock does not: librdkafka 2.0.2's rd_kafka_mock_validate_records checks sequences only for
  // a transactional producer, and the mock applies a request when it arrives (an error's delay
  // only holds the response back), so a success pushed right behind the rejection appended
  // later records of a key ahead of the rejected ones ("seq 284 first arrived after seq 596",
  // 2 runs of 8 with the window of twice max_inflight_records), which no real broker does. Up
  // to four requests can be in flight behind it (max.in.flight 5 with idempotence).
  auto push_faults = [&] {
    REQUIRE(rd_kafka_mock_broker_push_request_error_rtts(
                mc.get(), 1, kApiKeyProduce, 10, RD_KAFKA_RESP_ERR_NO_ERROR, 0,
                RD_KAFKA_RESP_ERR_NO_ERROR, 1500, RD_KAFKA_RESP_ERR_NO_ERROR, 0,
                RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION, 1500,
                RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION, 0,
                RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION, 0,
                RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION, 0,
                RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION, 0, RD_KAFKA_RESP_ERR_NO_ERROR, 0,
                RD_KAFKA_RESP_ERR_NO_ERROR, 1200) == RD_KAFKA_RESP_ERR_NO_ERROR);
    REQUIRE(rd_kafka_mock_broker_push_request_error_rtts(
                mc.get(), 2, kApiKeyProduce, 3, RD_KAFKA_RESP_ERR_NO_ERROR, 300,
                RD_KAFKA_RESP_ERR_NO_ERROR, 400, RD_KAFKA_RESP_ERR_NO_ERROR,
                1300) == RD_KAFKA_RESP_ERR_NO_ERROR);
  };
  push_faults();
  int fault_rounds = 0;  // fault sets all taken by produce requests
  auto fwd = StartForwarder(c, &src);
  auto faults_left = [&] {
    size_t n1 = 0, n2 = 0;
    rd_kafka_mock_broker_error_stack_cnt(mc.get(), 1, kApiKeyProduce, &n1);
    rd_kafka_mock_broker_error_stack_cnt(mc.get(), 2, kApiKeyProduce, &n2);
    return n1 + n2;
  };
  for (int round = 0; round < 4; ++round) {
    // Each round: wait until the previous faults were used up (or everything was delivered and
    // no request is left to take them), then more faults and more records.
    REQUIRE(testing::WaitUntil([&] { return faults_left() == 0 || src.cursor() == src.last_seq(); },
                               30s));
    if (faults_left() == 0) {
      ++fault_rounds;
      push_faults();
    }
    auto more = AppendKeyed(src, 300);
    expected.insert(more.begin(), more.end());
  }
  REQUIRE(testing::WaitUntil([&] { return src.cursor() == src.last_seq(); }, 60s));
  fwd->Stop(5s);
  auto st = fwd->GetStats();
  uint64_t timed_out =
      st.errors_by_kind.count("_MSG_TIMED_OUT") ? st.errors_by_kind.at("_MSG_TIMED_OUT") : 0;
  std::string kinds = ErrorKinds(st);
  MESSAGE("failures " << st.delivery_failures << " resent " << st.resent_records << " restarts "
                      << st.producer_restarts << " errors: " << kinds << "fault rounds "
                      << fault_rounds << " checked commits " << src.checked_commits());
  CHECK(timed_out > 0);  // the window under test was really entered
  CHECK(src.checked_commits() > 0);
  for (const auto& v : src.violations()) FAIL_CHECK(v);
  CHECK(src.dead_letters().empty());
  size_t dups = 0;
  RequireNoLoss(mc, expected, &dups);
  MESSAGE("duplicates: " << dups);
}

// A batch the broker refuses for good (MSG_SIZE_TOO_LARGE here) while more of the partition's
// records wait in librdkafka's queue. librdkafka 2.0.2 then bumps the producer epoch and sends
// the queued batches at once, and a real broker accepts them (a new epoch starts its sequence
// again), before the forwarder has seen the failure and purged its queue: later records of a
// key reached the log ahead of the refused ones, which the forwarder resends from its cursor
// ("key k0: seq 301 first arrived after seq 361", 3 runs of 3). With enable.gapless.guarantee
// the refusal is a fatal error that stops the producer first; asserted: per key first
// occurrences in seq order, every seq arrives once at least, the cursor never ahead of the log.
TEST_CASE(
    "mock: a batch refused for good with more queued behind it - later records do not overtake "
    "it") {
  MockCluster mc(1);
  mc.CreateTopic(kTopic, 1);
  LogCheckingSource src(mc.bootstrap(), kTopic, 1);
  auto c = MockConfig(mc);
  c.linger_ms = 2;
  c.batch_bytes = 2000;  // many small batches
  c.max_inflight_records = 2000;
  // One request in flight at a time: behind a refused request a real broker also refuses the
  // ones in flight (OUT_OF_ORDER_SEQUENCE_NUMBER), the mock appends them (it checks sequences
  // only for transactional producers), which is not what is tested here.
  c.properties["max.in.flight.requests.per.connection"] = "1";
  auto expected = AppendKeyed(src, 300);
  auto fwd = StartForwarder(c, &src);
  REQUIRE(testing::WaitUntil([&] { return src.cursor() == src.last_seq(); }, 30s));
  // The next request is refused after 200 ms, while the forwarder has queued 1,500 more. The
  // one request librdkafka may already have built behind it (queue.buffering.backpressure.
  // threshold 1; max.in.flight holds it back only until the answer) goes out at once and is
  // refused as a real broker refuses it, its sequence skipping the refused records. The mock,
  // which checks sequences only for transactional producers, appended it: "seq 301 first arrived
  // after seq 331" in 5 of 20 runs under load (1 of 20 at session 5's end). If no request was
  // built, the new producer's first one takes that answer, and is recreated once more.
  REQUIRE(rd_kafka_mock_broker_push_request_error_rtts(
              mc.get(), 1, kApiKeyProduce, 2, RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE, 200,
              RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER, 0) == RD_KAFKA_RESP_ERR_NO_ERROR);
  auto more = AppendKeyed(src, 1500);
  expected.insert(more.begin(), more.end());
  bool drained = testing::WaitUntil([&] { return src.cursor() == src.last_seq(); }, 30s);
  fwd->Stop(5s);
  auto st = fwd->GetStats();
  std::string kinds = ErrorKinds(st);
  INFO("cursor " << src.cursor() << " of " << src.last_seq() << "; restarts "
                 << st.producer_restarts << ", errors: " << kinds);
  REQUIRE(drained);
  CHECK(st.errors_by_kind.count("MSG_SIZE_TOO_LARGE") == 1);  // the refusal really happened
  CHECK(st.producer_restarts >= 1);  // gapless: a fatal error, then a new producer
  for (const auto& v : src.violations()) FAIL_CHECK(v);
  CHECK(src.dead_letters().empty());  // alone, each record of the refused batch went through
  RequireNoLoss(mc, expected);
}

// A new producer (after a fatal error) while a suspect of a refused batch is in flight alone:
// the suspect's report never comes, and the forwarder waited for it forever (cursor stuck, found
// with the test above before gapless). Now it sends the suspect alone again from the new
// producer. The broker holds every response 500 ms so that the suspect is seen in flight.
TEST_CASE("mock: producer recreated while a suspect is in flight alone - the drain goes on") {
  MockCluster mc(1);
  mc.CreateTopic(kTopic, 1);
  MemorySource src;
  auto c = MockConfig(mc);
  c.linger_ms = 2;
  auto expected = Append(src, 200);
  auto fwd = StartForwarder(c, &src);
  REQUIRE(testing::WaitUntil([&] { return src.cursor() == src.last_seq(); }, 30s));
  REQUIRE(rd_kafka_mock_broker_push_request_error_rtts(mc.get(), 1, kApiKeyProduce, 1,
                                                       RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE,
                                                       0) == RD_KAFKA_RESP_ERR_NO_ERROR);
  auto more = Append(src, 200);
  expected.insert(more.begin(), more.end());
  REQUIRE(testing::WaitUntil([&] { return fwd->GetStats().delivery_failures > 0; }, 20s));
  rd_kafka_mock_broker_set_rtt(mc.get(), 1, 500);
  // One record in flight, not backing off, after the refusal: a suspect sent alone.
  REQUIRE(testing::WaitUntil(
      [&] {
        auto st = fwd->GetStats();
        return st.inflight_records == 1 && !st.backing_off;
      },
      20s));
  fwd->InjectFatalErrorForTesting();
  REQUIRE(testing::WaitUntil([&] { return fwd->GetStats().producer_restarts >= 2; }, 20s));
  rd_kafka_mock_broker_set_rtt(mc.get(), 1, 0);
  bool drained = testing::WaitUntil([&] { return src.cursor() == src.last_seq(); }, 30s);
  fwd->Stop(5s);
  auto st = fwd->GetStats();
  INFO("cursor " << src.cursor() << " of " << src.last_seq() << "; restarts "
                 << st.producer_restarts << ", dead-lettered " << st.dead_lettered);
  CHECK(drained);
  CHECK(st.dead_lettered == 0);
  RequireNoLoss(mc, expected);
}

// For the tests of records expiring while a leader is down: two partitions led by brokers 1
// and 2, a forwarder (1 s timeout, small batches, reconnection within 50 ms of a leader's
// return) that has delivered 60 keyed records, then broker 1 down.
struct LeaderDownRig {
  LeaderDownRig() {
    REQUIRE(testing::WaitUntil([&] { return src.cursor() == src.last_seq(); }, 20s));
    rd_kafka_mock_broker_set_down(mc.get(), 1);
  }
  static config::KafkaConfig Config(const MockCluster& mc) {
    auto c = MockConfig(mc);
    c.message_timeout_ms = 1000;
    c.linger_ms = 2;
    c.properties["reconnect.backoff.ms"] = "10";
    c.properties["reconnect.backoff.max.ms"] = "50";
    return c;
  }
  static MockCluster& WithTopic(MockCluster& mc) {
    CreateTopicLedByOneBrokerEach(mc, 2);
    return mc;
  }

  // 60 more records, the drain to the end, stop; then the checks of every such test: the cursor
  // never ahead of the log, nothing dead-lettered, every seq there, per key in seq order.
  Stats Finish() {
    auto more = AppendKeyed(src, 60);
    expected.insert(more.begin(), more.end());
    REQUIRE(testing::WaitUntil([&] { return src.cursor() == src.last_seq(); }, 30s));
    fwd->Stop(5s);
    Stats st = fwd->GetStats();
    MESSAGE("failures " << st.delivery_failures << " resent " << st.resent_records << " errors: "
                        << ErrorKinds(st) << "checked commits " << src.checked_commits());
    for (const auto& v : src.violations()) FAIL_CHECK(v);
    CHECK(src.dead_letters().empty());
    RequireNoLoss(mc, expected);
    return st;
  }

  MockCluster mc{2};
  LogCheckingSource src{WithTopic(mc).bootstrap(), kTopic, 2};
  std::set<uint64_t> expected = AppendKeyed(src, 60);
  std::unique_ptr<Forwarder> fwd = StartForwarder(Config(mc), &src);
};

// The other half of that window: the leader of one partition is down, records for it queue up
// in librdkafka at a steady pace, the oldest expire (kafka.message_timeout_ms) and the broker comes
// back at once, while the younger queued ones still have time left. Those must not be delivered
// ahead of the expired ones (the forwarder purges its queue on the first failure and resends
// from the cursor in seq order), or per-key order breaks. Asserted: every seq arrives, per key
// first occurrences in seq order, the cursor never ahead of the log.
TEST_CASE("mock: leader back right after the first records expire - queued ones do not overtake") {
  LeaderDownRig rig;
  auto& [mc, src, expected, fwd] = rig;
  // Records at a steady pace until the first expiry, so that the queue holds records of every
  // age up to kafka.message_timeout_ms when the broker returns.
  auto fed_until = std::chrono::steady_clock::now() + 20s;
  while (fwd->GetStats().delivery_failures == 0 && std::chrono::steady_clock::now() < fed_until) {
    auto more = AppendKeyed(src, 6);
    expected.insert(more.begin(), more.end());
    testing::WaitUntil([&] { return fwd->GetStats().delivery_failures > 0; }, 20ms);
  }
  rd_kafka_mock_broker_set_up(mc.get(), 1);
  REQUIRE(fwd->GetStats().delivery_failures > 0);
  Stats st = rig.Finish();
  CHECK(st.errors_by_kind.count("_MSG_TIMED_OUT") == 1);
}

// Values of 512 B and more are lent to librdkafka, not copied (Forwarder::Impl::Produce): the
// slot holding one must not be reused or freed while librdkafka may still read it. 1 KiB
// values derived from their seq, two failed requests, then a fatal error (the producer is
// recreated with records in flight and queued); asserted: every value read back is the one of
// its seq, and nothing is lost. (Lending the read batch's storage instead of the slot's: 1,531
// of 3,001 values wrong.)
TEST_CASE("mock: lent 1 KiB values arrive intact across failures and a producer restart") {
  MockCluster mc(2);
  CreateTopicLedByOneBrokerEach(mc, 2);
  // Partition 0 answers 200 ms late, partition 1 at once: room in the window comes from
  // partition 1 while partition 0's records are still in flight, and each read of a few
  // records (at most 32 KiB in flight) reuses batch storage some of which held those: a value
  // lent from the batch instead of a slot would be overwritten before it is sent.
  rd_kafka_mock_broker_set_rtt(mc.get(), 1, 200);
  MemorySource src;
  auto c = MockConfig(mc);
  c.max_inflight_records = 300;
  c.max_inflight_bytes = 32 * 1024;
  // One small request at a time per leader, so that partition 0's records wait unbatched in
  // librdkafka's queue (a value is only read when its batch is built).
  c.batch_bytes = 2000;
  c.properties["max.in.flight.requests.per.connection"] = "1";
  auto value_of = [](uint64_t seq) {
    std::string v = "seq-" + std::to_string(seq) + ":";
    while (v.size() < 1024) v += static_cast<char>('a' + (seq + v.size()) % 26);
    return v;
  };
  std::set<uint64_t> expected;
  auto append = [&](size_t n) {
    for (size_t i = 0; i < n; ++i) {
      Record r;
      r.source = "temp";
      r.event_time_ms = 1'700'000'000'000 + static_cast<int64_t>(i);
      r.payload = value_of(src.last_seq() + 1);  // Append gives it last_seq() + 1
      expected.insert(src.Append(std::move(r)));
    }
  };
  append(1500);
  REQUIRE(rd_kafka_mock_broker_push_request_error_rtts(
              mc.get(), 1, kApiKeyProduce, 2, RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION, 50,
              RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT, 50) == RD_KAFKA_RESP_ERR_NO_ERROR);
  auto fwd = StartForwarder(c, &src);
  REQUIRE(testing::WaitUntil([&] { return fwd->GetStats().delivered_records > 300; }, 20s));
  fwd->InjectFatalErrorForTesting();
  REQUIRE(testing::WaitUntil([&] { return fwd->GetStats().producer_restarts >= 1; }, 10s));
  append(1500);
  REQUIRE(testing::WaitUntil([&] { return src.cursor() == src.last_seq(); }, 30s));
  fwd->Stop(5s);
  size_t checked = 0, wrong = 0;
  std::string first_wrong;
  for (const auto& m : testing::ReadTopic(mc.bootstrap(), kTopic, expected.size(), 20s)) {
    auto seq = testing::HeaderValue(m, "ef.seq");
    REQUIRE(seq.has_value());
    ++checked;
    if (m.value != value_of(std::stoull(*seq)) && wrong++ == 0) first_wrong = *seq;
  }
  INFO("values checked " << checked << ", wrong " << wrong << " (first: seq " << first_wrong
                         << ")");
  CHECK(checked >= expected.size());
  CHECK(wrong == 0);
  RequireNoLoss(mc, expected);
}

// The reader thread reads the next batch while the forwarder thread sends the current one, so
// that a refill of the window waits for no read. A window of 100 records makes a read 100
// records; the broker holds every answer for a second. The second read (101..200) must be done
// before anything of the first is delivered: read only once the first batch is sent and room
// is back, it would follow the first delivery reports.
TEST_CASE("mock: the next batch is read while the current one is in flight") {
  MockCluster mc(1);
  mc.CreateTopic(kTopic, 1);
  REQUIRE(rd_kafka_mock_broker_set_rtt(mc.get(), 1, 1000) == RD_KAFKA_RESP_ERR_NO_ERROR);
  MemorySource src;
  auto c = MockConfig(mc);
  c.max_inflight_records = 100;
  auto expected = Append(src, 500);
  auto fwd = StartForwarder(c, &src);
  uint64_t delivered_when_read = UINT64_MAX;
  REQUIRE(testing::WaitUntil(
      [&] {
        if (src.read_upto() < 200) return false;
        delivered_when_read = fwd->GetStats().delivered_records;
        return true;
      },
      10s));
  CHECK(delivered_when_read == 0);
  CHECK(src.read_upto() == 200);  // one batch ahead, no more
  REQUIRE(testing::WaitUntil([&] { return src.cursor() == src.last_seq(); }, 60s));
  fwd->Stop(5s);
  CHECK(fwd->GetStats().delivered_records == 500);
  RequireNoLoss(mc, expected);
}

// A read that hangs (a stuck SD card) runs on the reader thread, but the forwarder thread waits
// for the read it needs as it waited for its own: its progress ticks stop, so that the agent's
// watchdog sees the hang, and go on once the read returns.
TEST_CASE("mock: a hung read of the source stops the progress ticks until it returns") {
  MockCluster mc(1);
  mc.CreateTopic(kTopic, 1);
  MemorySource src;
  auto expected = Append(src, 100);
  src.HoldReads(true);
  auto fwd = StartForwarder(MockConfig(mc), &src);
  REQUIRE(testing::WaitUntil([&] { return src.held_readers() == 1; }, 5s));
  // The forwarder thread may be one loop away from waiting: allow it one more tick.
  const uint64_t ticks = fwd->ProgressTicks();
  CHECK_FALSE(testing::WaitUntil([&] { return fwd->ProgressTicks() > ticks + 1; }, 500ms));
  src.HoldReads(false);
  REQUIRE(testing::WaitUntil([&] { return src.cursor() == src.last_seq(); }, 20s));
  CHECK(fwd->ProgressTicks() > ticks + 1);
  fwd->Stop(5s);
  RequireNoLoss(mc, expected);
}

// The same window with the forwarder thread busy: its read of the source hangs (a slow SD card)
// while the leader of partition 0 is down and two sets of records wait in librdkafka's queue, A
// sent at 0 ms and B at 1,500 ms (message timeout 1,000 ms). The leader returns at 2,100 ms,
// after A would have expired and before B would. Had librdkafka expired A itself
// (message.timeout.ms), it would have bumped the producer epoch and sent B the moment the leader
// was back, while the forwarder, stuck in its read, had not yet seen A fail, purged its queue
// and resent A: "key k4: seq 65 first arrived after seq 179" in 3 runs of 3 with librdkafka's
// own timeout. The forwarder's own timeout runs on its thread, and librdkafka gives up nothing
// by itself. Asserted: every seq arrives, per key first occurrences in seq order, the cursor
// never ahead of the log. The times are the fault schedule, not synchronisation.
TEST_CASE(
    "mock: oldest records expire while the forwarder is stuck in a read - younger ones do not "
    "overtake") {
  LeaderDownRig rig;
  auto& [mc, src, expected, fwd] = rig;
  const auto t0 = std::chrono::steady_clock::now();
  auto a = AppendKeyed(src, 60);
  expected.insert(a.begin(), a.end());
  // Once read, a set is produced before the forwarder looks at the source again.
  REQUIRE(testing::WaitUntil([&] { return src.read_upto() == *a.rbegin(); }, 5s));
  std::this_thread::sleep_until(t0 + 1500ms);
  auto b = AppendKeyed(src, 60);
  expected.insert(b.begin(), b.end());
  REQUIRE(testing::WaitUntil([&] { return src.read_upto() == *b.rbegin(); }, 5s));
  src.HoldReads(true);
  auto held = AppendKeyed(src, 6);
  expected.insert(held.begin(), held.end());
  REQUIRE(testing::WaitUntil([&] { return src.held_readers() == 1; }, 5s));
  REQUIRE(std::chrono::steady_clock::now() < t0 + 2100ms);  // else the schedule was missed
  std::this_thread::sleep_until(t0 + 2100ms);
  rd_kafka_mock_broker_set_up(mc.get(), 1);
  // B reaches the log either way (after A, or alone if A expired); then the read returns.
  bool b_in_log = testing::WaitUntil(
      [&] {
        std::set<uint64_t> seen;
        for (const auto& m : testing::ReadTopic(mc.bootstrap(), kTopic, 0, 3s)) {
          if (auto s = testing::HeaderValue(m, "ef.seq")) seen.insert(std::stoull(*s));
        }
        return std::includes(seen.begin(), seen.end(), b.begin(), b.end());
      },
      10s);
  src.HoldReads(false);
  REQUIRE(b_in_log);
  rig.Finish();
}

// The producer recreated (fatal error) while records are in flight (the partition-0 leader holds
// every response 300 ms): queued ones are purged, those on the wire go with the destroyed
// producer without a report, and the new producer resends both from the cursor. Nothing of the
// old producer can reach the tracker after that; asserted with the log checked at every commit,
// three times in one run. (Measured: the mock applied none of the dropped requests, 0
// duplicates; a real broker may, which gives duplicates, not a gap.)
TEST_CASE("mock: producer recreated with requests in flight - the cursor never passes the log") {
  MockCluster mc(2);
  constexpr int kPartitions = 2;
  CreateTopicLedByOneBrokerEach(mc, kPartitions);
  rd_kafka_mock_broker_set_rtt(mc.get(), 1, 300);  // requests stay on the wire 300 ms
  LogCheckingSource src(mc.bootstrap(), kTopic, kPartitions);
  auto c = MockConfig(mc);
  c.linger_ms = 2;
  c.max_inflight_records = 300;
  auto expected = AppendKeyed(src, 1500);
  auto fwd = StartForwarder(c, &src);
  for (int i = 1; i <= 3; ++i) {
    // Something delivered since the last restart, and records in flight now.
    uint64_t delivered = fwd->GetStats().delivered_records;
    REQUIRE(testing::WaitUntil(
        [&] {
          auto s = fwd->GetStats();
          return s.delivered_records > delivered && s.inflight_records > 0;
        },
        20s));
    fwd->InjectFatalErrorForTesting();
    REQUIRE(testing::WaitUntil(
        [&] { return fwd->GetStats().producer_restarts >= static_cast<uint64_t>(i); }, 10s));
    auto more = AppendKeyed(src, 300);
    expected.insert(more.begin(), more.end());
  }
  REQUIRE(testing::WaitUntil([&] { return src.cursor() == src.last_seq(); }, 60s));
  fwd->Stop(5s);
  auto st = fwd->GetStats();
  std::string kinds = ErrorKinds(st);
  MESSAGE("restarts " << st.producer_restarts << " resent " << st.resent_records
                      << " errors: " << kinds << "checked commits " << src.checked_commits());
  // At least the three injected; a fourth when five failed rounds in a row (each restart is one)
  // came without a delivery between them, by design (kRecreateAfterFailures).
  CHECK(st.producer_restarts >= 3);
  CHECK(st.resent_records > 0);
  for (const auto& v : src.violations()) FAIL_CHECK(v);
  CHECK(src.dead_letters().empty());
  size_t dups = 0;
  RequireNoLoss(mc, expected, &dups);
  MESSAGE("duplicates: " << dups);
}

// One record fails; the records queued behind it are purged by the forwarder and resent. Only
// the real failure is a delivery failure: dashboards must not show the purge as more. One
// record per request (batch.num.messages 1) and one request in flight: the first request
// carries seq 1 alone and its error response is held 300 ms, so the others are queued in
// librdkafka when it comes. The error is permanent, so the gapless guarantee makes it a fatal
// error too (one producer restart), and librdkafka sends nothing more: all the others are
// purged. (Before enable.gapless.guarantee, librdkafka could put the next one on the wire
// before the forwarder purged, and deliver it ahead of seq 1.)
TEST_CASE("mock: records purged behind one failed record are not delivery failures") {
  MockCluster mc(1);
  mc.CreateTopic(kTopic, 1);
  MemorySource src;
  constexpr size_t kRecords = 20;
  auto expected = Append(src, kRecords);
  REQUIRE(rd_kafka_mock_broker_push_request_error_rtts(mc.get(), 1, kApiKeyProduce, 1,
                                                       RD_KAFKA_RESP_ERR_POLICY_VIOLATION,
                                                       300) == RD_KAFKA_RESP_ERR_NO_ERROR);
  auto c = MockConfig(mc);
  c.properties["batch.num.messages"] = "1";
  c.properties["max.in.flight.requests.per.connection"] = "1";
  auto fwd = StartForwarder(c, &src);
  REQUIRE(testing::WaitUntil([&] { return src.cursor() == src.last_seq(); }, 20s));
  fwd->Stop(5s);
  Stats st = fwd->GetStats();
  std::string kinds = ErrorKinds(st);
  MESSAGE("failures " << st.delivery_failures << " purged " << st.purged_records << " resent "
                      << st.resent_records << " restarts " << st.producer_restarts << " kinds "
                      << kinds);
  CHECK(st.delivery_failures == 1);
  // 19 when run alone; under load (4 runs at once on 2 cores), 18 in 6 runs of 12, and one
  // record went through once, not as a resend: librdkafka had built the next request before the
  // refusal came back and sent it then, and the mock appended it (it checks sequences only for
  // transactional producers; a real broker refuses it, see "a batch refused for good"). Its
  // exact count is the mock's timing; the checks around it are the point.
  CHECK(st.purged_records >= kRecords - 2);
  CHECK(st.errors_by_kind ==
        std::map<std::string, uint64_t>{{"POLICY_VIOLATION", 1}, {"_FATAL", 1}});
  CHECK(st.producer_restarts == 1);
  CHECK(st.resent_records == st.purged_records + 1);  // the failed one and each purged one, once
  CHECK(st.delivered_records == kRecords);
  CHECK(src.dead_letters().empty());
  RequireNoLoss(mc, expected);
}

// An input's topic may hold {device} and {input} (the config allows them there): the forwarder
// fills them in for the record's own topic and for the input's default route, and {topic} in the
// key template is that expanded topic.
TEST_CASE("mock: an input's topic with {device} and {input} is expanded - {topic} in the key too") {
  MockCluster mc(1);
  const std::string topic = "fwd-dev-1-temp";
  mc.CreateTopic(topic, 1);
  MemorySource src;
  for (int i = 0; i < 3; ++i) {
    Record r;
    r.source = "temp";
    r.topic = "fwd-{device}-{input}";  // as the inputs copy InputConfig::topic
    r.event_time_ms = 1'700'000'000'000 + i;
    r.payload = "v" + std::to_string(i);
    src.Append(std::move(r));
  }
  auto c = MockConfig(mc);
  c.key_template = "{topic}/{input}";
  Options o;
  o.device_id = "dev-1";
  o.input_topics["temp"] = "fwd-{device}-{input}";
  auto f = Forwarder::Create(c, o, &src);
  REQUIRE_MESSAGE(f.ok(), f.status().ToString());
  auto fwd = std::move(f).value();
  REQUIRE(fwd->Start().ok());
  REQUIRE(testing::WaitUntil([&] { return src.cursor() == src.last_seq(); }, 20s));
  fwd->Stop(5s);
  CHECK(src.dead_letters().empty());
  auto got = testing::ReadTopic(mc.bootstrap(), topic, 3, 20s);
  REQUIRE(got.size() == 3);
  for (size_t i = 0; i < got.size(); ++i) {
    CHECK(got[i].value == "v" + std::to_string(i));
    CHECK(got[i].key == std::optional<std::string>(topic + "/temp"));
  }

  // Create checks the expanded name.
  Options bad = o;
  bad.input_topics["temp"] = "fwd {device}";
  auto g = Forwarder::Create(c, bad, &src);
  REQUIRE_FALSE(g.ok());
  CHECK(g.status().message() ==
        "input \"temp\": topic \"fwd dev-1\" is not a valid Kafka topic name");
}

// The forwarder's three threads carry names for top -H, ps -L and gdb.
TEST_CASE("mock: the forwarder's threads are named ef-forwarder, ef-commit and ef-reader") {
  MockCluster mc(1);
  mc.CreateTopic(kTopic, 1);
  MemorySource src;
  auto fwd = StartForwarder(MockConfig(mc), &src);
  auto names = [] {
    std::multiset<std::string> out;
    for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
      std::ifstream comm(task.path() / "comm");
      std::string name;
      if (std::getline(comm, name)) out.insert(name);
    }
    return out;
  };
  // Each thread names itself as it starts: wait for all three.
  bool found = testing::WaitUntil(
      [&] {
        auto n = names();
        return n.count("ef-forwarder") == 1 && n.count("ef-commit") == 1 &&
               n.count("ef-reader") == 1;
      },
      5s);
  auto n = names();
  INFO("threads: " << [&] {
    std::string all;
    for (const auto& s : n) all += s + " ";
    return all;
  }());
  CHECK(found);
  fwd->Stop(1s);
  // All are joined by Stop. A joined thread can stay listed in /proc for a moment after the
  // join returns (seen under qemu-user, whose host thread outlives the guest's exit), so wait
  // for them to go, with a deadline.
  bool gone = testing::WaitUntil(
      [&] {
        auto n = names();
        return n.count("ef-forwarder") == 0 && n.count("ef-commit") == 0 &&
               n.count("ef-reader") == 0;
      },
      5s);
  CHECK(gone);
}

}  // namespace
}  // namespace edgeferry::forwarder

#if defined(__GLIBC__) && !defined(__SANITIZE_ADDRESS__)
#include <malloc.h>

namespace edgeferry::forwarder {
namespace {

// Bytes malloc has handed out and not got back (all arenas, mmapped chunks included).
uint64_t MallocInUse() {
  struct mallinfo2 mi = mallinfo2();
  return mi.uordblks + mi.hblkhd;
}

// A long-running agent must not grow. bench_forwarder's RSS rose round after round while malloc's
// in-use bytes stayed at 0.2 MiB between rounds (freed memory kept by malloc, not a leak); this
// keeps it so: whole forwarder lifetimes (create, drain, stop, destroy) on a fresh mock cluster
// each, and what malloc has handed out must come back to the level after the first round (which
// pays librdkafka's and the logger's one-time allocations). A leak of 8 bytes per record would
// show as 320 KiB here. (Under ASan, mallinfo2 says nothing; LSan checks the asan preset instead.)
TEST_CASE("mock: forwarder lifetimes leave no memory behind - malloc in use back to its level") {
  constexpr int kRounds = 5;
  constexpr size_t kRecords = 10'000;
  uint64_t after_first = 0;
  for (int round = 0; round < kRounds; ++round) {
    {
      MockCluster mc(1);
      mc.CreateTopic(kTopic, 2);
      MemorySource src;
      Append(src, kRecords);
      auto c = MockConfig(mc);
      c.max_inflight_records = 1000;
      auto fwd = StartForwarder(c, &src);
      REQUIRE(testing::WaitUntil([&] { return src.cursor() == src.last_seq(); }, 30s));
      fwd->Stop(5s);
      REQUIRE(fwd->GetStats().delivered_records == kRecords);
    }
    if (round == 0) after_first = MallocInUse();
  }
  uint64_t after_last = MallocInUse();
  MESSAGE("malloc in use after round 1: " << after_first / 1024 << " KiB, after round " << kRounds
                                          << ": " << after_last / 1024 << " KiB");
  CHECK(after_last < after_first + 128 * 1024);
}

// Memory follows what is in flight, not the configured cap: sized up front for 10,000,000
// in-flight records the slot table alone took 800 MB at start, which no gateway has.
TEST_CASE("mock: a cap of 10,000,000 in-flight records costs nothing until they are in flight") {
  MockCluster mc(1);
  mc.CreateTopic(kTopic, 2);
  MemorySource src;
  auto expected = Append(src, 2000);
  auto c = MockConfig(mc);
  c.max_inflight_records = 10'000'000;
  const uint64_t before = MallocInUse();
  auto fwd = StartForwarder(c, &src);
  const uint64_t started = MallocInUse();
  REQUIRE(testing::WaitUntil([&] { return src.cursor() == src.last_seq(); }, 30s));
  const uint64_t drained = MallocInUse();
  fwd->Stop(5s);
  MESSAGE("malloc in use: " << before / 1024 << " KiB before, " << started / 1024
                            << " KiB started, " << drained / 1024 << " KiB drained");
  CHECK(started < before + 8 * 1024 * 1024);
  CHECK(drained < before + 8 * 1024 * 1024);
  RequireNoLoss(mc, expected);
}

// The slot table grown for a backlog (12,000 in flight behind a 300 ms broker: up to 32,768
// slots of 40 bytes) goes back to its least once the forwarder has caught up. Measured: 534 KiB
// above the level before the start once caught up, 1,137 KiB with the table kept.
TEST_CASE("mock: the slot table grown for a backlog is given back once caught up") {
  MockCluster mc(1);
  mc.CreateTopic(kTopic, 3);
  REQUIRE(rd_kafka_mock_broker_set_rtt(mc.get(), 1, 300) == RD_KAFKA_RESP_ERR_NO_ERROR);
  MemorySource src;
  auto c = MockConfig(mc);
  c.max_inflight_records = 12'000;
  Append(src, 40'000);
  const uint64_t started = MallocInUse();  // the source holds its records throughout
  auto fwd = StartForwarder(c, &src);
  uint64_t peak = 0;
  REQUIRE(DrainTrackingPeak(*fwd, src, &peak));
  REQUIRE(peak > 8192);  // the table grew past 16,384 slots
  uint64_t now = 0;
  bool released = testing::WaitUntil(
      [&] {
        now = MallocInUse();
        return now < started + 768 * 1024;
      },
      10s);
  MESSAGE("malloc in use: " << started / 1024 << " KiB started, " << now / 1024
                            << " KiB caught up (peak in flight " << peak << ")");
  CHECK(released);
  fwd->Stop(5s);
}

// The forwarder reads into the same records from read to read (RecordSource::ReadInto), but an
// idle forwarder must not keep the storage of the backlog it drained: 500 records of 32 KiB fill
// several 4 MiB reads; once the forwarder has caught up, what malloc has handed out must be back
// near the level before it started (the source itself holds its 16 MiB throughout).
TEST_CASE("mock: a forwarder that has caught up keeps no storage of the records it read") {
  MockCluster mc(1);
  mc.CreateTopic(kTopic, 2);
  MemorySource src;
  Append(src, 500, 32 * 1024);
  auto c = MockConfig(mc);
  const uint64_t before = MallocInUse();
  auto fwd = StartForwarder(c, &src);
  REQUIRE(testing::WaitUntil([&] { return src.cursor() == src.last_seq(); }, 30s));
  // The forwarder lets go of its read storage on its next idle pass.
  uint64_t now = 0;
  bool released = testing::WaitUntil(
      [&] {
        now = MallocInUse();
        return now < before + 4 * 1024 * 1024;
      },
      10s);
  MESSAGE("malloc in use: " << before / 1024 << " KiB before the forwarder, " << now / 1024
                            << " KiB after it caught up");
  CHECK(released);
  fwd->Stop(5s);
  CHECK(fwd->GetStats().delivered_records == 500);
}

}  // namespace
}  // namespace edgeferry::forwarder
#endif
