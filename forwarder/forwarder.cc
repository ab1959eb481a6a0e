#include "forwarder/forwarder.h"

#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <condition_variable>
#include <deque>
#include <limits>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>
#include <utility>

#include "common/log.h"
#include "common/thread_name.h"
#include "forwarder/backoff.h"
#include "forwarder/cursor_tracker.h"
#include "forwarder/kafka_conf.h"
#include "forwarder/rdkafka_handles.h"
#include "forwarder/routing.h"

namespace edgeferry::forwarder {
namespace {

constexpr const char* kLog = "forwarder";
// Upper bound on one read, so that one read does not pin a large allocation.
constexpr size_t kMaxReadRecords = 4096;
// And on the payload bytes of one read (a larger record still comes alone). Reads of 4096 x 1 KiB
// records (4 MiB copied out of the buffer) most likely pushed the freed headers and messages of
// the last delivery reports out of the CPU cache before Produce reused them: the forwarder
// thread's hottest instruction was malloc loading a fastbin chunk. bench_forwarder, 1M records,
// 4 runs per build alternating: 1 KiB, process 12.0-13.0 CPU-s per million records instead of
// 12.4-15.2 (forwarder thread 3.4-3.9 instead of 3.7-4.7, librdkafka's threads less too); 100 B
// 3.2-4.6 instead of 4.4-4.6. 64 KiB to 1 MiB measured alike.
constexpr size_t kMaxReadBytes = 256 << 10;
// The two read batches (the one being sent, the one the reader fills) keep their records' storage
// from read to read (RecordSource::ReadInto), but a payload larger than this gives its memory back
// before the next read: a batch then holds at most kMaxReadRecords x 4 KiB (16 MiB) between
// reads, however large the records that passed.
constexpr size_t kKeepPayloadBytes = 4096;
// After a transient failure, at most this many records are in flight until one is delivered: a
// long outage then costs one small probe per kafka.message_timeout_ms, not a full window re-encoded
// and expired again and again.
constexpr uint64_t kProbeRecords = 64;
// Values at least this large are lent to librdkafka instead of copied (Produce says why).
constexpr size_t kLendValueBytes = 512;
// The in-flight slot table's size while nothing is in flight (40 KiB); see SlotOf.
constexpr size_t kMinSlots = 1024;
// After this many failed rounds in a row the producer is recreated even without a fatal error:
// librdkafka 2.0.2 can stay stuck on stale metadata of an unreachable broker (fixed upstream in
// 2.10), and a fresh producer starts with fresh metadata. Harmless in a plain outage.
constexpr uint64_t kRecreateAfterFailures = 5;

// Errors after which sending the same record again can never succeed. Everything else (broker
// down, timeouts, leader changes, missing topic, authorization) is transient: keep the record and
// try again after a back-off.
bool IsPermanent(rd_kafka_resp_err_t err) {
  switch (err) {
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE:
    case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
    case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_RECORD:
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
      return true;
    default:
      return false;
  }
}

}  // namespace

void LatencyHistogram::Observe(int64_t ms) {
  ms = std::max<int64_t>(0, ms);
  auto it = std::lower_bound(kBoundsMs.begin(), kBoundsMs.end(), ms);
  ++buckets[static_cast<size_t>(it - kBoundsMs.begin())];
  ++count;
  sum_ms += static_cast<uint64_t>(ms);
}

void LatencyHistogram::Merge(const LatencyHistogram& other) {
  for (size_t i = 0; i < buckets.size(); ++i) buckets[i] += other.buckets[i];
  count += other.count;
  sum_ms += other.sum_ms;
}

uint64_t LatencyHistogram::Cumulative(size_t i) const {
  uint64_t n = 0;
  for (size_t j = 0; j <= i && j < buckets.size(); ++j) n += buckets[j];
  return n;
}

class Forwarder::Impl {
 public:
  Impl(const config::KafkaConfig& cfg, Options options, RecordSource* source)
      : cfg_(cfg),
        opts_(std::move(options)),
        source_(source),
        clock_(opts_.clock != nullptr ? opts_.clock : SystemClock()),
        backoff_(std::chrono::milliseconds(cfg.backoff_initial_ms),
                 std::chrono::milliseconds(cfg.backoff_max_ms), clock_),
        log_limiter_(std::chrono::seconds(60), clock_) {
    slots_.resize(kMinSlots);
  }

  ~Impl() {
    // Stop() was called by ~Forwarder; nothing may outlive the producer's callbacks.
    DestroyProducer();
  }

  Status Init() {
    auto conf = BuildProducerConf(cfg_, "edgeferry-" + opts_.device_id);
    if (!conf.ok()) return conf.status();
    return CreateProducer();
  }

  Status Start() {
    std::lock_guard lock(lifecycle_mu_);
    if (thread_.joinable() || started_) return Status::InvalidArgument("forwarder already started");
    auto cursor = source_->LoadCursor(kCursorName);
    if (!cursor.ok()) return cursor.status();
    tracker_.Reset(*cursor);
    committed_ = *cursor;
    read_pos_ = *cursor;
    {
      std::lock_guard s(stats_mu_);
      stats_.cursor = stats_.committed_cursor = *cursor;
    }
    EF_LOG(kInfo, kLog, "librdkafka {}; resuming after seq {} (cursor \"{}\")",
           rd_kafka_version_str(), *cursor, kCursorName);
    started_ = true;
    committer_ = std::thread([this] {
      SetThreadName("ef-commit");
      RunCommitter();
    });
    reader_ = std::thread([this] {
      SetThreadName("ef-reader");
      RunReader();
    });
    thread_ = std::thread([this] {
      SetThreadName("ef-forwarder");
      Run();
    });
    return Status::Ok();
  }

  void Stop(std::chrono::milliseconds grace) {
    std::lock_guard lock(lifecycle_mu_);
    if (!thread_.joinable()) return;
    grace_ms_ = grace.count();
    stop_ = true;
    thread_.join();  // Shutdown() waited for the last commit
    {
      std::lock_guard c(commit_mu_);
      commit_stop_ = true;
    }
    commit_cv_.notify_all();
    committer_.join();
    {
      std::lock_guard r(pf_.mu);
      pf_.stop = true;
    }
    pf_.cv.notify_all();
    reader_.join();  // after the forwarder thread, which may have been waiting for its read
  }

  Stats GetStats() const {
    std::lock_guard s(stats_mu_);
    return stats_;
  }

  uint64_t ProgressTicks() const { return ticks_.load(std::memory_order_relaxed); }

  void InjectFatal() { inject_fatal_ = true; }

 private:
  // One record handed to librdkafka and not yet reported; 40 bytes, and the table is indexed by
  // seq, so that the delivery reports of a batch touch consecutive slots: with a free list the
  // order was scrambled, and the report's first look at its slot, a cache miss, was most of
  // HandleCompletions at 100 B records.
  static constexpr uint32_t kNotLent = UINT32_MAX;
  struct Slot {
    uint64_t seq = 0;                 // 0: free (seqs start at 1)
    int64_t ingest_ms = 0;            // StoredRecord::ingest_time_ms, for the delivery latency
    Clock::TimePoint sent{};          // for kafka.message_timeout_ms (CheckDeliveryTimeout)
    rd_kafka_topic_t* rkt = nullptr;  // held by topics_ until DestroyProducer, which frees slots
    uint32_t bytes = 0;
    // A lent value (kLendValueBytes and more): produced without a copy, librdkafka reads it
    // from lent_[lent] until its delivery report (or the producer's destruction).
    uint32_t lent = kNotLent;
  };
  struct Completion {
    uint32_t seq_bits;  // the record's seq, its low 32 bits (the opaque is a pointer: see Produce)
    rd_kafka_resp_err_t err;
    rd_kafka_topic_t* rkt;  // held by topics_ until DestroyProducer, which drops completions_
  };
  enum class Outcome { kSent, kDone, kBackpressure, kStop };

  // ---- librdkafka callbacks: all run on the forwarder thread inside rd_kafka_poll (dr, error)
  // or on librdkafka threads (log). No exception may escape into C.
  static void OnDelivery(rd_kafka_t*, const rd_kafka_message_t* msg, void* opaque) noexcept {
    auto* self = static_cast<Impl*>(opaque);
    try {
      auto seq_bits = static_cast<uint32_t>(reinterpret_cast<uintptr_t>(msg->_private));
      self->completions_.push_back({seq_bits, msg->err, msg->rkt});
    } catch (...) {
      // Out of memory: the slot stays used, the record is resent after the next producer reset.
      self->fatal_ = true;
    }
  }

  static void OnError(rd_kafka_t*, int err, const char* reason, void* opaque) noexcept {
    auto* self = static_cast<Impl*>(opaque);
    try {
      auto e = static_cast<rd_kafka_resp_err_t>(err);
      if (e == RD_KAFKA_RESP_ERR__FATAL) {
        self->fatal_ = true;
        return;
      }
      self->LogLimited(LogLevel::kWarning, rd_kafka_err2name(e),
                       fmt::format("{}: {}", rd_kafka_err2name(e), reason));
      self->SetLastError(fmt::format("{}: {}", rd_kafka_err2name(e), reason));
    } catch (...) {
    }
  }

  static void OnLog(const rd_kafka_t*, int level, const char* fac, const char* buf) noexcept {
    try {
      // The forwarder sets enable.gapless.guarantee on purpose (kafka_conf.cc); librdkafka warns
      // that it is experimental at every producer start, which would only be noise.
      if (level <= 4 && std::string_view(fac) == "CONFWARN" &&
          std::string_view(buf).find("enable.gapless.guarantee") == std::string_view::npos) {
        EF_LOG(kWarning, kLog, "librdkafka {}: {}", fac, buf);
      } else {
        EF_LOG(kDebug, kLog, "librdkafka {}: {}", fac, buf);
      }
    } catch (...) {
    }
  }

  void LogLimited(LogLevel level, std::string_view key, const std::string& line) {
    uint64_t suppressed = 0;
    if (!log_limiter_.Allow(key, &suppressed)) return;
    if (suppressed > 0) {
      LogLine(level, kLog,
              fmt::format("{} ({} more like it since the last report)", line, suppressed));
    } else {
      LogLine(level, kLog, line);
    }
  }

  void SetLastError(std::string e) {
    std::lock_guard s(stats_mu_);
    stats_.last_error = std::move(e);
  }

  Status CreateProducer() {
    auto conf = BuildProducerConf(cfg_, "edgeferry-" + opts_.device_id);
    if (!conf.ok()) return conf.status();
    rd_kafka_conf_t* c = conf->get();
    rd_kafka_conf_set_dr_msg_cb(c, &Impl::OnDelivery);
    rd_kafka_conf_set_error_cb(c, &Impl::OnError);
    rd_kafka_conf_set_log_cb(c, &Impl::OnLog);
    rd_kafka_conf_set_opaque(c, this);
    char errstr[512];
    rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, errstr, sizeof errstr);
    if (rk == nullptr) {
      return Status::InvalidArgument(fmt::format("kafka: cannot create producer: {}", errstr));
    }
    (void)conf->release();  // rd_kafka_new succeeded and now owns the conf
    rk_.reset(rk);
    return Status::Ok();
  }

  void DestroyProducer() {
    routes_.clear();  // their cached topic handles go with topics_
    topics_.clear();  // topic handles hold references on rk
    rk_.reset();
    completions_.clear();
    for (uint32_t i = 0; i < slots_.size(); ++i) {
      if (slots_[i].seq != 0) FreeSlot(i);
    }
    tracker_.FailAllInFlight();
    // A suspect that was in flight alone has no report coming any more: it stays a suspect and
    // goes alone again after the rewind. Left set, the loop would wait for it forever.
    isolating_seq_ = 0;
  }

  // A record's slot is fixed by its seq: seq mod the table's size, a power of two. Every record
  // in flight is above the committed cursor and at most uncommitted_cap_ above it, so at
  // MaxSlots() two of them never share a slot, except across a gap of records trimmed from the
  // buffer: SlotFree says whether the record may go now.
  //
  // The table starts at kMinSlots and doubles when a record finds its slot taken (GrowSlots),
  // so that memory follows what is in flight, not the configured cap: a table sized for
  // max_inflight_records = 10,000,000 up front took 800 MB at start. Doubling keeps records
  // apart: two seqs equal mod 2n are equal mod n, so they could not both be in the old table.
  uint32_t SlotOf(uint64_t seq) const { return static_cast<uint32_t>(seq & (slots_.size() - 1)); }
  bool SlotFree(uint64_t seq) const { return slots_[SlotOf(seq)].seq == 0; }
  size_t MaxSlots() const { return std::bit_ceil(std::max<uint64_t>(uncommitted_cap_, kMinSlots)); }
  bool GrowSlots() {
    if (slots_.size() >= MaxSlots()) return false;
    std::vector<Slot> grown(slots_.size() * 2);
    for (const Slot& s : slots_) {
      if (s.seq != 0) grown[s.seq & (grown.size() - 1)] = s;
    }
    slots_.swap(grown);
    return true;
  }
  // The slot of a delivery report's record, or nullptr if that record is no longer in flight.
  // The low 32 bits of its seq find it: the table is far smaller than 2^32 entries.
  Slot* SlotOfReport(uint32_t seq_bits) {
    Slot& s = slots_[seq_bits & (slots_.size() - 1)];
    return s.seq != 0 && static_cast<uint32_t>(s.seq) == seq_bits ? &s : nullptr;
  }
  uint32_t AllocSlot(uint64_t seq, uint64_t bytes, int64_t ingest_ms, rd_kafka_topic_t* rkt) {
    uint32_t i = SlotOf(seq);
    Slot& s = slots_[i];
    s.seq = seq;
    s.bytes = static_cast<uint32_t>(std::min<uint64_t>(bytes, UINT32_MAX));
    s.ingest_ms = ingest_ms;
    s.sent = send_now_;
    s.rkt = rkt;
    s.lent = kNotLent;
    ++inflight_records_;
    inflight_bytes_ += s.bytes;
    return i;
  }
  void FreeSlot(uint32_t i) {
    Slot& s = slots_[i];
    if (s.lent != kNotLent) {
      std::string& v = lent_[s.lent];
      if (v.capacity() > kKeepPayloadBytes) std::string().swap(v);
      free_lent_.push_back(s.lent);
    }
    s.seq = 0;
    --inflight_records_;
    inflight_bytes_ -= s.bytes;
  }
  // Storage for a lent value (see Produce): a freed one, or a new one. A deque, so that a new
  // one leaves the others where librdkafka reads them.
  std::string& LendTo(Slot& slot) {
    if (free_lent_.empty()) {
      free_lent_.push_back(static_cast<uint32_t>(lent_.size()));
      lent_.emplace_back();
    }
    slot.lent = free_lent_.back();
    free_lent_.pop_back();
    return lent_[slot.lent];
  }

  void Poll(int timeout_ms) {
    if (rk_) rd_kafka_poll(rk_.get(), timeout_ms);
    HandleCompletions();
  }

  void CountError(rd_kafka_resp_err_t err, uint64_t n = 1) {
    std::lock_guard s(stats_mu_);
    stats_.errors_by_kind[rd_kafka_err2name(err)] += n;
  }

  void HandleCompletions() {
    if (completions_.empty()) return;
    uint64_t ok = 0, ok_bytes = 0, failed = 0, purged = 0;
    const int64_t now_ms = clock_->NowUnixMs();
    LatencyHistogram latency;
    int64_t last_latency = 0, max_latency = 0;
    for (const Completion& c : completions_) {
      Slot* slot = SlotOfReport(c.seq_bits);
      if (slot == nullptr) continue;
      uint64_t seq = slot->seq;
      uint64_t bytes = slot->bytes;
      int64_t ingest_ms = slot->ingest_ms;
      FreeSlot(static_cast<uint32_t>(slot - slots_.data()));
      bool isolated = (seq == isolating_seq_);
      if (isolated) isolating_seq_ = 0;
      if (c.err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        tracker_.OnDelivered(seq);
        ++ok;
        ok_bytes += bytes;
        last_latency = std::max<int64_t>(0, now_ms - ingest_ms);
        max_latency = std::max(max_latency, last_latency);
        latency.Observe(last_latency);
        if (isolated) suspects_.erase(seq);
        continue;
      }
      if (c.err == RD_KAFKA_RESP_ERR__PURGE_QUEUE || c.err == RD_KAFKA_RESP_ERR__PURGE_INFLIGHT) {
        // The forwarder purged it (EnterRecovery, RecreateProducer), which only happens while
        // recovering from a failure already counted: not a failure of its own.
        ++purged;
        tracker_.OnFailed(seq);
        if (!recovering_) {  // not expected; if it ever happens, resend like after a failure
          EnterRecovery(fmt::format("{}: {}", rd_kafka_err2name(c.err), rd_kafka_err2str(c.err)),
                        /*transient=*/true);
        }
        continue;
      }
      ++failed;
      CountError(c.err);
      std::string reason = fmt::format("{}: {}", rd_kafka_err2name(c.err), rd_kafka_err2str(c.err));
      if (IsPermanent(c.err)) {
        if (isolated) {
          // It failed alone, so the record itself is at fault: move it aside, keep going.
          DeadLetterBySeq(seq, reason);
          suspects_.erase(seq);
          continue;
        }
        // A broker-side size error fails the whole batch: send each record of it alone to find
        // the one at fault instead of dead-lettering innocent neighbours.
        suspects_.insert(seq);
        tracker_.OnFailed(seq);
        EnterRecovery(reason, /*transient=*/false);
        continue;
      }
      tracker_.OnFailed(seq);
      EnterRecovery(reason, /*transient=*/true,
                    c.err == RD_KAFKA_RESP_ERR__MSG_TIMED_OUT ? c.rkt : nullptr);
    }
    completions_.clear();
    if (ok > 0) {
      probing_ = false;
      if (!recovering_) backoff_.Reset();
      std::lock_guard s(stats_mu_);
      stats_.delivered_records += ok;
      stats_.delivered_bytes += ok_bytes;
      stats_.last_delivery_unix_ms = now_ms;
      stats_.last_delivery_latency_ms = last_latency;
      stats_.max_delivery_latency_ms = std::max(stats_.max_delivery_latency_ms, max_latency);
      stats_.delivery_latency.Merge(latency);
    }
    if (failed > 0 || purged > 0) {
      std::lock_guard s(stats_mu_);
      stats_.delivery_failures += failed;
      stats_.purged_records += purged;
    }
  }

  // Stops sending; after the in-flight window has drained and the back-off has passed, the loop
  // re-reads from the tracked cursor and sends again what was not delivered.
  void EnterRecovery(const std::string& reason, bool transient,
                     rd_kafka_topic_t* timed_out_topic = nullptr) {
    if (recovering_) return;
    recovering_ = true;
    recovering_since_ = clock_->Now();
    DropBatch();
    // Records queued behind the failed one must not overtake it: if the brokers came back before
    // their own timeouts, they would be delivered now and the failed record only after them on
    // the resend, breaking per-key order. Fail the not-yet-sent ones too (their reports arrive
    // as _PURGE_QUEUE); the resend from the cursor then goes out in seq order. Records already
    // on the wire are left to the idempotent producer's ordering.
    if (rk_) rd_kafka_purge(rk_.get(), RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_NON_BLOCKING);
    // Before the back-off starts, so that the time spent asking does not shorten it.
    std::string diagnosis = timed_out_topic != nullptr ? DiagnoseTimeout(timed_out_topic) : "";
    std::chrono::milliseconds delay(0);
    if (transient) {
      delay = backoff_.Fail();
      probing_ = true;
      if (backoff_.consecutive_failures() % kRecreateAfterFailures == 0) recreate_ = true;
    }
    LogLimited(LogLevel::kWarning, reason.substr(0, reason.find(':')),
               fmt::format("delivery failed ({}); holding records from seq {} in the buffer, "
                           "retrying in {} ms",
                           reason, tracker_.cursor() + 1, delay.count()));
    std::lock_guard s(stats_mu_);
    if (!diagnosis.empty()) {
      stats_.last_error = reason + " (" + diagnosis + ")";
      stats_.backing_off = true;
      return;
    }
    stats_.last_error = reason;
    stats_.backing_off = true;
  }

  // A timed-out delivery does not say why. One cause librdkafka 2.0.2 does not name within
  // kafka.message_timeout_ms is a topic that does not exist on a broker that does not create topics
  // on demand (it first waits topic.metadata.propagation.max.ms, 30 s, and a producer recreated
  // meanwhile starts that wait again): ask the cluster once per failed round (at most 1 s, only
  // while recovering) and name it. Returns the diagnosis, or "" if there is none.
  std::string DiagnoseTimeout(rd_kafka_topic_t* rkt) {
    if (!rk_ || rkt == nullptr) return "";
    const rd_kafka_metadata_t* md = nullptr;
    if (rd_kafka_metadata(rk_.get(), 0, rkt, &md, 1000) != RD_KAFKA_RESP_ERR_NO_ERROR) return "";
    std::string diagnosis;
    for (int i = 0; i < md->topic_cnt; ++i) {
      if (md->topics[i].err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
        diagnosis = fmt::format("topic \"{}\" does not exist on the cluster", md->topics[i].topic);
        LogLimited(LogLevel::kWarning, "missing topic " + std::string(md->topics[i].topic),
                   fmt::format("{} and the brokers do not create it on demand; its records wait "
                               "in the buffer until it is created",
                               diagnosis));
      }
    }
    rd_kafka_metadata_destroy(md);
    return diagnosis;
  }

  bool DeadLetter(const StoredRecord& r, const std::string& reason) {
    Status st = source_->DeadLetter(r, reason);
    if (!st.ok()) {
      LogLimited(LogLevel::kError, "dead-letter",
                 fmt::format("cannot dead-letter seq {}: {}", r.seq, st.ToString()));
      return false;
    }
    EF_LOG(kWarning, kLog, "seq {} from input \"{}\" moved to the dead-letter table: {}", r.seq,
           r.record.source, reason);
    std::lock_guard s(stats_mu_);
    ++stats_.dead_lettered;
    return true;
  }

  void DeadLetterBySeq(uint64_t seq, const std::string& reason) {
    auto rs = source_->ReadAfter(seq - 1, 1, std::numeric_limits<size_t>::max());
    if (!rs.ok()) {
      tracker_.OnFailed(seq);
      EnterRecovery("reading the buffer: " + rs.status().ToString(), true);
      return;
    }
    if (rs->empty() || rs->front().seq != seq) {
      tracker_.OnDelivered(seq);  // gone from the buffer meanwhile: nothing left to move
      return;
    }
    if (DeadLetter(rs->front(), reason)) {
      tracker_.OnDelivered(seq);
    } else {
      tracker_.OnFailed(seq);
      suspects_.insert(seq);
      EnterRecovery("dead-letter table unavailable", true);
    }
  }

  rd_kafka_topic_t* TopicHandle(const std::string& name) {
    auto it = topics_.find(name);
    if (it != topics_.end()) return it->second.get();
    rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk_.get(), name.c_str(), nullptr);
    if (rkt == nullptr) return nullptr;
    topics_.emplace(name, KafkaTopicPtr(rkt));
    return rkt;
  }

  // Where an input's records go when they carry no topic/key of their own. Cached per input;
  // the topic handle belongs to the current producer (cleared with it).
  struct Route {
    std::string topic;
    std::string key;
    bool topic_valid = false;
    rd_kafka_topic_t* rkt = nullptr;  // owned by topics_
  };
  Route& DefaultRoute(const std::string& input) {
    auto it = routes_.find(input);
    if (it != routes_.end()) return it->second;
    Route r;
    auto t = opts_.input_topics.find(input);
    r.topic = ExpandTemplate(
        t != opts_.input_topics.end() && !t->second.empty() ? t->second : cfg_.topic_template,
        opts_.device_id, input, "");
    r.key = ExpandTemplate(cfg_.key_template, opts_.device_id, input, "");
    r.topic_valid = IsValidTopicName(r.topic);
    return routes_.emplace(input, std::move(r)).first->second;
  }

  Outcome Produce(StoredRecord& sr, uint64_t bytes) {
    const Record& r = sr.record;
    Route& def = DefaultRoute(r.source);
    // A record's own topic is an input's `topic`, which may hold {device} and {input} (a Kafka
    // topic never holds '{', so only such a topic is expanded).
    std::string topic_buf;
    if (!r.topic.empty() && r.topic.find('{') != std::string::npos) {
      topic_buf = ExpandTemplate(r.topic, opts_.device_id, r.source, "");
    }
    const std::string& own_topic = topic_buf.empty() ? r.topic : topic_buf;
    const std::string& topic = r.topic.empty() ? def.topic : own_topic;
    std::string key_buf;
    const std::string* key = &r.key;
    if (r.key.empty()) {
      if (key_uses_topic_) {
        key_buf = ExpandTemplate(cfg_.key_template, opts_.device_id, r.source, own_topic);
        key = &key_buf;
      } else {
        key = &def.key;
      }
    }
    bool resend = sr.seq <= tracker_.highest();
    while (!SlotFree(sr.seq)) {
      if (!GrowSlots()) return Outcome::kBackpressure;  // see SlotOf
    }
    if (!tracker_.OnSent(sr.seq)) return Outcome::kDone;  // already delivered or below cursor

    bool valid = r.topic.empty() ? def.topic_valid : IsValidTopicName(topic);
    if (!valid) {
      return DeadLetterNow(sr, fmt::format("invalid Kafka topic name \"{}\"", topic));
    }
    rd_kafka_topic_t* rkt = r.topic.empty() ? def.rkt : nullptr;
    if (rkt == nullptr) {
      rkt = TopicHandle(topic);
      if (r.topic.empty()) def.rkt = rkt;
    }
    if (rkt == nullptr) {
      return DeadLetterNow(
          sr, fmt::format("topic \"{}\": {}", topic, rd_kafka_err2str(rd_kafka_last_error())));
    }
    KafkaHeadersPtr hdrs(rd_kafka_headers_new(r.headers.size() + 3));
    for (const Header& h : r.headers) {
      rd_kafka_header_add(hdrs.get(), h.name.data(), static_cast<ssize_t>(h.name.size()),
                          h.value.data(), h.value.size());
    }
    std::string seq_str = std::to_string(sr.seq);
    rd_kafka_header_add(hdrs.get(), kHeaderDevice, -1, opts_.device_id.data(),
                        opts_.device_id.size());
    rd_kafka_header_add(hdrs.get(), kHeaderSeq, -1, seq_str.data(), seq_str.size());
    rd_kafka_header_add(hdrs.get(), kHeaderSource, -1, r.source.data(), r.source.size());

    uint32_t slot = AllocSlot(sr.seq, bytes, sr.ingest_time_ms, rkt);
    // A large value is not copied: librdkafka reads it from the slot until the delivery report.
    // Copied (RD_KAFKA_MSG_F_COPY), every 1 KiB record cost a malloc above glibc's tcache limit,
    // and those, freed in bursts by the reports, cost a quarter of the forwarder thread's time
    // (malloc_consolidate, unlink_chunk) in bench_forwarder: 6.1 -> 5.3 CPU-s per million
    // records without the copy. A small value is copied: at 100 B, lending it cost more (2.0 ->
    // 2.6 CPU-s/M on the forwarder thread, cold slot strings instead of the hot read batch).
    const bool lend = sr.record.payload.size() >= kLendValueBytes;
    std::string& value = lend ? LendTo(slots_[slot]) : sr.record.payload;
    if (lend) value.swap(sr.record.payload);
    rd_kafka_resp_err_t err = rd_kafka_producev(
        rk_.get(), RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_PARTITION(RD_KAFKA_PARTITION_UA),
        RD_KAFKA_V_MSGFLAGS(lend ? 0 : RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_VALUE(value.data(), value.size()),
        RD_KAFKA_V_KEY(key->empty() ? nullptr : key->data(), key->size()),
        RD_KAFKA_V_TIMESTAMP(r.event_time_ms), RD_KAFKA_V_HEADERS(hdrs.get()),
        // The seq, not the slot, which moves when the table grows. Its low 32 bits: a pointer
        // holds no more on armhf.
        RD_KAFKA_V_OPAQUE(
            reinterpret_cast<void*>(static_cast<uintptr_t>(static_cast<uint32_t>(sr.seq)))),
        RD_KAFKA_V_END);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      (void)hdrs.release();  // producev succeeded and now owns the headers
      if (resend) {
        std::lock_guard s(stats_mu_);
        ++stats_.resent_records;
      }
      return Outcome::kSent;
    }
    if (lend) value.swap(sr.record.payload);  // not taken: the record keeps its value
    FreeSlot(slot);
    tracker_.OnFailed(sr.seq);
    if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) return Outcome::kBackpressure;
    CountError(err);
    std::string reason = fmt::format("{}: {}", rd_kafka_err2name(err), rd_kafka_err2str(err));
    if (IsPermanent(err)) {
      tracker_.OnSent(sr.seq);
      return DeadLetterNow(sr, reason);
    }
    EnterRecovery(reason, /*transient=*/true);
    return Outcome::kStop;
  }

  // `sr` is tracked as sent (kInFlight, no slot): dead-letter it and let the cursor pass it.
  Outcome DeadLetterNow(const StoredRecord& sr, const std::string& reason) {
    if (DeadLetter(sr, reason)) {
      tracker_.OnDelivered(sr.seq);
      return Outcome::kDone;
    }
    tracker_.OnFailed(sr.seq);
    EnterRecovery("dead-letter table unavailable", true);
    return Outcome::kStop;
  }

  // Records sent above the committed cursor: in flight, or delivered but not yet committed. A
  // crash now would send all of them again, so new records also wait for this to fall below
  // uncommitted_cap_.
  uint64_t Uncommitted() const { return tracker_.highest() - committed_; }

  // Commits every cursor_commit_interval_ms, at once when `force`, and also at once when
  // commit_threshold_ records are delivered but uncommitted: the window counts from the committed
  // cursor, so waiting for the interval would stall sending. After a failed commit only the
  // interval retries, so that a broken source is not hammered on every loop.
  //
  // Commits run on the committer thread, one at a time: a durable commit (an fsync; the buffer
  // trims what it frees after CommitCursor returns) took ~150 ms with 1 KiB records in
  // bench_forwarder when the trim was still part of it, and the forwarder thread blocked on it
  // spent three quarters of a 1,000,000-record drain not polling or sending.
  // committed_ moves only when a commit has completed, so the window (and with it the duplicate
  // bound after a crash) still counts from what is durable. `force` (shutdown) waits for the
  // commit in progress and then commits on this thread.
  void MaybeCommit(bool force) {
    CollectCommit();
    if (force) {
      std::unique_lock lk(commit_mu_);
      commit_cv_.wait(lk, [&] { return !commit_busy_; });
      lk.unlock();
      CollectCommit();
    } else if (commit_busy_.load(std::memory_order_acquire)) {
      return;
    }
    uint64_t c = tracker_.cursor();
    if (c <= committed_) return;
    auto now = clock_->Now();
    bool due = force ||
               now - last_commit_ >= std::chrono::milliseconds(cfg_.cursor_commit_interval_ms) ||
               (!commit_failed_ && c - committed_ >= commit_threshold_);
    if (!due) return;
    last_commit_ = now;
    if (force) {
      FinishCommit(c, source_->CommitCursor(kCursorName, c));
      return;
    }
    {
      std::lock_guard lk(commit_mu_);
      commit_request_ = c;
      commit_busy_ = true;
    }
    commit_cv_.notify_all();
  }

  // Takes the result of a finished background commit, if there is one.
  void CollectCommit() {
    if (!commit_done_.load(std::memory_order_acquire)) return;
    uint64_t seq;
    Status st;
    {
      std::lock_guard lk(commit_mu_);
      seq = commit_done_seq_;
      st = std::move(commit_result_);
      commit_done_ = false;
    }
    FinishCommit(seq, st);
  }

  void FinishCommit(uint64_t seq, const Status& st) {
    commit_failed_ = !st.ok();
    if (st.ok()) {
      committed_ = std::max(committed_, seq);
    } else {
      LogLimited(LogLevel::kError, "commit",
                 fmt::format("cannot commit cursor {}: {}", seq, st.ToString()));
    }
  }

  // The committer thread: runs one requested commit at a time (see MaybeCommit).
  void RunCommitter() {
    std::unique_lock lk(commit_mu_);
    for (;;) {
      commit_cv_.wait(lk, [&] { return commit_stop_ || commit_request_ != 0; });
      if (commit_request_ == 0) return;  // stopping, nothing asked
      uint64_t seq = std::exchange(commit_request_, 0);
      lk.unlock();
      Status st = source_->CommitCursor(kCursorName, seq);
      lk.lock();
      commit_result_ = std::move(st);
      commit_done_seq_ = seq;
      commit_done_ = true;
      commit_busy_ = false;
      commit_cv_.notify_all();
    }
  }

  void PublishStats() {
    std::lock_guard s(stats_mu_);
    stats_.inflight_records = inflight_records_;
    stats_.inflight_bytes = inflight_bytes_;
    stats_.cursor = tracker_.cursor();
    stats_.committed_cursor = committed_;
    stats_.uncommitted_records = Uncommitted();
    stats_.backing_off = recovering_;
  }

  // kafka.message_timeout_ms, enforced here rather than by librdkafka (kafka_conf.cc says why):
  // when the oldest record in flight has had no report for that long, the round fails with
  // _MSG_TIMED_OUT and EnterRecovery purges everything not yet sent, so that nothing queued
  // behind it can overtake it. Requests already on the wire keep librdkafka's ordered retries;
  // if they have not all reported another message_timeout_ms later (a broker that takes
  // requests and never answers), the producer is recreated, which drops them.
  void CheckDeliveryTimeout() {
    if (cfg_.message_timeout_ms == 0 || inflight_records_ == 0 || !rk_) return;
    const auto timeout = std::chrono::milliseconds(cfg_.message_timeout_ms);
    auto now = clock_->Now();
    if (recovering_) {
      if (!recreate_ && now - recovering_since_ >= timeout) {
        recreate_ = true;
        recreate_reason_ = fmt::format(
            "{} record(s) still in flight {} ms after the failure", inflight_records_,
            std::chrono::duration_cast<std::chrono::milliseconds>(now - recovering_since_).count());
      }
      return;
    }
    if (now < next_timeout_check_) return;
    // A scan of the slot table (max_inflight_records entries) at most every timeout/8, capped
    // at 100 ms: the timeout fires at most that late.
    next_timeout_check_ =
        now + std::clamp<Clock::Duration>(timeout / 8, std::chrono::milliseconds(1),
                                          std::chrono::milliseconds(100));
    const Slot* oldest = nullptr;
    for (const Slot& s : slots_) {
      if (s.seq != 0 && (oldest == nullptr || s.sent < oldest->sent)) oldest = &s;
    }
    if (oldest == nullptr || now - oldest->sent < timeout) return;
    CountError(RD_KAFKA_RESP_ERR__MSG_TIMED_OUT);
    EnterRecovery(fmt::format("{}: no delivery report for seq {} within {} ms "
                              "(kafka.message_timeout_ms)",
                              rd_kafka_err2name(RD_KAFKA_RESP_ERR__MSG_TIMED_OUT), oldest->seq,
                              cfg_.message_timeout_ms),
                  /*transient=*/true, oldest->rkt);
    // After EnterRecovery has set backing_off, so that a reader who sees the failure also sees
    // the back-off, as after a failed delivery report.
    std::lock_guard s(stats_mu_);
    ++stats_.delivery_failures;
  }

  void RecreateProducer() {
    std::string reason;
    if (fatal_) {
      char errstr[512] = "";
      rd_kafka_resp_err_t ferr =
          rk_ ? rd_kafka_fatal_error(rk_.get(), errstr, sizeof errstr) : RD_KAFKA_RESP_ERR__FATAL;
      reason = fmt::format("fatal producer error {}: {}", rd_kafka_err2name(ferr), errstr);
      CountError(RD_KAFKA_RESP_ERR__FATAL);
    } else if (!recreate_reason_.empty()) {
      reason = std::move(recreate_reason_);
    } else {
      reason = fmt::format("producer stuck: no delivery in {} attempts in a row",
                           backoff_.consecutive_failures());
    }
    recreate_ = false;
    recreate_reason_.clear();
    if (rk_) {
      // Collect the delivery reports that are already in (successes still count), then drop the
      // rest: those records are still in the buffer above the cursor.
      // After a fatal error, wait for the broker threads to take the purge: librdkafka raises
      // the error (enable.gapless.guarantee) before it queues the failed batch's reports, and
      // those name the error of the batch (MSG_SIZE_TOO_LARGE, ...) that makes its records
      // suspects to send alone. Lost, a record too large for the broker would fail the same way
      // after every restart. A fatal error comes from a broker's answer, so its thread is
      // serving; a stuck producer (no answers) is not waited for.
      int flags = RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT;
      if (!fatal_) flags |= RD_KAFKA_PURGE_F_NON_BLOCKING;
      rd_kafka_purge(rk_.get(), flags);
      rd_kafka_poll(rk_.get(), 0);
      bool was = recovering_;
      recovering_ = true;  // failures of purged messages must not start a second back-off
      HandleCompletions();
      recovering_ = was;
    }
    DestroyProducer();
    fatal_ = false;
    LogLimited(LogLevel::kWarning, "recreate",
               fmt::format("{}; producer recreated, resending from seq {}", reason,
                           tracker_.cursor() + 1));
    {
      std::lock_guard s(stats_mu_);
      ++stats_.producer_restarts;
    }
    recovering_ = false;
    EnterRecovery(reason, /*transient=*/true);
    Status st = CreateProducer();
    if (!st.ok()) LogLimited(LogLevel::kError, "create", st.ToString());
  }

  void Run() {
    while (!stop_) {
      ticks_.fetch_add(1, std::memory_order_relaxed);
      if (inject_fatal_.exchange(false) && rk_) {
        rd_kafka_test_fatal_error(rk_.get(), RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
                                  "injected by test");
      }
      Poll(0);
      CheckDeliveryTimeout();
      if (fatal_ || recreate_) RecreateProducer();
      MaybeCommit(false);
      PublishStats();
      if (recovering_) {
        if (inflight_records_ > 0 || !backoff_.Ready()) {
          Poll(static_cast<int>(std::clamp<int64_t>(backoff_.Remaining().count(), 1, 50)));
          continue;
        }
        if (!rk_) {
          Status st = CreateProducer();
          if (!st.ok()) {
            LogLimited(LogLevel::kError, "create", st.ToString());
            backoff_.Fail();
            continue;
          }
        }
        recovering_ = false;
        read_pos_ = tracker_.cursor();
        DropBatch();
      }
      if (isolating_seq_ != 0) {
        Poll(10);
        continue;
      }
      if (batch_pos_ >= batch_size_) {
        if (!ReadBatch()) continue;
      }
      SendBatch();
    }
    Shutdown();
  }

  uint64_t InflightCap() const {
    return probing_ ? std::min<uint64_t>(cfg_.max_inflight_records, kProbeRecords)
                    : cfg_.max_inflight_records;
  }

  // Takes the next batch into batch_. False if the loop should go round again (waited, or full).
  bool ReadBatch() {
    DropBatch();
    uint64_t cap = InflightCap();
    uint64_t free_records = cap > inflight_records_ ? cap - inflight_records_ : 0;
    // New records (above tracker_.highest()) also need room in the uncommitted window; resends
    // (up to highest) do not grow it.
    uint64_t resend_span = tracker_.highest() > read_pos_ ? tracker_.highest() - read_pos_ : 0;
    uint64_t window_free = uncommitted_cap_ > Uncommitted() ? uncommitted_cap_ - Uncommitted() : 0;
    free_records = std::min(free_records, resend_span + window_free);
    // Any room will do: taking a batch costs a swap (the reader read it meanwhile), and SendBatch
    // stops at the caps, so the window is refilled as reports free it, not a read at a time.
    if (free_records == 0 ||
        (inflight_records_ > 0 && inflight_bytes_ >= cfg_.max_inflight_bytes)) {
      MaybeCommit(false);  // the window may be full of delivered records: make room
      Poll(10);
      return false;
    }
    if (!source_->WaitForRecordsAfter(read_pos_, std::chrono::milliseconds(0))) {
      if (read_pos_ < tracker_.highest()) {
        tracker_.ForgetMissing(read_pos_, std::numeric_limits<uint64_t>::max());
      }
      if (inflight_records_ > 0) {
        Poll(5);
      } else {
        // Caught up: an idle agent does not keep the storage of its last backlog.
        std::vector<StoredRecord>().swap(batch_);
        {
          std::lock_guard r(pf_.mu);
          if (pf_.state == Prefetch::kIdle || pf_.state == Prefetch::kReady) {
            std::vector<StoredRecord>().swap(pf_.records);
            pf_.state = Prefetch::kIdle;
          }
        }
        tracker_.ShrinkIfIdle();
        std::deque<std::string>().swap(lent_);  // none is used now
        std::vector<uint32_t>().swap(free_lent_);
        if (slots_.size() > kMinSlots) std::vector<Slot>(kMinSlots).swap(slots_);
        auto wait = std::min<uint64_t>(100, cfg_.cursor_commit_interval_ms);
        source_->WaitForRecordsAfter(read_pos_, std::chrono::milliseconds(wait));
      }
      return false;
    }
    // The read of the records after read_pos_, prefetched by the reader while the last batch was
    // sent, or asked for now. A read that returned nothing before records came is asked again.
    std::unique_lock lk(pf_.mu);
    for (bool asked = false;;) {
      // Blocks as a read on this thread would: a hung storage read stops the progress ticks.
      pf_.cv.wait(lk,
                  [&] { return pf_.state == Prefetch::kIdle || pf_.state == Prefetch::kReady; });
      if (pf_.state == Prefetch::kReady && pf_.after == read_pos_ &&
          (pf_.count > 0 || !pf_.status.ok() || asked)) {
        break;
      }
      pf_.after = read_pos_;
      pf_.state = Prefetch::kWanted;
      pf_.cv.notify_all();
      asked = true;
    }
    Status st = std::move(pf_.status);
    batch_size_ = pf_.count;
    batch_pos_ = 0;
    batch_.swap(pf_.records);  // the batch just sent goes to the reader for its storage
    pf_.state = Prefetch::kIdle;
    if (!st.ok()) {
      batch_size_ = 0;
      lk.unlock();
      EnterRecovery("reading the buffer: " + st.ToString(), true);
      return false;
    }
    if (batch_size_ > 0) {  // read the next one while this one is sent
      pf_.after = batch_[batch_size_ - 1].seq;
      pf_.state = Prefetch::kWanted;
      pf_.cv.notify_all();
    }
    return batch_size_ > 0;
  }

  // The reader thread: runs one requested read at a time into pf_.records, which it owns from
  // kWanted to kReady.
  void RunReader() {
    const size_t max_records = std::min<uint64_t>(kMaxReadRecords, cfg_.max_inflight_records);
    const size_t max_bytes = std::clamp<uint64_t>(cfg_.max_inflight_bytes, 1, kMaxReadBytes);
    std::unique_lock lk(pf_.mu);
    for (;;) {
      pf_.cv.wait(lk, [&] { return pf_.stop || pf_.state == Prefetch::kWanted; });
      if (pf_.state != Prefetch::kWanted) return;  // stopping
      pf_.state = Prefetch::kReading;
      const uint64_t after = pf_.after;
      lk.unlock();
      for (auto& sr : pf_.records) {
        if (sr.record.payload.capacity() > kKeepPayloadBytes) std::string().swap(sr.record.payload);
      }
      auto n = source_->ReadInto(after, max_records, max_bytes, &pf_.records);
      lk.lock();
      pf_.status = n.ok() ? Status::Ok() : n.status();
      pf_.count = n.ok() ? *n : 0;
      pf_.state = Prefetch::kReady;
      pf_.cv.notify_all();
    }
  }

  // Forgets the rest of the batch but keeps its records: the next read decodes into them.
  void DropBatch() { batch_pos_ = batch_size_ = 0; }

  void SendBatch() {
    send_now_ = clock_->Now();
    while (batch_pos_ < batch_size_ && !stop_ && !recovering_ && !fatal_) {
      StoredRecord& sr = batch_[batch_pos_];
      if (sr.seq <= read_pos_) {
        ++batch_pos_;
        continue;
      }
      if (read_pos_ < tracker_.highest()) tracker_.ForgetMissing(read_pos_, sr.seq);
      if (sr.seq <= tracker_.highest() &&
          (sr.seq <= tracker_.cursor() || tracker_.IsDelivered(sr.seq))) {
        read_pos_ = sr.seq;
        ++batch_pos_;
        continue;
      }
      const uint64_t bytes = sr.record.ByteSize();
      auto full = [&] {
        return inflight_records_ >= InflightCap() ||
               (inflight_records_ > 0 && inflight_bytes_ + bytes > cfg_.max_inflight_bytes) ||
               (sr.seq > tracker_.highest() && Uncommitted() >= uncommitted_cap_);
      };
      if (full()) {
        Poll(0);
        MaybeCommit(false);
        if (full()) Poll(10);
        return;
      }
      bool suspect = !suspects_.empty() && suspects_.count(sr.seq) > 0;
      if (suspect && inflight_records_ > 0) {
        Poll(10);  // a suspect goes alone: wait for the window to drain
        return;
      }
      Outcome o = Produce(sr, bytes);
      if (o == Outcome::kBackpressure) {
        Poll(10);
        return;
      }
      if (o == Outcome::kStop) return;
      read_pos_ = sr.seq;
      ++batch_pos_;
      if (suspect && o == Outcome::kSent) {
        isolating_seq_ = sr.seq;
        return;
      }
    }
    Poll(0);
  }

  void Shutdown() {
    auto deadline = clock_->Now() + std::chrono::milliseconds(grace_ms_.load());
    // Also bounded by a number of 10 ms polls, so that a clock that does not move (FakeClock in
    // an agent test) cannot turn the grace into a hang.
    int64_t polls_left = grace_ms_.load() / 10 + 1;
    while (rk_ && inflight_records_ > 0 && !fatal_ && clock_->Now() < deadline &&
           polls_left-- > 0) {
      ticks_.fetch_add(1, std::memory_order_relaxed);
      Poll(10);
    }
    MaybeCommit(true);
    if (inflight_records_ > 0) {
      EF_LOG(kWarning, kLog,
             "stopping with {} records in flight; they stay in the buffer and are sent again "
             "on the next start",
             inflight_records_);
    }
    DestroyProducer();
    PublishStats();
    EF_LOG(kInfo, kLog, "stopped; cursor {}", committed_);
  }

  const config::KafkaConfig cfg_;
  const Options opts_;
  RecordSource* const source_;
  Clock* const clock_;

  std::mutex lifecycle_mu_;
  std::thread thread_;
  bool started_ = false;
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> grace_ms_{0};
  std::atomic<bool> fatal_{false};
  std::atomic<bool> inject_fatal_{false};
  std::atomic<uint64_t> ticks_{0};

  // Committer thread (MaybeCommit). Requests and results pass under commit_mu_; commit_busy_ and
  // commit_done_ are also read without it by the forwarder thread as a cheap check.
  std::thread committer_;
  std::thread reader_;  // RunReader; its state is pf_
  std::mutex commit_mu_;
  std::condition_variable commit_cv_;
  uint64_t commit_request_ = 0;  // GUARDED_BY(commit_mu_); 0: none
  bool commit_stop_ = false;     // GUARDED_BY(commit_mu_)
  std::atomic<bool> commit_busy_{false};
  std::atomic<bool> commit_done_{false};
  uint64_t commit_done_seq_ = 0;  // GUARDED_BY(commit_mu_)
  Status commit_result_;          // GUARDED_BY(commit_mu_)

  // Forwarder-thread state.
  KafkaPtr rk_;
  std::unordered_map<std::string, KafkaTopicPtr> topics_;
  std::unordered_map<std::string, Route> routes_;
  const bool key_uses_topic_ = cfg_.key_template.find("{topic}") != std::string::npos;
  std::vector<Slot> slots_;  // indexed by SlotOf(seq)
  // Values lent to librdkafka (Produce): as many strings as were in flight at once, each
  // swapped with the read batch's, so that the storage goes round without an allocation.
  std::deque<std::string> lent_;
  std::vector<uint32_t> free_lent_;
  std::vector<Completion> completions_;
  uint64_t inflight_records_ = 0;
  uint64_t inflight_bytes_ = 0;
  CursorTracker tracker_;
  Backoff backoff_;
  RateLimiter log_limiter_;
  bool recovering_ = false;
  bool probing_ = false;         // since the last transient failure, nothing delivered yet
  bool recreate_ = false;        // kRecreateAfterFailures failed rounds: start a fresh producer
  std::string recreate_reason_;  // why, if not the above or a fatal error
  Clock::TimePoint recovering_since_{};  // when EnterRecovery last started a recovery
  Clock::TimePoint send_now_{};          // taken once per SendBatch for the slots it fills
  Clock::TimePoint next_timeout_check_{};
  uint64_t read_pos_ = 0;
  uint64_t committed_ = 0;
  bool commit_failed_ = false;
  // Delivered-but-uncommitted records that trigger a commit before the interval. An eighth of
  // the window: deliveries above a slower partition's undelivered records already hold part of
  // it, and bench_forwarder (1M x 100 B) drained ~7% faster than with half a window, at one
  // buffer commit per max_inflight_records/8 deliveries.
  const uint64_t commit_threshold_ = std::max<uint64_t>(1, cfg_.max_inflight_records / 8);
  // Records sent above the durable cursor: the most a crash can send twice. Twice the in-flight
  // cap, because delivered records stay uncommitted while their cursor commit (an fsync) runs:
  // with the cap at max_inflight_records, fewer records were in flight than the bare producer
  // keeps, and bench_forwarder at 100 B drained at 69-81 % of it; with twice, 83-101 % (1M
  // records, 4 rounds each, alternating); counting only what is in flight, 83-115 %.
  const uint64_t uncommitted_cap_ = 2 * uint64_t{cfg_.max_inflight_records};
  Clock::TimePoint last_commit_{};
  std::vector<StoredRecord> batch_;  // its first batch_size_ records are the batch (ReadInto)
  // The next batch, read by the reader thread (ef-reader) while this one is sent: the read (zstd,
  // SQLite, decoding; a tenth of the forwarder thread at 100 B records) then no longer keeps the
  // window from being refilled. One read at a time, always of the records after `after`.
  struct Prefetch {
    enum State { kIdle, kWanted, kReading, kReady };
    std::mutex mu;
    std::condition_variable cv;
    State state = kIdle;  // GUARDED_BY(mu)
    bool stop = false;    // GUARDED_BY(mu)
    uint64_t after = 0;   // GUARDED_BY(mu)
    Status status;        // GUARDED_BY(mu), of the last read
    size_t count = 0;     // GUARDED_BY(mu), records of the last read
    // The reader's from kWanted to kReady, the forwarder thread's otherwise.
    std::vector<StoredRecord> records;
  } pf_;
  size_t batch_size_ = 0;
  size_t batch_pos_ = 0;
  std::set<uint64_t> suspects_;  // failed with a batch-level size error; sent alone next time
  uint64_t isolating_seq_ = 0;   // a suspect is in flight alone; nothing else is sent

  mutable std::mutex stats_mu_;
  Stats stats_;  // GUARDED_BY(stats_mu_)
};

Result<std::unique_ptr<Forwarder>> Forwarder::Create(const config::KafkaConfig& cfg,
                                                     std::string device_id, RecordSource* source,
                                                     Clock* clock) {
  Options o;
  o.device_id = std::move(device_id);
  o.clock = clock;
  return Create(cfg, std::move(o), source);
}

Result<std::unique_ptr<Forwarder>> Forwarder::Create(const config::KafkaConfig& cfg,
                                                     Options options, RecordSource* source) {
  if (source == nullptr) return Status::InvalidArgument("forwarder: no record source");
  if (options.device_id.empty()) return Status::InvalidArgument("forwarder: empty device id");
  // The slot table needs one slot (the config loader's range starts at 1).
  if (cfg.max_inflight_records < 1) {
    return Status::InvalidArgument("forwarder: kafka.max_inflight_records must be at least 1");
  }
  for (const auto& [input, topic] : options.input_topics) {
    if (topic.empty()) continue;
    std::string expanded = ExpandTemplate(topic, options.device_id, input, "");
    if (!IsValidTopicName(expanded)) {
      return Status::InvalidArgument(fmt::format(
          "input \"{}\": topic \"{}\" is not a valid Kafka topic name", input, expanded));
    }
  }
  auto impl = std::make_unique<Impl>(cfg, std::move(options), source);
  Status st = impl->Init();
  if (!st.ok()) return st;
  return std::unique_ptr<Forwarder>(new Forwarder(std::move(impl)));
}

Forwarder::Forwarder(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Forwarder::~Forwarder() { Stop(std::chrono::milliseconds(0)); }
Status Forwarder::Start() { return impl_->Start(); }
void Forwarder::Stop(std::chrono::milliseconds grace) { impl_->Stop(grace); }
Stats Forwarder::GetStats() const { return impl_->GetStats(); }
uint64_t Forwarder::ProgressTicks() const { return impl_->ProgressTicks(); }
void Forwarder::InjectFatalErrorForTesting() { impl_->InjectFatal(); }

}  // namespace edgeferry::forwarder
