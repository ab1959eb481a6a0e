// The edgeferry command line as a user meets it: help, version, check-config messages and exit
// codes. Golden files live in tests/agent/golden/; EDGEFERRY_UPDATE_GOLDEN=1 rewrites them.
#include <doctest/doctest.h>

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>

#include "tests/agent/harness.h"

namespace edgeferry::agent_test {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

fs::path GoldenDir() { return rig::SourceDir() / "tests" / "agent" / "golden"; }

void CheckGolden(const std::string& name, const std::string& actual) {
  fs::path p = GoldenDir() / name;
  const char* update = std::getenv("EDGEFERRY_UPDATE_GOLDEN");
  if (update && std::string(update) == "1") {
    std::ofstream(p) << actual;
    return;
  }
  REQUIRE_MESSAGE(fs::exists(p),
                  "missing golden " << p << " (EDGEFERRY_UPDATE_GOLDEN=1 writes it)");
  CHECK_MESSAGE(rig::ReadFile(p) == actual, "differs from " << p << ":\n" << actual);
}

json MinimalConfig(const rig::TempDir& dir) {
  return {{"device_id", "cli-test"},
          {"buffer", {{"path", (dir / "buffer.db").string()}}},
          {"kafka", {{"brokers", {"127.0.0.1:9"}}}},
          {"inputs", {{{"name", "sim"}, {"type", "simulated"}, {"rate_hz", 1}}}}};
}

TEST_CASE("--help: the newcomer's page, exit 0") {
  auto r = RunEdgeferry({"--help"});
  CHECK(r.exit_code == 0);
  CheckGolden("help.txt", r.out);
  auto run = RunEdgeferry({"run", "--help"});
  CHECK(run.exit_code == 0);
  CheckGolden("run-help.txt", run.out);
  auto dl = RunEdgeferry({"dead-letters", "requeue", "--help"});
  CHECK(dl.exit_code == 0);
  CheckGolden("dead-letters-requeue-help.txt", dl.out);
}

TEST_CASE("usage errors exit 2 with a message") {
  for (const auto& args :
       std::vector<std::vector<std::string>>{{},
                                             {"bogus"},
                                             {"run", "--nope"},
                                             {"dead-letters", "requeue"},
                                             {"dead-letters", "requeue", "--all", "3"},
                                             {"status", "-c"}}) {
    auto r = RunEdgeferry(args);
    CHECK_MESSAGE(r.exit_code == 2, "args: " << json(args).dump());
    CHECK_MESSAGE(!r.err.empty(), "args: " << json(args).dump());
  }
}

TEST_CASE("version: edgeferry and every library, one per line") {
  auto r = RunEdgeferry({"version"});
  CHECK(r.exit_code == 0);
  std::regex format(
      "edgeferry [0-9]+\\.[0-9]+\\.[0-9]+\n"
      "librdkafka 2\\.[0-9]+\\.[0-9]+\n"
      "SQLite 3\\.[0-9]+\\.[0-9]+\n"
      "zstd 1\\.[0-9]+\\.[0-9]+\n"
      "built-in MQTT 3\\.1\\.1/5 client, OpenSSL 3\\.[0-9]+\\.[0-9]+[^\n]*\n");
  CHECK_MESSAGE(std::regex_match(r.out, format), r.out);
  auto flag = RunEdgeferry({"--version"});
  CHECK(flag.exit_code == 0);
  CHECK(flag.out.rfind("edgeferry ", 0) == 0);
}

TEST_CASE("check-config: a good config passes with a summary, exit 0") {
  rig::TempDir dir;
  auto path = WriteConfig(dir, MinimalConfig(dir));
  auto r = RunEdgeferry({"check-config", "-c", path.string()});
  CHECK_MESSAGE(r.exit_code == 0, r.err);
  CHECK(r.out == path.string() + ": OK: device cli-test, 1 input(s) enabled, buffer " +
                     (dir / "buffer.db").string() + ", kafka 127.0.0.1:9\n");
  CHECK(r.err.empty());
}

TEST_CASE("check-config: every error, one per line as path: message, exit 2") {
  rig::TempDir dir;
  json cfg = MinimalConfig(dir);
  cfg["device_id"] = 42;
  cfg["kafka"]["brokerz"] = {"x"};
  cfg["inputs"][0]["rate_hz"] = -1;
  cfg["inputs"].push_back({{"name", "sim"}, {"type", "no-such-kind"}});
  auto path = WriteConfig(dir, cfg, "bad.json");
  auto r = RunEdgeferry({"check-config", "-c", path.string()});
  CHECK(r.exit_code == 2);
  CHECK(r.out.empty());
  // The file's own path varies: the golden has it as FILE.
  std::string err = std::regex_replace(r.err, std::regex(path.string()), "FILE");
  CheckGolden("check-config-bad.txt", err);
  // Each line but the summary is "/json/pointer: message".
  std::istringstream in(err);
  size_t lines = 0;
  for (std::string line; std::getline(in, line); ++lines) {
    if (line.rfind("FILE: ", 0) == 0) continue;
    CHECK_MESSAGE(std::regex_match(line, std::regex("^/[^ ]*: .+")), line);
  }
  CHECK(lines >= 5);
}

TEST_CASE("check-config: missing, empty and non-JSON files exit 2 with a message") {
  rig::TempDir dir;
  std::ofstream(dir / "empty.json") << "";
  std::ofstream(dir / "garbage.json") << "{\"device_id\": ";
  for (const auto& name : {"missing.json", "empty.json", "garbage.json"}) {
    auto r = RunEdgeferry({"check-config", "-c", (dir / name).string()});
    CHECK_MESSAGE(r.exit_code == 2, name);
    CHECK_MESSAGE(r.err.find((dir / name).string() + ": 1 error(s)") != std::string::npos, r.err);
  }
}

TEST_CASE("the shipped default config and the example configs pass check-config") {
  std::vector<fs::path> files = {rig::SourceDir() / "systemd" / "edgeferry.json"};
  // industrial-gateway.json names secret files under /etc/edgeferry/secrets; tests/config
  // checks it with those files in place.
  for (const char* name : {"demo.json", "raspberry-pi.json"}) {
    files.push_back(rig::SourceDir() / "config" / "examples" / name);
  }
  for (const auto& f : files) {
    auto r = RunEdgeferry({"check-config", "-c", f.string()});
    CHECK_MESSAGE(r.exit_code == 0, f << ": " << r.err);
  }
}

TEST_CASE("run: a bad config exits 2 before touching the buffer") {
  rig::TempDir dir;
  json cfg = MinimalConfig(dir);
  cfg["inputs"] = json::array();
  auto path = WriteConfig(dir, cfg);
  auto r = RunEdgeferry({"run", "-c", path.string()}, {{"NOTIFY_SOCKET", std::nullopt}});
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("/inputs") != std::string::npos);
  CHECK(!fs::exists(dir / "buffer.db"));
}

TEST_CASE("run: a buffer that cannot be opened is a runtime failure, exit 1") {
  rig::TempDir dir;
  json cfg = MinimalConfig(dir);
  cfg["buffer"]["path"] = (dir / "no" / "such" / "dir" / "buffer.db").string();
  auto path = WriteConfig(dir, cfg);
  auto r = RunEdgeferry({"run", "-c", path.string()}, {{"NOTIFY_SOCKET", std::nullopt}});
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("no/such/dir") != std::string::npos);
}

TEST_CASE("status and dead-letters without any agent run: exit 3 / 1, clear message") {
  rig::TempDir dir;
  auto path = WriteConfig(dir, MinimalConfig(dir));
  auto st = RunEdgeferry({"status", "-c", path.string()});
  CHECK(st.exit_code == 3);
  CHECK(st.err.find("has not run") != std::string::npos);
  auto dl = RunEdgeferry({"dead-letters", "list", "-c", path.string()});
  CHECK(dl.exit_code == 1);
  CHECK(dl.err.find("has not run") != std::string::npos);
}

}  // namespace
}  // namespace edgeferry::agent_test
