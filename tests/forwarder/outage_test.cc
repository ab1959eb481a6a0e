// The agent (`edgeferry run`) against a real Kafka 4.1 through the outages that a stopped broker
// does not show: the broker's host name does not resolve, the password is wrong, the topic does
// not exist. In each, a backlog written into the agent's buffer beforehand must wait in the
// buffer (cursor still 0, nothing dead-lettered), the cause must be logged once rather than once
// per retry, and after the fault is repaired every record must arrive with its contents, key and
// per-key order.
//
// DNS: the agent runs in a mount namespace of the test's own (unshare(1)) with its own
// /etc/hosts, /etc/resolv.conf (a loopback nameserver nobody answers on) and /etc/nsswitch.conf
// bind-mounted from temp files; the machine's files are never touched. The test repairs DNS by
// rewriting its hosts file in place (same inode, so the bind mount sees it).
#include <doctest/doctest.h>
#include <signal.h>
#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "buffer/buffer.h"
#include "forwarder/forwarder.h"
#include "tests/forwarder/readback.h"
#include "tests/forwarder/test_util.h"
#include "tests/rig/rig.h"

namespace edgeferry::forwarder {
namespace {

using namespace std::chrono_literals;

constexpr uint64_t kBacklog = 4000;
constexpr int kInputs = 4;
constexpr const char* kDevice = "outage-gw";

std::string PayloadOf(uint64_t seq) {
  return "{\"n\":" + std::to_string(seq) + ",\"pad\":\"" + std::string(40, 'x') + "\"}";
}

// One agent with its own buffer, config and log in a temp dir. The buffer is filled before the
// first start with records 1..kBacklog from inputs sim0..sim3 (no live input), so the exact set
// that must arrive is known.
class AgentBed {
 public:
  AgentBed() {
    config::BufferConfig bc;
    bc.path = db_;
    auto b = buffer::Buffer::Open(bc);
    REQUIRE_MESSAGE(b.ok(), b.status().ToString());
    std::vector<Record> rs;
    for (uint64_t seq = 1; seq <= kBacklog; ++seq) {
      Record r;
      r.source = "sim" + std::to_string(seq % kInputs);
      r.event_time_ms = 1'700'000'000'000 + static_cast<int64_t>(seq);
      r.payload = PayloadOf(seq);
      r.headers.push_back({"unit", "C"});
      rs.push_back(std::move(r));
    }
    REQUIRE(b.value()->Append(std::move(rs)).ok());
    REQUIRE(b.value()->LastSeq() == kBacklog);
  }

  // Writes the agent's config: `brokers`, `topic`, short timeouts so that a fault goes through
  // several failed rounds within seconds, and `properties` passed through to librdkafka.
  void WriteConfig(const std::string& brokers, const std::string& topic,
                   const std::map<std::string, std::string>& properties = {}) {
    nlohmann::json kafka = {{"brokers", nlohmann::json::array({brokers})},
                            {"topic_template", topic},
                            {"linger_ms", 5},
                            {"message_timeout_ms", 2000},
                            {"backoff_initial_ms", 200},
                            {"backoff_max_ms", 500},
                            {"cursor_commit_interval_ms", 100}};
    if (!properties.empty()) kafka["properties"] = properties;
    nlohmann::json cfg = {
        {"device_id", kDevice},
        {"buffer", {{"path", db_}, {"sync", "full"}}},
        {"kafka", kafka},
        {"inputs",
         nlohmann::json::array({{{"name", "sim"}, {"type", "simulated"}, {"enabled", false}}})}};
    // Written in place: a reload reads the new contents from the same path.
    std::ofstream f(cfg_path_, std::ios::trunc);
    f << cfg.dump(2) << "\n";
    f.close();
    REQUIRE(f.good());
  }

  // `prefix` runs before the agent's own command (e.g. a namespace wrapper).
  rig::Process Start(std::vector<std::string> prefix = {}) {
    std::vector<std::string> argv = std::move(prefix);
    for (auto& a : rig::EdgeferryCommand()) argv.push_back(a);
    argv.insert(argv.end(), {"run", "-c", cfg_path_});
    rig::ProcessOptions po;
    po.stdout_path = log_;
    po.env["RUNTIME_DIRECTORY"] = std::nullopt;  // status file next to the buffer
    return rig::Process(argv, po);
  }

  uint64_t Cursor() const {
    auto st = buffer::ReadStats(db_);
    if (!st.ok()) return 0;
    auto it = st->cursors.find(std::string(kCursorName));
    return it == st->cursors.end() ? 0 : it->second.seq;
  }
  uint64_t DeadLetters() const {
    auto st = buffer::ReadStats(db_);
    REQUIRE(st.ok());
    uint64_t n = 0;
    for (const auto& [reason, count] : st->dead_letters) n += count;
    return n;
  }
  // The forwarder's stats from the status file the agent rewrites every second ({} if none).
  nlohmann::json KafkaStatus() const {
    std::string s = rig::ReadFile(db_ + "-status.json");
    auto j = nlohmann::json::parse(s, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.contains("kafka")) return nlohmann::json::object();
    return j["kafka"];
  }
  uint64_t ProducerRestarts() const {
    return KafkaStatus().value("producer_restarts", uint64_t{0});
  }

  // Lines of the agent's log that contain `needle`.
  size_t LogCount(const std::string& needle) const {
    std::istringstream in(rig::ReadFile(log_));
    size_t n = 0;
    for (std::string line; std::getline(in, line);) n += line.find(needle) != std::string::npos;
    return n;
  }
  std::string LogTail() const { return rig::LogTail(log_, 60); }

  // The agent has gone through several failed rounds: the forwarder recreated its producer,
  // which it does after 5 rounds in a row without a single delivery.
  void WaitSeveralFailedRounds(rig::Process& agent) {
    bool ok = rig::WaitFor([&] { return ProducerRestarts() >= 1 || !agent.running(); }, 90s);
    INFO("agent log:\n" << LogTail());
    REQUIRE(agent.running());
    REQUIRE(ok);
  }

  // Everything delivered and committed, then a clean stop.
  void WaitDrainedAndStop(rig::Process& agent) {
    bool ok = rig::WaitFor([&] { return Cursor() == kBacklog || !agent.running(); }, 120s);
    INFO("agent log:\n" << LogTail());
    REQUIRE(ok);
    REQUIRE(Cursor() == kBacklog);
    agent.Signal(SIGTERM);
    auto rc = agent.Wait(30s);
    REQUIRE(rc.has_value());
    CHECK(*rc == 0);
  }

  const rig::TempDir& dir() const { return dir_; }

 private:
  rig::TempDir dir_{"edgeferry-fwd-outage"};
  std::string db_ = (dir_ / "buffer.db").string();
  std::string cfg_path_ = (dir_ / "edgeferry.json").string();
  std::filesystem::path log_ = dir_ / "agent.log";
};

// Reads the topic back and checks: every seq 1..kBacklog, nothing else, per-key order, and each
// record's key, payload, timestamp and headers as written.
void CheckArrived(rig::KafkaCluster& kafka, const std::string& topic) {
  std::set<uint64_t> expected;
  for (uint64_t s = 1; s <= kBacklog; ++s) expected.insert(s);
  std::vector<testing::Consumed> got = testing::ReadBack(kafka, topic, kBacklog);
  auto check = testing::CheckDelivery(got, expected);
  INFO("read " << check.total << ", unique " << check.unique << ", missing " << check.missing.size()
               << ", unexpected " << check.unexpected.size() << ", order: " << check.order_error);
  CHECK(check.missing.empty());
  CHECK(check.unexpected.empty());
  CHECK(check.order_error.empty());
  MESSAGE("read " << check.total << " records, duplicates " << check.duplicates);
  size_t bad = 0;
  for (const auto& c : got) {
    uint64_t seq = std::stoull(testing::HeaderValue(c, kHeaderSeq).value_or("0"));
    std::string input = "sim" + std::to_string(seq % kInputs);
    bool ok = c.key == std::string(kDevice) + "." + input && c.value == PayloadOf(seq) &&
              c.timestamp_ms == 1'700'000'000'000 + static_cast<int64_t>(seq) &&
              testing::HeaderValue(c, kHeaderDevice) == kDevice &&
              testing::HeaderValue(c, kHeaderSource) == input &&
              testing::HeaderValue(c, "unit") == "C";
    if (!ok && bad++ == 0) FAIL_CHECK("seq " << seq << " arrived with wrong contents");
  }
  CHECK(bad == 0);
}

// The cause was logged, and once per minute at most (the forwarder's rate limit), not once per
// retry: `seconds` is how long the fault lasted.
void CheckLoggedOnce(const AgentBed& bed, const std::string& needle, double seconds) {
  size_t n = bed.LogCount(needle);
  INFO("\"" << needle << "\" in " << n << " lines over " << seconds << " s; agent log:\n"
            << bed.LogTail());
  CHECK(n >= 1);
  CHECK(n <= 1 + static_cast<size_t>(seconds / 60));
}

double SecondsSince(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

void WriteFile(const std::filesystem::path& p, const std::string& text) {
  std::ofstream f(p, std::ios::trunc);  // in place: the bind mount keeps pointing at this inode
  f << text;
  f.close();
  REQUIRE(f.good());
}

TEST_CASE("outage: the broker's host name does not resolve, then does: buffered, then all arrive") {
  auto kafka = rig::KafkaCluster::Shared();
  std::string topic = rig::UniqueName("fwd-dns");
  kafka->CreateTopic(topic, 3);
  // The agent bootstraps through a name; the broker's metadata then advertises 127.0.0.1.
  // ".invalid" never resolves in real DNS (RFC 6761), so a leak to a real resolver cannot mask
  // the fault.
  const std::string name = "kafka.edgeferry.invalid";
  std::string first = kafka->bootstrap().substr(0, kafka->bootstrap().find(','));
  std::string port = first.substr(first.rfind(':') + 1);

  AgentBed bed;
  auto hosts = bed.dir() / "hosts";
  auto resolv = bed.dir() / "resolv.conf";
  auto nss = bed.dir() / "nsswitch.conf";
  const std::string base_hosts = "127.0.0.1 localhost\n::1 localhost\n";
  WriteFile(hosts, base_hosts);
  // Port 53 on loopback: refused at once when nothing listens there.
  WriteFile(resolv, "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n");
  WriteFile(nss, "hosts: files dns\n");
  bed.WriteConfig(name + ":" + port, topic);

  // A mount namespace of its own (as root; otherwise inside a user namespace too) in which the
  // three files are bind-mounted over /etc, then the agent exec'd in place of the shell.
  std::vector<std::string> wrap = {"unshare"};
  if (geteuid() != 0) wrap.insert(wrap.end(), {"--user", "--map-root-user"});
  wrap.insert(wrap.end(), {"--mount", "--propagation", "private", "--", "/bin/sh", "-ec",
                           "mount --bind \"$1\" /etc/hosts; mount --bind \"$2\" /etc/resolv.conf; "
                           "mount --bind \"$3\" /etc/nsswitch.conf; shift 3; exec \"$@\"",
                           "sh", hosts.string(), resolv.string(), nss.string()});
  auto agent = bed.Start(wrap);
  auto fault_start = std::chrono::steady_clock::now();
  bed.WaitSeveralFailedRounds(agent);
  CHECK(bed.Cursor() == 0);
  CHECK(bed.DeadLetters() == 0);
  double fault_s = SecondsSince(fault_start);

  WriteFile(hosts, base_hosts + "127.0.0.1 " + name + "\n");
  bed.WaitDrainedAndStop(agent);
  CHECK(bed.DeadLetters() == 0);
  CheckArrived(*kafka, topic);
  // librdkafka's resolver error, and the expired deliveries it causes.
  CheckLoggedOnce(bed, "_RESOLVE", fault_s);
  CheckLoggedOnce(bed, "delivery failed (_MSG_TIMED_OUT", fault_s);
  CheckLoggedOnce(bed, "producer recreated", fault_s);
}

TEST_CASE("outage: wrong SASL password, fixed by a reload: buffered, then all arrive") {
  auto kafka = rig::KafkaCluster::StartWithSaslPlain(1, {{"edge", "right-password"}});
  std::string topic = rig::UniqueName("fwd-auth");
  kafka->CreateTopic(topic, 3);
  AgentBed bed;
  auto props = [](const std::string& password) {
    return std::map<std::string, std::string>{{"security.protocol", "SASL_PLAINTEXT"},
                                              {"sasl.mechanisms", "PLAIN"},
                                              {"sasl.username", "edge"},
                                              {"sasl.password", password}};
  };
  bed.WriteConfig(kafka->sasl_bootstrap(), topic, props("wrong-password"));
  auto agent = bed.Start();
  auto fault_start = std::chrono::steady_clock::now();
  bed.WaitSeveralFailedRounds(agent);
  CHECK(bed.Cursor() == 0);
  CHECK(bed.DeadLetters() == 0);
  double fault_s = SecondsSince(fault_start);

  bed.WriteConfig(kafka->sasl_bootstrap(), topic, props("right-password"));
  agent.Signal(SIGHUP);
  bed.WaitDrainedAndStop(agent);
  CHECK(bed.DeadLetters() == 0);
  CheckArrived(*kafka, topic);
  CHECK(bed.LogCount("SIGHUP: reloading") == 1);
  CheckLoggedOnce(bed, "_AUTHENTICATION", fault_s);
  CheckLoggedOnce(bed, "delivery failed (_MSG_TIMED_OUT", fault_s);
  // The password is never logged.
  CHECK(bed.LogCount("wrong-password") == 0);
  CHECK(bed.LogCount("right-password") == 0);
}

TEST_CASE("outage: the topic does not exist (no auto-creation) until created: all arrive") {
  auto kafka = rig::KafkaCluster::Start(1, {{"auto.create.topics.enable", "false"}});
  std::string topic = rig::UniqueName("fwd-notopic");
  AgentBed bed;
  bed.WriteConfig(kafka->bootstrap(), topic);
  auto agent = bed.Start();
  auto fault_start = std::chrono::steady_clock::now();
  bed.WaitSeveralFailedRounds(agent);
  CHECK(bed.Cursor() == 0);
  CHECK(bed.DeadLetters() == 0);
  double fault_s = SecondsSince(fault_start);

  kafka->CreateTopic(topic, 3);
  bed.WaitDrainedAndStop(agent);
  CHECK(bed.DeadLetters() == 0);
  CheckArrived(*kafka, topic);
  // librdkafka 2.0.2 only reports the records as timed out; the forwarder names the cause.
  CheckLoggedOnce(bed, "topic \"" + topic + "\" does not exist on the cluster", fault_s);
  CheckLoggedOnce(bed, "delivery failed (_MSG_TIMED_OUT", fault_s);
  CheckLoggedOnce(bed, "producer recreated", fault_s);
}

}  // namespace
}  // namespace edgeferry::forwarder
