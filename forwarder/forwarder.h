// The forwarder drains a RecordSource (the on-device buffer) into Kafka with no loss.
//
// Durability contract: the "kafka" cursor in the source only ever moves to a sequence number
// below which every record has a successful delivery report from Kafka (acks=all by default) or
// was moved to the dead-letter table. A failed delivery (broker down, timeout, leader change,
// kafka.message_timeout_ms expiry, fatal idempotent-producer error) never drops a record: the
// forwarder stops sending, backs off, and re-reads from its tracked position. Delivery is
// at-least-once; duplicates can only come from the window: the records sent above the last DURABLY
// committed cursor, at most 2 x max_inflight_records, of which at most max_inflight_records in
// flight (a record stays in the window from produce until a cursor covering it is committed, so a
// crash can resend at most that many).
//
// Every record sent carries these headers, after the record's own ones, so that a consumer can
// drop duplicates:
//   ef.device  the agent's device id
//   ef.seq     the buffer sequence number, decimal ASCII (unique and increasing per device)
//   ef.source  the input name that produced the record
//
// Threading: the forwarder owns one thread (Start/Stop). Only that thread calls librdkafka's poll,
// so delivery reports run on it. GetStats() and ProgressTicks() may be called from any thread.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "common/seams.h"
#include "common/status.h"
#include "config/config.h"

namespace edgeferry::forwarder {

// The cursor the forwarder loads and commits in the RecordSource.
inline constexpr std::string_view kCursorName = "kafka";

inline constexpr const char* kHeaderDevice = "ef.device";
inline constexpr const char* kHeaderSeq = "ef.seq";
inline constexpr const char* kHeaderSource = "ef.source";

// Fixed-bucket histogram of ingest-to-delivery latency (StoredRecord::ingest_time_ms to the
// successful delivery report), shaped for a Prometheus histogram: `buckets[i]` counts the
// observations v with kBoundsMs[i-1] < v <= kBoundsMs[i] (not cumulative; Cumulative(i) gives the
// `le` value), the last bucket those above every bound (+Inf). The bounds reach a day because
// after an outage a record can wait in the buffer that long.
struct LatencyHistogram {
  static constexpr std::array<int64_t, 14> kBoundsMs = {
      10,    50,     100,    250,    500,     1'000,     2'500,
      5'000, 10'000, 30'000, 60'000, 300'000, 3'600'000, 86'400'000};
  std::array<uint64_t, kBoundsMs.size() + 1> buckets{};
  uint64_t count = 0;
  uint64_t sum_ms = 0;

  // Negative values (a clock stepped back) count as 0.
  void Observe(int64_t ms);
  void Merge(const LatencyHistogram& other);
  // Observations <= kBoundsMs[i]; i == kBoundsMs.size() gives `count` (+Inf).
  uint64_t Cumulative(size_t i) const;
};

struct Stats {
  uint64_t delivered_records = 0;  // successful delivery reports (resends counted again)
  uint64_t delivered_bytes = 0;    // Record::ByteSize() of those
  uint64_t inflight_records = 0;   // handed to librdkafka, no delivery report yet
  uint64_t inflight_bytes = 0;
  uint64_t resent_records = 0;  // records produced again after a failed delivery
  uint64_t dead_lettered = 0;   // records moved to the dead-letter table
  // Producers destroyed and recreated: after a fatal error, after kRecreateAfterFailures failed
  // rounds in a row, or when records stay in flight kafka.message_timeout_ms after a failure.
  uint64_t producer_restarts = 0;
  // Failed delivery reports: the broker or librdkafka refused or lost the record (authorization,
  // broker errors, ...), plus one per kafka.message_timeout_ms expiry (the oldest record in
  // flight; the forwarder then purges the rest). Not the records the forwarder purged itself.
  uint64_t delivery_failures = 0;
  // Records whose delivery report says the forwarder purged them from librdkafka's queues
  // (_PURGE_QUEUE / _PURGE_INFLIGHT: the queue behind a failed record, a recreated producer).
  // Not failures: a consequence of one, kept apart so that delivery_failures counts only real
  // ones. Purged records stay in the buffer and are sent again (resent_records).
  uint64_t purged_records = 0;
  // Failed deliveries and produce() refusals by librdkafka error name (e.g. "_MSG_TIMED_OUT");
  // like delivery_failures, without purges.
  std::map<std::string, uint64_t> errors_by_kind;
  int64_t last_delivery_unix_ms = 0;  // 0: nothing delivered since start
  // Ingest-to-delivery latency (Clock::NowUnixMs at the delivery report minus the record's
  // ingest_time_ms): the most recent one, the maximum since start, and the distribution.
  int64_t last_delivery_latency_ms = 0;
  int64_t max_delivery_latency_ms = 0;
  LatencyHistogram delivery_latency;
  uint64_t cursor = 0;            // everything <= cursor is delivered (in memory)
  uint64_t committed_cursor = 0;  // last value committed to the source
  // Records sent above committed_cursor (in flight, or delivered but not yet committed): what a
  // crash now could send twice. Never above 2 x max_inflight_records.
  uint64_t uncommitted_records = 0;
  bool backing_off = false;  // sending paused after a failure
  std::string last_error;    // the most recent failure, human readable; empty if none
};

// Construction options beyond the kafka section.
struct Options {
  std::string device_id;
  // Input name -> Kafka topic (InputConfig::topic) for inputs that override the template.
  std::map<std::string, std::string> input_topics;
  Clock* clock = SystemClock();
};

class Forwarder {
 public:
  // Creates the producer from `cfg`, which the config loader has checked (a property librdkafka
  // refuses -> InvalidArgument naming it, see ValidateKafkaConfig). No network I/O happens here.
  // `source` must outlive the Forwarder.
  static Result<std::unique_ptr<Forwarder>> Create(const config::KafkaConfig& cfg,
                                                   std::string device_id, RecordSource* source,
                                                   Clock* clock = SystemClock());
  static Result<std::unique_ptr<Forwarder>> Create(const config::KafkaConfig& cfg, Options options,
                                                   RecordSource* source);

  // Stops (with the configured shutdown grace) if still running.
  ~Forwarder();
  Forwarder(const Forwarder&) = delete;
  Forwarder& operator=(const Forwarder&) = delete;

  // Loads the cursor and starts the forwarder's own thread. Fails if the cursor cannot be loaded
  // or it was already started.
  Status Start();

  // Stops reading, waits up to `grace` for in-flight deliveries, commits the cursor, joins the
  // thread. Records still in flight after `grace` stay in the source and are sent again on the
  // next start. Idempotent.
  void Stop(std::chrono::milliseconds grace);

  Stats GetStats() const;

  // Increments on every iteration of the forwarder loop (also while idle or backing off): a
  // watchdog checks that it moves.
  uint64_t ProgressTicks() const;

  // Test hook: makes librdkafka raise a fatal error on the current producer (as the idempotence
  // desync bugs of librdkafka 2.0.2 do), handled like a real one. Thread-safe.
  void InjectFatalErrorForTesting();

  class Impl;

 private:
  explicit Forwarder(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// rd_kafka_version_str() of the linked librdkafka, e.g. "2.0.2".
std::string LibrdkafkaVersion();

// What librdkafka refuses of the producer configuration built from `cfg` (no network): a
// pass-through property it rejects ("kafka.properties.socket.timeout.ms: Invalid value ...") or a
// value of ours it rejects. The kafka section itself (ranges, templates, pass-through properties
// that one of our keys sets) is checked by the config loader, not here.
std::vector<std::string> ValidateKafkaConfig(const config::KafkaConfig& cfg);

}  // namespace edgeferry::forwarder
