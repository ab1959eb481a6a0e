#include "forwarder/kafka_conf.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <string_view>

#include "forwarder/forwarder.h"
#include "forwarder/routing.h"

namespace edgeferry::forwarder {
namespace {

struct Owned {
  const char* property;
  const char* key;
};

// librdkafka property (and its aliases) -> the edgeferry key that sets it.
constexpr std::array kOwned = {
    Owned{"bootstrap.servers", "kafka.brokers"},
    Owned{"metadata.broker.list", "kafka.brokers"},
    Owned{"compression.type", "kafka.compression"},
    Owned{"compression.codec", "kafka.compression"},
    Owned{"acks", "kafka.acks"},
    Owned{"request.required.acks", "kafka.acks"},
    Owned{"enable.idempotence", "kafka.idempotence"},
    Owned{"linger.ms", "kafka.linger_ms"},
    Owned{"queue.buffering.max.ms", "kafka.linger_ms"},
    Owned{"batch.size", "kafka.batch_bytes"},
    Owned{"message.timeout.ms", "kafka.message_timeout_ms"},
    Owned{"delivery.timeout.ms", "kafka.message_timeout_ms"},
    Owned{"queue.buffering.max.messages", "kafka.max_inflight_records"},
    Owned{"queue.buffering.max.kbytes", "kafka.max_inflight_bytes"},
};

// Properties that would break the forwarder's delivery tracking.
constexpr std::array<std::string_view, 4> kForbidden = {"transactional.id", "dr_cb", "dr_msg_cb",
                                                        "error_cb"};

constexpr std::array<std::string_view, 5> kCodecs = {"zstd", "lz4", "gzip", "snappy", "none"};

}  // namespace

std::string OwningKey(const std::string& property) {
  for (const Owned& o : kOwned) {
    if (property == o.property) return o.key;
  }
  return "";
}

std::vector<std::pair<std::string, std::string>> OwnProperties(const config::KafkaConfig& cfg) {
  std::string brokers;
  for (const auto& b : cfg.brokers) {
    if (!brokers.empty()) brokers += ',';
    brokers += b;
  }
  // librdkafka counts queued messages and kbytes; leave headroom above our own caps so that our
  // caps, not QUEUE_FULL, are what bound memory.
  uint64_t kbytes = std::max<uint64_t>(cfg.max_inflight_bytes / 1024 * 2 + 1024, 4096);
  kbytes = std::min<uint64_t>(kbytes, 2147483647ull);
  uint64_t messages = std::min<uint64_t>(uint64_t{cfg.max_inflight_records} + 1000, 10000000);
  return {
      {"bootstrap.servers", brokers},
      {"compression.type", cfg.compression},
      {"acks", cfg.acks},
      {"enable.idempotence", cfg.idempotence ? "true" : "false"},
      {"linger.ms", std::to_string(cfg.linger_ms)},
      {"batch.size", std::to_string(cfg.batch_bytes)},
      {"message.timeout.ms", std::to_string(cfg.message_timeout_ms)},
      {"queue.buffering.max.messages", std::to_string(messages)},
      {"queue.buffering.max.kbytes", std::to_string(kbytes)},
  };
}

std::vector<std::string> ValidateKafkaConfig(const config::KafkaConfig& cfg) {
  std::vector<std::string> errors;
  if (cfg.brokers.empty())
    errors.push_back("kafka.brokers: at least one \"host:port\" is required");
  for (size_t i = 0; i < cfg.brokers.size(); ++i) {
    const std::string& b = cfg.brokers[i];
    size_t colon = b.rfind(':');
    bool ok = colon != std::string::npos && colon > 0 && colon + 1 < b.size() &&
              b.find_first_not_of("0123456789", colon + 1) == std::string::npos;
    if (!ok) {
      errors.push_back(fmt::format("kafka.brokers[{}]: \"{}\" is not \"host:port\"", i, b));
    }
  }
  if (std::find(kCodecs.begin(), kCodecs.end(), cfg.compression) == kCodecs.end()) {
    errors.push_back(fmt::format(
        "kafka.compression: \"{}\" is not one of zstd, lz4, gzip, snappy, none", cfg.compression));
  }
  if (cfg.acks != "all" && cfg.acks != "1" && cfg.acks != "0" && cfg.acks != "-1") {
    errors.push_back(fmt::format("kafka.acks: \"{}\" is not one of all, 1, 0", cfg.acks));
  } else if (cfg.idempotence && cfg.acks != "all" && cfg.acks != "-1") {
    errors.push_back(fmt::format(
        "kafka.acks: \"{}\" with kafka.idempotence=true; the idempotent producer needs acks=all",
        cfg.acks));
  }
  if (cfg.linger_ms > 900000) errors.push_back("kafka.linger_ms: must be <= 900000");
  if (cfg.batch_bytes < 1 || cfg.batch_bytes > 2147483647u) {
    errors.push_back("kafka.batch_bytes: must be between 1 and 2147483647");
  }
  if (cfg.max_inflight_records < 1) errors.push_back("kafka.max_inflight_records: must be >= 1");
  if (cfg.max_inflight_records > 1000000) {
    errors.push_back("kafka.max_inflight_records: must be <= 1000000");
  }
  if (cfg.max_inflight_bytes < 1024) errors.push_back("kafka.max_inflight_bytes: must be >= 1024");
  if (cfg.cursor_commit_interval_ms < 1) {
    errors.push_back("kafka.cursor_commit_interval_ms: must be >= 1");
  }
  if (cfg.backoff_initial_ms < 1) errors.push_back("kafka.backoff_initial_ms: must be >= 1");
  if (cfg.backoff_max_ms < cfg.backoff_initial_ms) {
    errors.push_back(fmt::format("kafka.backoff_max_ms: {} is below kafka.backoff_initial_ms ({})",
                                 cfg.backoff_max_ms, cfg.backoff_initial_ms));
  }
  if (cfg.message_timeout_ms > 2147483647u) {
    errors.push_back("kafka.message_timeout_ms: must be <= 2147483647");
  }
  if (cfg.topic_template.empty()) errors.push_back("kafka.topic_template: must not be empty");
  if (std::string e = CheckTemplate(cfg.topic_template); !e.empty()) {
    errors.push_back("kafka.topic_template: " + e);
  }
  if (std::string e = CheckTemplate(cfg.key_template); !e.empty()) {
    errors.push_back("kafka.key_template: " + e);
  }
  for (const auto& [name, value] : cfg.properties) {
    if (std::string key = OwningKey(name); !key.empty()) {
      errors.push_back(
          fmt::format("kafka.properties.{}: conflicts with {}; set it there", name, key));
    } else if (std::find(kForbidden.begin(), kForbidden.end(), name) != kForbidden.end()) {
      errors.push_back(fmt::format(
          "kafka.properties.{}: not supported (the forwarder owns delivery tracking)", name));
    }
  }
  // Let librdkafka judge values and names (no network): ours only if they passed our checks,
  // the pass-through ones always, so that every problem is reported at once.
  KafkaConfPtr conf(rd_kafka_conf_new());
  char errstr[512];
  if (errors.empty()) {
    for (const auto& [name, value] : OwnProperties(cfg)) {
      if (rd_kafka_conf_set(conf.get(), name.c_str(), value.c_str(), errstr, sizeof errstr) !=
          RD_KAFKA_CONF_OK) {
        errors.push_back(fmt::format("kafka: librdkafka rejected {}={}: {}", name, value, errstr));
      }
    }
  }
  for (const auto& [name, value] : cfg.properties) {
    if (!OwningKey(name).empty() ||
        std::find(kForbidden.begin(), kForbidden.end(), name) != kForbidden.end()) {
      continue;  // reported above
    }
    if (rd_kafka_conf_set(conf.get(), name.c_str(), value.c_str(), errstr, sizeof errstr) !=
        RD_KAFKA_CONF_OK) {
      errors.push_back(fmt::format("kafka.properties.{}: {}", name, errstr));
    }
  }
  return errors;
}

Result<KafkaConfPtr> BuildProducerConf(const config::KafkaConfig& cfg,
                                       const std::string& client_id) {
  std::vector<std::string> errors = ValidateKafkaConfig(cfg);
  if (!errors.empty()) {
    std::string msg;
    for (const auto& e : errors) msg += (msg.empty() ? "" : "; ") + e;
    return Status::InvalidArgument(msg);
  }
  KafkaConfPtr conf(rd_kafka_conf_new());
  char errstr[512];
  auto set = [&](const std::string& name, const std::string& value) -> bool {
    return rd_kafka_conf_set(conf.get(), name.c_str(), value.c_str(), errstr, sizeof errstr) ==
           RD_KAFKA_CONF_OK;
  };
  if (!set("client.id", client_id)) {
    return Status::InvalidArgument(fmt::format("kafka: client.id: {}", errstr));
  }
  for (const auto& [name, value] : OwnProperties(cfg)) {
    if (!set(name, value)) {
      return Status::InvalidArgument(fmt::format("kafka: {}={}: {}", name, value, errstr));
    }
  }
  for (const auto& [name, value] : cfg.properties) {
    if (!set(name, value)) {
      return Status::InvalidArgument(fmt::format("kafka.properties.{}: {}", name, errstr));
    }
  }
  return conf;
}

std::string LibrdkafkaVersion() { return rd_kafka_version_str(); }

}  // namespace edgeferry::forwarder
