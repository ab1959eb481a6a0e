#include "agent/cli.h"

#include <fmt/format.h>
#include <signal.h>
#include <sqlite3.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <thread>

#include "agent/daemon.h"
#include "agent/dead_letters.h"
#include "agent/status.h"
#include "agent/version.h"
#include "buffer/buffer.h"
#include "common/clock.h"
#include "config/config.h"
#include "forwarder/forwarder.h"

namespace edgeferry::agent {

using nlohmann::json;

namespace {

constexpr const char* kDescription =
    "edgeferry forwards sensor readings and MQTT messages to Apache Kafka. Every reading is\n"
    "first stored in a crash-safe buffer on this device, and leaves it only once Kafka has\n"
    "confirmed it, so outages, crashes and power cuts lose nothing.";

constexpr const char* kFooter =
    "Getting started:\n"
    "  edgeferry check-config -c my.json   check a config file, print every problem\n"
    "  edgeferry run -c my.json            run in the foreground (Ctrl-C stops cleanly)\n"
    "  edgeferry status -c my.json         backlog, deliveries and inputs of the running agent\n"
    "The config is one JSON file (default /etc/edgeferry/edgeferry.json); its keys are described\n"
    "in config/README.md. Under systemd: systemctl status edgeferry; reload with systemctl "
    "reload.\n"
    "\n"
    "Exit codes:\n"
    "  0  success\n"
    "  1  runtime failure (buffer cannot be opened, Kafka client cannot be created, I/O error)\n"
    "  2  bad config file or bad command line\n"
    "  3  no running agent (status, dead-letters: the agent is not running or has not run yet)";

// Loads and checks a config for a command; prints every error ("path: message", one per line)
// on stderr. Returns nullopt when the config is unusable.
std::optional<config::Config> LoadForCommand(const std::string& path, bool deep) {
  config::LoadResult lr = config::LoadFile(path);
  std::vector<config::ConfigError> errors = lr.errors;
  if (errors.empty() && deep) errors = ValidateComponents(*lr.config);
  if (!errors.empty()) {
    for (const auto& e : errors) std::cerr << e.ToString() << '\n';
    std::cerr << fmt::format("{}: {} error(s)\n", path, errors.size());
    return std::nullopt;
  }
  return std::move(lr.config);
}

int CmdCheckConfig(const std::string& path) {
  auto cfg = LoadForCommand(path, /*deep=*/true);
  if (!cfg) return kExitBadConfig;
  size_t enabled = 0;
  for (const auto& in : cfg->inputs) enabled += in.enabled ? 1 : 0;
  std::cout << fmt::format("{}: OK: device {}, {} input(s) enabled, buffer {}, kafka {}\n", path,
                           cfg->device_id, enabled, cfg->buffer.path,
                           fmt::join(cfg->kafka.brokers, ","));
  return kExitOk;
}

int CmdStatus(const std::string& path, const std::string& buffer_path, bool as_json) {
  std::optional<config::Config> cfg;
  if (!buffer_path.empty()) {
    cfg.emplace();  // only the buffer path matters for status
    cfg->buffer.path = buffer_path;
    cfg->buffer.max_bytes = 0;  // unknown without the config
  } else {
    cfg = LoadForCommand(path, /*deep=*/false);
    if (!cfg) return kExitBadConfig;
  }
  int64_t now = SystemClock()->NowUnixMs();
  if (!std::filesystem::exists(cfg->buffer.path)) {
    std::cerr << fmt::format(
        "edgeferry status: no buffer at {}: the agent has not run with this "
        "config yet\n",
        cfg->buffer.path);
    return kExitNotRunning;
  }
  auto st = CollectStatus(*cfg, now);
  if (!st.ok()) {
    std::cerr << fmt::format("edgeferry status: buffer {}: {}\n", cfg->buffer.path,
                             st.status().ToString());
    return kExitFailure;
  }
  if (as_json) {
    std::cout << st->dump(2, ' ', false, json::error_handler_t::replace) << '\n';
  } else {
    std::cout << FormatStatus(*st, now);
  }
  return (*st)["daemon"].value("running", false) ? kExitOk : kExitNotRunning;
}

int CmdVersion() {
  std::cout << fmt::format("edgeferry {}\nlibrdkafka {}\nSQLite {}\nzstd {}\n{}\n", kVersion,
                           forwarder::LibrdkafkaVersion(), sqlite3_libversion(),
                           buffer::ZstdVersion(), sensors::MqttClientVersion());
  return kExitOk;
}

// Runs a dead-letter request: through the daemon when one runs (it alone writes the buffer),
// else on the buffer directly.
std::optional<json> RequestThroughDaemon(const config::Config& cfg, int pid, json req) {
  std::string id = fmt::format("{}-{}", getpid(), SystemClock()->NowUnixMs());
  req["id"] = id;
  std::string tmp = RequestPath(cfg.buffer) + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << req.dump() << '\n';
    if (!out) {
      std::cerr << fmt::format("edgeferry: cannot write {}: {}\n", tmp, std::strerror(errno));
      return std::nullopt;
    }
  }
  std::rename(tmp.c_str(), RequestPath(cfg.buffer).c_str());
  if (kill(pid, SIGUSR1) != 0) {
    std::cerr << fmt::format("edgeferry: cannot signal the agent (pid {}): {}\n", pid,
                             std::strerror(errno));
    return std::nullopt;
  }
  // The daemon answers from its main loop, within a second unless it is stuck.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  while (std::chrono::steady_clock::now() < deadline) {
    std::ifstream in(ResponsePath(cfg.buffer));
    json resp;
    if (in) {
      try {
        in >> resp;
      } catch (const json::exception&) {
        resp = json();
      }
    }
    if (resp.is_object() && resp.value("id", std::string()) == id) {
      std::remove(ResponsePath(cfg.buffer).c_str());
      return resp;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::cerr << fmt::format("edgeferry: the agent (pid {}) did not answer within 15 s\n", pid);
  return std::nullopt;
}

// Runs a dead-letter request: through the daemon when one runs (it alone writes the buffer),
// else on the buffer directly. An agent that is starting holds the buffer's lock before it
// publishes its status file: then this waits for the status file and asks the agent.
std::optional<json> DeadLetterRequest(const config::Config& cfg, json req) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  for (;;) {
    if (auto pid = LiveDaemonPid(cfg.buffer)) return RequestThroughDaemon(cfg, *pid, req);
    if (!std::filesystem::exists(cfg.buffer.path)) {
      std::cerr << fmt::format("edgeferry: no buffer at {}: the agent has not run yet\n",
                               cfg.buffer.path);
      return std::nullopt;
    }
    buffer::OpenOptions opts;
    opts.lock_wait_ms = 0;
    auto buf = buffer::Buffer::Open(cfg.buffer, SystemClock(), opts);
    if (buf.ok()) return ServeRequest(**buf, req);
    if (buf.status().code() != Status::Code::kUnavailable ||
        std::chrono::steady_clock::now() >= deadline) {
      std::cerr << fmt::format("edgeferry: buffer {}: {}\n", cfg.buffer.path,
                               buf.status().ToString());
      return std::nullopt;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

int CmdDeadLettersList(const std::string& path, bool as_json, size_t limit) {
  auto cfg = LoadForCommand(path, false);
  if (!cfg) return kExitBadConfig;
  auto resp = DeadLetterRequest(*cfg, {{"op", "list"}, {"limit", limit}});
  if (!resp) return kExitFailure;
  if (!resp->value("ok", false)) {
    std::cerr << "edgeferry: " << resp->value("error", std::string()) << '\n';
    return kExitFailure;
  }
  if (as_json) {
    std::cout << (*resp)["dead_letters"].dump(2, ' ', false, json::error_handler_t::replace)
              << '\n';
  } else {
    std::cout << FormatDeadLetters(*resp);
  }
  return kExitOk;
}

int CmdDeadLettersRequeue(const std::string& path, bool all, const std::vector<int64_t>& ids) {
  auto cfg = LoadForCommand(path, false);
  if (!cfg) return kExitBadConfig;
  json req = {{"op", "requeue"}, {"all", all}, {"ids", ids}};
  auto resp = DeadLetterRequest(*cfg, req);
  if (!resp) return kExitFailure;
  if (!resp->value("ok", false)) {
    std::cerr << "edgeferry: " << resp->value("error", std::string()) << '\n';
    return kExitFailure;
  }
  std::cout << fmt::format("re-queued {} record(s)\n", resp->value("requeued", uint64_t{0}));
  return kExitOk;
}

}  // namespace

int RunCli(int argc, char** argv) {
  try {
    CLI::App app{kDescription, "edgeferry"};
    app.footer(kFooter);
    app.require_subcommand(1);
    app.set_version_flag("-V,--version", std::string("edgeferry ") + kVersion);

    std::string config_path = config::kDefaultPath;
    auto add_config = [&config_path](CLI::App* sub) {
      sub->add_option("-c,--config", config_path, "The JSON config file")->capture_default_str();
    };

    CLI::App* run = app.add_subcommand(
        "run",
        "Run the agent in the foreground until SIGTERM or Ctrl-C (the systemd unit runs this)");
    add_config(run);
    CLI::App* check = app.add_subcommand(
        "check-config",
        "Check a config file and print every problem, one per line (exit 2 if any)");
    add_config(check);
    bool status_json = false;
    CLI::App* status = app.add_subcommand(
        "status",
        "Show backlog, drops, dead letters, last delivery and input counters of the agent");
    add_config(status);
    status->add_flag("--json", status_json, "Print JSON instead of text");
    std::string status_buffer;
    status->add_option("--buffer", status_buffer,
                       "Read this buffer database instead of the config's buffer.path (for when "
                       "the config file itself is broken)");
    CLI::App* version =
        app.add_subcommand("version", "Print the versions of edgeferry and its libraries");

    CLI::App* dl = app.add_subcommand(
        "dead-letters", "List or re-queue records that Kafka refused for good (e.g. too large)");
    dl->require_subcommand(1);
    bool dl_json = false;
    size_t dl_limit = 1000;
    CLI::App* dl_list = dl->add_subcommand("list", "List dead letters, oldest first");
    add_config(dl_list);
    dl_list->add_flag("--json", dl_json, "Print JSON instead of a table");
    dl_list->add_option("--limit", dl_limit, "Show at most this many")->capture_default_str();
    bool dl_all = false;
    std::vector<int64_t> dl_ids;
    CLI::App* dl_requeue = dl->add_subcommand(
        "requeue", "Append dead letters to the buffer again (new sequence numbers) to retry them");
    add_config(dl_requeue);
    auto* all_flag = dl_requeue->add_flag("--all", dl_all, "Re-queue every dead letter");
    auto* ids_opt =
        dl_requeue->add_option("ID", dl_ids, "Dead-letter IDs (from dead-letters list)");
    all_flag->excludes(ids_opt);
    dl_requeue->callback([&] {
      if (!dl_all && dl_ids.empty()) throw CLI::ValidationError("requeue", "give IDs or --all");
    });

    try {
      app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
      int rc = app.exit(e);
      return rc == 0 ? kExitOk : kExitBadConfig;
    }

    if (*run) return RunDaemon(config_path);
    if (*check) return CmdCheckConfig(config_path);
    if (*status) return CmdStatus(config_path, status_buffer, status_json);
    if (*version) return CmdVersion();
    if (*dl_list) return CmdDeadLettersList(config_path, dl_json, dl_limit);
    if (*dl_requeue) return CmdDeadLettersRequeue(config_path, dl_all, dl_ids);
    return kExitBadConfig;
  } catch (const std::exception& e) {
    std::cerr << "edgeferry: " << e.what() << '\n';
    return kExitFailure;
  }
}

}  // namespace edgeferry::agent
