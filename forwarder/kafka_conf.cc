#include "forwarder/kafka_conf.h"

#include <fmt/format.h>

#include <algorithm>

#include "forwarder/forwarder.h"

namespace edgeferry::forwarder {

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
  std::vector<std::pair<std::string, std::string>> own = {
      {"bootstrap.servers", brokers},
      {"compression.type", cfg.compression},
      {"acks", cfg.acks},
      {"enable.idempotence", cfg.idempotence ? "true" : "false"},
      {"linger.ms", std::to_string(cfg.linger_ms)},
      {"batch.size", std::to_string(cfg.batch_bytes)},
      // No timeout of librdkafka's own: the forwarder enforces kafka.message_timeout_ms itself
      // (forwarder.cc, CheckDeliveryTimeout). librdkafka expires the oldest records of a
      // partition and keeps the younger ones queued, bumps the producer epoch and sends those
      // at once; enable.gapless.guarantee explicitly does not cover that. A real broker accepts
      // them (a new epoch restarts its sequence), so later records of a key could reach the log
      // ahead of the expired ones, which the forwarder resends from its cursor ("key k0: seq 901
      // first arrived after seq 1495" under qemu in the mock test "produce requests timing out
      // ..."). The forwarder's timeout purges everything not yet sent, and librdkafka never gives
      // up a record by itself.
      {"message.timeout.ms", "0"},
      // Retry until the forwarder's timeout, never give a record up after a count (the config
      // loader refuses retries under kafka.properties, config/schema.cc says why).
      {"message.send.max.retries", "2147483647"},
      {"queue.buffering.max.messages", std::to_string(messages)},
      {"queue.buffering.max.kbytes", std::to_string(kbytes)},
  };
  // Without it, when the broker refuses a batch for good (MSG_SIZE_TOO_LARGE, ...), librdkafka
  // bumps the producer epoch and sends the batches queued behind it at once, before the
  // forwarder has seen the failure and purged them: later records of a key reached the log
  // ahead of the refused ones, which the forwarder resends from its cursor (mock test "a batch
  // refused for good ..."). With it, the refusal is a fatal error that stops the producer before
  // it sends anything more, and the forwarder starts a new one from its cursor. Only set with
  // idempotence, which it requires; librdkafka files it under experimental, hence the CONFWARN
  // it logs at debug level (forwarder.cc).
  if (cfg.idempotence) own.emplace_back("enable.gapless.guarantee", "true");
  return own;
}

namespace {

// Sets client.id, the pass-through properties and then ours on `conf`; every property librdkafka
// refuses is one message in *errors. Ours come last so that they win over a pass-through property
// that sets the same one (or an alias of it): the config loader refuses such a config, and a
// KafkaConfig built in code cannot turn idempotence or acks off behind the forwarder's back.
void ApplyProperties(rd_kafka_conf_t* conf, const config::KafkaConfig& cfg,
                     const std::string& client_id, std::vector<std::string>* errors) {
  char errstr[512];
  auto set = [&](const std::string& name, const std::string& value) {
    return rd_kafka_conf_set(conf, name.c_str(), value.c_str(), errstr, sizeof errstr) ==
           RD_KAFKA_CONF_OK;
  };
  if (!set("client.id", client_id)) errors->push_back(fmt::format("kafka: client.id: {}", errstr));
  for (const auto& [name, value] : cfg.properties) {
    if (!set(name, value)) errors->push_back(fmt::format("kafka.properties.{}: {}", name, errstr));
  }
  for (const auto& [name, value] : OwnProperties(cfg)) {
    if (!set(name, value)) {
      errors->push_back(fmt::format("kafka: librdkafka rejected {}={}: {}", name, value, errstr));
    }
  }
}

}  // namespace

std::vector<std::string> ValidateKafkaConfig(const config::KafkaConfig& cfg) {
  std::vector<std::string> errors;
  KafkaConfPtr conf(rd_kafka_conf_new());
  ApplyProperties(conf.get(), cfg, "edgeferry", &errors);
  return errors;
}

Result<KafkaConfPtr> BuildProducerConf(const config::KafkaConfig& cfg,
                                       const std::string& client_id) {
  std::vector<std::string> errors;
  KafkaConfPtr conf(rd_kafka_conf_new());
  ApplyProperties(conf.get(), cfg, client_id, &errors);
  if (!errors.empty()) {
    std::string msg;
    for (const auto& e : errors) msg += (msg.empty() ? "" : "; ") + e;
    return Status::InvalidArgument(msg);
  }
  return conf;
}

std::string LibrdkafkaVersion() { return rd_kafka_version_str(); }

}  // namespace edgeferry::forwarder
