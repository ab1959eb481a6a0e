// The daemon's life under a real Kafka: sd_notify through a fake NOTIFY_SOCKET, the watchdog
// that stops when a main loop hangs, `status` while it runs, SIGHUP reloads, the metrics
// endpoint (scraped directly and by a real Prometheus), dead letters through the daemon, and
// SIGTERM with a full when_full=block buffer and Kafka down (plain, during a reload, with MQTT).
#include <doctest/doctest.h>
#include <httplib.h>
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <regex>
#include <set>

#include "buffer/buffer.h"
#include "forwarder/forwarder.h"
#include "tests/agent/harness.h"

namespace edgeferry::agent_test {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

// Seq numbers of every record of `topic`, asserting there is no duplicate.
std::set<uint64_t> SeqsOf(const std::vector<rig::ConsumedRecord>& records) {
  std::set<uint64_t> seqs;
  for (const auto& r : records) {
    auto seq = HeaderValue(r, forwarder::kHeaderSeq);
    REQUIRE(seq.has_value());
    seqs.insert(std::stoull(*seq));
  }
  return seqs;
}

TEST_CASE("sd_notify: READY=1 after start, STATUS= with the backlog, WATCHDOG=1, STOPPING=1") {
  auto kafka = rig::KafkaCluster::Shared();
  rig::TempDir dir("edgeferry-notify");
  std::string topic = rig::UniqueName("notify");
  kafka->CreateTopic(topic);
  auto config =
      WriteConfig(dir, SimulatedConfig(dir, kafka->bootstrap(), "notify-dev", topic, 20, 1));
  NotifySocket sock(dir / "notify.sock");

  Daemon agent(dir, config,
               {{"NOTIFY_SOCKET", sock.path().string()}, {"WATCHDOG_USEC", "2000000"}});
  REQUIRE_MESSAGE(
      rig::WaitFor([&] { return sock.Count("READY=1") == 1 && sock.Count("WATCHDOG=1") >= 3; },
                   30s),
      agent.Log());
  auto statuses = sock.Messages("STATUS=");
  REQUIRE(!statuses.empty());
  CHECK(std::regex_search(statuses.back(), std::regex("^STATUS=backlog [0-9]+ records")));
  // READY=1 comes once the buffer holds what the input appended: the status file exists.
  CHECK(std::filesystem::exists(dir / "buffer.db-status.json"));

  auto code = agent.Terminate();
  REQUIRE(code.has_value());
  CHECK(*code == 0);
  CHECK(rig::WaitFor([&] { return sock.Count("STOPPING=1") == 1; }, 5s));
}

TEST_CASE("watchdog: WATCHDOG=1 stops while the forwarder loop hangs and resumes after") {
  auto kafka = rig::KafkaCluster::Shared();
  rig::TempDir dir("edgeferry-watchdog");
  std::string topic = rig::UniqueName("watchdog");
  kafka->CreateTopic(topic);
  auto config = WriteConfig(dir, SimulatedConfig(dir, kafka->bootstrap(), "wd-dev", topic, 20, 1));
  NotifySocket sock(dir / "notify.sock");
  // WatchdogSec=2s: the forwarder may stand still for max(1 s, 2 s) before it counts as hung.
  Daemon agent(dir, config,
               {{"NOTIFY_SOCKET", sock.path().string()},
                {"WATCHDOG_USEC", "2000000"},
                {"EDGEFERRY_TEST_FAULTS", "1"}});
  REQUIRE_MESSAGE(rig::WaitFor([&] { return sock.Count("WATCHDOG=1") >= 3; }, 30s), agent.Log());

  agent.process().Signal(SIGUSR2);  // test hook: the forwarder's reads from the buffer block
  auto hung_at = std::chrono::steady_clock::now();
  // Healthy, the agent pets every 500 ms; hung, it must go quiet. Wait for 3 s of silence.
  bool silent = rig::WaitFor(
      [&] {
        auto last = sock.Last("WATCHDOG=1");
        return last && std::chrono::steady_clock::now() - *last > 3s;
      },
      30s);
  REQUIRE_MESSAGE(silent, agent.Log());
  auto last_pet = *sock.Last("WATCHDOG=1");
  // The last pet came within the forwarder's allowance (2 s) plus a tick after the hang.
  CHECK(last_pet - hung_at < 3s);

  // `status` names the stalled loop.
  auto st = RunEdgeferry({"status", "-c", config.string(), "--json"});
  CHECK(st.exit_code == 0);
  json doc = json::parse(st.out);
  CHECK(doc["watchdog"]["stalled"] == json::array({"forwarder"}));

  size_t before = sock.Count("WATCHDOG=1");
  agent.process().Signal(SIGUSR2);  // released: pets resume
  REQUIRE(rig::WaitFor([&] { return sock.Count("WATCHDOG=1") >= before + 2; }, 30s));
  auto code = agent.Terminate();
  REQUIRE(code.has_value());
  CHECK_MESSAGE(*code == 0, agent.Log());
}

TEST_CASE("status: shows the running daemon's backlog, deliveries and input counters") {
  auto kafka = rig::KafkaCluster::Shared();
  rig::TempDir dir("edgeferry-status");
  std::string topic = rig::UniqueName("status");
  kafka->CreateTopic(topic);
  json cfg = SimulatedConfig(dir, kafka->bootstrap(), "status-dev", topic, 50, 1);
  // A second input whose broker is not there: it keeps retrying, the agent runs on.
  cfg["inputs"].push_back({{"name", "plant"},
                           {"type", "mqtt"},
                           {"uris", {"tcp://127.0.0.1:" + std::to_string(rig::FreeLoopbackPort())}},
                           {"subscriptions", {{{"filter", "plant/#"}}}}});
  auto config = WriteConfig(dir, cfg);

  Daemon agent(dir, config);
  REQUIRE_MESSAGE(kafka->ReadAll(topic, 50, 60s).size() >= 50, agent.Log());
  json doc;
  // The status file is refreshed every second: wait until it reports deliveries.
  REQUIRE(rig::WaitFor(
      [&] {
        auto r = RunEdgeferry({"status", "-c", config.string(), "--json"});
        if (r.exit_code != 0) return false;
        doc = json::parse(r.out);
        return doc["kafka"]["delivered_records"].get<uint64_t>() >= 50;
      },
      30s));
  CHECK(doc["daemon"]["running"] == true);
  CHECK(doc["daemon"]["pid"] == agent.process().pid());
  CHECK(doc["daemon"]["device_id"] == "status-dev");
  CHECK(doc["buffer"]["last_seq"].get<uint64_t>() >= 50);
  CHECK(doc["buffer"]["cursors"]["kafka"]["seq"].get<uint64_t>() > 0);
  CHECK(doc["buffer"].contains("oldest_undelivered_age_ms"));
  CHECK(doc["buffer"]["drops"].is_object());
  CHECK(doc["buffer"]["dead_letters"].is_object());
  CHECK(doc["kafka"]["last_delivery_unix_ms"].get<int64_t>() > 0);
  // Latency figures: a delivered record has a latency, and max bounds last and mean.
  CHECK(doc["kafka"]["max_delivery_latency_ms"].get<int64_t>() >=
        doc["kafka"]["last_delivery_latency_ms"].get<int64_t>());
  CHECK(doc["kafka"]["max_delivery_latency_ms"].get<int64_t>() >=
        doc["kafka"]["mean_delivery_latency_ms"].get<int64_t>());
  CHECK(doc["kafka"]["uncommitted_records"].get<uint64_t>() <=
        doc["buffer"]["last_seq"].get<uint64_t>());
  REQUIRE(doc["inputs"].size() == 2);
  CHECK(doc["inputs"][1]["name"] == "plant");
  CHECK(doc["inputs"][1]["state"] != "connected");
  CHECK(doc["inputs"][1]["accepted"] == 0);
  CHECK(doc["inputs"][0]["name"] == "sim");
  CHECK(doc["inputs"][0]["state"] == "running");
  CHECK(doc["inputs"][0]["accepted"].get<uint64_t>() >= 50);

  auto text = RunEdgeferry({"status", "-c", config.string()});
  CHECK(text.exit_code == 0);
  CHECK(text.out.find("running, pid " + std::to_string(agent.process().pid())) !=
        std::string::npos);
  CHECK(text.out.find("backlog") != std::string::npos);
  CHECK(text.out.find("last delivery") != std::string::npos);
  CHECK(std::regex_search(text.out, std::regex("latency +last [^,]+, mean [^,]+, max ")));
  CHECK(std::regex_search(text.out, std::regex("sim +simulated +running +received [0-9]+")));

  // dead-letters list goes through the daemon (it alone writes the buffer): none here.
  auto dl = RunEdgeferry({"dead-letters", "list", "-c", config.string(), "--json"});
  CHECK_MESSAGE(dl.exit_code == 0, dl.err);
  CHECK(json::parse(dl.out) == json::array());

  REQUIRE(agent.Terminate() == std::optional<int>(0));
  // Stopped: status still reads the buffer, and says the agent is not running (exit 3).
  auto after = RunEdgeferry({"status", "-c", config.string(), "--json"});
  CHECK(after.exit_code == 3);
  json stopped = json::parse(after.out);
  CHECK(stopped["daemon"]["running"] == false);
  CHECK(stopped["buffer"]["last_seq"] == stopped["buffer"]["cursors"]["kafka"]["seq"]);
}

TEST_CASE("SIGHUP: a good config switches inputs and topic without losing a record") {
  auto kafka = rig::KafkaCluster::Shared();
  rig::TempDir dir("edgeferry-reload");
  std::string topic1 = rig::UniqueName("reload1");
  std::string topic2 = rig::UniqueName("reload2");
  kafka->CreateTopic(topic1);
  kafka->CreateTopic(topic2);
  json cfg = SimulatedConfig(dir, kafka->bootstrap(), "reload-dev", topic1, 50, 1);
  auto config = WriteConfig(dir, cfg);
  NotifySocket sock(dir / "notify.sock");
  Daemon agent(dir, config, {{"NOTIFY_SOCKET", sock.path().string()}});
  REQUIRE_MESSAGE(kafka->ReadAll(topic1, 50, 60s).size() >= 50, agent.Log());

  // Same buffer; the input is renamed, writes to another topic at another rate.
  cfg["inputs"][0]["name"] = "sim2";
  cfg["inputs"][0]["topic"] = topic2;
  cfg["inputs"][0]["rate_hz"] = 100;
  // A buffer setting changes too: not applied (the buffer stays open), reported as needing a
  // restart.
  cfg["buffer"]["max_bytes"] = 64 << 20;
  WriteConfig(dir, cfg);
  agent.process().Signal(SIGHUP);
  REQUIRE_MESSAGE(kafka->ReadAll(topic2, 100, 60s).size() >= 100, agent.Log());
  CHECK(rig::WaitFor([&] { return sock.Count("READY=1") == 2; }, 5s));
  CHECK(sock.Count("RELOADING=1") == 1);
  json doc;
  REQUIRE(rig::WaitFor(
      [&] {
        auto r = RunEdgeferry({"status", "-c", config.string(), "--json"});
        if (r.exit_code != 0) return false;
        doc = json::parse(r.out);
        return doc["daemon"]["reloads"] == 1;
      },
      30s));
  CHECK(doc["daemon"]["restart_needed"] == true);
  CHECK(doc["daemon"]["last_reload_errors"].empty());
  REQUIRE(doc["inputs"].size() == 1);
  CHECK(doc["inputs"][0]["name"] == "sim2");

  REQUIRE(agent.Terminate() == std::optional<int>(0));
  BufferState buf = ReadBuffer((dir / "buffer.db").string());
  CHECK(buf.cursor == buf.last_seq);
  auto r1 = kafka->ReadAll(topic1, 0, 5s);
  auto r2 = kafka->ReadAll(topic2, buf.last_seq - r1.size(), 60s);
  // Every seq went to exactly one of the topics: the old input's to topic1, the new one's to
  // topic2, nothing lost or doubled around the reload.
  auto s1 = SeqsOf(r1);
  auto s2 = SeqsOf(r2);
  CHECK(s1.size() == r1.size());
  CHECK(s2.size() == r2.size());
  CHECK(r1.size() + r2.size() == buf.last_seq);
  CHECK(*s1.rbegin() < *s2.begin());
  for (const auto& r : r2) CHECK(HeaderValue(r, forwarder::kHeaderSource) == std::string("sim2"));
}

TEST_CASE("SIGHUP: a bad config is rejected, the running one stays") {
  auto kafka = rig::KafkaCluster::Shared();
  rig::TempDir dir("edgeferry-reload-bad");
  std::string topic = rig::UniqueName("reloadbad");
  kafka->CreateTopic(topic);
  json cfg = SimulatedConfig(dir, kafka->bootstrap(), "reload-bad", topic, 50, 1);
  auto config = WriteConfig(dir, cfg);
  Daemon agent(dir, config);
  REQUIRE_MESSAGE(kafka->ReadAll(topic, 20, 60s).size() >= 20, agent.Log());

  json bad = cfg;
  bad["inputs"][0]["rate_hzz"] = 5;  // unknown key
  bad["kafka"]["brokers"] = json::array();
  WriteConfig(dir, bad);
  agent.process().Signal(SIGHUP);
  // `status` says why (the config's own messages, with the JSON path), and readings keep coming.
  json doc;
  REQUIRE_MESSAGE(
      rig::WaitFor(
          [&] {
            // The config file is broken now: point status at the buffer directly.
            auto r = RunEdgeferry({"status", "--buffer", (dir / "buffer.db").string(), "--json"});
            if (r.exit_code != 0) return false;
            doc = json::parse(r.out);
            return doc["daemon"]["reloads"] == 1;
          },
          30s),
      agent.Log());
  std::vector<std::string> errors = doc["daemon"]["last_reload_errors"];
  REQUIRE(errors.size() >= 2);
  bool names_input = false, names_brokers = false;
  for (const auto& e : errors) {
    names_input |= e.rfind("/inputs/0/rate_hzz: ", 0) == 0;
    names_brokers |= e.rfind("/kafka/brokers: ", 0) == 0;
  }
  CHECK_MESSAGE(names_input, doc.dump());
  CHECK_MESSAGE(names_brokers, doc.dump());
  size_t before = kafka->ReadAll(topic, 0, 1s).size();
  REQUIRE_MESSAGE(kafka->ReadAll(topic, before + 50, 60s).size() >= before + 50, agent.Log());
  CHECK(agent.process().running());
  REQUIRE(agent.Terminate() == std::optional<int>(0));
}

std::string Scrape(int port, const std::string& path = "/metrics") {
  httplib::Client client("127.0.0.1", port);
  client.set_connection_timeout(2);
  auto res = client.Get(path.c_str());
  if (!res || res->status != 200) return "";
  return res->body;
}

// Value of the first sample line matching `series` (name plus labels, exactly), or -1.
double Sample(const std::string& text, const std::string& series) {
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.compare(0, series.size() + 1, series + " ") == 0)
      return std::stod(line.substr(series.size() + 1));
  }
  return -1;
}

// A config whose buffer fills at once and, with Kafka unreachable, stays full: when_full=block
// waiting for ever. "Kafka down" is a closed loopback port.
json FullBlockingConfig(const rig::TempDir& dir, const std::string& device) {
  std::string closed = "127.0.0.1:" + std::to_string(rig::FreeLoopbackPort());
  json cfg = SimulatedConfig(dir, closed, device, "never-delivered", 2000, 4);
  cfg["buffer"]["max_bytes"] = 1 << 20;  // the smallest allowed
  cfg["buffer"]["when_full"] = "block";
  cfg["buffer"]["block_timeout_ms"] = 0;
  cfg["kafka"]["shutdown_grace_ms"] = 2000;
  return cfg;
}

// Waits until the buffer writer has reported that appenders wait, and returns the buffer's
// state then (read-only, while the daemon runs).
BufferState WaitUntilFull(Daemon& agent, const rig::TempDir& dir) {
  REQUIRE_MESSAGE(
      rig::WaitFor(
          [&] { return agent.Log().find("appenders wait (when_full=block)") != std::string::npos; },
          60s),
      agent.Log());
  BufferState full = ReadBuffer((dir / "buffer.db").string());
  REQUIRE(full.last_seq > 1000);
  return full;
}

// After the daemon stopped: everything it accepted is still held, nothing was dropped.
void CheckNothingLost(const rig::TempDir& dir, const BufferState& full) {
  auto stats = buffer::ReadStats((dir / "buffer.db").string());
  REQUIRE_MESSAGE(stats.ok(), stats.status().ToString());
  CHECK(stats->last_seq >= full.last_seq);
  CHECK(stats->records == stats->last_seq);  // nothing delivered, nothing trimmed
  CHECK(stats->appended_total == stats->last_seq);
  CHECK(stats->drops.empty());
  CHECK(stats->first_seq == 1);
}

TEST_CASE(
    "SIGTERM with a full buffer in block mode (no timeout) and Kafka down: exits 0 promptly") {
  rig::TempDir dir("edgeferry-fullstop");
  auto config = WriteConfig(dir, FullBlockingConfig(dir, "fullstop-dev"));
  Daemon agent(dir, config);
  BufferState full = WaitUntilFull(agent, dir);

  auto t0 = std::chrono::steady_clock::now();
  auto code = agent.Terminate(30s);
  auto took = std::chrono::steady_clock::now() - t0;
  REQUIRE_MESSAGE(code.has_value(), "SIGTERM did not stop the agent\n" << agent.Log());
  CHECK(*code == 0);
  // The grace period (2 s: the forwarder's drain, Kafka being down) plus a margin.
  CHECK_MESSAGE(took < 2s + 8s, agent.Log());
  CHECK(agent.Log().find("stopped: cursor 0") != std::string::npos);
  CheckNothingLost(dir, full);
}

TEST_CASE("SIGHUP with a full buffer in block mode and Kafka down: the reload does not wait") {
  rig::TempDir dir("edgeferry-fullreload");
  json cfg = FullBlockingConfig(dir, "fullreload-dev");
  auto config = WriteConfig(dir, cfg);
  Daemon agent(dir, config);
  BufferState full = WaitUntilFull(agent, dir);

  // The input is blocked in Append for as long as Kafka stays down; the reload cancels that
  // append (it stored nothing) instead of waiting for space.
  cfg["inputs"][0]["rate_hz"] = 1;
  WriteConfig(dir, cfg);
  auto t0 = std::chrono::steady_clock::now();
  agent.process().Signal(SIGHUP);
  REQUIRE_MESSAGE(
      rig::WaitFor([&] { return agent.Log().find("reload done") != std::string::npos; }, 30s),
      agent.Log());
  // The old pipeline's grace period (2 s, Kafka being down) plus a margin.
  CHECK_MESSAGE(std::chrono::steady_clock::now() - t0 < 2s + 8s, agent.Log());
  CHECK(agent.process().running());

  // A reload and a stop back to back: whichever way they interleave, exit 0 promptly.
  agent.process().Signal(SIGHUP);
  t0 = std::chrono::steady_clock::now();
  auto code = agent.Terminate(30s);
  auto took = std::chrono::steady_clock::now() - t0;
  REQUIRE_MESSAGE(code.has_value(), "SIGTERM did not stop the agent\n" << agent.Log());
  CHECK(*code == 0);
  CHECK_MESSAGE(took < 2 * (2s + 8s), agent.Log());
  CheckNothingLost(dir, full);
}

TEST_CASE("SIGTERM with an MQTT message blocked on a full buffer: not acknowledged, redelivered") {
  rig::Mosquitto mosq;
  rig::TempDir dir("edgeferry-fullmqtt");
  json cfg = FullBlockingConfig(dir, "fullmqtt-dev");
  const std::string client_id = rig::UniqueName("ef-fullmqtt");
  cfg["inputs"].push_back({{"name", "plant"},
                           {"type", "mqtt"},
                           {"topic", "never-delivered"},
                           {"client_id", client_id},
                           {"uris", {mosq.uri()}},
                           {"subscriptions", {{{"filter", "plant/#"}, {"qos", 1}}}}});
  auto config = WriteConfig(dir, cfg);
  // Random bytes: the buffer compresses its rows, and a compressible payload would fit after all.
  std::string payload = "held-message:";
  std::mt19937_64 rng(20261123);
  while (payload.size() < (400u << 10)) {
    uint64_t v = rng();
    payload.append(reinterpret_cast<const char*>(&v), sizeof v);
  }
  BufferState full;
  {
    Daemon agent(dir, config);
    REQUIRE_MESSAGE(mosq.WaitSubscribed(client_id, "plant/#"), agent.Log());
    full = WaitUntilFull(agent, dir);
    // Larger than the room left, so that it cannot be stored even alone (a small message would
    // fit once the cancelled sensor batch is out of its way, and be stored and acknowledged).
    {
      std::ofstream f(dir / "payload");
      f << payload;
    }
    rig::Process pub({"mosquitto_pub", "-h", "127.0.0.1", "-p", std::to_string(mosq.port()), "-q",
                      "1", "-t", "plant/line1", "-f", (dir / "payload").string()});
    REQUIRE(pub.Wait(10s) == std::optional<int>(0));
    // The message reached the input (its callback is now waiting in Append).
    std::string last_status;
    REQUIRE_MESSAGE(rig::WaitFor(
                        [&] {
                          auto r = RunEdgeferry({"status", "-c", config.string(), "--json"});
                          last_status = r.out + r.err;
                          if (r.exit_code != 0) return false;
                          json doc = json::parse(r.out);
                          for (const auto& in : doc["inputs"])
                            if (in["name"] == "plant") return in["received"] == 1;
                          return false;
                        },
                        30s),
                    last_status << "\n"
                                << agent.Log());
    auto t0 = std::chrono::steady_clock::now();
    auto code = agent.Terminate(30s);
    auto took = std::chrono::steady_clock::now() - t0;
    REQUIRE_MESSAGE(code.has_value(), "SIGTERM did not stop the agent\n" << agent.Log());
    CHECK_MESSAGE(*code == 0, agent.Log());
    CHECK_MESSAGE(took < 2s + 8s, agent.Log());
    CHECK_MESSAGE(agent.Log().find("stays unacknowledged at the broker") != std::string::npos,
                  agent.Log());
  }
  CheckNothingLost(dir, full);

  // Restart with room (a larger max_bytes applies at start) and only the MQTT input: the broker
  // redelivers the unacknowledged message from the persistent session, and it is stored once.
  cfg["buffer"]["max_bytes"] = 16 << 20;
  cfg["inputs"].erase(0);
  WriteConfig(dir, cfg);
  uint64_t before = ReadBuffer((dir / "buffer.db").string()).last_seq;
  {
    Daemon agent(dir, config);
    REQUIRE_MESSAGE(rig::WaitFor(
                        [&] {
                          auto r = RunEdgeferry({"status", "-c", config.string(), "--json"});
                          if (r.exit_code != 0) return false;
                          return json::parse(r.out)["buffer"]["last_seq"].get<uint64_t>() > before;
                        },
                        30s),
                    agent.Log());
    REQUIRE(agent.Terminate(30s) == std::optional<int>(0));
  }
  config::BufferConfig bc;
  bc.path = (dir / "buffer.db").string();
  bc.max_bytes = 16 << 20;
  auto buf = buffer::Buffer::Open(bc);
  REQUIRE_MESSAGE(buf.ok(), buf.status().ToString());
  auto got = (*buf)->ReadAfter(before, SIZE_MAX, SIZE_MAX);
  REQUIRE(got.ok());
  REQUIRE(got->size() == 1);
  CHECK(got->front().record.payload == payload);
  CHECK(got->front().record.source == "plant");
}

TEST_CASE("metrics: the endpoint serves the expected series and a real Prometheus scrapes them") {
  auto kafka = rig::KafkaCluster::Shared();
  rig::TempDir dir("edgeferry-metrics");
  std::string topic = rig::UniqueName("metrics");
  kafka->CreateTopic(topic);
  int port = rig::FreeLoopbackPort();
  json cfg = SimulatedConfig(dir, kafka->bootstrap(), "metrics-dev", topic, 50, 1);
  cfg["metrics"] = {{"enabled", true}, {"listen", "127.0.0.1:" + std::to_string(port)}};
  auto config = WriteConfig(dir, cfg);
  Daemon agent(dir, config);

  std::string text;
  REQUIRE_MESSAGE(rig::WaitFor(
                      [&] {
                        text = Scrape(port);
                        return Sample(text, "edgeferry_kafka_delivered_records_total") >= 20;
                      },
                      60s),
                  agent.Log());
  CHECK(Sample(text, "edgeferry_input_readings_received_total{input=\"sim\"}") >= 20);
  CHECK(Sample(text, "edgeferry_input_readings_accepted_total{input=\"sim\"}") >= 20);
  CHECK(Sample(text, "edgeferry_input_up{input=\"sim\",type=\"simulated\"}") == 1);
  CHECK(Sample(text, "edgeferry_buffer_records") >= 0);
  CHECK(Sample(text, "edgeferry_buffer_oldest_undelivered_age_seconds") >= 0);
  CHECK(Sample(text, "edgeferry_buffer_max_bytes") > 0);
  CHECK(Sample(text, "edgeferry_kafka_last_delivery_timestamp_seconds") > 1e9);
  CHECK(Sample(text, "edgeferry_watchdog_healthy") == 1);
  CHECK(text.find("# TYPE edgeferry_kafka_errors_total counter") != std::string::npos);
  CHECK(text.find("# TYPE edgeferry_buffer_dropped_records_total counter") != std::string::npos);

  // Threads by name (top -H, ps -L): the HTTP server keeps two workers beside its listener, not
  // httplib's default of max(8, cores - 1).
  std::map<std::string, int> threads;
  for (const auto& t : std::filesystem::directory_iterator(
           "/proc/" + std::to_string(agent.process().pid()) + "/task")) {
    std::string name = rig::ReadFile(t.path() / "comm");
    while (!name.empty() && name.back() == '\n') name.pop_back();
    ++threads[name];
  }
  CHECK(threads["ef-metrics"] == 3);
  CHECK(threads["ef-sensor-timer"] == 1);
  CHECK(threads["ef-sensor"] >= 1);
  CHECK(threads["ef-buffer"] == 1);
  CHECK(threads["ef-forwarder"] == 1);
  CHECK(threads["ef-commit"] == 1);
  CHECK(threads["ef-reader"] == 1);

  // A real Prometheus (Debian's package) scraping the endpoint on loopback every second.
  int prom_port = rig::FreeLoopbackPort();
  std::ofstream(dir / "prometheus.yml")
      << "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
      << "scrape_configs:\n  - job_name: edgeferry\n    static_configs:\n"
      << "      - targets: ['127.0.0.1:" << port << "']\n";
  rig::Process::Options po;
  po.stdout_path = dir / "prometheus.log";
  rig::Process prometheus({"prometheus", "--config.file=" + (dir / "prometheus.yml").string(),
                           "--storage.tsdb.path=" + (dir / "prom-data").string(),
                           "--web.listen-address=127.0.0.1:" + std::to_string(prom_port)},
                          po);
  httplib::Client prom("127.0.0.1", prom_port);
  auto query = [&](const std::string& q) -> json {
    auto res = prom.Get(("/api/v1/query?query=" + httplib::detail::encode_query_param(q)).c_str());
    if (!res || res->status != 200) return json();
    return json::parse(res->body, nullptr, false);
  };
  json result;
  bool scraped = rig::WaitFor(
      [&] {
        result = query("edgeferry_kafka_delivered_records_total");
        return result.is_object() && result["status"] == "success" &&
               !result["data"]["result"].empty();
      },
      60s);
  REQUIRE_MESSAGE(scraped, rig::LogTail(dir / "prometheus.log"));
  CHECK(std::stod(result["data"]["result"][0]["value"][1].get<std::string>()) >= 20);
  json up = query("up{job=\"edgeferry\"}");
  REQUIRE(!up["data"]["result"].empty());
  CHECK(up["data"]["result"][0]["value"][1] == "1");
  json inputs = query("edgeferry_input_readings_accepted_total");
  REQUIRE(!inputs["data"]["result"].empty());
  CHECK(inputs["data"]["result"][0]["metric"]["input"] == "sim");

  prometheus.Signal(SIGTERM);
  prometheus.Wait(30s);
  REQUIRE(agent.Terminate() == std::optional<int>(0));
}

}  // namespace
}  // namespace edgeferry::agent_test
