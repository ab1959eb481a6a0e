// KafkaCluster: Apache Kafka 4.1 in KRaft combined mode, started with `java` from the jars that
// tests/rig/fetch-kafka resolves from Maven Central; admin, metadata and read-back through
// librdkafka.
#include <librdkafka/rdkafka.h>
#include <pwd.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>
#include <thread>

#include "tests/rig/rig.h"

namespace edgeferry::rig {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

constexpr const char* kKafkaVersion = EDGEFERRY_RIG_KAFKA_VERSION;

// The JVM flags that make a test broker start in a few seconds on a small machine, plus the
// class-data sharing archive that tests/rig/fetch-kafka makes (about 1 s less per JVM start).
// The same flags as the archive was dumped with; the JVM ignores a stale archive (-Xshare:auto).
std::vector<std::string> JvmFlags(const fs::path& jars) {
  std::vector<std::string> flags = {"-Xms256m", "-Xmx512m", "-XX:+UseSerialGC",
                                    "-XX:TieredStopAtLevel=1", "-Xshare:auto"};
  if (fs::exists(jars / "kafka.jsa")) {
    flags.push_back("-XX:SharedArchiveFile=" + (jars / "kafka.jsa").string());
  }
  return flags;
}

struct RdKafkaDeleter {
  void operator()(rd_kafka_t* rk) const { rd_kafka_destroy(rk); }
};
using RdKafkaPtr = std::unique_ptr<rd_kafka_t, RdKafkaDeleter>;
struct MetadataDeleter {
  void operator()(const rd_kafka_metadata_t* md) const { rd_kafka_metadata_destroy(md); }
};
using MetadataPtr = std::unique_ptr<const rd_kafka_metadata_t, MetadataDeleter>;
struct QueueDeleter {
  void operator()(rd_kafka_queue_t* q) const { rd_kafka_queue_destroy(q); }
};
struct EventDeleter {
  void operator()(rd_kafka_event_t* e) const { rd_kafka_event_destroy(e); }
};

// The rig's own clients stay quiet: a broker that a test killed on purpose is not news.
void QuietLog(const rd_kafka_t*, int, const char*, const char*) {}

RdKafkaPtr NewClient(rd_kafka_type_t type, const std::string& bootstrap,
                     const std::map<std::string, std::string>& extra = {}) {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  char err[512];
  std::map<std::string, std::string> props = {{"bootstrap.servers", bootstrap},
                                              {"socket.timeout.ms", "5000"},
                                              {"reconnect.backoff.ms", "50"},
                                              {"reconnect.backoff.max.ms", "500"},
                                              {"topic.metadata.refresh.interval.ms", "1000"}};
  for (const auto& [k, v] : extra) props[k] = v;
  for (const auto& [k, v] : props) {
    if (rd_kafka_conf_set(conf, k.c_str(), v.c_str(), err, sizeof(err)) != RD_KAFKA_CONF_OK) {
      rd_kafka_conf_destroy(conf);
      throw RigError("librdkafka config " + k + "=" + v + ": " + err);
    }
  }
  rd_kafka_conf_set_log_cb(conf, QuietLog);
  rd_kafka_t* rk = rd_kafka_new(type, conf, err, sizeof(err));  // owns conf on success
  if (rk == nullptr) {
    rd_kafka_conf_destroy(conf);
    throw RigError(std::string("rd_kafka_new: ") + err);
  }
  return RdKafkaPtr(rk);
}

MetadataPtr Metadata(rd_kafka_t* rk, const std::string& topic, int timeout_ms) {
  const rd_kafka_metadata_t* md = nullptr;
  rd_kafka_topic_t* rkt = nullptr;
  if (!topic.empty()) rkt = rd_kafka_topic_new(rk, topic.c_str(), nullptr);
  rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, rkt, &md, timeout_ms);
  if (rkt != nullptr) rd_kafka_topic_destroy(rkt);
  if (e != RD_KAFKA_RESP_ERR_NO_ERROR) return nullptr;
  return MetadataPtr(md);
}

// Kafka cluster ids are 16 random bytes in unpadded base64url (what StorageTool random-uuid
// prints); generating it here saves a JVM start. An id that starts with '-' is drawn again:
// StorageTool's argument parser takes it for an option ("--cluster-id: expected one argument"),
// which failed one cluster start in 64.
std::string RandomClusterId() {
  static const char* kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::random_device rd;
  std::string out;
  do {
    unsigned char b[18] = {};
    for (int i = 0; i < 16; ++i) b[i] = static_cast<unsigned char>(rd());
    out.clear();
    for (int i = 0; i < 18; i += 3) {
      uint32_t v = (b[i] << 16) | (b[i + 1] << 8) | b[i + 2];
      for (int k = 3; k >= 0; --k) out += kAlphabet[(v >> (6 * k)) & 63];
    }
    out.resize(22);
  } while (out.front() == '-');
  return out;
}

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? std::string() : std::string(v);
}

// `java <flags> -Dlog4j2... -Dkafka.logs.dir=<log_dir> -cp <jars>/* <main> <args...>`
std::vector<std::string> JavaCommand(const fs::path& log_dir, const std::string& main_class,
                                     const std::vector<std::string>& args) {
  const fs::path jars = KafkaJars();
  std::vector<std::string> argv = {"java"};
  for (auto& f : JvmFlags(jars)) argv.push_back(f);
  argv.push_back("-Dlog4j2.configurationFile=" +
                 (SourceDir() / "tests/rig/kafka/log4j2.xml").string());
  argv.push_back("-Dkafka.logs.dir=" + log_dir.string());
  argv.push_back("-cp");
  argv.push_back((jars / "*").string());
  argv.push_back(main_class);
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

// Reachable: a metadata request answered within the timeout.
bool Reachable(const std::string& bootstrap, int timeout_ms) {
  auto rk = NewClient(RD_KAFKA_PRODUCER, bootstrap);
  return Metadata(rk.get(), "", timeout_ms) != nullptr;
}

}  // namespace

fs::path KafkaJars() {
  fs::path cache;
  if (!Env("EDGEFERRY_KAFKA_CACHE").empty()) {
    cache = Env("EDGEFERRY_KAFKA_CACHE");
  } else {
    std::string base = Env("XDG_CACHE_HOME");
    if (base.empty()) {
      std::string home = Env("HOME");
      if (home.empty()) {
        // Same fallback as fetch-kafka when a CI runner leaves HOME unset.
        if (const passwd* pw = ::getpwuid(::getuid()); pw != nullptr) home = pw->pw_dir;
      }
      base = home + "/.cache";
    }
    cache = fs::path(base) / "edgeferry" / (std::string("kafka-") + kKafkaVersion);
  }
  if (fs::exists(cache / (std::string(".complete-") + kKafkaVersion))) return cache;
  // Not fetched yet (a test run without scripts/bootstrap): fetch now, loudly on failure.
  TempDir logdir("edgeferry-fetch-kafka");
  ProcessOptions o;
  o.stdout_path = logdir / "fetch.log";
  Process fetch({(SourceDir() / "tests/rig/fetch-kafka").string()}, o);
  auto rc = fetch.Wait(10min);
  if (rc != 0 || !fs::exists(cache / (std::string(".complete-") + kKafkaVersion))) {
    throw RigError("tests/rig/fetch-kafka failed (exit " + (rc ? std::to_string(*rc) : "timeout") +
                   "); the Kafka jars are needed for integration tests\n" +
                   LogTail(logdir / "fetch.log"));
  }
  return cache;
}

struct KafkaCluster::Node {
  int id = 0;  // node.id, 1-based
  int port = 0;
  int controller_port = 0;
  int sasl_port = 0;  // 0: no SASL_PLAINTEXT listener
  fs::path dir;
  Process process;
  bool detached = false;
};

KafkaCluster::KafkaCluster() = default;

KafkaCluster::~KafkaCluster() {
  // SIGKILL, not a controlled shutdown: the data is thrown away anyway, and a three-node cluster
  // shutting down all at once can wait for a controller quorum that is already gone.
  for (auto& n : nodes_) {
    if (!n->detached) n->process.Kill();
  }
}

std::string KafkaCluster::bootstrap() const {
  if (!owned_) return external_bootstrap_;
  std::string s;
  for (const auto& n : nodes_) {
    if (!s.empty()) s += ",";
    s += "127.0.0.1:" + std::to_string(n->port);
  }
  return s;
}

int KafkaCluster::port(int i) const {
  RequireOwned("port");
  return nodes_.at(i)->port;
}

fs::path KafkaCluster::node_dir(int i) const {
  RequireOwned("node_dir");
  return nodes_.at(i)->dir;
}

fs::path KafkaCluster::log_path(int i) const { return node_dir(i) / "server.log"; }

void KafkaCluster::RequireOwned(const char* what) const {
  if (!owned_) {
    throw RigError(std::string("KafkaCluster::") + what +
                   ": this is an external or shared cluster (" + external_bootstrap_ +
                   "); tests that control brokers need KafkaCluster::Start() without "
                   "EDGEFERRY_TEST_KAFKA");
  }
}

std::string KafkaCluster::Tails() const {
  std::string s;
  for (const auto& n : nodes_) {
    s += LogTail(n->dir / "server.log", 25);
    s += LogTail(n->dir / "stdout.log", 15);
  }
  return s;
}

std::unique_ptr<KafkaCluster> KafkaCluster::Start(int nodes, const Props& props, bool detachable) {
  return StartImpl(nodes, props, detachable, nullptr);
}

std::unique_ptr<KafkaCluster> KafkaCluster::StartWithSaslPlain(
    int nodes, const std::map<std::string, std::string>& users, const Props& props) {
  if (!Env("EDGEFERRY_TEST_KAFKA").empty()) {
    throw RigError(
        "KafkaCluster::StartWithSaslPlain: EDGEFERRY_TEST_KAFKA names an external cluster, which "
        "the rig cannot give a SASL listener; unset it for this test");
  }
  if (users.empty()) throw RigError("KafkaCluster::StartWithSaslPlain: no users");
  return StartImpl(nodes, props, false, &users);
}

int KafkaCluster::sasl_port(int i) const {
  RequireOwned("sasl_port");
  if (nodes_.at(i)->sasl_port == 0) {
    throw RigError("KafkaCluster::sasl_port: cluster started without StartWithSaslPlain");
  }
  return nodes_.at(i)->sasl_port;
}

std::string KafkaCluster::sasl_bootstrap() const {
  std::string s;
  for (int i = 0; i < nodes(); ++i) {
    if (!s.empty()) s += ",";
    s += "127.0.0.1:" + std::to_string(sasl_port(i));
  }
  return s;
}

// The JAAS line of a PLAIN listener that accepts `users` (user_<name>="<password>").
static std::string PlainJaas(const std::map<std::string, std::string>& users) {
  auto quoted = [](const std::string& v) {
    std::string q = "\"";
    for (char ch : v) {
      if (ch == '"' || ch == '\\') q += '\\';
      q += ch;
    }
    return q + "\"";
  };
  std::string s = "org.apache.kafka.common.security.plain.PlainLoginModule required";
  for (const auto& [u, pw] : users) s += " user_" + u + "=" + quoted(pw);
  return s + ";";
}

std::unique_ptr<KafkaCluster> KafkaCluster::StartImpl(
    int nodes, const Props& props, bool detachable,
    const std::map<std::string, std::string>* sasl) {
  if (nodes != 1 && nodes != 3) throw RigError("KafkaCluster::Start: nodes must be 1 or 3");
  std::unique_ptr<KafkaCluster> c(new KafkaCluster());
  const std::string external = Env("EDGEFERRY_TEST_KAFKA");
  if (!external.empty()) {
    c->owned_ = false;
    c->external_bootstrap_ = external;
    if (!WaitFor([&] { return Reachable(external, 2000); }, 30s)) {
      throw RigError("EDGEFERRY_TEST_KAFKA=" + external + " does not answer metadata requests");
    }
    return c;
  }

  if (system("java -version >/dev/null 2>&1") != 0) {
    throw RigError("java not found on PATH: Kafka needs Java 17+ (run scripts/bootstrap)");
  }
  KafkaJars();  // fetch now if needed, so that a failure names the fetch
  c->dir_ = std::make_unique<TempDir>("edgeferry-kafka");
  if (detachable) NoteDetachable("dir=" + c->dir_->path().string());
  c->cluster_id_ = RandomClusterId();
  c->detachable_ = detachable;

  for (int i = 0; i < nodes; ++i) {
    auto n = std::make_unique<Node>();
    n->id = i + 1;
    n->port = FreeLoopbackPort();
    n->controller_port = FreeLoopbackPort();
    if (sasl != nullptr) n->sasl_port = FreeLoopbackPort();
    n->dir = c->dir_->path() / ("node" + std::to_string(n->id));
    fs::create_directories(n->dir);
    c->nodes_.push_back(std::move(n));
  }
  std::string voters;
  for (const auto& n : c->nodes_) {
    if (!voters.empty()) voters += ",";
    voters += std::to_string(n->id) + "@127.0.0.1:" + std::to_string(n->controller_port);
  }
  for (const auto& n : c->nodes_) {
    std::string listeners = "PLAINTEXT://127.0.0.1:" + std::to_string(n->port) +
                            ",CONTROLLER://127.0.0.1:" + std::to_string(n->controller_port);
    if (n->sasl_port != 0) {
      listeners += ",SASL_PLAINTEXT://127.0.0.1:" + std::to_string(n->sasl_port);
    }
    std::map<std::string, std::string> p = {
        {"process.roles", "broker,controller"},
        {"node.id", std::to_string(n->id)},
        {"listeners", listeners},
        {"advertised.listeners", listeners},
        {"inter.broker.listener.name", "PLAINTEXT"},
        {"controller.listener.names", "CONTROLLER"},
        {"listener.security.protocol.map", "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"},
        {"log.dirs", (n->dir / "data").string()},
        {"num.partitions", "1"},
        {"offsets.topic.num.partitions", "1"},
        {"transaction.state.log.num.partitions", "1"},
        {"group.initial.rebalance.delay.ms", "0"},
        {"auto.create.topics.enable", "true"},
        // Keep test logs small and segment files few.
        {"log.segment.bytes", std::to_string(64 << 20)},
    };
    if (nodes == 1) {
      p["controller.quorum.bootstrap.servers"] = "127.0.0.1:" + std::to_string(n->controller_port);
      for (const char* k :
           {"offsets.topic.replication.factor", "transaction.state.log.replication.factor",
            "transaction.state.log.min.isr", "share.coordinator.state.topic.replication.factor",
            "share.coordinator.state.topic.min.isr", "default.replication.factor",
            "min.insync.replicas"}) {
        p[k] = "1";
      }
    } else {
      p["controller.quorum.voters"] = voters;
      p["default.replication.factor"] = "3";
      p["min.insync.replicas"] = "2";
      p["offsets.topic.replication.factor"] = "3";
      p["transaction.state.log.replication.factor"] = "3";
      p["transaction.state.log.min.isr"] = "2";
      p["share.coordinator.state.topic.replication.factor"] = "3";
      p["share.coordinator.state.topic.min.isr"] = "2";
    }
    if (sasl != nullptr) {
      p["listener.security.protocol.map"] += ",SASL_PLAINTEXT:SASL_PLAINTEXT";
      p["sasl.enabled.mechanisms"] = "PLAIN";
      p["listener.name.sasl_plaintext.plain.sasl.jaas.config"] = PlainJaas(*sasl);
    }
    // Notice a killed broker quickly (default 9 s): a restarted node waits out its previous
    // incarnation's session, and failover tests wait for the controller to fence the dead one.
    p["broker.session.timeout.ms"] = "3000";
    p["broker.heartbeat.interval.ms"] = "500";
    for (const auto& [k, v] : props) p[k] = v;
    std::ofstream out(n->dir / "server.properties");
    for (const auto& [k, v] : p) out << k << "=" << v << "\n";
    out.close();
    if (!out) throw RigError("cannot write " + (n->dir / "server.properties").string());
  }

  // Format every node's storage (in parallel: each is a JVM start).
  std::vector<Process> formats;
  for (const auto& n : c->nodes_) {
    std::vector<std::string> argv = JavaCommand(
        n->dir, "kafka.tools.StorageTool",
        {"format", "-t", c->cluster_id_, "-c", (n->dir / "server.properties").string()});
    if (nodes == 1) argv.push_back("--standalone");
    ProcessOptions o;
    o.stdout_path = n->dir / "format.log";
    formats.emplace_back(argv, o);
  }
  for (size_t i = 0; i < formats.size(); ++i) {
    auto rc = formats[i].Wait(60s);
    if (rc != 0) {
      throw RigError("kafka.tools.StorageTool format failed for node " + std::to_string(i + 1) +
                     "\n" + LogTail(c->nodes_[i]->dir / "format.log"));
    }
  }
  for (int i = 0; i < nodes; ++i) c->StartNode(i);
  c->WaitReady(60s);
  return c;
}

std::unique_ptr<KafkaCluster> KafkaCluster::Shared() {
  if (!Env("EDGEFERRY_TEST_KAFKA").empty()) return Start(1);
  const std::string state = ReadFile(EDGEFERRY_RIG_SHARED_KAFKA_FILE);
  std::istringstream in(state);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("bootstrap=", 0) == 0) {
      std::string bootstrap = line.substr(10);
      // A stale file from an aborted run points at nothing: fall through to a cluster of our own.
      if (Reachable(bootstrap, 3000)) {
        std::unique_ptr<KafkaCluster> c(new KafkaCluster());
        c->owned_ = false;
        c->external_bootstrap_ = bootstrap;
        return c;
      }
    }
  }
  return Start(1);
}

void KafkaCluster::StartNode(int i) {
  Node& n = *nodes_.at(i);
  if (n.process.running())
    throw RigError("KafkaCluster: node " + std::to_string(n.id) + " is already running");
  std::vector<std::string> argv =
      JavaCommand(n.dir, "kafka.Kafka", {(n.dir / "server.properties").string()});
  ProcessOptions o;
  o.stdout_path = n.dir / "stdout.log";
  if (detachable_) {
    o.die_with_parent = false;
    o.new_session = true;
  }
  n.process = Process(argv, o);
}

void KafkaCluster::WaitNodeServing(int i, std::chrono::milliseconds deadline) {
  Node& n = *nodes_.at(i);
  std::vector<int> want;
  for (const auto& m : nodes_) {
    if (m->process.running()) want.push_back(m->id);
  }
  auto rk = NewClient(RD_KAFKA_PRODUCER, "127.0.0.1:" + std::to_string(n.port));
  bool ok = WaitFor(
      [&] {
        if (!n.process.running()) return true;
        auto md = Metadata(rk.get(), "", 1000);
        if (!md) return false;
        for (int id : want) {
          bool found = false;
          for (int b = 0; b < md->broker_cnt; ++b) found |= md->brokers[b].id == id;
          if (!found) return false;
        }
        return true;
      },
      deadline);
  if (!n.process.running()) {
    throw RigError("Kafka node " + std::to_string(n.id) + " exited (status " +
                   std::to_string(n.process.exit_status().value_or(-1)) + ") while starting\n" +
                   Tails());
  }
  if (!ok) {
    throw RigError("Kafka node " + std::to_string(n.id) + " not serving within " +
                   std::to_string(Scaled(deadline).count()) + " ms\n" + Tails());
  }
}

void KafkaCluster::WaitReady(std::chrono::milliseconds deadline) {
  if (!owned_) {
    if (!WaitFor([&] { return Reachable(external_bootstrap_, 2000); }, deadline)) {
      throw RigError("Kafka at " + external_bootstrap_ + " not reachable");
    }
    return;
  }
  for (size_t i = 0; i < nodes_.size(); ++i) {
    if (nodes_[i]->process.running() || nodes_[i]->detached)
      WaitNodeServing(static_cast<int>(i), deadline);
  }
}

void KafkaCluster::StopBroker(int i) {
  RequireOwned("StopBroker");
  Node& n = *nodes_.at(i);
  n.process.Signal(SIGTERM);
  if (!n.process.Wait(60s)) {
    n.process.Kill();
    throw RigError("Kafka node " + std::to_string(n.id) + " did not stop within 60 s of SIGTERM\n" +
                   LogTail(n.dir / "server.log"));
  }
}

void KafkaCluster::KillBroker(int i) {
  RequireOwned("KillBroker");
  nodes_.at(i)->process.Kill();
}

void KafkaCluster::StartBroker(int i) {
  RequireOwned("StartBroker");
  StartNode(i);
  WaitNodeServing(i, 60s);
}

bool KafkaCluster::BrokerRunning(int i) {
  RequireOwned("BrokerRunning");
  return nodes_.at(i)->process.running();
}

void KafkaCluster::Detach() {
  RequireOwned("Detach");
  if (!detachable_) throw RigError("KafkaCluster::Detach: start the cluster with detachable=true");
  for (auto& n : nodes_) {
    n->process.Release();
    n->detached = true;
  }
  dir_->Keep();
}

std::vector<int> KafkaCluster::pids() const {
  std::vector<int> out;
  for (const auto& n : nodes_) out.push_back(n->process.pid());
  return out;
}

fs::path KafkaCluster::dir() const {
  RequireOwned("dir");
  return dir_->path();
}

void KafkaCluster::CreateTopic(const std::string& name, int partitions, int replication,
                               const Props& topic_config) {
  auto rk = NewClient(RD_KAFKA_PRODUCER, bootstrap());
  char err[512];
  rd_kafka_NewTopic_t* nt = rd_kafka_NewTopic_new(
      name.c_str(), partitions, replication > 0 ? replication : -1, err, sizeof(err));
  if (nt == nullptr) throw RigError("NewTopic " + name + ": " + err);
  for (const auto& [k, v] : topic_config) {
    if (rd_kafka_NewTopic_set_config(nt, k.c_str(), v.c_str()) != RD_KAFKA_RESP_ERR_NO_ERROR) {
      rd_kafka_NewTopic_destroy(nt);
      throw RigError("NewTopic " + name + ": bad config " + k);
    }
  }
  std::unique_ptr<rd_kafka_queue_t, QueueDeleter> q(rd_kafka_queue_new(rk.get()));
  rd_kafka_AdminOptions_t* opts =
      rd_kafka_AdminOptions_new(rk.get(), RD_KAFKA_ADMIN_OP_CREATETOPICS);
  rd_kafka_AdminOptions_set_operation_timeout(opts, static_cast<int>(Scaled(30s).count()), err,
                                              sizeof(err));
  rd_kafka_CreateTopics(rk.get(), &nt, 1, opts, q.get());
  rd_kafka_AdminOptions_destroy(opts);
  rd_kafka_NewTopic_destroy(nt);
  std::unique_ptr<rd_kafka_event_t, EventDeleter> ev(
      rd_kafka_queue_poll(q.get(), static_cast<int>(Scaled(60s).count())));
  if (!ev) throw RigError("CreateTopics " + name + ": no result within 60 s");
  if (rd_kafka_event_error(ev.get()) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    throw RigError("CreateTopics " + name + ": " + rd_kafka_event_error_string(ev.get()));
  }
  const rd_kafka_CreateTopics_result_t* res = rd_kafka_event_CreateTopics_result(ev.get());
  size_t cnt = 0;
  const rd_kafka_topic_result_t** tr = rd_kafka_CreateTopics_result_topics(res, &cnt);
  for (size_t i = 0; i < cnt; ++i) {
    if (rd_kafka_topic_result_error(tr[i]) != RD_KAFKA_RESP_ERR_NO_ERROR) {
      const char* msg = rd_kafka_topic_result_error_string(tr[i]);
      throw RigError("CreateTopics " + name + ": " + (msg ? msg : "error"));
    }
  }
  // Wait until every partition has a leader, so producers need not retry.
  bool led = WaitFor(
      [&] {
        for (int p = 0; p < partitions; ++p) {
          if (LeaderOf(name, p) < 0) return false;
        }
        return true;
      },
      30s);
  if (!led) throw RigError("topic " + name + ": partitions without a leader after 30 s");
}

int KafkaCluster::LeaderOf(const std::string& topic, int32_t partition) {
  auto rk = NewClient(RD_KAFKA_PRODUCER, bootstrap(), {{"allow.auto.create.topics", "false"}});
  auto md = Metadata(rk.get(), topic, static_cast<int>(Scaled(5s).count()));
  if (!md) return -1;
  for (int t = 0; t < md->topic_cnt; ++t) {
    const auto& mt = md->topics[t];
    if (topic != mt.topic || mt.err != RD_KAFKA_RESP_ERR_NO_ERROR) continue;
    for (int p = 0; p < mt.partition_cnt; ++p) {
      if (mt.partitions[p].id == partition && mt.partitions[p].leader >= 0) {
        return mt.partitions[p].leader - 1;  // node.id is index + 1
      }
    }
  }
  return -1;
}

std::vector<ConsumedRecord> KafkaCluster::ReadAll(const std::string& topic, size_t min_count,
                                                  std::chrono::milliseconds deadline) {
  const auto end = std::chrono::steady_clock::now() + Scaled(deadline);
  auto remaining_ms = [&] {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        end - std::chrono::steady_clock::now());
    return static_cast<int>(std::max<int64_t>(0, left.count()));
  };
  auto rk = NewClient(RD_KAFKA_CONSUMER, bootstrap(),
                      {{"group.id", UniqueName("edgeferry-rig-read")},
                       {"enable.auto.commit", "false"},
                       {"enable.partition.eof", "true"},
                       {"isolation.level", "read_committed"},
                       {"allow.auto.create.topics", "false"},
                       {"fetch.wait.max.ms", "100"}});
  // The topic may not exist yet (created by the producer under test): wait for it.
  int partition_cnt = 0;
  WaitFor(
      [&] {
        auto md = Metadata(rk.get(), topic, 2000);
        if (!md) return false;
        for (int t = 0; t < md->topic_cnt; ++t) {
          if (topic == md->topics[t].topic && md->topics[t].err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            partition_cnt = md->topics[t].partition_cnt;
          }
        }
        return partition_cnt > 0;
      },
      std::chrono::milliseconds(std::max(0, remaining_ms())));
  std::vector<ConsumedRecord> out;
  if (partition_cnt == 0) return out;

  rd_kafka_topic_partition_list_t* parts = rd_kafka_topic_partition_list_new(partition_cnt);
  for (int p = 0; p < partition_cnt; ++p) {
    rd_kafka_topic_partition_list_add(parts, topic.c_str(), p)->offset = RD_KAFKA_OFFSET_BEGINNING;
  }
  rd_kafka_resp_err_t e = rd_kafka_assign(rk.get(), parts);
  rd_kafka_topic_partition_list_destroy(parts);
  if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
    throw RigError("assign " + topic + ": " + rd_kafka_err2str(e));

  // Once min_count records are in, each partition is read up to the high watermark it had at
  // that moment (or to an EOF event). EOF events alone do not do: librdkafka 2.0.2 sends none for
  // a partition that never held a record, nor while a producer keeps every fetch non-empty
  // (tests reading a topic the agent still wrote waited out their 60 s deadline).
  std::vector<int64_t> next(partition_cnt, 0);    // offset after the last record read
  std::vector<int64_t> target(partition_cnt, 0);  // high watermarks when counted
  std::vector<bool> done(partition_cnt, false);
  bool counted = false;
  auto count_reached = [&] {
    counted = true;
    for (int p = 0; p < partition_cnt; ++p) {
      int64_t low = 0, high = 0;
      rd_kafka_resp_err_t qe = rd_kafka_query_watermark_offsets(
          rk.get(), topic.c_str(), p, &low, &high, std::max(1, std::min(remaining_ms(), 5000)));
      // Unknown: this partition waits for its EOF event.
      target[p] = qe == RD_KAFKA_RESP_ERR_NO_ERROR ? high : INT64_MAX;
      done[p] = done[p] || next[p] >= target[p];
    }
  };
  if (min_count == 0) count_reached();
  auto all_done = [&] { return std::all_of(done.begin(), done.end(), [](bool b) { return b; }); };
  while (true) {
    if (counted && all_done()) break;
    int left = remaining_ms();
    if (left == 0) break;
    rd_kafka_message_t* m = rd_kafka_consumer_poll(rk.get(), std::min(left, 200));
    if (m == nullptr) continue;
    std::unique_ptr<rd_kafka_message_t, void (*)(rd_kafka_message_t*)> guard(
        m, rd_kafka_message_destroy);
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      if (counted && m->partition >= 0 && m->partition < partition_cnt) done[m->partition] = true;
      continue;
    }
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) continue;  // transient (broker restarting)
    ConsumedRecord r;
    r.topic = topic;
    r.partition = m->partition;
    r.offset = m->offset;
    if (m->key != nullptr) r.key = std::string(static_cast<const char*>(m->key), m->key_len);
    if (m->payload != nullptr) {
      r.value.assign(static_cast<const char*>(m->payload), m->len);
    }
    rd_kafka_timestamp_type_t tstype;
    r.timestamp_ms = rd_kafka_message_timestamp(m, &tstype);
    rd_kafka_headers_t* hdrs = nullptr;
    if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR && hdrs != nullptr) {
      const char* name;
      const void* val;
      size_t size;
      for (size_t idx = 0;
           rd_kafka_header_get_all(hdrs, idx, &name, &val, &size) == RD_KAFKA_RESP_ERR_NO_ERROR;
           ++idx) {
        r.headers.push_back(
            Header{name, val ? std::string(static_cast<const char*>(val), size) : std::string()});
      }
    }
    out.push_back(std::move(r));
    if (m->partition >= 0 && m->partition < partition_cnt) {
      next[m->partition] = m->offset + 1;
      if (counted && next[m->partition] >= target[m->partition]) done[m->partition] = true;
    }
    if (!counted && out.size() >= min_count) count_reached();
  }
  rd_kafka_consumer_close(rk.get());
  std::stable_sort(out.begin(), out.end(), [](const ConsumedRecord& a, const ConsumedRecord& b) {
    return a.partition != b.partition ? a.partition < b.partition : a.offset < b.offset;
  });
  return out;
}

std::string KafkaCluster::DumpLogSegments(const std::string& topic, int32_t partition) {
  RequireOwned("DumpLogSegments");
  int leader = LeaderOf(topic, partition);
  if (leader < 0 || leader >= nodes()) {
    throw RigError("DumpLogSegments: no leader for " + topic + "-" + std::to_string(partition));
  }
  const fs::path pdir = nodes_[leader]->dir / "data" / (topic + "-" + std::to_string(partition));
  std::vector<std::string> segments;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(pdir, ec)) {
    if (entry.path().extension() == ".log") segments.push_back(entry.path().string());
  }
  if (segments.empty()) throw RigError("DumpLogSegments: no segment files in " + pdir.string());
  std::sort(segments.begin(), segments.end());
  std::string files;
  for (const auto& s : segments) files += (files.empty() ? "" : ",") + s;
  TempDir out("edgeferry-dumplog");
  std::vector<std::string> argv =
      JavaCommand(out.path(), "kafka.tools.DumpLogSegments", {"--files", files});
  ProcessOptions o;
  o.stdout_path = out / "dump.txt";
  o.stderr_path = out / "dump.err";
  Process p(argv, o);
  auto rc = p.Wait(60s);
  if (rc != 0) {
    throw RigError("kafka.tools.DumpLogSegments failed\n" + LogTail(out / "dump.err"));
  }
  return ReadFile(out / "dump.txt");
}

}  // namespace edgeferry::rig
