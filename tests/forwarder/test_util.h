// Helpers shared by the forwarder tests: reading a topic back with a plain librdkafka consumer
// (used against the mock cluster), and the no-loss / order check on what was read.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/record.h"

namespace edgeferry::forwarder::testing {

struct Consumed {
  std::string topic;
  int32_t partition = 0;
  int64_t offset = 0;
  std::optional<std::string> key;
  std::string value;
  int64_t timestamp_ms = 0;
  std::vector<Header> headers;
};

std::optional<std::string> HeaderValue(const Consumed& c, const std::string& name);

// Every record of `topic` from the beginning up to the high watermarks, once these add up to at
// least `min_count` (or the deadline passed). Ordered by partition, then offset.
std::vector<Consumed> ReadTopic(const std::string& bootstrap, const std::string& topic,
                                size_t min_count, std::chrono::milliseconds deadline);

struct DeliveryCheck {
  size_t total = 0;                  // messages read
  size_t unique = 0;                 // distinct ef.seq values
  size_t duplicates = 0;             // total - unique
  std::vector<uint64_t> missing;     // expected seqs never seen
  std::vector<uint64_t> unexpected;  // seen but not expected
  std::string order_error;           // empty: per key, first occurrences in seq order
  bool ok() const { return missing.empty() && unexpected.empty() && order_error.empty(); }
};

// Checks `got` against the seqs that must have arrived (ef.seq header).
DeliveryCheck CheckDelivery(const std::vector<Consumed>& got, const std::set<uint64_t>& expected);

}  // namespace edgeferry::forwarder::testing

namespace edgeferry::forwarder::testing {

// Polls `cond` every 10 ms until true or `deadline` (scaled by EDGEFERRY_TEST_TIMEOUT_SCALE).
bool WaitUntil(const std::function<bool()>& cond, std::chrono::milliseconds deadline);

}  // namespace edgeferry::forwarder::testing
