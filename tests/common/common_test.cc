#include <doctest/doctest.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/status.h"

using namespace edgeferry;
using namespace std::chrono_literals;

TEST_CASE("Status carries code and message") {
  Status st = Status::IOError("open /x: Permission denied");
  CHECK_FALSE(st.ok());
  CHECK(st.code() == Status::Code::kIOError);
  CHECK(st.ToString() == "IOError: open /x: Permission denied");
  CHECK(Status::Ok().ToString() == "OK");
}

TEST_CASE("Result holds a value or an error") {
  Result<int> good = 7;
  REQUIRE(good.ok());
  CHECK(*good == 7);
  Result<int> bad = Status::NotFound("cursor forwarder");
  CHECK_FALSE(bad.ok());
  CHECK(bad.status().code() == Status::Code::kNotFound);
}

TEST_CASE("RateLimiter lets the first line through, then one per interval with a count") {
  FakeClock clock;
  RateLimiter rl(1000ms, &clock);
  uint64_t suppressed = 99;
  CHECK(rl.Allow("kafka-down", &suppressed));
  CHECK(suppressed == 0);
  CHECK_FALSE(rl.Allow("kafka-down", &suppressed));
  CHECK_FALSE(rl.Allow("kafka-down", &suppressed));
  CHECK(rl.Allow("other", &suppressed));
  clock.Advance(1001ms);
  CHECK(rl.Allow("kafka-down", &suppressed));
  CHECK(suppressed == 2);
}

TEST_CASE("log lines carry systemd priority and respect the level") {
  std::vector<std::pair<LogLevel, std::string>> lines;
  auto old = SetLogSink([&](LogLevel l, std::string_view s) { lines.emplace_back(l, s); });
  SetLogLevel(LogLevel::kWarning);
  EF_LOG(kInfo, "test", "hidden {}", 1);
  EF_LOG(kError, "test", "shown {}", 2);
  SetLogLevel(LogLevel::kInfo);
  SetLogSink(old);
  REQUIRE(lines.size() == 1);
  CHECK(lines[0].first == LogLevel::kError);
  CHECK(lines[0].second == "test: shown 2");
}
