// sensors_ingest: the MQTT input over the real SQLite buffer, as a process the crash test can
// SIGKILL. Runs until SIGTERM/SIGINT, or until it has stored a record whose payload equals
// --exit-on (then stops cleanly and exits 0).
//
//   sensors_ingest --uri tcp://127.0.0.1:P --client-id ID --filter 'k/#' --qos 1 --version 5
//                  --db PATH --sync full|normal [--exit-on END] [--connections N]
#include <signal.h>

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <string>

#include "buffer/buffer.h"
#include "common/log.h"
#include "sensors/sensors.h"

namespace {

std::atomic<bool> g_stop{false};
std::mutex g_mu;
std::condition_variable g_cv;

// Forwards to the buffer and notes when the exit marker has been stored.
class MarkerSink final : public edgeferry::RecordSink {
 public:
  MarkerSink(edgeferry::RecordSink* inner, std::string marker)
      : inner_(inner), marker_(std::move(marker)) {}
  edgeferry::Status Append(std::vector<edgeferry::Record> records) override {
    bool hit = false;
    for (const auto& r : records) hit = hit || (!marker_.empty() && r.payload == marker_);
    edgeferry::Status s = inner_->Append(std::move(records));
    if (s.ok() && hit) {
      g_stop = true;
      g_cv.notify_all();
    }
    return s;
  }

 private:
  edgeferry::RecordSink* inner_;
  std::string marker_;
};

}  // namespace

int main(int argc, char** argv) {
  std::map<std::string, std::string> a;
  for (int i = 1; i + 1 < argc; i += 2) a[argv[i]] = argv[i + 1];
  for (const char* k : {"--uri", "--client-id", "--filter", "--db"}) {
    if (!a.count(k)) {
      std::fprintf(stderr, "missing %s\n", k);
      return 2;
    }
  }
  signal(SIGTERM, [](int) { g_stop = true; });  // polled below; no locking in the handler
  signal(SIGINT, [](int) { g_stop = true; });

  edgeferry::config::BufferConfig bc;
  bc.path = a["--db"];
  bc.sync = a["--sync"] == "normal" ? edgeferry::config::SyncMode::kNormal
                                    : edgeferry::config::SyncMode::kFull;
  bc.max_bytes = 1ull << 30;
  auto buf = edgeferry::buffer::Buffer::Open(bc);
  if (!buf.ok()) {
    std::fprintf(stderr, "buffer: %s\n", buf.status().ToString().c_str());
    return 1;
  }
  MarkerSink sink(buf->get(), a.count("--exit-on") ? a["--exit-on"] : "");

  edgeferry::config::InputConfig cfg;
  cfg.name = "ingest";
  cfg.type = "mqtt";
  edgeferry::config::MqttInputConfig m;
  m.uris = {a["--uri"]};
  m.client_id = a["--client-id"];
  m.version = a.count("--version") ? std::stoi(a["--version"]) : 5;
  m.subscriptions = {{a["--filter"], a.count("--qos") ? std::stoi(a["--qos"]) : 1}};
  m.connections = a.count("--connections") ? std::stoul(a["--connections"]) : 1;
  m.reconnect_min_ms = 50;
  m.reconnect_max_ms = 1000;
  cfg.mqtt = m;
  auto input = edgeferry::sensors::CreateInput(cfg, "crash", &sink);
  if (!input.ok()) {
    std::fprintf(stderr, "input: %s\n", input.status().ToString().c_str());
    return 1;
  }
  if (!(*input)->Start().ok()) return 1;
  {
    std::unique_lock lock(g_mu);
    while (!g_stop) g_cv.wait_for(lock, std::chrono::milliseconds(50));
  }
  (*input)->Stop();
  return 0;
}
