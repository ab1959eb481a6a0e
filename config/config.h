// The agent's configuration: one JSON file parsed into these plain structs. Every key is declared
// once in config/schema.cc (type, default, range, description); that table drives parsing,
// error messages, the published JSON Schema and config/README.md.
//
// Components take their own section (const BufferConfig& ...) and never read JSON themselves.
// Every struct compares with == (the agent can tell on SIGHUP which sections changed).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace edgeferry::config {

enum class SyncMode { kFull, kNormal };
enum class WhenFull { kDropOldest, kBlock, kDropNewest };

struct BufferConfig {
  std::string path = "/var/lib/edgeferry/buffer.db";
  SyncMode sync = SyncMode::kFull;
  uint64_t max_bytes = 256ull << 20;  // database + WAL together
  WhenFull when_full = WhenFull::kDropOldest;
  uint64_t max_age_s = 0;  // 0: keep until delivered or pushed out by max_bytes
  uint32_t group_commit_max_records = 4096;
  uint32_t group_commit_max_delay_ms = 2;  // how long the writer waits to fill a group
  uint32_t normal_sync_interval_ms = 100;  // sync=normal: bounded periodic fsync; 0 = never
  uint32_t block_timeout_ms = 0;           // when_full=block: 0 waits for ever

  bool operator==(const BufferConfig&) const = default;
};

struct KafkaConfig {
  std::vector<std::string> brokers;  // bootstrap "host:port"
  std::string compression = "zstd";  // zstd, lz4, gzip, snappy, none
  std::string acks = "all";          // "all", "1", "0"
  bool idempotence = true;
  uint32_t linger_ms = 20;
  uint32_t batch_bytes = 1u << 20;
  uint32_t max_inflight_records = 20000;  // cap on records handed to librdkafka, not yet acked
  uint64_t max_inflight_bytes = 16ull << 20;
  uint32_t cursor_commit_interval_ms = 500;
  uint32_t shutdown_grace_ms = 10000;
  uint32_t backoff_initial_ms = 200;
  uint32_t backoff_max_ms = 30000;
  // librdkafka's; an expired record is re-sent from the buffer. 0 = none.
  uint32_t message_timeout_ms = 60000;
  std::string topic_template = "edgeferry.{device}.{input}";  // {device} {input}
  std::string key_template = "{device}.{input}";              // {device} {input} {topic}
  // Passed through to librdkafka verbatim (security.protocol, sasl.*, ssl.*, client.rack ...).
  // A property that one of our own keys sets is a config error.
  std::map<std::string, std::string> properties;
  // After load, properties also holds the secrets read from property_files, and relative
  // ssl.*.location paths are resolved against the config file's directory. Use properties only.
  // Secrets read from files at load time, merged into properties (e.g. "sasl.password"); kept
  // as name -> resolved path for reference.
  std::map<std::string, std::string> property_files;

  bool operator==(const KafkaConfig&) const = default;
};

// File paths are absolute after load (relative ones resolved against the config file's
// directory) and were readable at load time. key_password holds the passphrase from
// key_password or key_password_file.
struct TlsConfig {
  std::string ca_file;  // empty: the system CA store
  std::string cert_file;
  std::string key_file;
  std::string key_password;
  bool verify_hostname = true;

  bool operator==(const TlsConfig&) const = default;
};

struct MqttSubscription {
  std::string filter;  // may be "$share/group/filter"
  int qos = 1;

  bool operator==(const MqttSubscription&) const = default;
};

struct MqttInputConfig {
  std::vector<std::string> uris;  // "tcp://127.0.0.1:1883", failover in order
  std::string client_id;          // never empty after load: default edgeferry-{device}-{input}
  int version = 5;                // 3 (3.1.1) or 5
  std::string username;
  std::string password;  // from "password", "password_file" or "password_env"
  // Set after load iff the file has a tls object or any URI is ssl:// or mqtts:// (then
  // with defaults: system CA store, verify_hostname). tls with a tcp:// URI is a config error.
  std::optional<TlsConfig> tls;
  uint32_t session_expiry_s = 7 * 24 * 3600;  // MQTT 5; 3.1.1 uses clean_session=false
  uint32_t keep_alive_s = 30;
  std::vector<MqttSubscription> subscriptions;
  uint32_t connections = 1;  // >1 requires $share/ filters: appends group-commit together
  uint32_t reconnect_min_ms = 250;
  uint32_t reconnect_max_ms = 30000;
  uint32_t max_payload_bytes = 1u << 20;  // larger messages are rejected (counted, logged)
  // Topic-level pattern for device and key, e.g. "plant/{device}/+/{sensor}"; empty: none.
  std::string topic_pattern;

  bool operator==(const MqttInputConfig&) const = default;
};

// Which keys apply to which kind is in config/schema.cc (interval_ms, jitter_ms, timeout_ms:
// every kind except simulated, whose rate is rate_hz). Paths are absolute after load.
struct SensorInputConfig {
  // "hwmon", "thermal", "iio", "w1", "system", "exec", "simulated"; equals InputConfig::type
  std::string kind;
  uint32_t interval_ms = 10000;
  uint32_t jitter_ms = 0;
  uint32_t timeout_ms = 2000;
  std::string sysfs_root = "/sys";
  std::string procfs_root = "/proc";
  std::vector<std::string> match;  // optional device/sensor name globs (hwmon, thermal, iio, w1)
  // exec
  std::vector<std::string> command;
  std::string format = "json";  // exec output: "json" or "kv"
  // system
  std::vector<std::string> metrics;  // cpu, memory, load, disk, net; empty = all
  std::vector<std::string> disk_paths = {"/"};
  // simulated
  uint32_t sensors = 1;
  double rate_hz = 1.0;           // readings per second per simulated sensor
  std::string waveform = "sine";  // sine, random, ramp, constant
  uint32_t payload_bytes = 0;     // pad payloads to at least this size; 0 = natural size

  bool operator==(const SensorInputConfig&) const = default;
};

struct InputConfig {
  std::string name;   // unique; the record's source
  std::string type;   // "mqtt" or a sensor kind
  std::string topic;  // Kafka topic override for this input; empty: kafka.topic_template
  bool enabled = true;
  std::optional<MqttInputConfig> mqtt;      // set iff type == "mqtt"
  std::optional<SensorInputConfig> sensor;  // set iff type != "mqtt"

  bool operator==(const InputConfig&) const = default;
};

struct MetricsConfig {
  bool enabled = false;
  std::string listen = "127.0.0.1:9464";

  bool operator==(const MetricsConfig&) const = default;
};

struct HeartbeatConfig {
  bool enabled = false;
  uint32_t interval_s = 60;
  std::string topic = "edgeferry.heartbeat";

  bool operator==(const HeartbeatConfig&) const = default;
};

struct Config {
  std::string device_id;
  std::string log_level = "info";
  BufferConfig buffer;
  KafkaConfig kafka;
  std::vector<InputConfig> inputs;
  MetricsConfig metrics;
  HeartbeatConfig heartbeat;
  std::string source_path;  // the file it came from

  bool operator==(const Config&) const = default;
};

// One problem in a config file: the JSON pointer where it is ("/inputs/2/topics/0/qos"), what was
// found and what is allowed.
struct ConfigError {
  std::string path;
  std::string message;
  std::string ToString() const { return (path.empty() ? std::string("/") : path) + ": " + message; }
};

struct LoadResult {
  std::optional<Config> config;     // set when errors is empty
  std::vector<ConfigError> errors;  // every problem at once, in document order
};

// Reads, substitutes ${VAR} from the environment, reads *_file secrets, validates. Never throws.
// LoadFile resolves relative paths against the file's directory; LoadString leaves them relative
// to the current directory. Environment variables are read at call time (SIGHUP reload sees
// changes in the agent's own environment only).
LoadResult LoadFile(const std::string& path);
LoadResult LoadString(const std::string& text, const std::string& origin = "<string>");

// The published JSON Schema (draft-07) of the file, generated from the key table; equals
// config/edgeferry.schema.json (a test checks). `edgeferry_schema_gen schema` prints it.
std::string JsonSchema();
// The key reference section of config/README.md, generated from the same table.
std::string KeyReferenceMarkdown();
// A short human summary of what a loaded config will run (for check-config); no secrets.
std::string Describe(const Config& config);

inline constexpr const char* kDefaultPath = "/etc/edgeferry/edgeferry.json";

}  // namespace edgeferry::config
