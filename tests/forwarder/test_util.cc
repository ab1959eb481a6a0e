#include "tests/forwarder/test_util.h"

#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <thread>

#include "forwarder/forwarder.h"

namespace edgeferry::forwarder::testing {

std::optional<std::string> HeaderValue(const Consumed& c, const std::string& name) {
  for (const Header& h : c.headers) {
    if (h.name == name) return h.value;
  }
  return std::nullopt;
}

std::vector<Consumed> ReadTopic(const std::string& bootstrap, const std::string& topic,
                                size_t min_count, std::chrono::milliseconds deadline) {
  char errstr[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap.c_str(), errstr, sizeof errstr);
  rd_kafka_conf_set(conf, "group.id", "edgeferry-forwarder-test-reader", errstr, sizeof errstr);
  rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, sizeof errstr);
  rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof errstr);
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
  if (rk == nullptr) {
    rd_kafka_conf_destroy(conf);
    throw std::runtime_error(std::string("consumer: ") + errstr);
  }
  std::unique_ptr<rd_kafka_t, void (*)(rd_kafka_t*)> owner(rk, [](rd_kafka_t* k) {
    rd_kafka_consumer_close(k);
    rd_kafka_destroy(k);
  });
  auto end = std::chrono::steady_clock::now() + deadline;

  // Partition count from metadata (retry: the cluster may still be electing leaders).
  int partitions = 0;
  while (partitions == 0 && std::chrono::steady_clock::now() < end) {
    rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk, topic.c_str(), nullptr);
    const rd_kafka_metadata_t* md = nullptr;
    if (rd_kafka_metadata(rk, 0, rkt, &md, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
      if (md->topic_cnt == 1 && md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        partitions = md->topics[0].partition_cnt;
      }
      rd_kafka_metadata_destroy(md);
    }
    rd_kafka_topic_destroy(rkt);
    if (partitions == 0) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (partitions == 0) throw std::runtime_error("no metadata for topic " + topic);

  // Wait until the partitions hold at least min_count messages (high watermarks), then read
  // every partition up to its high watermark: duplicates must not end the read early.
  std::vector<int64_t> high(partitions, 0);
  auto refresh = [&] {
    int64_t total = 0;
    for (int p = 0; p < partitions; ++p) {
      int64_t lo = 0, hi = 0;
      if (rd_kafka_query_watermark_offsets(rk, topic.c_str(), p, &lo, &hi, 5000) ==
          RD_KAFKA_RESP_ERR_NO_ERROR) {
        high[p] = hi;
      }
      total += high[p];
    }
    return total;
  };
  while (refresh() < static_cast<int64_t>(min_count) && std::chrono::steady_clock::now() < end) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }

  rd_kafka_topic_partition_list_t* parts = rd_kafka_topic_partition_list_new(partitions);
  for (int p = 0; p < partitions; ++p) {
    rd_kafka_topic_partition_list_add(parts, topic.c_str(), p)->offset = RD_KAFKA_OFFSET_BEGINNING;
  }
  rd_kafka_assign(rk, parts);
  rd_kafka_topic_partition_list_destroy(parts);

  std::vector<int64_t> next(partitions, 0);
  auto done = [&] {
    for (int p = 0; p < partitions; ++p) {
      if (next[p] < high[p]) return false;
    }
    return true;
  };
  std::vector<Consumed> out;
  while (!done() && std::chrono::steady_clock::now() < end) {
    rd_kafka_message_t* m = rd_kafka_consumer_poll(rk, 100);
    if (m == nullptr) continue;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      if (m->partition >= 0 && m->partition < partitions) next[m->partition] = m->offset + 1;
      Consumed c;
      c.topic = rd_kafka_topic_name(m->rkt);
      c.partition = m->partition;
      c.offset = m->offset;
      if (m->key != nullptr) c.key = std::string(static_cast<const char*>(m->key), m->key_len);
      c.value.assign(static_cast<const char*>(m->payload), m->len);
      c.timestamp_ms = rd_kafka_message_timestamp(m, nullptr);
      rd_kafka_headers_t* hdrs = nullptr;
      if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        const char* name;
        const void* val;
        size_t size;
        for (size_t i = 0;
             rd_kafka_header_get_all(hdrs, i, &name, &val, &size) == RD_KAFKA_RESP_ERR_NO_ERROR;
             ++i) {
          c.headers.push_back({name, std::string(static_cast<const char*>(val), size)});
        }
      }
      out.push_back(std::move(c));
    }
    rd_kafka_message_destroy(m);
  }
  std::stable_sort(out.begin(), out.end(), [](const Consumed& a, const Consumed& b) {
    return a.partition != b.partition ? a.partition < b.partition : a.offset < b.offset;
  });
  return out;
}

DeliveryCheck CheckDelivery(const std::vector<Consumed>& got, const std::set<uint64_t>& expected) {
  DeliveryCheck r;
  r.total = got.size();
  std::set<uint64_t> seen;
  std::map<std::string, uint64_t> last_first_by_key;  // key -> last first-occurrence seq
  for (const Consumed& c : got) {
    auto s = HeaderValue(c, kHeaderSeq);
    if (!s) {
      r.order_error = "a record without the ef.seq header";
      continue;
    }
    uint64_t seq = std::stoull(*s);
    if (!seen.insert(seq).second) continue;  // duplicate: order applies to first occurrences
    if (!expected.count(seq)) r.unexpected.push_back(seq);
    std::string key = c.key.value_or("<null>");
    auto it = last_first_by_key.find(key);
    if (it != last_first_by_key.end() && it->second > seq && r.order_error.empty()) {
      r.order_error = "key " + key + ": seq " + std::to_string(seq) + " first arrived after seq " +
                      std::to_string(it->second);
    }
    last_first_by_key[key] = std::max(seq, it == last_first_by_key.end() ? 0 : it->second);
  }
  r.unique = seen.size();
  r.duplicates = r.total - r.unique;
  for (uint64_t s : expected) {
    if (!seen.count(s)) r.missing.push_back(s);
  }
  return r;
}

}  // namespace edgeferry::forwarder::testing

namespace edgeferry::forwarder::testing {

bool WaitUntil(const std::function<bool()>& cond, std::chrono::milliseconds deadline) {
  double scale = 1.0;
  if (const char* s = std::getenv("EDGEFERRY_TEST_TIMEOUT_SCALE"))
    scale = std::max(1.0, std::atof(s));
  auto end = std::chrono::steady_clock::now() +
             std::chrono::milliseconds(static_cast<int64_t>(deadline.count() * scale));
  while (std::chrono::steady_clock::now() < end) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return cond();
}

}  // namespace edgeferry::forwarder::testing
