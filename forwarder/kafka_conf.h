// Translates the kafka config section into librdkafka properties. Our own keys map to fixed
// librdkafka properties; a pass-through property that sets one of those is a config error, so
// that nothing is overridden silently.
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

// If `property` is set by one of our keys, that key ("kafka.acks"); else "".
std::string OwningKey(const std::string& property);

// A producer configuration with our properties and the pass-through ones applied (no callbacks
// set yet). InvalidArgument with every problem on failure.
Result<KafkaConfPtr> BuildProducerConf(const config::KafkaConfig& cfg,
                                       const std::string& client_id);

}  // namespace edgeferry::forwarder
