// bench_forwarder: drains a backlog of N records into a local Kafka broker with the forwarder,
// and in the same run measures the ceiling: a bare librdkafka producer sending the same Kafka
// messages (topic, key, headers, timestamp, payload) with the same producer settings and codec.
//
// Prints records/s, MB/s (payload), bytes stored per record on the broker (the record batches
// as sent, i.e. the compressed wire payload), peak RSS sampled during the drain, and the ratio
// forwarder / ceiling, and CPU-seconds per million records of each side over its measured window,
// and the bytes the drain wrote to disk per record (the buffer's trims; /proc/self/io wchar),
// and how many records each side kept in flight on average: with the same window, a side that
// refills it more slowly drains more slowly while the broker's round trips bound the drain.
//
// CPU: the whole process (getrusage RUSAGE_SELF, user + system) over the window, which takes in
// every thread the side runs (for the forwarder: ef-forwarder, ef-reader, ef-commit, the buffer's
// ef-buffer and librdkafka's threads; for the ceiling: the producing thread and librdkafka's
// threads), minus what the bench itself spends meanwhile (the RSS sampler thread and, for the
// forwarder, the main thread waiting for the cursor), measured with their thread CPU clocks.
// Nothing else runs in the process during a window (the broker is a separate process).
//
// The forwarder drains a real buffer (buffer::Buffer, SQLite, sync=full) pre-filled with the N
// records before its clock starts, so its figure includes reading the buffer, tracking every
// delivery and committing the cursor. The ceiling makes the same records in memory.
//
//   bench_forwarder [--records N] [--sizes 100,1024] [--codec zstd] [--bootstrap host:port]
//                   [--partitions 3] [--rounds 3] [--dir DIR] [--no-trim]
//                   [--inflight-records N] [--inflight-bytes N]
// DIR (default $TMPDIR/bench-forwarder-<pid>) holds the pre-filled buffer; removed after each run.
// Each side starts from malloc_trim(0) (see g_trim); --no-trim leaves freed memory with malloc.
// Without --bootstrap it starts a one-node Kafka from the test rig (needs the rig's Kafka jars).
#include <dirent.h>
#include <librdkafka/rdkafka.h>
#include <malloc.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "buffer/buffer.h"
#include "common/log.h"
#include "forwarder/forwarder.h"
#include "forwarder/kafka_conf.h"
#include "forwarder/routing.h"
#ifdef EDGEFERRY_BENCH_HAS_RIG
#include "tests/rig/rig.h"
#endif

namespace ef = edgeferry;
namespace fwd = edgeferry::forwarder;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {

constexpr int kInputs = 8;
const char* const kInputNames[kInputs] = {"temp",  "humidity", "pressure", "vibration",
                                          "power", "flow",     "level",    "door"};
constexpr const char* kDevice = "bench-gw";

// The record with sequence number `seq`: a JSON reading padded with a sample array to `size`
// bytes of payload. Deterministic, so both sides send identical bytes.
ef::Record MakeRecord(uint64_t seq, size_t size) {
  ef::Record r;
  int input = static_cast<int>(seq % kInputs);
  r.source = kInputNames[input];
  r.event_time_ms = 1'700'000'000'000 + static_cast<int64_t>(seq) * 10;
  uint64_t x = seq * 2862933555777941757ull + 3037000493ull;
  char head[160];
  int n = std::snprintf(head, sizeof head,
                        "{\"sensor\":\"%s-%d\",\"seq\":%llu,\"value\":%.2f,\"unit\":\"C\",\"s\":[",
                        r.source.c_str(), input, static_cast<unsigned long long>(seq),
                        20.0 + static_cast<double>(x % 1000) / 100.0);
  r.payload.reserve(size + 16);
  r.payload.assign(head, static_cast<size_t>(n));
  while (r.payload.size() + 8 < size) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    r.payload += std::to_string(static_cast<int>((x >> 33) % 2000) - 1000);
    r.payload += ',';
  }
  r.payload += "0]}";
  if (r.payload.size() < size) r.payload.append(size - r.payload.size(), ' ');
  r.payload.resize(size);
  r.headers.push_back({"unit", "C"});
  return r;
}

// A real buffer (buffer::Buffer, the SQLite log the agent drains) in `dir`, pre-filled with
// records 1..n before the clock starts. max_bytes is raised so that 1,000,000 x 1 KiB fits (the
// shipped default, 256 MiB, would push the oldest out); everything else is the shipped default
// (sync=full).
std::unique_ptr<ef::buffer::Buffer> PrefilledBuffer(const std::filesystem::path& dir, uint64_t n,
                                                    size_t size, double* fill_seconds) {
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  std::filesystem::create_directories(dir);
  ef::config::BufferConfig bc;
  bc.path = (dir / "buffer.db").string();
  bc.max_bytes = 8ull << 30;
  auto b = ef::buffer::Buffer::Open(bc);
  if (!b.ok()) {
    std::fprintf(stderr, "buffer: %s\n", b.status().ToString().c_str());
    std::exit(2);
  }
  auto t0 = Clock::now();
  constexpr uint64_t kChunk = 10'000;
  for (uint64_t done = 0; done < n; done += kChunk) {
    std::vector<ef::Record> rs;
    rs.reserve(kChunk);
    for (uint64_t s = done + 1; s <= std::min(n, done + kChunk); ++s) {
      rs.push_back(MakeRecord(s, size));
    }
    ef::Status st = b.value()->Append(std::move(rs));
    if (!st.ok()) {
      std::fprintf(stderr, "buffer append: %s\n", st.ToString().c_str());
      std::exit(2);
    }
  }
  if (b.value()->LastSeq() != n) {
    std::fprintf(stderr, "buffer holds %llu records, want %llu\n",
                 static_cast<unsigned long long>(b.value()->LastSeq()),
                 static_cast<unsigned long long>(n));
    std::exit(2);
  }
  *fill_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return std::move(b).value();
}

// The number after `key` (e.g. "VmRSS:") on its line of a /proc file; 0 if absent.
uint64_t ProcFigure(const char* path, std::string_view key) {
  std::ifstream f(path);
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind(key, 0) == 0) return std::strtoull(line.c_str() + key.size(), nullptr, 10);
  }
  return 0;
}

uint64_t RssKiB() { return ProcFigure("/proc/self/status", "VmRSS:"); }

// The allocator's view (glibc mallinfo2, all arenas): bytes handed out and not freed, and bytes
// it holds from the system (heap arenas plus mmapped chunks). RSS growing while `in_use` does
// not is memory freed but kept by malloc, not a leak.
struct HeapFigures {
  uint64_t in_use_kib = 0;
  uint64_t held_kib = 0;
};
HeapFigures Heap() {
  struct mallinfo2 mi = mallinfo2();
  return {(mi.uordblks + mi.hblkhd) / 1024, (mi.arena + mi.hblkhd) / 1024};
}

// --no-trim clears it. Each side's RSS figures are taken in a process that has already run the
// other side and earlier rounds (producers, buffers, N-record arenas, all freed: malloc in use is
// back to ~0.2 MiB after every round), and glibc keeps freed memory in its per-thread arenas
// instead of returning it, so without a trim RSS0 and the peak carried what malloc kept from
// before and rose round after round (forwarder peak 91 to 151 MiB over 10 rounds of
// 100k x 1 KiB) with no leak behind it. A long-running agent runs one forwarder and does not
// repeat this cycle, so each side starts from a trimmed heap: its RSS is its own.
bool g_trim = true;
void TrimFreedMemory() {
  if (g_trim) malloc_trim(0);
}

// Bytes the process has passed to write(2)-like calls so far (/proc/self/io wchar): during a drain
// only the buffer writes to disk (the WAL, checkpoints into the database file), so the difference
// over the drain is what the trim of delivered records costs the device's storage.
uint64_t WrittenBytes() { return ProcFigure("/proc/self/io", "wchar:"); }

// CPU seconds (user + system) of the whole process so far.
double ProcessCpuSeconds() {
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  auto sec = [](const timeval& tv) {
    return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6;
  };
  return sec(ru.ru_utime) + sec(ru.ru_stime);
}

// CPU seconds of the calling thread so far.
double ThreadCpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

// CPU seconds (user + system) of this process's threads so far, summed by thread name, from
// /proc/self/task/*/stat (clock ticks: 10 ms resolution). librdkafka's threads (rdk:*) are summed
// as "librdkafka". Threads that end are no longer listed, so compare only snapshots between
// which no thread ended.
std::map<std::string, double> CpuByThreadName() {
  std::map<std::string, double> out;
  const double tick = static_cast<double>(sysconf(_SC_CLK_TCK));
  DIR* d = opendir("/proc/self/task");
  if (d == nullptr) return out;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    std::ifstream f(std::string("/proc/self/task/") + e->d_name + "/stat");
    std::string line;
    if (!std::getline(f, line)) continue;
    size_t open = line.find('('), close = line.rfind(')');
    if (open == std::string::npos || close == std::string::npos) continue;
    std::string name = line.substr(open + 1, close - open - 1);
    if (name.rfind("rdk:", 0) == 0) name = "librdkafka";
    std::istringstream rest(line.substr(close + 2));
    std::string field;
    unsigned long long utime = 0, stime = 0;
    // Fields 3..15 of stat(5): state ... utime (14) stime (15).
    for (int i = 3; i <= 15 && rest >> field; ++i) {
      if (i == 14) utime = std::strtoull(field.c_str(), nullptr, 10);
      if (i == 15) stime = std::strtoull(field.c_str(), nullptr, 10);
    }
    out[name] += static_cast<double>(utime + stime) / tick;
  }
  closedir(d);
  return out;
}

// CPU by thread name since `before` (a CpuByThreadName() snapshot). Call it before any thread
// of the window ends (Stop, the RSS sampler): an ended thread is no longer listed.
std::map<std::string, double> CpuByThreadNameSince(const std::map<std::string, double>& before) {
  auto now = CpuByThreadName();
  for (auto& [name, secs] : now) {
    auto it = before.find(name);
    if (it != before.end()) secs -= it->second;
  }
  return now;
}

// Samples RSS every 20 ms while alive; peak() is the highest seen; cpu_seconds() is what the
// sampling thread itself used (after stop()).
class RssSampler {
 public:
  // `inflight`, if given, is sampled on the same ticks: mean_inflight() is its mean.
  explicit RssSampler(std::function<uint64_t()> inflight = {})
      : start_(RssKiB()), peak_(start_), inflight_(std::move(inflight)) {
    thread_ = std::thread([this] {
      while (!stop_) {
        uint64_t r = RssKiB();
        uint64_t p = peak_.load();
        while (r > p && !peak_.compare_exchange_weak(p, r)) {
        }
        if (inflight_) {
          inflight_sum_ += static_cast<double>(inflight_());
          ++inflight_samples_;
        }
        std::this_thread::sleep_for(20ms);
      }
      cpu_seconds_ = ThreadCpuSeconds();
    });
  }
  ~RssSampler() { stop(); }
  void stop() {
    if (!thread_.joinable()) return;
    stop_ = true;
    thread_.join();
  }
  uint64_t start() const { return start_; }
  uint64_t peak() const { return peak_.load(); }
  double cpu_seconds() const { return cpu_seconds_.load(); }
  double mean_inflight() const {  // after stop()
    return inflight_samples_ > 0 ? inflight_sum_ / static_cast<double>(inflight_samples_) : 0;
  }

 private:
  uint64_t start_;
  std::atomic<uint64_t> peak_;
  std::function<uint64_t()> inflight_;
  double inflight_sum_ = 0;  // sampler thread only until stop()
  uint64_t inflight_samples_ = 0;
  std::atomic<double> cpu_seconds_{0};
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

struct Result {
  double seconds = 0;
  uint64_t peak_rss_kib = 0;
  uint64_t start_rss_kib = 0;
  uint64_t failures = 0;
  uint64_t rss10_kib = 0;  // forwarder only: RSS when 10% / 90% of the backlog was delivered
  uint64_t rss90_kib = 0;
  double cpu_seconds = 0;      // the side's CPU over the window (bench overhead taken out)
  double harness_seconds = 0;  // the bench's own CPU in the window (taken out of cpu_seconds)
  uint64_t written_bytes = 0;  // forwarder only: bytes written to disk during the drain
  // Records handed to librdkafka without a delivery report served, sampled every 20 ms: how
  // much of the window a side keeps in use.
  double mean_inflight = 0;
  std::map<std::string, double> cpu_by_thread;  // CPU in the window by thread name
};

// --inflight-records / --inflight-bytes: the forwarder's window (kafka.max_inflight_records /
// max_inflight_bytes), from which both sides' librdkafka queue limits are derived; 0 = the default.
uint64_t g_inflight_records = 0;
uint64_t g_inflight_bytes = 0;

ef::config::KafkaConfig BenchConfig(const std::string& bootstrap, const std::string& codec,
                                    const std::string& topic) {
  ef::config::KafkaConfig c;
  if (g_inflight_records > 0) c.max_inflight_records = static_cast<uint32_t>(g_inflight_records);
  if (g_inflight_bytes > 0) c.max_inflight_bytes = g_inflight_bytes;
  std::stringstream ss(bootstrap);
  for (std::string b; std::getline(ss, b, ',');) c.brokers.push_back(b);
  c.compression = codec;
  c.topic_template = topic;
  c.properties.emplace("log_level", "3");  // (operator[]= trips GCC 12's -Wrestrict at -O3)
  return c;                                // everything else: the shipped defaults
}

Result RunForwarder(const ef::config::KafkaConfig& cfg, ef::buffer::Buffer* src, uint64_t n) {
  auto f = fwd::Forwarder::Create(cfg, kDevice, src);
  if (!f.ok()) {
    std::fprintf(stderr, "forwarder: %s\n", f.status().ToString().c_str());
    std::exit(2);
  }
  Result r;
  TrimFreedMemory();
  RssSampler rss([&f] { return f.value()->GetStats().inflight_records; });
  const auto threads0 = CpuByThreadName();
  const double cpu0 = ProcessCpuSeconds(), main0 = ThreadCpuSeconds();
  const uint64_t written0 = WrittenBytes();
  auto t0 = Clock::now();
  if (!f.value()->Start().ok()) std::exit(2);
  for (uint64_t c = 0; (c = f.value()->GetStats().cursor) < n;) {
    if (r.rss10_kib == 0 && c >= n / 10) r.rss10_kib = RssKiB();
    if (r.rss90_kib == 0 && c >= n - n / 10) r.rss90_kib = RssKiB();
    std::this_thread::sleep_for(2ms);
  }
  r.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  const double cpu1 = ProcessCpuSeconds(), main1 = ThreadCpuSeconds();
  r.cpu_by_thread = CpuByThreadNameSince(threads0);  // before Stop and the sampler end
  rss.stop();  // its CPU after cpu1 (at most one 20 ms tick) counts in harness_seconds: tiny
  r.mean_inflight = rss.mean_inflight();
  r.harness_seconds = (main1 - main0) + rss.cpu_seconds();
  r.cpu_seconds = (cpu1 - cpu0) - r.harness_seconds;
  f.value()->Stop(10s);
  r.written_bytes = WrittenBytes() - written0;  // the trim after the last commit may follow
  r.peak_rss_kib = rss.peak();
  r.start_rss_kib = rss.start();
  auto stats = f.value()->GetStats();
  r.failures = stats.delivery_failures + stats.dead_lettered;
  auto committed = src->LoadCursor(fwd::kCursorName);
  if (!committed.ok() || *committed != n) {
    std::fprintf(stderr, "forwarder: cursor %llu after the drain, want %llu\n",
                 static_cast<unsigned long long>(committed.ok() ? *committed : 0),
                 static_cast<unsigned long long>(n));
    ++r.failures;
  }
  return r;
}

// The ceiling: librdkafka alone, same properties, same messages, back-pressure by polling.
Result RunBare(const ef::config::KafkaConfig& cfg, uint64_t n, size_t size) {
  static std::atomic<uint64_t> done, failed;
  done = 0;
  failed = 0;
  auto conf = fwd::BuildProducerConf(cfg, std::string("edgeferry-") + kDevice);
  if (!conf.ok()) std::exit(2);
  rd_kafka_conf_set_dr_msg_cb(conf->get(), [](rd_kafka_t*, const rd_kafka_message_t* m, void*) {
    if (m->err) ++failed;
    ++done;
  });
  char errstr[512];
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf->get(), errstr, sizeof errstr);
  if (rk == nullptr) std::exit(2);
  (void)conf->release();
  rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk, cfg.topic_template.c_str(), nullptr);
  std::string keys[kInputs];
  for (int i = 0; i < kInputs; ++i) {
    keys[i] = fwd::ExpandTemplate(cfg.key_template, kDevice, kInputNames[i], "");
  }
  // The records are made before the clock starts, into one arena, so that the ceiling pays
  // nothing for its source (the forwarder pays for reading the buffer). The arena is left out of
  // the ceiling's RSS figures.
  std::string arena;
  std::vector<uint64_t> offsets(n + 1, 0);
  std::vector<uint32_t> byte_sizes(n + 1, 0);
  arena.reserve(n * size);
  for (uint64_t s = 1; s <= n; ++s) {
    ef::Record rec = MakeRecord(s, size);
    arena += rec.payload;
    offsets[s] = arena.size();
    byte_sizes[s] = static_cast<uint32_t>(rec.ByteSize());
  }
  const uint64_t arena_kib =
      (arena.capacity() + offsets.capacity() * 8 + byte_sizes.capacity() * 4) / 1024;
  const ef::Record shape = MakeRecord(1, size);  // headers are the same for every record

  Result r;
  TrimFreedMemory();
  std::atomic<uint64_t> inflight{0};  // updated every 256 records: the sampler reads it
  RssSampler rss([&inflight] { return inflight.load(std::memory_order_relaxed); });
  const auto threads0 = CpuByThreadName();
  const double cpu0 = ProcessCpuSeconds(), main0 = ThreadCpuSeconds();
  auto t0 = Clock::now();
  for (uint64_t s = 1; s <= n; ++s) {
    if ((s & 255) == 0) inflight.store(s - 1 - done.load(), std::memory_order_relaxed);
    const char* payload = arena.data() + offsets[s - 1];
    const size_t payload_size = offsets[s] - offsets[s - 1];
    const char* source = kInputNames[s % kInputs];
    const int64_t event_time_ms = 1'700'000'000'000 + static_cast<int64_t>(s) * 10;
    const ef::Record& rec = shape;
    rd_kafka_headers_t* h = rd_kafka_headers_new(4);
    for (const auto& hd : rec.headers) {
      rd_kafka_header_add(h, hd.name.data(), static_cast<ssize_t>(hd.name.size()), hd.value.data(),
                          static_cast<ssize_t>(hd.value.size()));
    }
    std::string seq = std::to_string(s);
    rd_kafka_header_add(h, fwd::kHeaderDevice, -1, kDevice, -1);
    rd_kafka_header_add(h, fwd::kHeaderSeq, -1, seq.data(), static_cast<ssize_t>(seq.size()));
    rd_kafka_header_add(h, fwd::kHeaderSource, -1, source, -1);
    const std::string& key = keys[s % kInputs];
    // The forwarder's in-flight caps apply to the ceiling too: same window, same settings.
    while ((s - 1 - done.load()) >= cfg.max_inflight_records ||
           (s - 1 - done.load()) * byte_sizes[s] >= cfg.max_inflight_bytes) {
      rd_kafka_poll(rk, 10);
    }
    for (;;) {
      rd_kafka_resp_err_t e = rd_kafka_producev(
          rk, RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
          RD_KAFKA_V_VALUE(const_cast<char*>(payload), payload_size),
          RD_KAFKA_V_KEY(key.data(), key.size()), RD_KAFKA_V_TIMESTAMP(event_time_ms),
          RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END);
      if (e == RD_KAFKA_RESP_ERR_NO_ERROR) break;
      if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
        std::fprintf(stderr, "bare producev: %s\n", rd_kafka_err2str(e));
        std::exit(2);
      }
      rd_kafka_poll(rk, 10);
    }
    rd_kafka_poll(rk, 0);  // serve delivery reports as they come (librdkafka's examples do this)
  }
  while (done.load() < n) rd_kafka_poll(rk, 10);
  r.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  const double cpu1 = ProcessCpuSeconds(), main1 = ThreadCpuSeconds();
  r.cpu_by_thread = CpuByThreadNameSince(threads0);
  r.cpu_by_thread["producer"] = main1 - main0;  // this thread: producev, headers, polling
  rss.stop();
  r.mean_inflight = rss.mean_inflight();
  r.harness_seconds = rss.cpu_seconds();
  r.cpu_seconds = (cpu1 - cpu0) - r.harness_seconds;
  r.peak_rss_kib = rss.peak() > arena_kib ? rss.peak() - arena_kib : 0;
  r.start_rss_kib = rss.start() > arena_kib ? rss.start() - arena_kib : 0;
  r.failures = failed.load();
  rd_kafka_topic_destroy(rkt);
  rd_kafka_destroy(rk);
  return r;
}

// Bytes of the topic's log segments on the broker (all partitions): <node>/data/<topic>-<p>/*.log.
// Not recursive over the whole node dir: Kafka renames and deletes other files meanwhile.
uint64_t TopicLogBytes(const std::filesystem::path& node_dir, const std::string& topic) {
  uint64_t total = 0;
  std::error_code ec;
  for (const auto& part : std::filesystem::directory_iterator(node_dir / "data", ec)) {
    std::string name = part.path().filename().string();
    if (name.rfind(topic + "-", 0) != 0 ||
        name.find_first_not_of("0123456789", topic.size() + 1) != std::string::npos) {
      continue;
    }
    std::error_code ec2;
    for (const auto& f : std::filesystem::directory_iterator(part.path(), ec2)) {
      if (f.path().extension() == ".log") total += std::filesystem::file_size(f.path(), ec2);
    }
  }
  return total;
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t n = 1'000'000;
  std::vector<size_t> sizes = {100, 1024};
  std::string codec = "zstd";
  std::string bootstrap;
  int partitions = 3;
  int rounds = 3;
  const char* tmp = std::getenv("TMPDIR");
  std::filesystem::path work_dir = std::filesystem::path(tmp != nullptr && *tmp ? tmp : "/tmp") /
                                   ("bench-forwarder-" + std::to_string(getpid()));
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--records") {
      n = std::strtoull(next().c_str(), nullptr, 10);
    } else if (a == "--sizes") {
      sizes.clear();
      std::stringstream ss(next());
      for (std::string s; std::getline(ss, s, ',');) sizes.push_back(std::stoul(s));
    } else if (a == "--codec") {
      codec = next();
    } else if (a == "--bootstrap") {
      bootstrap = next();
    } else if (a == "--partitions") {
      partitions = std::atoi(next().c_str());
    } else if (a == "--rounds") {
      rounds = std::atoi(next().c_str());
    } else if (a == "--inflight-records") {
      g_inflight_records = std::strtoull(next().c_str(), nullptr, 10);
    } else if (a == "--inflight-bytes") {
      g_inflight_bytes = std::strtoull(next().c_str(), nullptr, 10);
    } else if (a == "--no-trim") {
      g_trim = false;
    } else if (a == "--dir") {
      work_dir = next();
    } else {
      std::fprintf(stderr,
                   "usage: bench_forwarder [--records N] [--sizes 100,1024] [--codec zstd] "
                   "[--bootstrap host:port] [--partitions 3] [--rounds 3] [--dir DIR] [--no-trim] "
                   "[--inflight-records N] [--inflight-bytes N]\n");
      return 2;
    }
  }
  ef::SetLogLevel(ef::LogLevel::kWarning);

  std::filesystem::path data_dir;
  bool own_broker = false;
#ifdef EDGEFERRY_BENCH_HAS_RIG
  std::unique_ptr<edgeferry::rig::KafkaCluster> kafka;
  if (bootstrap.empty()) {
    kafka = edgeferry::rig::KafkaCluster::Start(1);
    bootstrap = kafka->bootstrap();
    data_dir = kafka->node_dir(0);
    own_broker = true;
  }
  auto create_topic = [&](const std::string& t) {
    // The records' timestamps are from 2023: without retention.ms=-1 the broker deletes rolled
    // segments by age and the bytes-per-record figure reads low.
    if (kafka) kafka->CreateTopic(t, partitions, 0, {{"retention.ms", "-1"}});
  };
#else
  // Without the rig the broker must auto-create topics (with its default partition count).
  auto create_topic = [](const std::string&) {};
#endif
  if (bootstrap.empty()) {
    std::fprintf(stderr, "no --bootstrap and built without the test rig\n");
    return 2;
  }
  std::printf("librdkafka %s, codec %s, %llu records per run, %d partitions, broker %s\n",
              fwd::LibrdkafkaVersion().c_str(), codec.c_str(), static_cast<unsigned long long>(n),
              partitions,
              own_broker ? "rig one-node Kafka on loopback (same host)" : bootstrap.c_str());
  if (FILE* f = std::fopen("/proc/loadavg", "r")) {
    char buf[128] = "";
    if (std::fgets(buf, sizeof buf, f) != nullptr)
      std::printf("load average at the start: %s", buf);
    std::fclose(f);
  }
  std::printf("%-6s %-10s %12s %9s %10s %9s %9s %9s %9s %7s %8s\n", "size", "run", "records/s",
              "MB/s", "B/rec log", "RSS0 MiB", "@10% MiB", "@90% MiB", "peak MiB", "ratio",
              "CPU s/M");
  {
    // Warm-up (not reported): the broker's JIT and page cache would otherwise favour whichever
    // side runs second.
    std::string t = "bench-fwd-warmup-" + std::to_string(getpid());
    create_topic(t);
    (void)RunBare(BenchConfig(bootstrap, codec, t), std::min<uint64_t>(n, 200'000), sizes.front());
  }
  int rc = 0;
  std::vector<std::string> summary;
  for (size_t size : sizes) {
    std::vector<double> ratios, cpu_bare, cpu_fwd, cpu_ratio;
    for (int round = 0; round < rounds; ++round) {
      std::string base = "bench-fwd-" + std::to_string(size) + "-" + std::to_string(getpid()) +
                         "-" + std::to_string(round);
      std::string t_bare = base + "-bare", t_fwd = base + "-fwd";
      create_topic(t_bare);
      create_topic(t_fwd);
      // Alternate which side goes first from round to round.
      Result bare, fw;
      double fill_s = 0;
      // The buffer is filled (not timed) right before the forwarder's drain and closed after
      // it, so that the ceiling's RSS does not carry SQLite's cache.
      auto run_forwarder = [&] {
        auto buf = PrefilledBuffer(work_dir, n, size, &fill_s);
        fw = RunForwarder(BenchConfig(bootstrap, codec, t_fwd), buf.get(), n);
      };
      if (round % 2 == 0) {
        bare = RunBare(BenchConfig(bootstrap, codec, t_bare), n, size);
        run_forwarder();
      } else {
        run_forwarder();
        bare = RunBare(BenchConfig(bootstrap, codec, t_bare), n, size);
      }
      {
        std::error_code ec;
        std::filesystem::remove_all(work_dir, ec);
      }
      auto print = [&](const char* what, const Result& r, const std::string& topic, double ratio) {
        double rps = static_cast<double>(n) / r.seconds;
        double mbs = rps * static_cast<double>(size) / 1e6;
        std::string per_rec = "n/a";
        if (!data_dir.empty()) {
          char b[32];
          std::snprintf(
              b, sizeof b, "%.1f",
              static_cast<double>(TopicLogBytes(data_dir, topic)) / static_cast<double>(n));
          per_rec = b;
        }
        auto mib = [](uint64_t kib) {
          if (kib == 0) return std::string("-");
          char b[32];
          std::snprintf(b, sizeof b, "%.1f", static_cast<double>(kib) / 1024.0);
          return std::string(b);
        };
        std::string pct =
            ratio > 0 ? std::to_string(static_cast<int>(ratio * 100 + 0.5)) + "%" : "";
        std::printf("%-6zu %-10s %12.0f %9.1f %10s %9s %9s %9s %9s %7s %8.2f\n", size, what, rps,
                    mbs, per_rec.c_str(), mib(r.start_rss_kib).c_str(), mib(r.rss10_kib).c_str(),
                    mib(r.rss90_kib).c_str(), mib(r.peak_rss_kib).c_str(), pct.c_str(),
                    r.cpu_seconds / static_cast<double>(n) * 1e6);
      };
      print("ceiling", bare, t_bare, 0);
      print("forwarder", fw, t_fwd, bare.seconds / fw.seconds);
      ratios.push_back(bare.seconds / fw.seconds);
      cpu_bare.push_back(bare.cpu_seconds / static_cast<double>(n) * 1e6);
      cpu_fwd.push_back(fw.cpu_seconds / static_cast<double>(n) * 1e6);
      cpu_ratio.push_back(fw.cpu_seconds / bare.cpu_seconds);
      std::printf(
          "  (CPU s/M: the process over the window less the bench's own threads: %.3f s "
          "ceiling, %.3f s forwarder)\n",
          bare.harness_seconds, fw.harness_seconds);
      // Where each side's CPU went (10 ms ticks; the bench's own threads carry the executable's
      // name and are left out; the ceiling's producing thread is the main thread, by its own
      // clock, as "producer").
      for (const auto& [what, r] : {std::pair{"ceiling  ", &bare}, std::pair{"forwarder", &fw}}) {
        std::printf("  %s CPU s/M by thread:", what);
        for (const auto& [name, secs] : r->cpu_by_thread) {
          if (secs <= 0 || name.rfind("bench_", 0) == 0) continue;
          std::printf(" %s %.2f", name.c_str(), secs / static_cast<double>(n) * 1e6);
        }
        std::printf("\n");
      }
      std::printf("  mean in flight (20 ms samples): ceiling %.0f, forwarder %.0f records\n",
                  bare.mean_inflight, fw.mean_inflight);
      std::printf(
          "  (buffer pre-filled with %llu records in %.1f s, not timed; the drain wrote %.1f B per "
          "record to disk)\n",
          static_cast<unsigned long long>(n), fill_s,
          static_cast<double>(fw.written_bytes) / static_cast<double>(n));
      if (bare.failures + fw.failures > 0) {
        std::printf("  delivery failures: ceiling %llu, forwarder %llu\n",
                    static_cast<unsigned long long>(bare.failures),
                    static_cast<unsigned long long>(fw.failures));
        rc = 1;
      }
      // Between rounds: what the process holds with both sides gone. "in use" flat from round
      // to round is the evidence that nothing leaks; "held" is what malloc keeps.
      HeapFigures heap = Heap();
      std::printf("  after the round: RSS %.1f MiB, malloc in use %.1f MiB, held %.1f MiB",
                  static_cast<double>(RssKiB()) / 1024.0,
                  static_cast<double>(heap.in_use_kib) / 1024.0,
                  static_cast<double>(heap.held_kib) / 1024.0);
      if (g_trim) {
        malloc_trim(0);
        std::printf("; after malloc_trim RSS %.1f MiB", static_cast<double>(RssKiB()) / 1024.0);
      }
      std::printf("\n");
      std::fflush(stdout);
    }
    // On a shared machine single rounds swing widely; the median over rounds is the figure.
    auto median = [](std::vector<double> v) {
      std::sort(v.begin(), v.end());
      return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
    };
    auto range = [&](const char* what, std::vector<double> v) {
      std::sort(v.begin(), v.end());
      char b[200];
      std::snprintf(b, sizeof b, "%zu B: %s over %zu rounds: min %.2f, median %.2f, max %.2f", size,
                    what, v.size(), v.front(), median(v), v.back());
      summary.push_back(b);
    };
    std::sort(ratios.begin(), ratios.end());
    char line[160];
    std::snprintf(
        line, sizeof line,
        "%zu B: forwarder/ceiling over %zu rounds: min %.0f%%, median %.0f%%, max %.0f%%", size,
        ratios.size(), ratios.front() * 100,
        (ratios.size() % 2 ? ratios[ratios.size() / 2]
                           : (ratios[ratios.size() / 2 - 1] + ratios[ratios.size() / 2]) / 2) *
            100,
        ratios.back() * 100);
    summary.push_back(line);
    range("ceiling   CPU-seconds per million records", cpu_bare);
    range("forwarder CPU-seconds per million records", cpu_fwd);
    // Both sides' CPU rises with the machine's load (cache and scheduler contention); their
    // ratio within a round moves less than either figure.
    range("forwarder CPU / ceiling CPU", cpu_ratio);
  }
  for (const auto& l : summary) std::printf("%s\n", l.c_str());
  if (FILE* f = std::fopen("/proc/loadavg", "r")) {
    char buf[128] = "";
    if (std::fgets(buf, sizeof buf, f) != nullptr) std::printf("load average at the end: %s", buf);
    std::fclose(f);
  }
  return rc;
}
