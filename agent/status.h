// What the daemon knows about itself, gathered once per main-loop tick (Snapshot), and the status
// file it writes next to the buffer so that `edgeferry status` in another process can show what
// the buffer alone cannot: per-input counters and the last successful delivery.
//
// The status file (<buffer path>-status.json) is rewritten atomically (write a temporary file,
// rename) about once a second and is not fsync'd: it is a view, not data, and rewriting it must
// not wear out an SD card. Its JSON layout is the "daemon", "kafka", "inputs" and "watchdog"
// members of `edgeferry status --json` (see agent/README.md).
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "buffer/buffer.h"
#include "common/status.h"
#include "config/config.h"
#include "forwarder/forwarder.h"
#include "sensors/sensors.h"

namespace edgeferry::agent {

struct InputSnapshot {
  std::string name;
  std::string type;
  std::string error;  // why the input is not running (could not be created or started); else ""
  sensors::InputStats stats;
};

struct Snapshot {
  int pid = 0;
  std::string version;
  std::string device_id;
  std::string config_path;
  std::string buffer_path;
  int64_t started_unix_ms = 0;
  int64_t updated_unix_ms = 0;
  buffer::Stats buffer;
  forwarder::Stats kafka;
  std::vector<InputSnapshot> inputs;
  std::vector<std::string> stalled_loops;  // watchdog: loops that stopped moving
  uint64_t heartbeats = 0;                 // heartbeat records appended since start
  bool restart_needed = false;             // a reload changed settings that need a restart
  uint64_t reloads = 0;                    // SIGHUPs served (accepted or rejected)
  int64_t last_reload_unix_ms = 0;
  std::vector<std::string> last_reload_errors;  // why the last reload was rejected; empty if ok
};

// Status files live in one of two places. Under systemd (RuntimeDirectory=edgeferry sets
// $RUNTIME_DIRECTORY) the daemon writes <runtime dir>/status.json, on tmpfs, so that rewriting it
// every second never touches the SD card; otherwise <buffer path>-status.json.
inline constexpr const char* kRuntimeDir = "/run/edgeferry";
std::string StatusFilePath(const config::BufferConfig& cfg);        // the one next to the buffer
std::string DaemonStatusFilePath(const config::BufferConfig& cfg);  // where this process writes

// The status file of the daemon that runs this buffer: next to the buffer, or in `runtime_dir`
// if that one names the same buffer. Prefers a file whose writer is alive. nullopt if none.
std::optional<nlohmann::json> ReadStatusFile(const config::BufferConfig& cfg,
                                             const std::string& runtime_dir = kRuntimeDir);

// The pid of the daemon that runs this buffer, if that process is alive.
std::optional<int> LiveDaemonPid(const config::BufferConfig& cfg,
                                 const std::string& runtime_dir = kRuntimeDir);

nlohmann::json ToJson(const buffer::Stats& s);
nlohmann::json ToJson(const forwarder::Stats& s);
nlohmann::json ToJson(const InputSnapshot& s);
// The daemon's part: {"daemon": ..., "kafka": ..., "inputs": [...], "watchdog": ...}.
nlohmann::json DaemonJson(const Snapshot& s);

// Atomic replace (tmp + rename); no fsync (see above).
Status WriteStatusFile(const std::string& path, const Snapshot& s);

// `edgeferry status`: the buffer's stats read read-only from the database plus the daemon's
// status file when a live daemon wrote it. Returns the combined document
// {"daemon": {"running": bool, ...}, "buffer": {...}, "kafka": {...}, "inputs": [...]}.
// Errors: IOError/NotFound when the buffer cannot be read.
Result<nlohmann::json> CollectStatus(const config::Config& cfg, int64_t now_unix_ms);

// Human-readable rendering of CollectStatus's document.
std::string FormatStatus(const nlohmann::json& status, int64_t now_unix_ms);

// A one-line backlog summary for systemd's STATUS= (shown by `systemctl status`).
std::string StatusLine(const Snapshot& s);

// "1.2 KiB", "3.0 MiB".
std::string HumanBytes(uint64_t bytes);
// "850 ms", "12.3 s", "4m 05s", "2h 03m", "3d 04h".
std::string HumanDuration(int64_t ms);

}  // namespace edgeferry::agent
