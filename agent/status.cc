#include "agent/status.h"

#include <fmt/format.h>
#include <signal.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <system_error>

namespace edgeferry::agent {

using nlohmann::json;

namespace {

// A status file older than this is from a daemon that stopped updating it (hung or gone).
constexpr int64_t kStaleAfterMs = 10'000;

json Counts(const std::map<std::string, uint64_t>& m) {
  json j = json::object();
  for (const auto& [k, v] : m) j[k] = v;
  return j;
}

template <typename T>
T Get(const json& j, const char* key, T fallback) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  try {
    return it->get<T>();
  } catch (const json::exception&) {
    return fallback;
  }
}

std::string CountList(const json& j) {
  if (!j.is_object() || j.empty()) return "none";
  std::string out;
  for (const auto& [k, v] : j.items()) {
    if (!out.empty()) out += ", ";
    out += fmt::format("{} {}", k, v.dump());
  }
  return out;
}

std::string Ago(int64_t then_ms, int64_t now_ms) {
  if (then_ms <= 0) return "never";
  return HumanDuration(std::max<int64_t>(0, now_ms - then_ms)) + " ago";
}

}  // namespace

std::string StatusFilePath(const config::BufferConfig& cfg) { return cfg.path + "-status.json"; }

namespace {

bool Alive(int pid) { return pid > 0 && (kill(pid, 0) == 0 || errno == EPERM); }

bool SamePath(const std::string& a, const std::string& b) {
  std::error_code ec1, ec2;
  auto ca = std::filesystem::weakly_canonical(a, ec1);
  auto cb = std::filesystem::weakly_canonical(b, ec2);
  return ec1 || ec2 ? a == b : ca == cb;
}

std::optional<json> ParseStatusFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  json file;
  try {
    in >> file;
  } catch (const json::exception&) {
    return std::nullopt;  // torn or foreign file: treat as absent
  }
  if (!file.is_object() || !file.contains("daemon") || !file["daemon"].is_object()) {
    return std::nullopt;
  }
  return file;
}

}  // namespace

std::string DaemonStatusFilePath(const config::BufferConfig& cfg) {
  const char* runtime = std::getenv("RUNTIME_DIRECTORY");
  if (runtime != nullptr && *runtime != '\0') {
    std::string dir(runtime);
    dir = dir.substr(0, dir.find(':'));  // several directories are separated by ':'
    return dir + "/status.json";
  }
  return StatusFilePath(cfg);
}

std::optional<json> ReadStatusFile(const config::BufferConfig& cfg,
                                   const std::string& runtime_dir) {
  std::vector<json> found;
  if (auto f = ParseStatusFile(StatusFilePath(cfg))) found.push_back(std::move(*f));
  if (auto f = ParseStatusFile(runtime_dir + "/status.json")) {
    if (SamePath(Get<std::string>((*f)["daemon"], "buffer_path", ""), cfg.path)) {
      found.push_back(std::move(*f));
    }
  }
  for (const auto& f : found) {
    if (Alive(Get<int>(f.at("daemon"), "pid", 0))) return f;
  }
  if (!found.empty()) return found.front();
  return std::nullopt;
}

std::optional<int> LiveDaemonPid(const config::BufferConfig& cfg, const std::string& runtime_dir) {
  auto file = ReadStatusFile(cfg, runtime_dir);
  if (!file) return std::nullopt;
  int pid = Get<int>((*file)["daemon"], "pid", 0);
  if (Alive(pid)) return pid;
  return std::nullopt;
}

json ToJson(const buffer::Stats& s) {
  json cursors = json::object();
  for (const auto& [name, c] : s.cursors)
    cursors[name] = {{"seq", c.seq}, {"lag_records", c.lag_records}};
  return {{"records", s.records},
          {"bytes", s.bytes},
          {"file_bytes", s.file_bytes},
          {"max_bytes", s.max_bytes},
          {"first_seq", s.first_seq},
          {"last_seq", s.last_seq},
          {"oldest_undelivered_age_ms", s.oldest_undelivered_age_ms},
          {"cursors", cursors},
          {"drops", Counts(s.drops)},
          {"dead_letters", Counts(s.dead_letters)},
          {"recoveries", s.recoveries},
          {"appended_total", s.appended_total}};
}

json ToJson(const forwarder::Stats& s) {
  return {
      {"delivered_records", s.delivered_records},
      {"delivered_bytes", s.delivered_bytes},
      {"inflight_records", s.inflight_records},
      {"inflight_bytes", s.inflight_bytes},
      {"resent_records", s.resent_records},
      {"dead_lettered", s.dead_lettered},
      {"producer_restarts", s.producer_restarts},
      {"delivery_failures", s.delivery_failures},
      {"purged_records", s.purged_records},
      {"errors_by_kind", Counts(s.errors_by_kind)},
      {"last_delivery_unix_ms", s.last_delivery_unix_ms},
      {"cursor", s.cursor},
      {"committed_cursor", s.committed_cursor},
      {"uncommitted_records", s.uncommitted_records},
      {"last_delivery_latency_ms", s.last_delivery_latency_ms},
      {"max_delivery_latency_ms", s.max_delivery_latency_ms},
      {"mean_delivery_latency_ms",
       s.delivery_latency.count == 0 ? 0 : s.delivery_latency.sum_ms / s.delivery_latency.count},
      {"backing_off", s.backing_off},
      {"last_error", s.last_error}};
}

json ToJson(const InputSnapshot& s) {
  return {{"name", s.name},
          {"type", s.type},
          {"state", s.error.empty() ? s.stats.state : std::string("failed")},
          {"error", s.error},
          {"received", s.stats.received},
          {"accepted", s.stats.accepted},
          {"rejected", s.stats.rejected},
          {"rejected_by_reason", Counts(s.stats.rejected_by_reason)},
          {"errors", s.stats.errors},
          {"errors_by_reason", Counts(s.stats.errors_by_reason)},
          {"reconnects", s.stats.reconnects}};
}

json DaemonJson(const Snapshot& s) {
  json inputs = json::array();
  for (const auto& in : s.inputs) inputs.push_back(ToJson(in));
  return {{"daemon",
           {{"pid", s.pid},
            {"version", s.version},
            {"device_id", s.device_id},
            {"config", s.config_path},
            {"buffer_path", s.buffer_path},
            {"started_unix_ms", s.started_unix_ms},
            {"updated_unix_ms", s.updated_unix_ms},
            {"heartbeats", s.heartbeats},
            {"restart_needed", s.restart_needed},
            {"reloads", s.reloads},
            {"last_reload_unix_ms", s.last_reload_unix_ms},
            {"last_reload_errors", s.last_reload_errors}}},
          {"kafka", ToJson(s.kafka)},
          {"inputs", inputs},
          {"watchdog", {{"stalled", s.stalled_loops}}}};
}

Status WriteStatusFile(const std::string& path, const Snapshot& s) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    if (!out) return Status::IOError(fmt::format("open {}: {}", tmp, std::strerror(errno)));
    out << DaemonJson(s).dump(1) << '\n';
    out.flush();
    if (!out) return Status::IOError(fmt::format("write {}: {}", tmp, std::strerror(errno)));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return Status::IOError(fmt::format("rename {} -> {}: {}", tmp, path, std::strerror(errno)));
  }
  return Status::Ok();
}

Result<json> CollectStatus(const config::Config& cfg, int64_t now_unix_ms) {
  auto stats = buffer::ReadStats(cfg.buffer.path);
  if (!stats.ok()) return stats.status();

  // The bound is configuration, not something the database records.
  if (stats->max_bytes == 0) stats->max_bytes = cfg.buffer.max_bytes;
  json doc = {{"buffer", ToJson(*stats)}, {"buffer_path", cfg.buffer.path}};
  json daemon = {{"running", false}};
  if (auto found = ReadStatusFile(cfg.buffer)) {
    json& file = *found;
    daemon = file["daemon"];
    int pid = Get<int>(daemon, "pid", 0);
    bool alive = Alive(pid);
    int64_t updated = Get<int64_t>(daemon, "updated_unix_ms", 0);
    daemon["running"] = alive;
    daemon["stale"] = alive && now_unix_ms - updated > kStaleAfterMs;
    if (alive) {
      doc["kafka"] = file.value("kafka", json::object());
      doc["inputs"] = file.value("inputs", json::array());
      doc["watchdog"] = file.value("watchdog", json::object());
    }
  }
  doc["daemon"] = daemon;
  return doc;
}

std::string FormatStatus(const json& st, int64_t now_ms) {
  std::string out;
  auto line = [&out](const std::string& s) { out += s + "\n"; };
  const json& d = st["daemon"];
  if (Get<bool>(d, "running", false)) {
    int64_t started = Get<int64_t>(d, "started_unix_ms", 0);
    line(fmt::format("edgeferry {}: running, pid {}, up {}, device {}{}",
                     Get<std::string>(d, "version", "?"), Get<int>(d, "pid", 0),
                     HumanDuration(now_ms - started), Get<std::string>(d, "device_id", "?"),
                     Get<bool>(d, "stale", false)
                         ? " (NOT RESPONDING: status not updated for " +
                               HumanDuration(now_ms - Get<int64_t>(d, "updated_unix_ms", 0)) + ")"
                         : ""));
    if (d.contains("last_reload_errors") && !d["last_reload_errors"].empty()) {
      line("  last reload REJECTED (the previous config still runs):");
      for (const auto& e : d["last_reload_errors"]) line("    " + e.get<std::string>());
    }
    if (Get<bool>(d, "restart_needed", false)) {
      line("  a reload changed buffer settings: they take effect after a restart");
    }
  } else {
    line("edgeferry: not running (showing the buffer only)");
  }

  const json& b = st["buffer"];
  line(fmt::format("buffer {}", Get<std::string>(st, "buffer_path", "")));
  uint64_t max_bytes = Get<uint64_t>(b, "max_bytes", 0);
  line(fmt::format("  backlog        {} records, {} (file {}{})", Get<uint64_t>(b, "records", 0),
                   HumanBytes(Get<uint64_t>(b, "bytes", 0)),
                   HumanBytes(Get<uint64_t>(b, "file_bytes", 0)),
                   max_bytes > 0 ? " of " + HumanBytes(max_bytes) : std::string()));
  int64_t age = Get<int64_t>(b, "oldest_undelivered_age_ms", 0);
  line(fmt::format("  oldest undelivered  {}",
                   age > 0 ? HumanDuration(age) : "none (all delivered)"));
  line(fmt::format("  seq            last {}, appended ever {}", Get<uint64_t>(b, "last_seq", 0),
                   Get<uint64_t>(b, "appended_total", 0)));
  if (b.contains("cursors")) {
    for (const auto& [name, c] : b["cursors"].items()) {
      line(fmt::format("  cursor {:<8}seq {}, lag {} records", name, Get<uint64_t>(c, "seq", 0),
                       Get<uint64_t>(c, "lag_records", 0)));
    }
  }
  line(fmt::format("  drops          {}", CountList(b.value("drops", json::object()))));
  line(fmt::format("  dead letters   {}", CountList(b.value("dead_letters", json::object()))));

  if (st.contains("kafka")) {
    const json& k = st["kafka"];
    line("kafka");
    line(fmt::format("  last delivery  {}",
                     Ago(Get<int64_t>(k, "last_delivery_unix_ms", 0), now_ms)));
    line(fmt::format("  delivered      {} records since start, {} in flight{}",
                     Get<uint64_t>(k, "delivered_records", 0),
                     Get<uint64_t>(k, "inflight_records", 0),
                     Get<bool>(k, "backing_off", false) ? ", backing off" : ""));
    if (Get<uint64_t>(k, "delivered_records", 0) > 0) {
      // Ingest-to-delivery: how far behind real time the data engineers' topics are.
      line(fmt::format("  latency        last {}, mean {}, max {}",
                       HumanDuration(Get<int64_t>(k, "last_delivery_latency_ms", 0)),
                       HumanDuration(Get<int64_t>(k, "mean_delivery_latency_ms", 0)),
                       HumanDuration(Get<int64_t>(k, "max_delivery_latency_ms", 0))));
    }
    line(fmt::format("  errors         {}", CountList(k.value("errors_by_kind", json::object()))));
    std::string last_error = Get<std::string>(k, "last_error", "");
    if (!last_error.empty()) line("  last error     " + last_error);
  }
  if (st.contains("inputs")) {
    line("inputs");
    for (const auto& in : st["inputs"]) {
      line(fmt::format("  {:<16} {:<10} {:<12} received {}, accepted {}, rejected {}, errors {}",
                       Get<std::string>(in, "name", ""), Get<std::string>(in, "type", ""),
                       Get<std::string>(in, "state", ""), Get<uint64_t>(in, "received", 0),
                       Get<uint64_t>(in, "accepted", 0), Get<uint64_t>(in, "rejected", 0),
                       Get<uint64_t>(in, "errors", 0)));
      std::string err = Get<std::string>(in, "error", "");
      if (!err.empty()) line("    error: " + err);
    }
  }
  if (st.contains("watchdog")) {
    auto stalled = st["watchdog"].value("stalled", json::array());
    if (!stalled.empty()) {
      std::string names;
      for (const auto& n : stalled) names += (names.empty() ? "" : ", ") + n.get<std::string>();
      line("watchdog: STALLED loops: " + names);
    }
  }
  return out;
}

std::string StatusLine(const Snapshot& s) {
  std::string line =
      fmt::format("backlog {} records ({})", s.buffer.records, HumanBytes(s.buffer.bytes));
  if (s.buffer.oldest_undelivered_age_ms > 0) {
    line += fmt::format(", oldest {}", HumanDuration(s.buffer.oldest_undelivered_age_ms));
  }
  line += fmt::format(", delivered {}", s.kafka.delivered_records);
  uint64_t drops = 0;
  for (const auto& [k, v] : s.buffer.drops) drops += v;
  if (drops > 0) line += fmt::format(", dropped {}", drops);
  if (s.kafka.backing_off) line += ", kafka backing off";
  if (!s.stalled_loops.empty()) line += ", STALLED: " + s.stalled_loops.front();
  return line;
}

std::string HumanBytes(uint64_t bytes) {
  if (bytes < 1024) return fmt::format("{} B", bytes);
  const char* units[] = {"KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = -1;
  while (v >= 1024 && u < 3) {
    v /= 1024;
    ++u;
  }
  return fmt::format("{:.1f} {}", v, units[u]);
}

std::string HumanDuration(int64_t ms) {
  if (ms < 0) ms = 0;
  if (ms < 1000) return fmt::format("{} ms", ms);
  if (ms < 60'000) return fmt::format("{:.1f} s", static_cast<double>(ms) / 1000);
  int64_t s = ms / 1000;
  if (s < 3600) return fmt::format("{}m {:02}s", s / 60, s % 60);
  if (s < 86400) return fmt::format("{}h {:02}m", s / 3600, (s % 3600) / 60);
  return fmt::format("{}d {:02}h", s / 86400, (s % 86400) / 3600);
}

}  // namespace edgeferry::agent
