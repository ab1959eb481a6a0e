#include "tests/agent/harness.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <sstream>

#include "buffer/buffer.h"

namespace edgeferry::agent_test {

namespace fs = std::filesystem;
using nlohmann::json;

CommandResult RunEdgeferry(const std::vector<std::string>& args, const Env& env,
                           std::chrono::milliseconds timeout) {
  rig::TempDir dir("edgeferry-cli");
  std::vector<std::string> argv = rig::EdgeferryCommand();
  argv.insert(argv.end(), args.begin(), args.end());
  rig::Process::Options o;
  o.env = env;
  o.stdout_path = dir / "out";
  o.stderr_path = dir / "err";
  rig::Process p(argv, o);
  auto code = p.Wait(timeout);
  REQUIRE_MESSAGE(code.has_value(), "edgeferry did not finish in time");
  return {*code, rig::ReadFile(dir / "out"), rig::ReadFile(dir / "err")};
}

fs::path WriteConfig(const rig::TempDir& dir, const json& config, const std::string& name) {
  fs::path p = dir / name;
  std::ofstream(p) << config.dump(2) << '\n';
  return p;
}

json SimulatedConfig(const rig::TempDir& dir, const std::string& bootstrap,
                     const std::string& device, const std::string& topic, double rate_hz,
                     int sensors) {
  json brokers = json::array();
  std::stringstream ss(bootstrap);
  for (std::string b; std::getline(ss, b, ',');) brokers.push_back(b);
  return {{"device_id", device},
          {"buffer", {{"path", (dir / "buffer.db").string()}}},
          {"kafka", {{"brokers", brokers}, {"linger_ms", 5}}},
          {"inputs",
           {{{"name", "sim"},
             {"type", "simulated"},
             {"topic", topic},
             {"rate_hz", rate_hz},
             {"sensors", sensors}}}}};
}

Daemon::Daemon(const rig::TempDir& dir, const fs::path& config, const Env& env,
               const std::vector<std::string>& run_as)
    : log_(dir / "agent.log") {
  rig::Process::Options o;
  o.env = env;
  // The agent must not think it runs under systemd unless a test says so.
  if (!o.env.count("NOTIFY_SOCKET")) o.env["NOTIFY_SOCKET"] = std::nullopt;
  if (!o.env.count("WATCHDOG_USEC")) o.env["WATCHDOG_USEC"] = std::nullopt;
  o.stdout_path = log_;
  std::vector<std::string> argv = run_as;
  for (std::string& a : rig::EdgeferryCommand()) argv.push_back(std::move(a));
  argv.insert(argv.end(), {"run", "-c", config.string()});
  process_ = rig::Process(argv, o);
}

std::optional<int> Daemon::Terminate(std::chrono::milliseconds timeout) {
  process_.Signal(SIGTERM);
  return process_.Wait(timeout);
}

NotifySocket::NotifySocket(fs::path path) : path_(std::move(path)) {
  fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  REQUIRE(fd_ >= 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::string p = path_.string();
  REQUIRE(p.size() < sizeof(addr.sun_path));
  std::memcpy(addr.sun_path, p.c_str(), p.size() + 1);
  REQUIRE_MESSAGE(bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0,
                  "bind " << p << ": " << std::strerror(errno));
  stop_fd_ = eventfd(0, EFD_CLOEXEC);
  REQUIRE(stop_fd_ >= 0);
  reader_ = std::thread([this] { ReadLoop(); });
}

NotifySocket::~NotifySocket() {
  uint64_t one = 1;
  if (write(stop_fd_, &one, sizeof(one)) < 0) std::abort();
  reader_.join();
  close(stop_fd_);
  close(fd_);
  std::error_code ec;
  fs::remove(path_, ec);
}

void NotifySocket::ReadLoop() {
  char buf[4096];
  for (;;) {
    pollfd fds[2] = {{fd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) continue;
    if (fds[1].revents) return;
    for (;;) {
      ssize_t n = recv(fd_, buf, sizeof(buf), 0);
      if (n <= 0) break;
      auto now = std::chrono::steady_clock::now();
      std::stringstream ss(std::string(buf, static_cast<size_t>(n)));
      std::lock_guard lock(mu_);
      for (std::string line; std::getline(ss, line);) {
        if (!line.empty()) msgs_.push_back({now, line});
      }
    }
  }
}

std::vector<std::string> NotifySocket::Messages(std::string_view prefix) const {
  std::lock_guard lock(mu_);
  std::vector<std::string> out;
  for (const auto& m : msgs_) {
    if (m.text.compare(0, prefix.size(), prefix) == 0) out.push_back(m.text);
  }
  return out;
}

std::optional<std::chrono::steady_clock::time_point> NotifySocket::Last(
    std::string_view prefix) const {
  std::lock_guard lock(mu_);
  std::optional<std::chrono::steady_clock::time_point> last;
  for (const auto& m : msgs_) {
    if (m.text.compare(0, prefix.size(), prefix) == 0) last = m.at;
  }
  return last;
}

BufferState ReadBuffer(const std::string& path) {
  auto st = buffer::ReadStats(path);
  REQUIRE_MESSAGE(st.ok(), st.status().ToString());
  BufferState out;
  out.last_seq = st->last_seq;
  out.records = st->records;
  auto it = st->cursors.find(std::string(buffer::kForwarderCursor));
  if (it != st->cursors.end()) out.cursor = it->second.seq;
  return out;
}

std::optional<std::string> HeaderValue(const rig::ConsumedRecord& r, std::string_view name) {
  for (const auto& h : r.headers) {
    if (h.name == name) return h.value;
  }
  return std::nullopt;
}

}  // namespace edgeferry::agent_test
