// Reading a topic back from a test-rig cluster as testing::Consumed (the integration tests'
// shared form; test_util itself does not depend on the rig, so the unit tests need no broker).
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "tests/forwarder/test_util.h"
#include "tests/rig/rig.h"

namespace edgeferry::forwarder::testing {

// Every record of `topic` once at least `min_count` are there (rig::KafkaCluster::ReadAll).
inline std::vector<Consumed> ReadBack(
    rig::KafkaCluster& kafka, const std::string& topic, size_t min_count,
    std::chrono::milliseconds deadline = std::chrono::seconds(60)) {
  std::vector<Consumed> out;
  for (auto& r : kafka.ReadAll(topic, min_count, deadline)) {
    Consumed c;
    c.topic = r.topic;
    c.partition = r.partition;
    c.offset = r.offset;
    c.key = r.key;
    c.value = r.value;
    c.timestamp_ms = r.timestamp_ms;
    c.headers = std::move(r.headers);
    out.push_back(std::move(c));
  }
  return out;
}

}  // namespace edgeferry::forwarder::testing
