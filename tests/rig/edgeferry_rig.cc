// edgeferry-rig: starts the rig's brokers outside a test, for the ctest fixture `kafka_shared`
// and for scripts/demo. The brokers outlive this command; `down` stops them.
//
//   edgeferry-rig kafka-up STATE       one-node Kafka; writes STATE, prints bootstrap=HOST:PORT
//   edgeferry-rig mosquitto-up STATE   Mosquitto; writes STATE, prints uri=tcp://HOST:PORT
//   edgeferry-rig down STATE           SIGTERM (then SIGKILL after 30 s) the pids in STATE,
//                                      removes their directory and STATE
//
// STATE is a key=value file: bootstrap= or uri=/port=, pid= (one line per process), dir=.
// Exit status 0 on success, 1 with a message on stderr otherwise.
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "tests/rig/rig.h"

namespace rig = edgeferry::rig;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

fs::path Pending(const fs::path& state);

void WriteState(const fs::path& state, const std::string& text) {
  fs::create_directories(fs::absolute(state).parent_path());
  const fs::path tmp = state.string() + ".tmp";
  std::ofstream out(tmp);
  out << text;
  out.close();
  if (!out) throw rig::RigError("cannot write " + tmp.string());
  fs::rename(tmp, state);  // readers never see a half-written file
  std::error_code ec;
  fs::remove(Pending(state), ec);  // STATE now lists everything
  std::cout << text << std::flush;
}

bool Alive(pid_t pid) { return ::kill(pid, 0) == 0; }

fs::path Pending(const fs::path& state) { return state.string() + ".pending"; }

int Down(const fs::path& state) {
  // The pending file lists what an `up` spawned even if it died before writing STATE.
  std::istringstream in(rig::ReadFile(state) + rig::ReadFile(Pending(state)));
  std::vector<pid_t> pids;
  std::vector<fs::path> dirs;
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("pid=", 0) == 0) pids.push_back(std::stoi(line.substr(4)));
    if (line.rfind("dir=", 0) == 0) dirs.push_back(line.substr(4));
  }
  for (pid_t p : pids) {
    if (p > 0) ::kill(p, SIGTERM);
  }
  // Not our children (they were started by an earlier edgeferry-rig): poll for their exit.
  bool gone = rig::WaitFor(
      [&] {
        for (pid_t p : pids) {
          if (p > 0 && Alive(p)) return false;
        }
        return true;
      },
      30s);
  if (!gone) {
    for (pid_t p : pids) {
      if (p > 0 && Alive(p)) ::kill(p, SIGKILL);
    }
    rig::WaitFor(
        [&] {
          for (pid_t p : pids) {
            if (p > 0 && Alive(p)) return false;
          }
          return true;
        },
        10s);
  }
  std::error_code ec;
  // Only remove what the rig created (TempDirs named edgeferry-*).
  for (const auto& dir : dirs) {
    if (!dir.empty() && dir.filename().string().rfind("edgeferry-", 0) == 0) {
      fs::remove_all(dir, ec);
    }
  }
  fs::remove(state, ec);
  fs::remove(Pending(state), ec);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: edgeferry-rig kafka-up|mosquitto-up|down STATE_FILE\n";
    return 2;
  }
  const std::string cmd = argv[1];
  const fs::path state = argv[2];
  if (cmd != "down") {
    // Record spawned pids and dirs before anything can fail (see rig::NoteDetachable).
    std::error_code ec;
    fs::remove(Pending(state), ec);
    fs::create_directories(fs::absolute(state).parent_path(), ec);
    ::setenv("EDGEFERRY_RIG_PENDING_FILE", fs::absolute(Pending(state)).c_str(), 1);
  }
  try {
    if (cmd == "kafka-up") {
      auto kafka = rig::KafkaCluster::Start(1, {}, /*detachable=*/true);
      std::string text = "bootstrap=" + kafka->bootstrap() + "\n";
      if (kafka->owned()) {
        for (int p : kafka->pids()) text += "pid=" + std::to_string(p) + "\n";
        text += "dir=" + kafka->dir().string() + "\n";
        kafka->Detach();
      }
      WriteState(state, text);
      return 0;
    }
    if (cmd == "mosquitto-up") {
      rig::MosquittoOptions o;
      o.detachable = true;
      rig::Mosquitto m(o);
      std::string text = "uri=" + m.uri() + "\nport=" + std::to_string(m.port()) +
                         "\npid=" + std::to_string(m.pid()) + "\ndir=" + m.dir().string() + "\n";
      m.Detach();
      WriteState(state, text);
      return 0;
    }
    if (cmd == "down") return Down(state);
    std::cerr << "edgeferry-rig: unknown command " << cmd << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "edgeferry-rig " << cmd << ": " << e.what() << "\n";
    return 1;
  }
}
