// The one record type that flows from inputs through the buffer to Kafka.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace edgeferry {

struct Header {
  std::string name;
  std::string value;  // bytes; not necessarily UTF-8
  bool operator==(const Header&) const = default;
};

// A reading as an input produced it.
struct Record {
  std::string source;         // the input's configured name, e.g. "plant-mqtt"
  std::string key;            // Kafka key; empty means the forwarder's default (device + source)
  std::string topic;          // Kafka topic; empty means the forwarder's routing template
  int64_t event_time_ms = 0;  // when the reading was taken, Unix epoch milliseconds
  std::string payload;        // opaque bytes, carried unchanged
  std::vector<Header> headers;

  // Bytes this record accounts for in buffer and in-flight limits.
  size_t ByteSize() const {
    size_t n = source.size() + key.size() + topic.size() + payload.size() + 8;
    for (const auto& h : headers) n += h.name.size() + h.value.size();
    return n;
  }
  bool operator==(const Record&) const = default;
};

// A record as the buffer holds it: with its sequence number, which strictly increases and is
// never reused (across trims, restarts and recovery).
struct StoredRecord {
  uint64_t seq = 0;
  int64_t ingest_time_ms = 0;  // when the buffer accepted it
  Record record;
};

}  // namespace edgeferry
