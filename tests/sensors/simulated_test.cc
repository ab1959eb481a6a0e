#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "sensors/scheduler.h"
#include "sensors/sensors.h"
#include "tests/sensors/fake_sink.h"

namespace edgeferry::sensors {
namespace {

using namespace std::chrono_literals;
using testing::FakeSink;

config::InputConfig SimConfig(uint32_t sensors, double rate_hz) {
  config::InputConfig cfg;
  cfg.name = "sim";
  cfg.type = "simulated";
  cfg.topic = "t.sim";
  config::SensorInputConfig s;
  s.kind = "simulated";
  s.sensors = sensors;
  s.rate_hz = rate_hz;
  cfg.sensor = s;
  return cfg;
}

TEST_CASE("simulated input emits rate x sensors readings per second of (fake) clock") {
  FakeClock clock;
  FakeSink sink;
  auto sched = NewSensorScheduler(&clock);
  auto input = CreateInput(SimConfig(3, 10), "dev1", &sink, &clock, sched);
  REQUIRE(input.ok());
  REQUIRE((*input)->Start().ok());
  // The first reading of each sensor is at t=0.
  REQUIRE(sink.WaitForCount(3, 10s));
  // 2.5 s later: readings at 0, 0.1, ..., 2.5 s = 26 per sensor.
  for (int i = 0; i < 25; ++i) {
    clock.Advance(100ms);
    sched->Wake();
    REQUIRE(sink.WaitForCount(3 * (i + 2), 10s));
  }
  (*input)->Stop();
  auto recs = sink.records();
  CHECK(recs.size() == 3 * 26);
  InputStats st = (*input)->Stats();
  CHECK(st.received == 78);
  CHECK(st.accepted == 78);
  CHECK(st.errors == 0);
  CHECK(st.state == "stopped");

  // Format: {device, sensor, ts, value, unit}, source and topic from the config, event time = ts.
  std::map<std::string, int> per_sensor;
  int64_t last_ts = 0;
  for (const auto& r : recs) {
    auto j = nlohmann::json::parse(r.payload);
    CHECK(j["device"] == "dev1");
    CHECK(j["unit"] == "C");
    CHECK(j["value"].is_number());
    CHECK(j["ts"].get<int64_t>() == r.event_time_ms);
    CHECK(r.event_time_ms >= last_ts);
    last_ts = r.event_time_ms;
    CHECK(r.source == "sim");
    CHECK(r.topic == "t.sim");
    ++per_sensor[j["sensor"].get<std::string>()];
  }
  CHECK(per_sensor == std::map<std::string, int>{{"sim-0", 26}, {"sim-1", 26}, {"sim-2", 26}});
  CHECK(recs.back().event_time_ms - recs.front().event_time_ms == 2500);
}

TEST_CASE("simulated payload padding and waveforms") {
  FakeClock clock;
  FakeSink sink;
  auto cfg = SimConfig(1, 1);
  cfg.sensor->payload_bytes = 500;
  cfg.sensor->waveform = "constant";
  auto input = CreateInput(cfg, "d", &sink, &clock);
  REQUIRE(input.ok());
  REQUIRE((*input)->Start().ok());
  REQUIRE(sink.WaitForCount(1, 10s));
  (*input)->Stop();
  auto r = sink.records().at(0);
  CHECK(r.payload.size() == 500);
  auto j = nlohmann::json::parse(r.payload);
  CHECK(j["value"] == 20.0);

  cfg.sensor->waveform = "square";
  auto bad = CreateInput(cfg, "d", &sink, &clock);
  REQUIRE(!bad.ok());
  CHECK(bad.status().code() == Status::Code::kInvalidArgument);
  CHECK(bad.status().message().find("square") != std::string::npos);
}

TEST_CASE("simulated input at a real high rate keeps up and Stop leaves no partial batch") {
  FakeSink sink;
  auto input = CreateInput(SimConfig(10, 1000), "d", &sink);  // 10,000 readings/s
  REQUIRE(input.ok());
  REQUIRE((*input)->Start().ok());
  REQUIRE(sink.WaitForCount(20000, 20s));
  (*input)->Stop();
  size_t n = sink.size();
  InputStats st = (*input)->Stats();
  CHECK(st.accepted == n);
  CHECK(st.received == n);
  CHECK(n % 10 == 0);  // every tick appends all sensors together
}

TEST_CASE("a failing sink is counted as an error by reason, the input keeps polling") {
  FakeClock clock;
  FakeSink sink;
  sink.FailWith(Status::Full("buffer full"));
  auto sched = NewSensorScheduler(&clock);
  auto input = CreateInput(SimConfig(1, 1), "d", &sink, &clock, sched);
  REQUIRE(input.ok());
  REQUIRE((*input)->Start().ok());
  REQUIRE(sink.WaitForCalls(1, 10s));
  clock.Advance(1s);
  sched->Wake();
  REQUIRE(sink.WaitForCalls(2, 10s));
  sink.FailWith(Status::Ok());
  clock.Advance(1s);
  sched->Wake();
  REQUIRE(sink.WaitForCount(1, 10s));
  (*input)->Stop();
  InputStats st = (*input)->Stats();
  CHECK(st.errors_by_reason["append_Full"] == 2);
  CHECK(st.accepted == 1);
}

}  // namespace
}  // namespace edgeferry::sensors
