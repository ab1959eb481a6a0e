// The test rig: real Mosquitto and Apache Kafka (KRaft) on loopback ports, child processes, temp
// dirs and condition waits, for integration tests. Namespace edgeferry::rig, CMake target
// edgeferry_test_rig.
//
// Failure policy: the rig never skips. When a broker cannot be had (no java, Kafka fetch failed,
// not ready in time, process died) it throws rig::RigError whose message carries the tail of the
// broker's log; doctest reports the exception as a failed test case with that message.
//
// Deadlines: every deadline the rig applies, and every one passed to WaitFor, is multiplied by
// env EDGEFERRY_TEST_TIMEOUT_SCALE (a float, default 1) for slow machines and sanitizer builds.
//
// Kafka in tests (see docs/testing.md):
//  - KafkaCluster::Shared(): for tests that only produce and consume. Each such test uses its
//    own topic names (UniqueName()). Returns, in order of preference: the cluster named by env
//    EDGEFERRY_TEST_KAFKA=host:port; the one-node cluster that the ctest fixture `kafka_shared`
//    started for the whole run (tests/rig/CMakeLists.txt; state file in the build dir); otherwise
//    a one-node cluster of the test's own. Never stop, kill or reconfigure a shared cluster.
//  - KafkaCluster::Start(nodes, props): a cluster of the test's own (1 or 3 nodes), for tests that
//    stop, kill or reconfigure brokers. With EDGEFERRY_TEST_KAFKA set it returns a handle to that
//    cluster instead, and any process control (Stop/Kill/StartBroker) throws.
//  - ctest: an executable that calls Shared() registers with
//    `PROPERTIES FIXTURES_REQUIRED kafka_shared`; one that calls Start() with
//    `PROPERTIES RESOURCE_LOCK kafka_own` (at most one such test starts JVMs at a time).
//  - Costs measured on a 2-core machine: Start(1) ~4.5 s, Start(3) ~16 s, StartBroker(i) after
//    KillBroker(i) ~6 s, Shared() with the fixture ~0 s. Prefer Shared() where it will do.
//
// Thread-safety: none of these classes are thread-safe; use each from one thread.
// Child processes get PR_SET_PDEATHSIG(SIGKILL) (unless told otherwise), tied to the thread that
// spawned them: spawn from the test's main thread so a crashed test leaves no broker behind.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/record.h"

namespace edgeferry::rig {

// Thrown when the rig cannot provide what a test asked for. The message says what and why.
class RigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// `d` multiplied by EDGEFERRY_TEST_TIMEOUT_SCALE.
std::chrono::milliseconds Scaled(std::chrono::milliseconds d);

// Polls `condition` (every 10 ms at first, backing off to 100 ms) until it returns true or the
// scaled `deadline` has passed. Returns the last result of `condition`, which is evaluated at
// least once and once more after the deadline.
bool WaitFor(const std::function<bool()>& condition, std::chrono::milliseconds deadline);

// A TCP port on 127.0.0.1 that was free when asked (bound with port 0, then released). Another
// process may take it before the caller binds; the rig's servers bind it within milliseconds.
int FreeLoopbackPort();

// True if something accepts TCP connections on 127.0.0.1:port.
bool PortOpen(int port);

// A unique name for topics, client ids and the like: "<prefix>-<pid>-<counter>-<random>".
std::string UniqueName(const std::string& prefix);

// Whole file as a string; empty if it does not exist.
std::string ReadFile(const std::filesystem::path& path);
// The last `lines` lines of a file (for error messages), or "(no <path>)".
std::string LogTail(const std::filesystem::path& path, size_t lines = 40);

// A fresh directory under $TMPDIR (or /tmp), removed recursively by the destructor. Movable.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "edgeferry-test");
  ~TempDir();
  TempDir(TempDir&& other) noexcept;
  TempDir& operator=(TempDir&& other) noexcept;
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }
  // Keeps the directory after destruction (for debugging a failed test by hand).
  void Keep() { keep_ = true; }

 private:
  std::filesystem::path path_;
  bool keep_ = false;
};

// How to run a child process. Set fields by name (designated initializers trip
// -Wmissing-field-initializers):
//   rig::Process::Options o;  o.stdout_path = dir / "agent.log";  o.env["X"] = "1";
struct ProcessOptions {
  // Added to (or replacing entries of) the inherited environment. A value of std::nullopt
  // removes the variable.
  std::map<std::string, std::optional<std::string>> env;
  std::filesystem::path stdout_path;  // empty: /dev/null; files are appended to
  std::filesystem::path stderr_path;  // empty: same file as stdout
  std::filesystem::path cwd;          // empty: inherit
  bool die_with_parent = true;        // PR_SET_PDEATHSIG(SIGKILL)
  bool new_session = false;           // setsid(): detach from the terminal's Ctrl-C
};

// A child process, killed (SIGKILL) and reaped by the destructor if still running. Movable.
class Process {
 public:
  using Options = ProcessOptions;

  // Spawns argv (argv[0] is looked up in PATH if it has no '/'). Throws RigError if it cannot be
  // executed (the exec error is reported back through a close-on-exec pipe, so a missing binary
  // fails here, not later).
  Process(std::vector<std::string> argv, Options options = {});
  Process() = default;  // no child
  ~Process();
  Process(Process&& other) noexcept;
  Process& operator=(Process&& other) noexcept;
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  // True while the child has not exited (reaps it if it has).
  bool running();
  // Sends `sig` if the child is still running.
  void Signal(int sig);
  // SIGKILL and reap.
  void Kill();
  // Waits up to the scaled `timeout` for the child to exit. Returns its exit code, or 128 + the
  // signal number if a signal ended it (shell convention), or std::nullopt on timeout.
  std::optional<int> Wait(std::chrono::milliseconds timeout);
  // Exit status once known (after Wait/running saw the exit).
  std::optional<int> exit_status() const { return exit_status_; }
  // Gives up ownership: the destructor no longer kills the child. Returns its pid.
  pid_t Release();

  const std::vector<std::string>& argv() const { return argv_; }
  const Options& options() const { return options_; }

 private:
  void Reap(int wait_status);
  std::vector<std::string> argv_;
  Options options_;
  pid_t pid_ = -1;
  std::optional<int> exit_status_;
};

// For processes that may outlive the rig (ProcessOptions::die_with_parent=false, detachable
// brokers): appends `line` ("pid=N", "dir=PATH") to the file named by env
// EDGEFERRY_RIG_PENDING_FILE, if set, as soon as the pid or directory exists. edgeferry-rig uses
// it so that `down` can clean up even when `up` was killed before it wrote its state file.
void NoteDetachable(const std::string& line);

// Absolute path of the built agent binary ($<TARGET_FILE:edgeferry>). The rig does not depend
// on the agent target: a test that runs the binary adds add_dependencies(<test> edgeferry).
std::string EdgeferryBinary();
// The command that runs the agent: EdgeferryBinary(), behind the target emulator in a cross
// build (e.g. {"qemu-aarch64-static", "-L", SYSROOT, BINARY}). Tests start the agent with this.
std::vector<std::string> EdgeferryCommand();
// Source tree root (for config/examples etc.).
std::filesystem::path SourceDir();

struct MosquittoOptions {
  bool persistence = true;
  std::string extra_config;  // appended to the generated mosquitto.conf
  // The broker may outlive this process once Detach() is called (scripts/demo); not for tests.
  bool detachable = false;
  // Adds a TLS listener (tls_port(), tls_uri()) with a server certificate for 127.0.0.1 and
  // localhost, signed by a CA made for this broker (ca_file()). Clients may present the client
  // certificate (client_cert_file(), client_key_file()), signed by the same CA; with
  // require_client_cert the broker insists on one.
  bool tls = false;
  bool require_client_cert = false;
};

// A Mosquitto 2 broker on 127.0.0.1, with the no-loss settings of
// config/examples/mosquitto-edgeferry.conf: persistence in its own directory (autosave every
// second), large queues, persistent sessions. The constructor starts it and waits until it
// accepts connections; throws RigError with its log tail if it does not.
class Mosquitto {
 public:
  using Options = MosquittoOptions;
  explicit Mosquitto(Options options = {});
  ~Mosquitto();  // Stop()
  Mosquitto(const Mosquitto&) = delete;
  Mosquitto& operator=(const Mosquitto&) = delete;

  int port() const { return port_; }
  std::string host() const { return "127.0.0.1"; }
  std::string uri() const;  // "tcp://127.0.0.1:P"
  bool running();

  // TLS listener (options.tls only; 0 / "" otherwise). uri: "ssl://127.0.0.1:P".
  int tls_port() const { return tls_port_; }
  std::string tls_uri() const;
  std::filesystem::path ca_file() const { return dir_ / "ca.crt"; }
  std::filesystem::path client_cert_file() const { return dir_ / "client.crt"; }
  std::filesystem::path client_key_file() const { return dir_ / "client.key"; }

  // SIGTERM and wait (Mosquitto saves its persistence file on the way out).
  void Stop();
  // SIGKILL: whatever was not autosaved yet is lost, as in a power cut of the broker host.
  void Kill();
  // Starts again on the same port, config and persistence directory (session resume tests).
  void Start();

  // How many times `client_id` has subscribed to `filter` (at any QoS) since the broker was
  // created, read from the broker's log ("log_type subscribe"). Tests wait for it to grow before
  // publishing, so that a first message does not race a subscription in flight.
  size_t SubscriptionCount(const std::string& client_id, const std::string& filter) const;
  // Waits (scaled deadline) until SubscriptionCount(client_id, filter) > `more_than`.
  bool WaitSubscribed(const std::string& client_id, const std::string& filter, size_t more_than = 0,
                      std::chrono::milliseconds deadline = std::chrono::seconds(10)) const;

  // Leaves the broker running and its directory in place after destruction (needs
  // detachable). The caller stops it by pid() and removes dir().
  void Detach();
  pid_t pid() const { return process_.pid(); }

  const std::filesystem::path& dir() const { return dir_.path(); }
  std::filesystem::path config_path() const { return dir_ / "mosquitto.conf"; }
  std::filesystem::path log_path() const { return dir_ / "mosquitto.log"; }

 private:
  Options options_;
  TempDir dir_;
  int port_ = 0;
  int tls_port_ = 0;
  Process process_;
  bool detached_ = false;
};

// A record as read back from Kafka.
struct ConsumedRecord {
  std::string topic;
  int32_t partition = 0;
  int64_t offset = 0;
  std::optional<std::string> key;  // nullopt: null key
  std::string value;
  int64_t timestamp_ms = 0;
  std::vector<Header> headers;
};

// An Apache Kafka 4.1 cluster in KRaft combined mode (every node broker + controller) from the
// Maven Central artifacts that tests/rig/fetch-kafka resolves (fetched on first use if missing).
class KafkaCluster {
 public:
  // Broker properties added to (or overriding) the generated server.properties of every node.
  using Props = std::map<std::string, std::string>;

  // A cluster of the caller's own: 1 node (internal topics with replication factor 1) or 3 nodes
  // (static voters, default.replication.factor=3, min.insync.replicas=2). Returns when every node
  // answers metadata requests with all brokers registered. See the header comment for
  // EDGEFERRY_TEST_KAFKA.
  // `detachable`: brokers survive this process (no PDEATHSIG, own session) once Detach() is
  // called; for the ctest fixture and scripts/demo (tests/rig/edgeferry_rig.cc), not for tests.
  static std::unique_ptr<KafkaCluster> Start(int nodes = 1, const Props& props = {},
                                             bool detachable = false);
  // A cluster of the caller's own, as Start(nodes, props), with one more listener on every node:
  // SASL_PLAINTEXT with mechanism PLAIN on sasl_port(i), accepting exactly the user/password
  // pairs of `users`. PLAINTEXT (bootstrap()) stays the inter-broker listener and what the rig's
  // own clients (CreateTopic, ReadAll) use. With EDGEFERRY_TEST_KAFKA set it throws RigError (an
  // external cluster cannot be given a listener).
  static std::unique_ptr<KafkaCluster> StartWithSaslPlain(
      int nodes, const std::map<std::string, std::string>& users, const Props& props = {});
  // A one-node cluster shared by tests that only produce and consume (see header comment).
  static std::unique_ptr<KafkaCluster> Shared();

  ~KafkaCluster();  // kills own brokers (SIGKILL: fast) and removes their data
  KafkaCluster(const KafkaCluster&) = delete;
  KafkaCluster& operator=(const KafkaCluster&) = delete;

  // "127.0.0.1:p1,127.0.0.1:p2,..."
  std::string bootstrap() const;
  int nodes() const { return static_cast<int>(nodes_.size()); }
  // False for external/shared clusters: process control throws.
  bool owned() const { return owned_; }
  // Broker port of node i (0-based; node.id is i+1).
  int port(int i) const;
  // SASL_PLAINTEXT (PLAIN) listener of node i and all of them as a bootstrap list
  // (StartWithSaslPlain only; throws RigError otherwise).
  int sasl_port(int i) const;
  std::string sasl_bootstrap() const;

  // Creates a topic and waits until every partition has a leader. replication 0: the cluster's
  // default (1 for one node, 3 for three). Throws RigError on failure (an existing topic fails).
  void CreateTopic(const std::string& name, int partitions = 1, int replication = 0,
                   const Props& topic_config = {});
  // Node index (0-based) of the leader of topic/partition, or -1 if none.
  int LeaderOf(const std::string& topic, int32_t partition);

  void StopBroker(int i);   // SIGTERM and wait (controlled shutdown)
  void KillBroker(int i);   // SIGKILL
  void StartBroker(int i);  // starts a stopped/killed node with its data; waits until it serves
  bool BrokerRunning(int i);
  // Waits until every running node answers metadata with all running brokers registered.
  void WaitReady(std::chrono::milliseconds deadline = std::chrono::seconds(60));

  // Every record of `topic` (all partitions, from the beginning), once at least `min_count` are
  // there; waits up to the scaled `deadline` for them, then returns what it has. Reads
  // read_committed. Ordered by partition, then offset.
  std::vector<ConsumedRecord> ReadAll(
      const std::string& topic, size_t min_count,
      std::chrono::milliseconds deadline = std::chrono::seconds(30));

  // Output of kafka.tools.DumpLogSegments (--deep-iteration) over every segment of the
  // partition's log on the node that leads it (own clusters only); contains "compresscodec: ZSTD"
  // etc. for each batch.
  std::string DumpLogSegments(const std::string& topic, int32_t partition);

  // Where a node keeps its log, data and config (own clusters only).
  std::filesystem::path node_dir(int i) const;
  std::filesystem::path log_path(int i) const;  // log4j server.log of node i

  // Leaves the brokers running and their directory in place after destruction (requires
  // detachable=true). The caller stops them by pid and removes dir().
  void Detach();
  std::vector<int> pids() const;
  std::filesystem::path dir() const;

  struct Node;  // internal

 private:
  KafkaCluster();
  static std::unique_ptr<KafkaCluster> StartImpl(int nodes, const Props& props, bool detachable,
                                                 const std::map<std::string, std::string>* sasl);
  void StartNode(int i);
  void WaitNodeServing(int i, std::chrono::milliseconds deadline);
  void RequireOwned(const char* what) const;
  std::string Tails() const;

  bool owned_ = true;
  bool detachable_ = false;
  std::string external_bootstrap_;
  std::unique_ptr<TempDir> dir_;
  std::string cluster_id_;
  std::vector<std::unique_ptr<Node>> nodes_;
};

// Directory holding the Kafka jars (EDGEFERRY_KAFKA_CACHE or ~/.cache/edgeferry/kafka-<version>),
// running tests/rig/fetch-kafka first if it is not complete. Throws RigError if that fails.
std::filesystem::path KafkaJars();

}  // namespace edgeferry::rig
