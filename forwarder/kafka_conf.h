// Translates the kafka section into librdkafka properties. Checking the section is the config
// loader's job (config/schema.cc and config/kafka_checks.cc: ranges, templates, pass-through
// properties that one of our keys sets or that librdkafka rejects); here librdkafka only says
// whether it takes the configuration we build.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "common/status.h"
#include "config/config.h"
#include "forwarder/rdkafka_handles.h"

namespace edgeferry::forwarder {

// The librdkafka properties our keys set, in order, before the pass-through ones.
std::vector<std::pair<std::string, std::string>> OwnProperties(const config::KafkaConfig& cfg);

// A producer configuration with the pass-through properties and then ours applied (ours win; no
// callbacks set yet). InvalidArgument with every property librdkafka refuses.
Result<KafkaConfPtr> BuildProducerConf(const config::KafkaConfig& cfg,
                                       const std::string& client_id);

}  // namespace edgeferry::forwarder
