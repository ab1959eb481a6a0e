// The table of every config key. To add a key: add a field (with its default) to the struct in
// config.h, add one Key here, regenerate config/edgeferry.schema.json and the key reference in
// config/README.md with edgeferry_schema_gen (tests fail until both match).
#include "config/schema.h"

#include <unistd.h>

#include <cstdlib>

#include "config/config.h"
#include "config/loader.h"

namespace edgeferry::config::schema {
namespace {

template <class S, class T>
Setter Field(T S::*member) {
  return [member](void* obj, const Json& v) { static_cast<S*>(obj)->*member = v.get<T>(); };
}

// Type-specific input keys live in InputConfig::mqtt / ::sensor, which `prepare` emplaced.
template <class T>
Setter MqttField(T MqttInputConfig::*member) {
  return [member](void* obj, const Json& v) {
    static_cast<InputConfig*>(obj)->mqtt.value().*member = v.get<T>();
  };
}
template <class T>
Setter SensorField(T SensorInputConfig::*member) {
  return [member](void* obj, const Json& v) {
    static_cast<InputConfig*>(obj)->sensor.value().*member = v.get<T>();
  };
}

template <class S, class Sub>
Child SubObject(Sub S::*member) {
  return [member](void* obj) -> void* { return &(static_cast<S*>(obj)->*member); };
}

const std::vector<std::string> kPolledSensors = {"hwmon", "thermal", "iio", "w1", "system", "exec"};
const std::vector<std::string> kSysfsSensors = {"hwmon", "thermal", "iio", "w1"};

constexpr double kMaxU32 = 4294967295.0;

// ---------------------------------------------------------------------------------------------
// Cross-key checks and derived values.

bool IsTlsUri(const std::string& uri) {
  return uri.starts_with("ssl://") || uri.starts_with("mqtts://");
}

void FinishTls(void* obj, SectionState& s) {
  auto& tls = *static_cast<TlsConfig*>(obj);
  if (s.Has("key_password") && s.Has("key_password_file")) {
    s.Error(s.PathOf("key_password_file"),
            "set either key_password or key_password_file, not both");
  } else if (s.Has("key_password_file") && s.Good("key_password_file")) {
    std::string reason;
    std::string file = s.Value("key_password_file");
    if (!ReadSecretFile(file, &tls.key_password, &reason)) {
      s.Error(s.PathOf("key_password_file"), "cannot read " + QuotePath(file) + ": " + reason);
    }
  }
  if (s.Has("key_file") && !s.Has("cert_file")) {
    s.Error(s.PathOf("key_file"), "key_file needs cert_file (the certificate for this key)");
  }
}

void FinishSubscription(void*, SectionState&) {}

void PrepareInput(void* obj, const std::string& type) {
  auto& in = *static_cast<InputConfig*>(obj);
  in.type = type;
  if (type == "mqtt") {
    in.mqtt.emplace();
  } else {
    in.sensor.emplace();
    in.sensor->kind = type;
  }
}

void FinishMqtt(InputConfig& in, SectionState& s) {
  MqttInputConfig& m = *in.mqtt;
  // Password: at most one source.
  int sources = int(s.Has("password")) + int(s.Has("password_file")) + int(s.Has("password_env"));
  if (sources > 1) {
    std::string second = s.Has("password_env") ? "password_env" : "password_file";
    s.Error(s.PathOf(second), "set only one of password, password_file and password_env");
  } else if (s.Has("password_file") && s.Good("password_file")) {
    std::string file = s.Value("password_file");
    std::string reason;
    if (!ReadSecretFile(file, &m.password, &reason)) {
      s.Error(s.PathOf("password_file"), "cannot read " + QuotePath(file) + ": " + reason);
    }
  } else if (s.Has("password_env") && s.Good("password_env")) {
    const char* v = std::getenv(s.Value("password_env").c_str());
    if (v != nullptr) m.password = v;  // kEnvName already reported an unset variable
  }
  if (sources > 0 && !s.Has("username")) {
    s.Error(s.PathOf(s.Has("password")        ? "password"
                     : s.Has("password_file") ? "password_file"
                                              : "password_env"),
            "a password needs a username (MQTT sends no password without one)");
  }
  // TLS: an ssl:// URI without a tls object gets default TLS settings (system CA store); a tls
  // object with a plain tcp:// URI would silently connect without TLS, so it is an error.
  if (s.Good("uris") && s.Good("tls")) {
    bool any_tls = false;
    for (size_t i = 0; i < m.uris.size(); ++i) {
      if (IsTlsUri(m.uris[i])) {
        any_tls = true;
      } else if (m.tls.has_value()) {
        s.Error(s.PathOf("uris") + "/" + std::to_string(i),
                Quote(m.uris[i]) + " is not encrypted but " + s.PathOf("tls") +
                    " is set; use ssl:// or mqtts://");
      }
    }
    if (any_tls && !m.tls.has_value()) m.tls.emplace();
  }
  if (s.Good("connections") && s.Good("subscriptions") && m.connections > 1) {
    for (size_t i = 0; i < m.subscriptions.size(); ++i) {
      const std::string& f = m.subscriptions[i].filter;
      if (!f.empty() && !f.starts_with("$share/")) {
        s.Error(s.PathOf("subscriptions") + "/" + std::to_string(i) + "/filter",
                Quote(f) + " must be a shared subscription (\"$share/<group>/" + f +
                    "\") because connections is " + std::to_string(m.connections) +
                    "; otherwise every connection receives every message");
      }
    }
  }
  if (s.Good("reconnect_min_ms") && s.Good("reconnect_max_ms") &&
      m.reconnect_max_ms < m.reconnect_min_ms) {
    s.Error(s.PathOf(s.Has("reconnect_max_ms") ? "reconnect_max_ms" : "reconnect_min_ms"),
            "reconnect_max_ms (" + std::to_string(m.reconnect_max_ms) +
                ") must be at least reconnect_min_ms (" + std::to_string(m.reconnect_min_ms) + ")");
  }
}

void FinishInput(void* obj, SectionState& s) {
  auto& in = *static_cast<InputConfig*>(obj);
  if (s.Has("name") && s.Good("name")) {
    auto [it, inserted] = s.ctx().input_names.emplace(in.name, s.PathOf("name"));
    if (!inserted) {
      s.Error(s.PathOf("name"),
              "duplicate input name " + Quote(in.name) + "; " + it->second + " has it already");
    }
  }
  if (s.type() == "mqtt") FinishMqtt(in, s);
  if (s.type() == "exec" && s.Good("command") && !in.sensor->command.empty()) {
    const std::string& prog = in.sensor->command[0];
    std::string reason;
    if (prog.find('/') != std::string::npos) {
      if (::access(prog.c_str(), X_OK) != 0) {
        reason = CheckReadableFile(prog);
        if (reason.empty()) reason = "not executable";
      }
    } else {
      bool found = false;
      const char* path_env = std::getenv("PATH");
      std::string dirs = path_env ? path_env : "/usr/bin:/bin";
      size_t start = 0;
      while (!found && start <= dirs.size()) {
        size_t colon = dirs.find(':', start);
        std::string dir = dirs.substr(start, colon == std::string::npos ? colon : colon - start);
        std::string candidate = (dir.empty() ? "." : dir) + "/" + prog;
        found = ::access(candidate.c_str(), X_OK) == 0 && CheckReadableFile(candidate).empty();
        if (colon == std::string::npos) break;
        start = colon + 1;
      }
      if (!found) reason = "not found in PATH";
    }
    if (!reason.empty()) {
      s.Error(s.PathOf("command") + "/0", "cannot run " + Quote(prog) + ": " + reason);
    }
  }
}

void FinishRoot(void* obj, SectionState& s) {
  auto& cfg = *static_cast<Config*>(obj);
  (void)s;
  for (InputConfig& in : cfg.inputs) {
    if (in.mqtt && in.mqtt->client_id.empty()) {
      in.mqtt->client_id = "edgeferry-" + cfg.device_id + "-" + in.name;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The sections.

Section MakeBuffer() {
  Section s{.pointer = "/buffer",
            .title = "buffer",
            .description =
                "The crash-safe local log (SQLite, WAL mode) that holds every accepted "
                "reading until Kafka has acknowledged it. See buffer/FORMAT.md.",
            .keys = {}};
  s.keys = {
      {.name = "path",
       .type = Type::kString,
       .description = "Database file; its -wal and -shm files sit next to it. The directory must "
                      "exist and be writable (systemd's StateDirectory creates "
                      "/var/lib/edgeferry). Relative paths are taken from the config file's "
                      "directory.",
       .default_value = "/var/lib/edgeferry/buffer.db",
       .check = Check::kPath,
       .set = Field(&BufferConfig::path)},
      {.name = "sync",
       .type = Type::kString,
       .description = "\"full\": fsync at every group commit, no acknowledged reading is lost on "
                      "power cut. \"normal\": survives a process crash; a power cut can lose the "
                      "commits of the last normal_sync_interval_ms.",
       .default_value = "full",
       .allowed = {"full", "normal"},
       .set =
           [](void* o, const Json& v) {
             static_cast<BufferConfig*>(o)->sync =
                 v.get<std::string>() == "full" ? SyncMode::kFull : SyncMode::kNormal;
           }},
      {.name = "max_bytes",
       .type = Type::kInteger,
       .description = "Upper bound of database plus WAL, in bytes; the file never grows past it.",
       .default_value = 268435456,
       .minimum = 1048576,
       .maximum = 1099511627776.0,
       .set = Field(&BufferConfig::max_bytes)},
      {.name = "when_full",
       .type = Type::kString,
       .description = "What happens at max_bytes: \"drop_oldest\" drops the oldest records (even "
                      "unsent ones), \"block\" makes inputs wait (MQTT then leaves messages "
                      "queued at the broker), \"drop_newest\" refuses new readings. Every drop "
                      "is counted.",
       .default_value = "drop_oldest",
       .allowed = {"drop_oldest", "block", "drop_newest"},
       .set =
           [](void* o, const Json& v) {
             const std::string w = v.get<std::string>();
             static_cast<BufferConfig*>(o)->when_full = w == "block" ? WhenFull::kBlock
                                                        : w == "drop_newest"
                                                            ? WhenFull::kDropNewest
                                                            : WhenFull::kDropOldest;
           }},
      {.name = "max_age_s",
       .type = Type::kInteger,
       .description = "Drop undelivered records older than this many seconds (counted); 0 keeps "
                      "them until delivered or pushed out by max_bytes.",
       .default_value = 0,
       .minimum = 0,
       .maximum = 315360000,
       .set = Field(&BufferConfig::max_age_s)},
      {.name = "group_commit_max_records",
       .type = Type::kInteger,
       .description = "Most records the writer commits in one transaction.",
       .default_value = 4096,
       .minimum = 1,
       .maximum = 1000000,
       .set = Field(&BufferConfig::group_commit_max_records)},
      {.name = "group_commit_max_delay_ms",
       .type = Type::kInteger,
       .description = "How long the writer waits for more records to fill a group, in ms.",
       .default_value = 2,
       .minimum = 0,
       .maximum = 10000,
       .set = Field(&BufferConfig::group_commit_max_delay_ms)},
      {.name = "normal_sync_interval_ms",
       .type = Type::kInteger,
       .description = "With sync \"normal\": fsync at most this long after a commit, bounding "
                      "what a power cut can lose; 0 leaves it to SQLite's checkpoints.",
       .default_value = 100,
       .minimum = 0,
       .maximum = 600000,
       .set = Field(&BufferConfig::normal_sync_interval_ms)},
      {.name = "block_timeout_ms",
       .type = Type::kInteger,
       .description = "With when_full \"block\": how long an append may wait for room before it "
                      "fails, in ms; 0 waits for ever.",
       .default_value = 0,
       .minimum = 0,
       .maximum = 86400000,
       .set = Field(&BufferConfig::block_timeout_ms)},
  };
  return s;
}

}  // namespace

const std::vector<std::string>& ForbiddenKafkaProperties() {
  // The forwarder produces without transactions and sets these callbacks itself. It also
  // decides when a record has failed (message_timeout_ms): a record that librdkafka gives up
  // after a number of retries leaves a gap in the producer's sequence, which librdkafka closes
  // by bumping the epoch and sending the younger queued records at once, ahead of the
  // forwarder's resend of the failed one (forwarder/kafka_conf.cc).
  static const std::vector<std::string> kForbidden = {
      "transactional.id", "dr_cb", "dr_msg_cb", "error_cb", "retries", "message.send.max.retries"};
  return kForbidden;
}

namespace {

Section MakeKafka() {
  Section s{.pointer = "/kafka",
            .title = "kafka",
            .description =
                "Where the forwarder delivers: librdkafka producer settings. Records "
                "leave the buffer only after Kafka acknowledged them.",
            .keys = {},
            .finish = FinishKafka};
  s.keys = {
      {.name = "brokers",
       .type = Type::kStringList,
       .description = "Bootstrap brokers, \"host:port\" (IPv6: \"[::1]:9092\").",
       .required = true,
       .minimum = 1,
       .maximum = 100,
       .check = Check::kHostPort,
       .librdkafka = {"bootstrap.servers", "metadata.broker.list"},
       .set = Field(&KafkaConfig::brokers)},
      {.name = "compression",
       .type = Type::kString,
       .description = "Batch compression codec.",
       .default_value = "zstd",
       .allowed = {"zstd", "lz4", "gzip", "snappy", "none"},
       .librdkafka = {"compression.type", "compression.codec"},
       .set = Field(&KafkaConfig::compression)},
      {.name = "acks",
       .type = Type::kString,
       .description = "Broker acknowledgement: \"all\" (no loss when a broker fails), \"1\" or "
                      "\"0\" (both need idempotence false, and can lose acknowledged records).",
       .default_value = "all",
       .allowed = {"all", "1", "0"},
       .librdkafka = {"acks", "request.required.acks"},
       .set = Field(&KafkaConfig::acks)},
      {.name = "idempotence",
       .type = Type::kBool,
       .description = "Idempotent producer: no duplicates from librdkafka's own retries, and "
                      "no gaps: a batch the broker refuses for good stops the producer before "
                      "later records of a key can overtake it (a new one resumes from the "
                      "cursor).",
       .default_value = true,
       .librdkafka = {"enable.idempotence", "enable.gapless.guarantee"},
       .set = Field(&KafkaConfig::idempotence)},
      {.name = "linger_ms",
       .type = Type::kInteger,
       .description = "How long librdkafka waits to fill a batch, in ms.",
       .default_value = 20,
       .minimum = 0,
       .maximum = 900000,
       .librdkafka = {"linger.ms", "queue.buffering.max.ms"},
       .set = Field(&KafkaConfig::linger_ms)},
      {.name = "batch_bytes",
       .type = Type::kInteger,
       .description = "Largest batch librdkafka builds, in bytes (keep it under the broker's "
                      "message.max.bytes).",
       .default_value = 1048576,
       .minimum = 1024,
       .maximum = 2147483647,
       .librdkafka = {"batch.size"},
       .set = Field(&KafkaConfig::batch_bytes)},
      {.name = "max_inflight_records",
       .type = Type::kInteger,
       .description = "Cap on records handed to librdkafka and not yet acknowledged: bounds "
                      "memory whatever the backlog (librdkafka's own queue limit is set above "
                      "it). At most twice as many are sent above the durably committed cursor: "
                      "the most a crash can send twice.",
       .default_value = 20000,
       .minimum = 1,
       .maximum = 10000000,
       // The forwarder derives librdkafka's queue limit from it (with headroom).
       .librdkafka = {"queue.buffering.max.messages"},
       .set = Field(&KafkaConfig::max_inflight_records)},
      {.name = "max_inflight_bytes",
       .type = Type::kInteger,
       .description = "Cap on payload bytes handed to librdkafka and not yet acknowledged "
                      "(librdkafka's own queue limit is set above it).",
       .default_value = 16777216,
       .minimum = 65536,
       .maximum = 17179869184.0,
       .librdkafka = {"queue.buffering.max.kbytes"},
       .set = Field(&KafkaConfig::max_inflight_bytes)},
      {.name = "cursor_commit_interval_ms",
       .type = Type::kInteger,
       .description = "How often the delivered position is committed to the buffer, in ms. A "
                      "crash resends at most what was delivered since (duplicates, not loss).",
       .default_value = 500,
       .minimum = 1,
       .maximum = 3600000,
       .set = Field(&KafkaConfig::cursor_commit_interval_ms)},
      {.name = "shutdown_grace_ms",
       .type = Type::kInteger,
       .description = "On stop, how long to wait for in-flight deliveries, in ms; what is still "
                      "unacknowledged then stays in the buffer and is sent after restart.",
       .default_value = 10000,
       .minimum = 0,
       .maximum = 3600000,
       .set = Field(&KafkaConfig::shutdown_grace_ms)},
      {.name = "backoff_initial_ms",
       .type = Type::kInteger,
       .description = "First retry delay after a failure, in ms; doubles up to backoff_max_ms.",
       .default_value = 200,
       .minimum = 1,
       .maximum = 3600000,
       .set = Field(&KafkaConfig::backoff_initial_ms)},
      {.name = "backoff_max_ms",
       .type = Type::kInteger,
       .description = "Longest retry delay, in ms.",
       .default_value = 30000,
       .minimum = 1,
       .maximum = 86400000,
       .set = Field(&KafkaConfig::backoff_max_ms)},
      {.name = "message_timeout_ms",
       .type = Type::kInteger,
       .description = "How long a record sent to Kafka may wait for its delivery report, in ms "
                      "(0: forever). Enforced by the forwarder, not librdkafka (see "
                      "forwarder/README.md). An expired record is not lost: it stays in the "
                      "buffer and is sent again. Must exceed linger_ms.",
       .default_value = 60000,
       .minimum = 0,
       .maximum = 2147483647,
       .librdkafka = {"message.timeout.ms", "delivery.timeout.ms"},
       .set = Field(&KafkaConfig::message_timeout_ms)},
      {.name = "topic_template",
       .type = Type::kString,
       .description = "Kafka topic of each record unless its input sets topic. Placeholders: "
                      "{device} (device_id), {input} (input name); not {topic}, which is the "
                      "topic this builds. Other characters: letters, digits, '.', '_', '-'. See "
                      "forwarder/README.md.",
       .default_value = "edgeferry.{device}.{input}",
       .check = Check::kTopicTemplate,
       .set = Field(&KafkaConfig::topic_template)},
      {.name = "key_template",
       .type = Type::kString,
       .description = "Record key when the input did not set one (an MQTT input's "
                      "topic_pattern can). Placeholders: {device}, {input}, and {topic} (the "
                      "Kafka topic set by the input's topic key, empty for inputs without one). "
                      "The default keeps each input's readings in order inside one partition.",
       .default_value = "{device}.{input}",
       .check = Check::kKeyTemplate,
       .set = Field(&KafkaConfig::key_template)},
      {.name = "properties",
       .type = Type::kStringMap,
       .description = "Passed to librdkafka verbatim (security.protocol, sasl.*, ssl.*, "
                      "client.rack, ...); numbers and booleans are turned into text. Checked "
                      "with librdkafka at load. A property that a key above sets is an error; "
                      "ssl.*.location files must be readable.",
       .default_value = Json::object(),
       .set = Field(&KafkaConfig::properties)},
      {.name = "property_files",
       .type = Type::kStringMap,
       .description = "Secret properties read from files at load, e.g. {\"sasl.password\": "
                      "\"/etc/edgeferry/kafka.pass\"}; one trailing newline is dropped. The "
                      "values are merged into properties.",
       .default_value = Json::object(),
       .check = Check::kReadableFile,
       .secret = true,
       .set = Field(&KafkaConfig::property_files)},
  };
  return s;
}

Section MakeTls() {
  Section s{.pointer = "/inputs/*/tls",
            .title = "inputs[].tls",
            .description =
                "TLS for an MQTT input (only with ssl:// or mqtts:// URIs; "
                "such URIs without a tls object use the system CA store).",
            .keys = {},
            .finish = FinishTls};
  s.keys = {
      {.name = "ca_file",
       .type = Type::kString,
       .description = "PEM file of the CA certificates that sign the broker's certificate; "
                      "empty: the system store.",
       .check = Check::kReadableFile,
       .set = Field(&TlsConfig::ca_file)},
      {.name = "cert_file",
       .type = Type::kString,
       .description = "PEM client certificate chain (may contain the key too).",
       .check = Check::kReadableFile,
       .set = Field(&TlsConfig::cert_file)},
      {.name = "key_file",
       .type = Type::kString,
       .description = "PEM private key of the client certificate.",
       .check = Check::kReadableFile,
       .set = Field(&TlsConfig::key_file)},
      {.name = "key_password",
       .type = Type::kString,
       .description = "Passphrase of key_file; prefer key_password_file or ${VAR}.",
       .secret = true,
       .set = Field(&TlsConfig::key_password)},
      {.name = "key_password_file",
       .type = Type::kString,
       .description = "File holding the passphrase of key_file (one trailing newline dropped).",
       .check = Check::kReadableFile,
       .secret = true},
      {.name = "verify_hostname",
       .type = Type::kBool,
       .description = "Check that the broker's certificate names the host in the URI.",
       .default_value = true,
       .set = Field(&TlsConfig::verify_hostname)},
  };
  return s;
}

Section MakeSubscription() {
  Section s{.pointer = "/inputs/*/subscriptions/*",
            .title = "inputs[].subscriptions[]",
            .description = "One MQTT subscription.",
            .keys = {},
            .finish = FinishSubscription};
  s.keys = {
      {.name = "filter",
       .type = Type::kString,
       .description = "Topic filter (+ and # wildcards); \"$share/<group>/<filter>\" for a "
                      "shared subscription.",
       .required = true,
       .check = Check::kMqttFilter,
       .set = Field(&MqttSubscription::filter)},
      {.name = "qos",
       .type = Type::kInteger,
       .description = "Requested QoS. 1 and 2 are acknowledged only once the message is in the "
                      "buffer; 0 can lose messages by design.",
       .default_value = 1,
       .minimum = 0,
       .maximum = 2,
       .set = Field(&MqttSubscription::qos)},
  };
  return s;
}

Section MakeInput(const Section* tls, const Section* subscription) {
  const std::vector<std::string> mqtt = {"mqtt"};
  Section s{.pointer = "/inputs/*",
            .title = "inputs[]",
            .description =
                "One input: an MQTT subscription or a local sensor. The keys of its "
                "type sit in the same object as name and type.",
            .keys = {},
            .discriminator = "type",
            .prepare = PrepareInput,
            .finish = FinishInput};
  s.keys = {
      {.name = "name",
       .type = Type::kString,
       .description = "Unique name; the records' source, {input} in templates. Letters, "
                      "digits, '.', '_', '-'; at most 64.",
       .required = true,
       .check = Check::kName,
       .set = Field(&InputConfig::name)},
      {.name = "type",
       .type = Type::kString,
       .description = "What the input reads; decides which other keys apply.",
       .required = true,
       .allowed = InputTypes()},
      {.name = "topic",
       .type = Type::kString,
       .description = "Kafka topic for this input's records instead of kafka.topic_template "
                      "(placeholders {device} and {input}).",
       .check = Check::kTopicTemplate,
       .set = Field(&InputConfig::topic)},
      {.name = "enabled",
       .type = Type::kBool,
       .description = "false keeps the input in the file but does not run it.",
       .default_value = true,
       .set = Field(&InputConfig::enabled)},
      // mqtt
      {.name = "uris",
       .type = Type::kStringList,
       .description = "Broker URIs, tried in order (failover): tcp://host:port, ssl://host:port "
                      "(also mqtt://, mqtts://; WebSockets are not supported).",
       .required = true,
       .minimum = 1,
       .maximum = 16,
       .check = Check::kMqttUri,
       .input_types = mqtt,
       .set = MqttField(&MqttInputConfig::uris)},
      {.name = "client_id",
       .type = Type::kString,
       .description = "MQTT client id; the broker keeps the session under it, so keep it stable.",
       .default_value = "edgeferry-{device}-{input}",
       .input_types = mqtt,
       .set = MqttField(&MqttInputConfig::client_id)},
      {.name = "version",
       .type = Type::kInteger,
       .description = "MQTT protocol: 5 or 3 (3.1.1).",
       .default_value = 5,
       .allowed = {"3", "5"},
       .input_types = mqtt,
       .set = MqttField(&MqttInputConfig::version)},
      {.name = "username",
       .type = Type::kString,
       .description = "MQTT username.",
       .input_types = mqtt,
       .set = MqttField(&MqttInputConfig::username)},
      {.name = "password",
       .type = Type::kString,
       .description = "MQTT password; prefer password_file, password_env or ${VAR}.",
       .input_types = mqtt,
       .secret = true,
       .set = MqttField(&MqttInputConfig::password)},
      {.name = "password_file",
       .type = Type::kString,
       .description = "File holding the MQTT password (one trailing newline dropped).",
       .check = Check::kReadableFile,
       .input_types = mqtt,
       .secret = true},
      {.name = "password_env",
       .type = Type::kString,
       .description = "Name of the environment variable holding the MQTT password.",
       .check = Check::kEnvName,
       .input_types = mqtt},
      {.name = "tls",
       .type = Type::kObject,
       .description = "TLS settings (see inputs[].tls).",
       .input_types = mqtt,
       .section = tls,
       .child = [](void* o) -> void* {
         auto& m = *static_cast<InputConfig*>(o)->mqtt;
         m.tls.emplace();
         return &*m.tls;
       }},
      {.name = "session_expiry_s",
       .type = Type::kInteger,
       .description = "How long the broker keeps the session and queues messages while "
                      "edgeferry is away (MQTT 5; 3.1.1 uses a persistent session).",
       .default_value = 604800,
       .minimum = 1,
       .maximum = kMaxU32,
       .input_types = mqtt,
       .set = MqttField(&MqttInputConfig::session_expiry_s)},
      {.name = "keep_alive_s",
       .type = Type::kInteger,
       .description = "MQTT keep-alive interval in seconds; 0 disables it.",
       .default_value = 30,
       .minimum = 0,
       .maximum = 65535,
       .input_types = mqtt,
       .set = MqttField(&MqttInputConfig::keep_alive_s)},
      {.name = "subscriptions",
       .type = Type::kObjectList,
       .description = "Topic filters with their QoS (see inputs[].subscriptions[]).",
       .required = true,
       .minimum = 1,
       .maximum = 1000,
       .input_types = mqtt,
       .section = subscription,
       .child = [](void* o) -> void* {
         auto& subs = static_cast<InputConfig*>(o)->mqtt->subscriptions;
         subs.emplace_back();
         return &subs.back();
       }},
      {.name = "connections",
       .type = Type::kInteger,
       .description = "Parallel connections sharing the load; more than 1 needs every filter "
                      "to be a $share/ subscription. Order holds per connection only.",
       .default_value = 1,
       .minimum = 1,
       .maximum = 64,
       .input_types = mqtt,
       .set = MqttField(&MqttInputConfig::connections)},
      {.name = "reconnect_min_ms",
       .type = Type::kInteger,
       .description = "First reconnect delay, in ms; doubles up to reconnect_max_ms.",
       .default_value = 250,
       .minimum = 1,
       .maximum = 3600000,
       .input_types = mqtt,
       .set = MqttField(&MqttInputConfig::reconnect_min_ms)},
      {.name = "reconnect_max_ms",
       .type = Type::kInteger,
       .description = "Longest reconnect delay, in ms.",
       .default_value = 30000,
       .minimum = 1,
       .maximum = 86400000,
       .input_types = mqtt,
       .set = MqttField(&MqttInputConfig::reconnect_max_ms)},
      {.name = "max_payload_bytes",
       .type = Type::kInteger,
       .description = "Larger messages are rejected (counted and logged, acknowledged so the "
                      "broker does not resend them for ever).",
       .default_value = 1048576,
       .minimum = 1,
       .maximum = 268435455,
       .input_types = mqtt,
       .set = MqttField(&MqttInputConfig::max_payload_bytes)},
      {.name = "topic_pattern",
       .type = Type::kString,
       .description = "Takes fields from the MQTT topic, e.g. \"plant/{device}/+/{sensor}\": "
                      "levels are literals, +, # (last) or {name} captures. Each capture becomes "
                      "a record header; {key} (else {device}) becomes the record's Kafka key.",
       .check = Check::kTopicPattern,
       .input_types = mqtt,
       .set = MqttField(&MqttInputConfig::topic_pattern)},
      // local sensors
      {.name = "interval_ms",
       .type = Type::kInteger,
       .description = "Poll interval, in ms.",
       .default_value = 10000,
       .minimum = 10,
       .maximum = 86400000,
       .input_types = kPolledSensors,
       .set = SensorField(&SensorInputConfig::interval_ms)},
      {.name = "jitter_ms",
       .type = Type::kInteger,
       .description = "Random delay of the first poll, up to this many ms, so that sensors do "
                      "not all fire at once.",
       .default_value = 0,
       .minimum = 0,
       .maximum = 3600000,
       .input_types = kPolledSensors,
       .set = SensorField(&SensorInputConfig::jitter_ms)},
      {.name = "timeout_ms",
       .type = Type::kInteger,
       .description = "A read (or exec run) taking longer is abandoned and counted; others "
                      "keep their schedule.",
       .default_value = 2000,
       .minimum = 1,
       .maximum = 600000,
       .input_types = kPolledSensors,
       .set = SensorField(&SensorInputConfig::timeout_ms)},
      {.name = "sysfs_root",
       .type = Type::kString,
       .description = "Where sysfs is mounted (tests point it at a fake tree).",
       .default_value = "/sys",
       .check = Check::kDirectory,
       .input_types = kSysfsSensors,
       .set = SensorField(&SensorInputConfig::sysfs_root)},
      {.name = "procfs_root",
       .type = Type::kString,
       .description = "Where procfs is mounted.",
       .default_value = "/proc",
       .check = Check::kDirectory,
       .input_types = {"system"},
       .set = SensorField(&SensorInputConfig::procfs_root)},
      {.name = "match",
       .type = Type::kStringList,
       .description = "Only sensors whose name matches one of these shell globs (fnmatch, "
                      "e.g. \"cpu_thermal\", \"coretemp*\", \"cpu.*\"); empty: all.",
       .default_value = Json::array(),
       .maximum = 256,
       .input_types = {"hwmon", "thermal", "iio", "w1", "system"},
       .set = SensorField(&SensorInputConfig::match)},
      {.name = "command",
       .type = Type::kStringList,
       .description = "Program and arguments, run without a shell; the program must exist and "
                      "be executable.",
       .required = true,
       .minimum = 1,
       .maximum = 256,
       .input_types = {"exec"},
       .set = SensorField(&SensorInputConfig::command)},
      {.name = "format",
       .type = Type::kString,
       .description = "Output of the command: \"json\" (an object of values) or \"kv\" "
                      "(key=value lines).",
       .default_value = "json",
       .allowed = {"json", "kv"},
       .input_types = {"exec"},
       .set = SensorField(&SensorInputConfig::format)},
      {.name = "metrics",
       .type = Type::kStringList,
       .description = "Which statistics to read; empty: all.",
       .default_value = Json::array(),
       .allowed = {"cpu", "memory", "load", "disk", "net"},
       .input_types = {"system"},
       .set = SensorField(&SensorInputConfig::metrics)},
      {.name = "disk_paths",
       .type = Type::kStringList,
       .description = "Mount points whose usage the disk metric reports.",
       .default_value = Json::array({"/"}),
       .maximum = 64,
       .input_types = {"system"},
       .set = SensorField(&SensorInputConfig::disk_paths)},
      {.name = "sensors",
       .type = Type::kInteger,
       .description = "Number of simulated sensors.",
       .default_value = 1,
       .minimum = 1,
       .maximum = 100000,
       .input_types = {"simulated"},
       .set = SensorField(&SensorInputConfig::sensors)},
      {.name = "rate_hz",
       .type = Type::kNumber,
       .description = "Readings per second per simulated sensor.",
       .default_value = 1.0,
       .minimum = 0.001,
       .maximum = 1000000,
       .input_types = {"simulated"},
       .set = SensorField(&SensorInputConfig::rate_hz)},
      {.name = "waveform",
       .type = Type::kString,
       .description = "Shape of the simulated values.",
       .default_value = "sine",
       .allowed = {"sine", "random", "ramp", "constant"},
       .input_types = {"simulated"},
       .set = SensorField(&SensorInputConfig::waveform)},
      {.name = "payload_bytes",
       .type = Type::kInteger,
       .description = "Pad each reading to at least this many bytes (benchmarks); 0: natural "
                      "size.",
       .default_value = 0,
       .minimum = 0,
       .maximum = 1048576,
       .input_types = {"simulated"},
       .set = SensorField(&SensorInputConfig::payload_bytes)},
  };
  return s;
}

Section MakeMetrics() {
  Section s{.pointer = "/metrics",
            .title = "metrics",
            .description = "Prometheus text exposition over HTTP (GET /metrics).",
            .keys = {}};
  s.keys = {
      {.name = "enabled",
       .type = Type::kBool,
       .description = "Serve /metrics.",
       .default_value = false,
       .set = Field(&MetricsConfig::enabled)},
      {.name = "listen",
       .type = Type::kString,
       .description = "Address to listen on, \"host:port\"; keep it on loopback unless a "
                      "firewall guards the port.",
       .default_value = "127.0.0.1:9464",
       .check = Check::kHostPort,
       .set = Field(&MetricsConfig::listen)},
  };
  return s;
}

Section MakeHeartbeat() {
  Section s{.pointer = "/heartbeat",
            .title = "heartbeat",
            .description =
                "A periodic status record to Kafka (device id, version, uptime, "
                "backlog, drops, last error), to watch a fleet from the Kafka side.",
            .keys = {}};
  s.keys = {
      {.name = "enabled",
       .type = Type::kBool,
       .description = "Send heartbeats.",
       .default_value = false,
       .set = Field(&HeartbeatConfig::enabled)},
      {.name = "interval_s",
       .type = Type::kInteger,
       .description = "Seconds between heartbeats.",
       .default_value = 60,
       .minimum = 1,
       .maximum = 86400,
       .set = Field(&HeartbeatConfig::interval_s)},
      {.name = "topic",
       .type = Type::kString,
       .description = "Kafka topic of the heartbeats.",
       .default_value = "edgeferry.heartbeat",
       .check = Check::kKafkaTopic,
       .set = Field(&HeartbeatConfig::topic)},
  };
  return s;
}

Section MakeRoot(const Section* buffer, const Section* kafka, const Section* input,
                 const Section* metrics, const Section* heartbeat) {
  Section s{.pointer = "",
            .title = "top level",
            .description = "The file is one JSON object.",
            .keys = {},
            .finish = FinishRoot};
  s.keys = {
      {.name = "$schema",
       .type = Type::kString,
       .description = "Ignored; lets editors find edgeferry.schema.json for completion and "
                      "checks."},
      {.name = "device_id",
       .type = Type::kString,
       .description = "Names this gateway: {device} in topics and keys, and the device header "
                      "of every record. Letters, digits, '.', '_', '-'; at most 64.",
       .required = true,
       .check = Check::kName,
       .set = Field(&Config::device_id)},
      {.name = "log_level",
       .type = Type::kString,
       .description = "Least severe level logged to stderr (journald keeps the levels).",
       .default_value = "info",
       .allowed = {"error", "warning", "notice", "info", "debug"},
       .set = Field(&Config::log_level)},
      {.name = "buffer",
       .type = Type::kObject,
       .description = "The local buffer (see buffer).",
       .section = buffer,
       .child = SubObject(&Config::buffer)},
      {.name = "kafka",
       .type = Type::kObject,
       .description = "The Kafka cluster (see kafka).",
       .required = true,
       .section = kafka,
       .child = SubObject(&Config::kafka)},
      {.name = "inputs",
       .type = Type::kObjectList,
       .description = "Where readings come from (see inputs[]).",
       .required = true,
       .minimum = 1,
       .maximum = 256,
       .section = input,
       .child = [](void* o) -> void* {
         auto& inputs = static_cast<Config*>(o)->inputs;
         inputs.emplace_back();
         return &inputs.back();
       }},
      {.name = "metrics",
       .type = Type::kObject,
       .description = "Prometheus endpoint (see metrics).",
       .section = metrics,
       .child = SubObject(&Config::metrics)},
      {.name = "heartbeat",
       .type = Type::kObject,
       .description = "Heartbeat records (see heartbeat).",
       .section = heartbeat,
       .child = SubObject(&Config::heartbeat)},
  };
  return s;
}

struct Sections {
  Section buffer = MakeBuffer();
  Section kafka = MakeKafka();
  Section tls = MakeTls();
  Section subscription = MakeSubscription();
  Section input = MakeInput(&tls, &subscription);
  Section metrics = MakeMetrics();
  Section heartbeat = MakeHeartbeat();
  Section root = MakeRoot(&buffer, &kafka, &input, &metrics, &heartbeat);
};

}  // namespace

const std::vector<std::string>& InputTypes() {
  static const std::vector<std::string> kTypes = {"mqtt", "simulated", "hwmon",  "thermal",
                                                  "iio",  "w1",        "system", "exec"};
  return kTypes;
}

const Section& Root() {
  static const Sections* sections = new Sections();  // never destroyed: used at exit too
  return sections->root;
}

const Key* FindKey(const Section& section, std::string_view name) {
  for (const Key& k : section.keys) {
    if (k.name == name) return &k;
  }
  return nullptr;
}

}  // namespace edgeferry::config::schema
