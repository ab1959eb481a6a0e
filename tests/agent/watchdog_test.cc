#include "agent/watchdog.h"

#include <doctest/doctest.h>

#include <atomic>

namespace edgeferry::agent {
namespace {

using namespace std::chrono_literals;

TEST_CASE("ProgressWatch: a loop whose ticks move is never stalled") {
  FakeClock clock;
  ProgressWatch watch(&clock);
  std::atomic<uint64_t> ticks{0};
  watch.Add(
      "forwarder", [&] { return ticks.load(); }, 2s);
  for (int i = 0; i < 10; ++i) {
    clock.Advance(1500ms);
    ++ticks;
    CHECK(watch.Stalled().empty());
  }
}

TEST_CASE("ProgressWatch: stalled only after the allowance, and recovers when ticks move") {
  FakeClock clock;
  ProgressWatch watch(&clock);
  std::atomic<uint64_t> fwd{0};
  std::atomic<uint64_t> input{0};
  watch.Add(
      "forwarder", [&] { return fwd.load(); }, 2s);
  watch.Add(
      "input sim", [&] { return input.load(); }, 25s);

  clock.Advance(2s);
  CHECK(watch.Stalled().empty());  // exactly at the allowance: not yet
  clock.Advance(1ms);
  CHECK(watch.Stalled() == std::vector<std::string>{"forwarder"});
  clock.Advance(23s);  // input: 25.001 s without a tick
  CHECK(watch.Stalled() == std::vector<std::string>{"forwarder", "input sim"});

  ++fwd;
  CHECK(watch.Stalled() == std::vector<std::string>{"input sim"});
  ++input;
  CHECK(watch.Stalled().empty());
  clock.Advance(1s);
  CHECK(watch.Stalled().empty());
}

TEST_CASE("ProgressWatch: Clear forgets every loop") {
  FakeClock clock;
  ProgressWatch watch(&clock);
  watch.Add(
      "forwarder", [] { return uint64_t{7}; }, 1s);
  clock.Advance(5s);
  CHECK(watch.Stalled().size() == 1);
  watch.Clear();
  CHECK(watch.Stalled().empty());
}

}  // namespace
}  // namespace edgeferry::agent
