#include "agent/metrics.h"

#include <doctest/doctest.h>
#include <httplib.h>

#include <regex>
#include <set>
#include <sstream>

namespace edgeferry::agent {
namespace {

Snapshot Example() {
  Snapshot s;
  s.version = "0.1.0";
  s.device_id = "pump-7";
  s.started_unix_ms = 1'700'000'000'000;
  s.buffer.records = 12;
  s.buffer.oldest_undelivered_age_ms = 2500;
  s.buffer.drops["max_age"] = 4;
  s.kafka.delivered_records = 99;
  s.kafka.delivery_failures = 1;
  s.kafka.purged_records = 18;
  s.kafka.errors_by_kind["_TRANSPORT"] = 2;
  for (int64_t ms : {5, 40, 1200}) s.kafka.delivery_latency.Observe(ms);
  InputSnapshot mqtt{"plant", "mqtt", "", {}};
  mqtt.stats.state = "connected";
  mqtt.stats.received = 7;
  mqtt.stats.rejected_by_reason["too_large"] = 1;
  s.inputs.push_back(mqtt);
  InputSnapshot weird{"a\"b", "simulated", "", {}};
  weird.stats.state = "running";
  s.inputs.push_back(weird);
  return s;
}

TEST_CASE("RenderMetrics: exposition format with the expected series") {
  std::string text = RenderMetrics(Example(), 1'700'000'010'000);
  CHECK(text.find("edgeferry_uptime_seconds 10\n") != std::string::npos);
  CHECK(text.find("edgeferry_buffer_records 12\n") != std::string::npos);
  CHECK(text.find("edgeferry_buffer_oldest_undelivered_age_seconds 2.5\n") != std::string::npos);
  CHECK(text.find("edgeferry_buffer_dropped_records_total{reason=\"max_age\"} 4\n") !=
        std::string::npos);
  CHECK(text.find("edgeferry_kafka_delivered_records_total 99\n") != std::string::npos);
  CHECK(text.find("edgeferry_kafka_delivery_failures_total 1\n") != std::string::npos);
  CHECK(text.find("edgeferry_kafka_purged_records_total 18\n") != std::string::npos);
  CHECK(text.find("edgeferry_kafka_errors_total{kind=\"_TRANSPORT\"} 2\n") != std::string::npos);
  CHECK(text.find("edgeferry_mqtt_connected{input=\"plant\"} 1\n") != std::string::npos);
  CHECK(text.find("edgeferry_input_readings_received_total{input=\"plant\"} 7\n") !=
        std::string::npos);
  CHECK(text.find(
            "edgeferry_input_readings_rejected_total{input=\"plant\",reason=\"too_large\"} 1\n") !=
        std::string::npos);
  // The delivery latency histogram: cumulative buckets in seconds, +Inf, sum and count.
  CHECK(text.find("# TYPE edgeferry_delivery_latency_seconds histogram\n") != std::string::npos);
  CHECK(text.find("edgeferry_delivery_latency_seconds_bucket{le=\"0.01\"} 1\n") !=
        std::string::npos);
  CHECK(text.find("edgeferry_delivery_latency_seconds_bucket{le=\"0.05\"} 2\n") !=
        std::string::npos);
  CHECK(text.find("edgeferry_delivery_latency_seconds_bucket{le=\"1\"} 2\n") != std::string::npos);
  CHECK(text.find("edgeferry_delivery_latency_seconds_bucket{le=\"2.5\"} 3\n") !=
        std::string::npos);
  CHECK(text.find("edgeferry_delivery_latency_seconds_bucket{le=\"86400\"} 3\n") !=
        std::string::npos);
  CHECK(text.find("edgeferry_delivery_latency_seconds_bucket{le=\"+Inf\"} 3\n") !=
        std::string::npos);
  CHECK(text.find("edgeferry_delivery_latency_seconds_sum 1.245\n") != std::string::npos);
  CHECK(text.find("edgeferry_delivery_latency_seconds_count 3\n") != std::string::npos);
  // Label values are escaped.
  CHECK(text.find("{input=\"a\\\"b\"}") != std::string::npos);
  // Every sample line belongs to a family announced with HELP and TYPE before it.
  std::istringstream in(text);
  std::set<std::string> typed;
  std::regex sample(R"(^([a-z_]+)(\{[^}]*\})? -?[0-9.e+]+$)");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("# TYPE ", 0) == 0) {
      typed.insert(line.substr(7, line.find(' ', 7) - 7));
      continue;
    }
    if (line.rfind("# HELP ", 0) == 0) continue;
    std::smatch m;
    REQUIRE_MESSAGE(std::regex_match(line, m, sample), line);
    // A histogram's _bucket/_sum/_count samples belong to the family without the suffix.
    std::string family = m[1].str();
    for (std::string suffix : {"_bucket", "_sum", "_count"}) {
      if (typed.count(family) == 0 && family.size() > suffix.size() &&
          family.compare(family.size() - suffix.size(), suffix.size(), suffix) == 0) {
        family.resize(family.size() - suffix.size());
      }
    }
    CHECK_MESSAGE(typed.count(family) == 1, line);
  }
}

TEST_CASE("MetricsServer: serves the published text on loopback") {
  auto server = MetricsServer::Start("127.0.0.1:0");
  REQUIRE_MESSAGE(server.ok(), server.status().ToString());
  (*server)->Publish("edgeferry_up 1\n");
  httplib::Client client("127.0.0.1", (*server)->port());
  auto res = client.Get("/metrics");
  REQUIRE(res);
  CHECK(res->status == 200);
  CHECK(res->body == "edgeferry_up 1\n");
  CHECK(res->get_header_value("Content-Type").rfind("text/plain; version=0.0.4", 0) == 0);
}

TEST_CASE("MetricsServer: bad listen addresses are errors, not crashes") {
  CHECK(MetricsServer::Start("no-port").status().code() == Status::Code::kInvalidArgument);
  CHECK(MetricsServer::Start("127.0.0.1:99999").status().code() == Status::Code::kInvalidArgument);
  auto first = MetricsServer::Start("127.0.0.1:0");
  REQUIRE(first.ok());
  auto clash = MetricsServer::Start("127.0.0.1:" + std::to_string((*first)->port()));
  CHECK(clash.status().code() == Status::Code::kIOError);
}

}  // namespace
}  // namespace edgeferry::agent
