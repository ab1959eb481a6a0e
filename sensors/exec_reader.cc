// The exec input: runs a command (no shell) per poll with a real timeout, and parses its stdout
// as JSON or key=value lines. The child runs in its own process group, which is SIGKILLed at the
// deadline so that a hung script and its children never outlive the poll.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>
#include <sstream>

#include "sensors/readers.h"

extern char** environ;

namespace edgeferry::sensors {
namespace {

constexpr size_t kMaxOutput = 1 << 20;

// Closes a file descriptor on scope exit.
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

struct ExecResult {
  bool started = false;
  bool timed_out = false;
  int status = 0;  // waitpid status
  std::string out, err;
  std::string error;  // spawn failure
};

ExecResult RunCommand(const std::vector<std::string>& argv, Clock* clock,
                      Clock::TimePoint deadline) {
  ExecResult r;
  int out_pipe[2], err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) {
    r.error = std::string("pipe: ") + std::strerror(errno);
    return r;
  }
  Fd out_r{out_pipe[0]}, out_w{out_pipe[1]};
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) {
    r.error = std::string("pipe: ") + std::strerror(errno);
    return r;
  }
  Fd err_r{err_pipe[0]}, err_w{err_pipe[1]};

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, out_w.fd, 1);
  posix_spawn_file_actions_adddup2(&fa, err_w.fd, 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  std::vector<char*> cargv;
  for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  pid_t pid = -1;
  int rc = ::posix_spawnp(&pid, cargv[0], &fa, &attr, cargv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    r.error = argv[0] + ": " + std::strerror(rc);
    return r;
  }
  r.started = true;
  ::close(out_w.fd);
  out_w.fd = -1;
  ::close(err_w.fd);
  err_w.fd = -1;

  bool out_open = true, err_open = true;
  char buf[8192];
  while (out_open || err_open) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock->Now());
    if (left.count() <= 0) {
      r.timed_out = true;
      break;
    }
    pollfd fds[2] = {{out_open ? out_r.fd : -1, POLLIN, 0}, {err_open ? err_r.fd : -1, POLLIN, 0}};
    int n = ::poll(fds, 2, static_cast<int>(std::min<int64_t>(left.count(), 100)));
    if (n < 0 && errno != EINTR) break;
    for (int i = 0; i < 2; ++i) {
      if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      ssize_t got = ::read(fds[i].fd, buf, sizeof buf);
      if (got <= 0) {
        (i == 0 ? out_open : err_open) = false;
        continue;
      }
      std::string& dst = i == 0 ? r.out : r.err;
      if (dst.size() < kMaxOutput) dst.append(buf, static_cast<size_t>(got));
    }
  }
  // Output closed: the child is exiting (or closed its stdout and keeps running: wait until the
  // deadline for that).
  while (!r.timed_out) {
    pid_t w = ::waitpid(pid, &r.status, WNOHANG);
    if (w == pid) return r;
    if (w < 0 && errno != EINTR) return r;
    if (clock->Now() >= deadline) {
      r.timed_out = true;
      break;
    }
    ::usleep(2000);  // a child that closed stdout is usually exiting; poll briefly
  }
  ::kill(-pid, SIGKILL);
  while (::waitpid(pid, &r.status, 0) < 0 && errno == EINTR) {
  }
  return r;
}

class ExecReader final : public SensorReader {
 public:
  ExecReader(const config::SensorInputConfig& cfg, Clock* clock) : cfg_(cfg), clock_(clock) {}

  void Read(Clock::TimePoint deadline, std::vector<Reading>* out, const FailFn& fail) override {
    const std::string& cmd = cfg_.command.front();
    ExecResult r = RunCommand(cfg_.command, clock_, deadline);
    if (!r.started) {
      fail(cmd, "exec", r.error);
      return;
    }
    if (r.timed_out) {
      fail(cmd, "timeout", fmt::format("{} killed after {} ms", cmd, cfg_.timeout_ms));
      return;
    }
    if (!WIFEXITED(r.status) || WEXITSTATUS(r.status) != 0) {
      std::string why = WIFEXITED(r.status)
                            ? fmt::format("exit status {}", WEXITSTATUS(r.status))
                            : fmt::format("killed by signal {}", WTERMSIG(r.status));
      fail(cmd, "exec", fmt::format("{}: {}: {}", cmd, why, r.err.substr(0, 200)));
      return;
    }
    if (cfg_.format == "kv") {
      ParseKv(r.out, out, fail);
    } else {
      ParseJson(r.out, out, fail);
    }
  }

 private:
  void ParseKv(const std::string& text, std::vector<Reading>* out, const FailFn& fail) {
    std::istringstream in(text);
    std::string line;
    int lineno = 0;
    while (std::getline(in, line)) {
      ++lineno;
      size_t b = line.find_first_not_of(" \t\r");
      if (b == std::string::npos || line[b] == '#') continue;
      size_t eq = line.find('=', b);
      std::string cmd = cfg_.command.front();
      if (eq == std::string::npos || eq == b) {
        fail(cmd, "parse", fmt::format("{}: line {}: expected name=value", cmd, lineno));
        continue;
      }
      std::string name = line.substr(b, eq - b);
      while (!name.empty() && (name.back() == ' ' || name.back() == '\t')) name.pop_back();
      std::istringstream vs(line.substr(eq + 1));
      std::string num, unit;
      vs >> num >> unit;
      char* end = nullptr;
      double v = std::strtod(num.c_str(), &end);
      if (num.empty() || *end != '\0' || !std::isfinite(v)) {
        fail(name, "parse",
             fmt::format("{}: line {}: value of {} is not a number: \"{}\"", cmd, lineno, name,
                         num));
        continue;
      }
      out->push_back({name, v, unit, 0, 0});
    }
  }

  // Accepts {"name": 1.5, "other": {"value": 2, "unit": "V"}}, one {"sensor","value","unit"}
  // object, an array of those, or one such document per line.
  void ParseJson(const std::string& text, std::vector<Reading>* out, const FailFn& fail) {
    const std::string& cmd = cfg_.command.front();
    nlohmann::json doc = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (!doc.is_discarded()) {
      FromJson(doc, out, fail);
      return;
    }
    std::istringstream in(text);
    std::string line;
    int lineno = 0;
    while (std::getline(in, line)) {
      ++lineno;
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
      if (j.is_discarded()) {
        fail(cmd, "parse", fmt::format("{}: line {}: not JSON", cmd, lineno));
        continue;
      }
      FromJson(j, out, fail);
    }
  }

  void FromJson(const nlohmann::json& j, std::vector<Reading>* out, const FailFn& fail) {
    const std::string& cmd = cfg_.command.front();
    if (j.is_array()) {
      for (const auto& e : j) FromJson(e, out, fail);
      return;
    }
    if (!j.is_object()) {
      fail(cmd, "parse", cmd + ": expected a JSON object or array");
      return;
    }
    if (j.contains("sensor") && j.contains("value")) {
      One(j["sensor"].is_string() ? j["sensor"].get<std::string>() : cmd, j["value"],
          j.value("unit", std::string()), out, fail);
      return;
    }
    for (const auto& [name, v] : j.items()) {
      if (v.is_object()) {
        One(name, v.value("value", nlohmann::json()), v.value("unit", std::string()), out, fail);
      } else {
        One(name, v, "", out, fail);
      }
    }
  }

  void One(const std::string& name, const nlohmann::json& v, const std::string& unit,
           std::vector<Reading>* out, const FailFn& fail) {
    if (!v.is_number()) {
      fail(name, "parse",
           fmt::format("{}: value of {} is not a number: {}", cfg_.command.front(), name,
                       v.dump().substr(0, 40)));
      return;
    }
    out->push_back({name, v.get<double>(), unit, 0, 0});
  }

  config::SensorInputConfig cfg_;
  Clock* clock_;
};

}  // namespace

std::unique_ptr<SensorReader> MakeExecReader(const config::SensorInputConfig& cfg, Clock* clock) {
  return std::make_unique<ExecReader>(cfg, clock);
}

}  // namespace edgeferry::sensors
