// Mosquitto from the rig, exercised with the Debian mosquitto_pub / mosquitto_sub clients.
#include <doctest/doctest.h>

#include <chrono>
#include <string>
#include <vector>

#include "tests/rig/rig.h"

namespace rig = edgeferry::rig;
using namespace std::chrono_literals;

namespace {

// Runs mosquitto_pub once to completion; returns its exit code.
int Publish(const rig::Mosquitto& m, const std::string& topic, const std::string& msg,
            int qos = 1) {
  rig::Process pub({"mosquitto_pub", "-h", "127.0.0.1", "-p", std::to_string(m.port()), "-q",
                    std::to_string(qos), "-t", topic, "-m", msg});
  return pub.Wait(10s).value_or(-1);
}

// Starts a persistent-session subscriber (clean session off, fixed client id) that exits after
// `count` messages, writing them one per line to `out`.
rig::Process Subscribe(const rig::Mosquitto& m, const std::string& client_id,
                       const std::string& topic, int count, const std::filesystem::path& out) {
  rig::Process::Options o;
  o.stdout_path = out;
  return rig::Process({"mosquitto_sub", "-h", "127.0.0.1", "-p", std::to_string(m.port()), "-q",
                       "1", "-c", "-i", client_id, "-t", topic, "-C", std::to_string(count)},
                      o);
}

}  // namespace

TEST_CASE("Mosquitto starts on a loopback port and round-trips a message") {
  rig::Mosquitto m;
  CHECK(m.uri() == "tcp://127.0.0.1:" + std::to_string(m.port()));
  CHECK(rig::PortOpen(m.port()));

  rig::TempDir dir;
  auto sub = Subscribe(m, "rig-sub-1", "rig/test", 2, dir / "got");
  REQUIRE(m.WaitSubscribed("rig-sub-1", "rig/test"));
  CHECK(m.SubscriptionCount("rig-sub-1", "rig/test") == 1);
  CHECK(Publish(m, "rig/test", "one") == 0);
  CHECK(Publish(m, "rig/test", "two") == 0);
  CHECK(sub.Wait(10s) == 0);
  CHECK(rig::ReadFile(dir / "got") == "one\ntwo\n");
}

TEST_CASE("Mosquitto keeps a persistent session's queued messages across Stop and Start") {
  rig::Mosquitto m;
  rig::TempDir dir;
  const int port = m.port();
  {
    // Establish the persistent session, then leave.
    auto sub = Subscribe(m, "rig-sub-2", "rig/persist", 1, dir / "first");
    REQUIRE(m.WaitSubscribed("rig-sub-2", "rig/persist"));
    CHECK(Publish(m, "rig/persist", "m0") == 0);
    CHECK(sub.Wait(10s) == 0);
    CHECK(rig::ReadFile(dir / "first") == "m0\n");
  }
  // While the subscriber is away the broker queues for it; a clean stop saves the queue.
  CHECK(Publish(m, "rig/persist", "m1") == 0);
  CHECK(Publish(m, "rig/persist", "m2") == 0);
  m.Stop();
  CHECK_FALSE(m.running());
  CHECK_FALSE(rig::PortOpen(port));
  m.Start();
  CHECK(m.port() == port);
  CHECK(m.running());

  auto sub = Subscribe(m, "rig-sub-2", "rig/persist", 2, dir / "second");
  CHECK(sub.Wait(10s) == 0);
  CHECK(rig::ReadFile(dir / "second") == "m1\nm2\n");
}

TEST_CASE("Mosquitto Kill stops the broker at once and it starts again") {
  rig::Mosquitto m;
  m.Kill();
  CHECK_FALSE(m.running());
  CHECK_FALSE(rig::PortOpen(m.port()));
  m.Start();
  CHECK(rig::PortOpen(m.port()));
  CHECK(Publish(m, "rig/after-kill", "x") == 0);
}

TEST_CASE("Mosquitto TLS listener accepts clients that trust its CA and rejects others") {
  rig::Mosquitto::Options opts;
  opts.tls = true;
  opts.require_client_cert = true;
  rig::Mosquitto m(opts);
  REQUIRE(m.tls_port() > 0);
  CHECK(m.tls_uri() == "ssl://127.0.0.1:" + std::to_string(m.tls_port()));
  auto pub = [&](std::vector<std::string> extra) {
    std::vector<std::string> argv = {
        "mosquitto_pub", "-h", "127.0.0.1", "-p", std::to_string(m.tls_port()), "-q", "1", "-t",
        "rig/tls",       "-m", "secret"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    rig::Process p(argv);
    return p.Wait(10s).value_or(-1);
  };
  const std::string ca = m.ca_file().string();
  CHECK(pub({"--cafile", ca, "--cert", m.client_cert_file().string(), "--key",
             m.client_key_file().string()}) == 0);
  CHECK(pub({"--cafile", ca}) != 0);  // no client certificate
  CHECK(pub({}) != 0);                // plain MQTT on the TLS port
  // The plain listener still works.
  CHECK(Publish(m, "rig/plain", "x") == 0);
}
