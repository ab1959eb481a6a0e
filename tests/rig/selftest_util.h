// Helpers for the rig's own Kafka self-tests: a librdkafka producer and exact-match checks.
#pragma once

#include <doctest/doctest.h>
#include <librdkafka/rdkafka.h>

#include <string>
#include <vector>

#include "tests/rig/rig.h"

namespace edgeferry::rig::selftest {

using edgeferry::Header;

struct Sent {
  std::string key;
  std::string value;
  int64_t timestamp_ms;
  std::vector<Header> headers;
  int32_t partition;
};

// Produces `records` with acks=all and the given compression; fails the test unless every
// delivery report is a success.
inline void Produce(const std::string& bootstrap, const std::string& topic,
                    const std::vector<Sent>& records, const std::string& compression = "zstd") {
  char err[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  REQUIRE(rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap.c_str(), err, sizeof(err)) ==
          RD_KAFKA_CONF_OK);
  REQUIRE(rd_kafka_conf_set(conf, "acks", "all", err, sizeof(err)) == RD_KAFKA_CONF_OK);
  REQUIRE(rd_kafka_conf_set(conf, "compression.codec", compression.c_str(), err, sizeof(err)) ==
          RD_KAFKA_CONF_OK);
  REQUIRE(rd_kafka_conf_set(conf, "linger.ms", "50", err, sizeof(err)) == RD_KAFKA_CONF_OK);
  static int failures;
  failures = 0;
  rd_kafka_conf_set_dr_msg_cb(conf, [](rd_kafka_t*, const rd_kafka_message_t* m, void*) {
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) ++failures;
  });
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
  REQUIRE(rk != nullptr);
  for (const auto& r : records) {
    rd_kafka_headers_t* hdrs = rd_kafka_headers_new(r.headers.size());
    for (const auto& h : r.headers) {
      rd_kafka_header_add(hdrs, h.name.data(), static_cast<ssize_t>(h.name.size()), h.value.data(),
                          static_cast<ssize_t>(h.value.size()));
    }
    rd_kafka_resp_err_t e = rd_kafka_producev(
        rk, RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_PARTITION(r.partition),
        RD_KAFKA_V_KEY(r.key.data(), r.key.size()),
        RD_KAFKA_V_VALUE(const_cast<char*>(r.value.data()), r.value.size()),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_TIMESTAMP(r.timestamp_ms),
        RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_END);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) rd_kafka_headers_destroy(hdrs);
    REQUIRE(e == RD_KAFKA_RESP_ERR_NO_ERROR);
  }
  CHECK(rd_kafka_flush(rk, 30000) == RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_destroy(rk);
  CHECK(failures == 0);
}

inline std::vector<Sent> MakeRecords(int n, int partitions, const std::string& tag) {
  std::vector<Sent> out;
  for (int i = 0; i < n; ++i) {
    out.push_back(Sent{
        "key-" + std::to_string(i),
        tag + "-value-" + std::to_string(i),
        1'700'000'000'000 + i * 1000,
        {{"source", "rig-test"}, {"seq", std::to_string(i)}, {"bin", std::string("\0\xff", 2)}},
        i % partitions});
  }
  return out;
}

// Checks that `got` holds exactly `sent` (per partition in send order) with all fields.
inline void CheckExactly(const std::vector<ConsumedRecord>& got, const std::vector<Sent>& sent,
                         const std::string& topic, int partitions) {
  REQUIRE(got.size() == sent.size());
  size_t idx = 0;
  for (int p = 0; p < partitions; ++p) {
    int64_t offset = 0;
    for (const auto& s : sent) {
      if (s.partition != p) continue;
      const auto& r = got[idx++];
      CHECK(r.topic == topic);
      CHECK(r.partition == p);
      CHECK(r.offset == offset++);
      REQUIRE(r.key.has_value());
      CHECK(*r.key == s.key);
      CHECK(r.value == s.value);
      CHECK(r.timestamp_ms == s.timestamp_ms);
      CHECK(r.headers == s.headers);
    }
  }
}

}  // namespace edgeferry::rig::selftest
