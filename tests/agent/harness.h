// Helpers for the agent's tests: run the edgeferry binary (one-shot commands or the daemon),
// write configs, and a fake NOTIFY_SOCKET that collects sd_notify messages.
#pragma once

#include <chrono>
#include <filesystem>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "tests/rig/rig.h"

namespace edgeferry::agent_test {

using Env = std::map<std::string, std::optional<std::string>>;

struct CommandResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// Runs `edgeferry args...` to completion (fails the test after `timeout`).
CommandResult RunEdgeferry(const std::vector<std::string>& args, const Env& env = {},
                           std::chrono::milliseconds timeout = std::chrono::seconds(30));

// Writes `config` as JSON to dir/name and returns the path.
std::filesystem::path WriteConfig(const rig::TempDir& dir, const nlohmann::json& config,
                                  const std::string& name = "edgeferry.json");

// A config with one simulated input writing to `topic` on `bootstrap` ("h:p,h:p"), its buffer in
// `dir`.
nlohmann::json SimulatedConfig(const rig::TempDir& dir, const std::string& bootstrap,
                               const std::string& device, const std::string& topic,
                               double rate_hz = 50, int sensors = 2);

// `edgeferry run -c config` as a child process, stderr+stdout to dir/agent.log. Killed by the
// destructor if still running.
class Daemon {
 public:
  // `run_as`: a command prefix for the agent (e.g. setpriv to drop root), empty for none.
  Daemon(const rig::TempDir& dir, const std::filesystem::path& config, const Env& env = {},
         const std::vector<std::string>& run_as = {});
  rig::Process& process() { return process_; }
  std::string Log() const { return rig::ReadFile(log_); }
  // SIGTERM and wait; returns the exit code (nullopt on timeout).
  std::optional<int> Terminate(std::chrono::milliseconds timeout = std::chrono::seconds(60));

 private:
  std::filesystem::path log_;
  rig::Process process_;
};

// Binds a unix datagram socket at `path` to stand in for systemd's notify socket.
class NotifySocket {
 public:
  explicit NotifySocket(std::filesystem::path path);
  ~NotifySocket();
  NotifySocket(const NotifySocket&) = delete;
  NotifySocket& operator=(const NotifySocket&) = delete;

  const std::filesystem::path& path() const { return path_; }
  // A reader thread takes every datagram as it arrives (so the agent's sd_notify never blocks on
  // a full socket queue), each line of a datagram one message. Thread-safe.
  // Messages received so far that start with `prefix` ("READY=1", "STATUS=").
  std::vector<std::string> Messages(std::string_view prefix) const;
  size_t Count(std::string_view prefix) const { return Messages(prefix).size(); }
  // When the last message with `prefix` arrived (steady clock), if any.
  std::optional<std::chrono::steady_clock::time_point> Last(std::string_view prefix) const;

 private:
  struct Msg {
    std::chrono::steady_clock::time_point at;
    std::string text;
  };
  void ReadLoop();
  std::filesystem::path path_;
  int fd_ = -1;
  int stop_fd_ = -1;  // eventfd that ends ReadLoop
  mutable std::mutex mu_;
  std::vector<Msg> msgs_;  // guarded by mu_
  std::thread reader_;
};

// The buffer's view after the daemon stopped: last seq and the kafka cursor.
struct BufferState {
  uint64_t last_seq = 0;
  uint64_t cursor = 0;
  uint64_t records = 0;
};
BufferState ReadBuffer(const std::string& path);

// Header value by name, or nullopt.
std::optional<std::string> HeaderValue(const rig::ConsumedRecord& r, std::string_view name);

}  // namespace edgeferry::agent_test
