// Pure logic of the forwarder: cursor advance with out-of-order completions, templating,
// config validation, back-off schedule.
#include <doctest/doctest.h>

#include <algorithm>

#include "forwarder/backoff.h"
#include "forwarder/cursor_tracker.h"
#include "forwarder/forwarder.h"
#include "forwarder/kafka_conf.h"
#include "forwarder/routing.h"
#include "tests/forwarder/memory_source.h"

namespace edgeferry::forwarder {
namespace {

bool HasErrorContaining(const std::vector<std::string>& errors, const std::string& needle) {
  return std::any_of(errors.begin(), errors.end(),
                     [&](const std::string& e) { return e.find(needle) != std::string::npos; });
}

config::KafkaConfig ValidConfig() {
  config::KafkaConfig c;
  c.brokers = {"127.0.0.1:9092"};
  return c;
}

TEST_CASE("cursor tracker: out-of-order completions move the cursor only over a delivered prefix") {
  CursorTracker t(10);
  for (uint64_t s = 11; s <= 15; ++s) REQUIRE(t.OnSent(s));
  CHECK(t.in_flight() == 5);
  t.OnDelivered(13);
  t.OnDelivered(15);
  CHECK(t.cursor() == 10);
  t.OnDelivered(11);
  CHECK(t.cursor() == 11);
  t.OnDelivered(12);
  CHECK(t.cursor() == 13);  // 13 was already delivered
  t.OnDelivered(14);
  CHECK(t.cursor() == 15);
  CHECK(t.tracked() == 0);
  CHECK(t.in_flight() == 0);
}

TEST_CASE("cursor tracker: a failed record holds the cursor - delivered neighbours are skipped") {
  CursorTracker t(0);
  for (uint64_t s = 1; s <= 4; ++s) REQUIRE(t.OnSent(s));
  t.OnFailed(2);
  t.OnDelivered(1);
  t.OnDelivered(3);
  t.OnFailed(4);
  CHECK(t.cursor() == 1);
  CHECK(t.IsDelivered(3));
  CHECK_FALSE(t.IsDelivered(2));
  // Resend: failed ones may go again, a delivered one may not.
  CHECK(t.OnSent(2));
  CHECK_FALSE(t.OnSent(3));
  CHECK(t.OnSent(4));
  CHECK_FALSE(t.OnSent(1));  // below the cursor
  t.OnDelivered(4);
  CHECK(t.cursor() == 1);
  t.OnDelivered(2);
  CHECK(t.cursor() == 4);
}

TEST_CASE("cursor tracker: gaps in seq numbers, trimmed records and a lost producer") {
  CursorTracker t(0);
  REQUIRE(t.OnSent(5));
  REQUIRE(t.OnSent(9));
  REQUIRE(t.OnSent(12));
  CHECK_FALSE(t.OnSent(7));  // not tracked and below the highest: never sent, refuse
  t.OnDelivered(9);
  CHECK(t.cursor() == 0);
  t.OnDelivered(5);
  CHECK(t.cursor() == 9);  // the hole 6..8 does not hold the cursor

  t.FailAllInFlight();
  CHECK(t.in_flight() == 0);
  CHECK_FALSE(t.IsDelivered(12));
  // 12 was trimmed from the source while undelivered: stop waiting for it.
  t.ForgetMissing(9, 20);
  CHECK(t.cursor() == 12);

  t.Reset(100);
  CHECK(t.cursor() == 100);
  CHECK(t.highest() == 100);
  CHECK_FALSE(t.OnSent(100));
  CHECK(t.OnSent(101));
}

TEST_CASE("cursor tracker: a backlog larger than its ring, wrapped, with holes and resends") {
  // The tracker keeps its entries in a ring that wraps and grows: a window of thousands with
  // out-of-order reports, holes from trimmed records and resends must behave as a short one.
  CursorTracker t(0);
  const size_t initial = t.capacity();
  uint64_t next = 1;
  // Wrap the ring without growing it: deliver the front, send more behind it.
  for (; next <= initial - 10; ++next) REQUIRE(t.OnSent(next));
  for (uint64_t s = 1; s <= initial / 2; ++s) t.OnDelivered(s);
  CHECK(t.cursor() == initial / 2);
  for (uint64_t end = next + initial / 2; next < end; ++next) REQUIRE(t.OnSent(next));
  CHECK(t.capacity() == initial);
  // Grow it while wrapped, with a hole of 100 trimmed seqs in the middle.
  next += 100;
  const uint64_t after_hole = next;
  for (uint64_t end = next + 3 * initial; next < end; ++next) REQUIRE(t.OnSent(next));
  CHECK(t.capacity() > initial);
  const uint64_t highest = next - 1;
  CHECK(t.highest() == highest);
  CHECK(t.tracked() == t.in_flight());
  CHECK_FALSE(t.OnSent(after_hole - 50));  // in the hole: never sent
  // Deliver every other seq from the top down, fail the rest: nothing moves the cursor.
  for (uint64_t s = highest; s > initial / 2; --s) {
    if (s > after_hole - 101 && s < after_hole) continue;
    if ((s & 1) == 0) {
      t.OnDelivered(s);
    } else {
      t.OnFailed(s);
    }
  }
  CHECK(t.cursor() == initial / 2);
  CHECK(t.in_flight() == 0);
  CHECK(t.IsDelivered(after_hole + ((after_hole & 1) == 0 ? 0 : 1)));
  CHECK_FALSE(t.IsDelivered(after_hole - 50));
  // Resend the failed ones and deliver them in order: the cursor passes the hole to the top.
  for (uint64_t s = initial / 2 + 1; s <= highest; ++s) {
    if ((s & 1) == 1 && (s >= after_hole || s < after_hole - 100)) {
      REQUIRE(t.OnSent(s));
      CHECK_FALSE(t.OnSent(s));  // in flight already
    }
  }
  for (uint64_t s = initial / 2 + 1; s <= highest; ++s) {
    if ((s & 1) == 1) t.OnDelivered(s);
    bool in_hole = s >= after_hole - 100 && s < after_hole;
    if ((s & 1) == 1 && !in_hole) CHECK(t.cursor() >= s);  // evens and the hole passed over
  }
  CHECK(t.cursor() == highest);
  CHECK(t.tracked() == 0);
  t.ShrinkIfIdle();
  CHECK(t.capacity() == initial);
  CHECK(t.cursor() == highest);
  CHECK(t.OnSent(highest + 1));
}

TEST_CASE("templates: expansion, validation and topic names") {
  CHECK(ExpandTemplate("edgeferry.{device}.{input}", "pi-7", "temp", "") == "edgeferry.pi-7.temp");
  CHECK(ExpandTemplate("{device}.{input}", "d", "i", "") == "d.i");
  CHECK(ExpandTemplate("x.{topic}", "d", "i", "orig") == "x.orig");
  CHECK(ExpandTemplate("static", "d", "i", "") == "static");
  CHECK(ExpandTemplate("t.{sensor}.{device", "d", "i", "") == "t.{sensor}.{device");  // verbatim
  CHECK(IsValidTopicName("edgeferry.pi-7.temp_1"));
  CHECK_FALSE(IsValidTopicName(""));
  CHECK_FALSE(IsValidTopicName("has space"));
  CHECK_FALSE(IsValidTopicName(".."));
  CHECK_FALSE(IsValidTopicName(std::string(250, 'a')));
  CHECK(IsValidTopicName(std::string(249, 'a')));
}

TEST_CASE("config: defaults are valid and map to the librdkafka properties we promise") {
  auto c = ValidConfig();
  CHECK(ValidateKafkaConfig(c).empty());
  auto props = OwnProperties(c);
  auto get = [&](const std::string& k) {
    for (auto& [n, v] : props)
      if (n == k) return v;
    return std::string("<unset>");
  };
  CHECK(get("acks") == "all");
  CHECK(get("enable.idempotence") == "true");
  CHECK(get("enable.gapless.guarantee") == "true");
  CHECK(get("compression.type") == "zstd");
  CHECK(get("linger.ms") == "20");
  // kafka.message_timeout_ms (60000) is the forwarder's own deadline; librdkafka gets none, as
  // its expiry can let younger queued records overtake the expired ones (kafka_conf.cc).
  CHECK(c.message_timeout_ms == 60000);
  CHECK(get("message.timeout.ms") == "0");
  CHECK(get("message.send.max.retries") == "2147483647");  // retried until our timeout
  CHECK(get("bootstrap.servers") == "127.0.0.1:9092");
}

// enable.gapless.guarantee requires idempotence: librdkafka refuses the pair otherwise.
TEST_CASE("config: without idempotence, no gapless guarantee is asked of librdkafka") {
  auto c = ValidConfig();
  c.idempotence = false;
  c.acks = "1";
  CHECK(ValidateKafkaConfig(c).empty());
  for (const auto& [name, value] : OwnProperties(c)) CHECK(name != "enable.gapless.guarantee");
}

// The config loader refuses pass-through properties that one of our keys sets (tests/config/bad,
// case 23). A KafkaConfig built in code still cannot override ours: they are applied last.
TEST_CASE("producer conf: our keys win over pass-through properties that set the same ones") {
  auto c = ValidConfig();
  c.properties["acks"] = "1";
  c.properties["compression.codec"] = "gzip";            // alias of compression.type
  c.properties["metadata.broker.list"] = "127.0.0.1:1";  // alias of bootstrap.servers
  c.properties["enable.idempotence"] = "false";
  c.properties["enable.gapless.guarantee"] = "false";
  c.properties["queue.buffering.max.ms"] = "999";  // alias of linger.ms
  c.properties["client.rack"] = "rack-1";          // not ours: passed through
  CHECK(ValidateKafkaConfig(c).empty());
  auto conf = BuildProducerConf(c, "edgeferry-dev");
  REQUIRE_MESSAGE(conf.ok(), conf.status().ToString());
  auto get = [&](const char* name) {
    char buf[512];
    size_t size = sizeof buf;
    REQUIRE(rd_kafka_conf_get(conf->get(), name, buf, &size) == RD_KAFKA_CONF_OK);
    return std::string(buf);
  };
  CHECK(get("acks") == "-1");  // librdkafka's spelling of "all"
  CHECK(get("compression.type") == "zstd");
  CHECK(get("bootstrap.servers") == "127.0.0.1:9092");
  CHECK(get("enable.idempotence") == "true");
  CHECK(get("enable.gapless.guarantee") == "true");
  CHECK(get("linger.ms") == "20");
  CHECK(get("client.rack") == "rack-1");
  CHECK(get("client.id") == "edgeferry-dev");
}

TEST_CASE("producer conf: what librdkafka refuses is reported, all at once, naming the property") {
  auto d = ValidConfig();
  d.properties["no.such.property"] = "1";
  d.properties["socket.timeout.ms"] = "abc";
  auto errors = ValidateKafkaConfig(d);
  CHECK(errors.size() == 2);
  CHECK(HasErrorContaining(errors, "kafka.properties.no.such.property: No such configuration"));
  CHECK(HasErrorContaining(errors, "kafka.properties.socket.timeout.ms: Invalid value"));

  auto e = ValidConfig();  // a KafkaConfig built in code, out of the loader's ranges
  e.compression = "brotli";
  e.batch_bytes = 0;
  errors = ValidateKafkaConfig(e);
  CHECK(errors.size() == 2);
  CHECK(HasErrorContaining(errors, "kafka: librdkafka rejected compression.type=brotli"));
  CHECK(HasErrorContaining(errors, "kafka: librdkafka rejected batch.size=0"));
}

TEST_CASE("config: every codec is accepted by librdkafka") {
  for (const char* codec : {"zstd", "lz4", "gzip", "snappy", "none"}) {
    auto c = ValidConfig();
    c.compression = codec;
    CAPTURE(codec);
    CHECK(ValidateKafkaConfig(c).empty());
  }
}

TEST_CASE("Forwarder::Create refuses a bad config with InvalidArgument naming the key") {
  testing::MemorySource source;
  auto c = ValidConfig();
  c.properties["socket.timeout.ms"] = "soon";
  auto f = Forwarder::Create(c, "dev", &source);
  REQUIRE_FALSE(f.ok());
  CHECK(f.status().code() == Status::Code::kInvalidArgument);
  CHECK(f.status().message().find("kafka.properties.socket.timeout.ms") != std::string::npos);

  auto z = ValidConfig();
  z.max_inflight_records = 0;
  auto h = Forwarder::Create(z, "dev", &source);
  REQUIRE_FALSE(h.ok());
  CHECK(h.status().message() == "forwarder: kafka.max_inflight_records must be at least 1");

  Options o;
  o.device_id = "dev";
  o.input_topics["temp"] = "bad topic";
  auto g = Forwarder::Create(ValidConfig(), o, &source);
  REQUIRE_FALSE(g.ok());
  CHECK(g.status().message().find("input \"temp\"") != std::string::npos);
}

TEST_CASE("back-off: capped exponential on a fake clock, reset after success") {
  FakeClock clock;
  Backoff b(std::chrono::milliseconds(200), std::chrono::milliseconds(1000), &clock);
  CHECK(b.Ready());
  CHECK(b.Fail() == std::chrono::milliseconds(200));
  CHECK_FALSE(b.Ready());
  CHECK(b.Remaining() == std::chrono::milliseconds(200));
  clock.Advance(std::chrono::milliseconds(199));
  CHECK_FALSE(b.Ready());
  clock.Advance(std::chrono::milliseconds(1));
  CHECK(b.Ready());
  CHECK(b.Fail() == std::chrono::milliseconds(400));
  CHECK(b.Fail() == std::chrono::milliseconds(800));
  CHECK(b.Fail() == std::chrono::milliseconds(1000));
  CHECK(b.Fail() == std::chrono::milliseconds(1000));
  CHECK(b.consecutive_failures() == 5);
  b.Reset();
  CHECK(b.Fail() == std::chrono::milliseconds(200));
}

TEST_CASE("latency histogram: bucket edges are inclusive upper bounds, +Inf, sum and count") {
  LatencyHistogram h;
  for (int64_t ms : {-5, 0, 10, 11, 50, 999, 1000, 86'400'000, 86'400'001}) h.Observe(ms);
  CHECK(h.count == 9);
  CHECK(h.sum_ms == 0 + 0 + 10 + 11 + 50 + 999 + 1000 + 86'400'000 + 86'400'001);
  CHECK(h.buckets[0] == 3);                                       // le 10: -5 (as 0), 0, 10
  CHECK(h.buckets[1] == 2);                                       // le 50: 11, 50
  CHECK(h.buckets[5] == 2);                                       // le 1000: 999, 1000
  CHECK(h.buckets[LatencyHistogram::kBoundsMs.size() - 1] == 1);  // le 86400000
  CHECK(h.buckets.back() == 1);                                   // +Inf only
  CHECK(h.Cumulative(0) == 3);
  CHECK(h.Cumulative(1) == 5);
  CHECK(h.Cumulative(4) == 5);
  CHECK(h.Cumulative(5) == 7);
  CHECK(h.Cumulative(LatencyHistogram::kBoundsMs.size() - 1) == 8);
  CHECK(h.Cumulative(LatencyHistogram::kBoundsMs.size()) == h.count);
  // Bounds strictly increase (Prometheus requires it) and the buckets sum to count.
  CHECK(std::is_sorted(LatencyHistogram::kBoundsMs.begin(), LatencyHistogram::kBoundsMs.end()));
  LatencyHistogram m;
  m.Observe(20);
  m.Merge(h);
  CHECK(m.count == 10);
  CHECK(m.buckets[1] == 3);
  CHECK(m.sum_ms == h.sum_ms + 20);
}

}  // namespace
}  // namespace edgeferry::forwarder
