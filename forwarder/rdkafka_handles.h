// RAII owners for the librdkafka C handles the forwarder uses. Ownership passes to librdkafka
// only where its API says it takes it, and only after the call reported success: callers then
// release() the unique_ptr (see the comments at those call sites).
#pragma once

#include <librdkafka/rdkafka.h>

#include <memory>

namespace edgeferry::forwarder {

struct RdKafkaDeleter {
  void operator()(rd_kafka_t* rk) const { rd_kafka_destroy(rk); }
};
struct RdKafkaConfDeleter {
  void operator()(rd_kafka_conf_t* conf) const { rd_kafka_conf_destroy(conf); }
};
struct RdKafkaTopicDeleter {
  void operator()(rd_kafka_topic_t* rkt) const { rd_kafka_topic_destroy(rkt); }
};
struct RdKafkaHeadersDeleter {
  void operator()(rd_kafka_headers_t* hdrs) const { rd_kafka_headers_destroy(hdrs); }
};

using KafkaPtr = std::unique_ptr<rd_kafka_t, RdKafkaDeleter>;
using KafkaConfPtr = std::unique_ptr<rd_kafka_conf_t, RdKafkaConfDeleter>;
using KafkaTopicPtr = std::unique_ptr<rd_kafka_topic_t, RdKafkaTopicDeleter>;
using KafkaHeadersPtr = std::unique_ptr<rd_kafka_headers_t, RdKafkaHeadersDeleter>;

}  // namespace edgeferry::forwarder
