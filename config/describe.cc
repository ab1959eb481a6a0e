// check-config's summary of what a config will run. Never prints secrets.
#include <fmt/format.h>

#include <string>

#include "config/config.h"

namespace edgeferry::config {
namespace {

std::string Bytes(uint64_t b) {
  if (b >= (1ull << 30) && b % (1ull << 30) == 0) return fmt::format("{} GiB", b >> 30);
  if (b >= (1ull << 20) && b % (1ull << 20) == 0) return fmt::format("{} MiB", b >> 20);
  if (b >= (1ull << 10) && b % (1ull << 10) == 0) return fmt::format("{} KiB", b >> 10);
  return fmt::format("{} B", b);
}

std::string Join(const std::vector<std::string>& v) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + v[i];
  return out;
}

std::string DescribeInput(const InputConfig& in) {
  std::string out = fmt::format("  {} ({}{})", in.name, in.type, in.enabled ? "" : ", disabled");
  if (in.mqtt) {
    const MqttInputConfig& m = *in.mqtt;
    std::vector<std::string> subs;
    for (const MqttSubscription& s : m.subscriptions) {
      subs.push_back(fmt::format("{} qos {}", s.filter, s.qos));
    }
    out += fmt::format(": {} as {}, MQTT {}{}{}, {} connection{}; {}", Join(m.uris), m.client_id,
                       m.version == 5 ? "5" : "3.1.1", m.tls ? ", TLS" : "",
                       m.username.empty() ? "" : ", user " + m.username, m.connections,
                       m.connections == 1 ? "" : "s", Join(subs));
  } else if (in.sensor) {
    const SensorInputConfig& s = *in.sensor;
    if (s.kind == "simulated") {
      out += fmt::format(": {} sensor{} at {} Hz, {}", s.sensors, s.sensors == 1 ? "" : "s",
                         s.rate_hz, s.waveform);
    } else if (s.kind == "exec") {
      out += fmt::format(": runs {} every {} ms ({} output)", Join(s.command), s.interval_ms,
                         s.format);
    } else if (s.kind == "system") {
      out += fmt::format(": {} every {} ms", s.metrics.empty() ? "all metrics" : Join(s.metrics),
                         s.interval_ms);
    } else {
      out += fmt::format(": {} under {} every {} ms", s.match.empty() ? "all" : Join(s.match),
                         s.sysfs_root, s.interval_ms);
    }
  }
  if (!in.topic.empty()) out += " -> topic " + in.topic;
  return out + "\n";
}

}  // namespace

std::string Describe(const Config& c) {
  std::string out =
      fmt::format("config {}: device {}, log level {}\n", c.source_path, c.device_id, c.log_level);
  const BufferConfig& b = c.buffer;
  static const char* kWhenFull[] = {"drop_oldest", "block", "drop_newest"};
  out += fmt::format("buffer: {}, sync {}, at most {}, when full {}{}\n", b.path,
                     b.sync == SyncMode::kFull ? "full" : "normal", Bytes(b.max_bytes),
                     kWhenFull[static_cast<int>(b.when_full)],
                     b.max_age_s ? fmt::format(", max age {} s", b.max_age_s) : "");
  const KafkaConfig& k = c.kafka;
  std::vector<std::string> props;
  for (const auto& [name, value] : k.properties) {
    (void)value;
    props.push_back(name);
  }
  out += fmt::format("kafka: {}, {}, acks {}{}, topic {}, key {}{}\n", Join(k.brokers),
                     k.compression, k.acks, k.idempotence ? ", idempotent" : "", k.topic_template,
                     k.key_template, props.empty() ? "" : ", properties " + Join(props));
  size_t enabled = 0;
  for (const InputConfig& in : c.inputs) enabled += in.enabled ? 1 : 0;
  out += fmt::format("inputs: {} ({} enabled)\n", c.inputs.size(), enabled);
  for (const InputConfig& in : c.inputs) out += DescribeInput(in);
  out += "metrics: " + (c.metrics.enabled ? "on " + c.metrics.listen : std::string("off")) + "\n";
  out += "heartbeat: " +
         (c.heartbeat.enabled
              ? fmt::format("every {} s to {}", c.heartbeat.interval_s, c.heartbeat.topic)
              : std::string("off")) +
         "\n";
  return out;
}

}  // namespace edgeferry::config
