#include <doctest/doctest.h>

#include <atomic>
#include <condition_variable>

#include "sensors/scheduler.h"
#include "tests/sensors/fake_sink.h"

namespace edgeferry::sensors {
namespace {

using namespace std::chrono_literals;
using testing::Eventually;

TEST_CASE("a hung read does not delay other sensors, it is counted as a timeout") {
  // Real clock: the point is wall-clock isolation. 1 worker so that without the replacement
  // worker the second task could not run at all.
  SensorScheduler sched(SystemClock(), 1);
  std::mutex mu;
  std::condition_variable cv;
  bool release = false;
  std::atomic<int> hung_reads{0}, hung_commits{0}, timeouts{0}, fast_reads{0};

  TaskSpec hung;
  hung.interval = 10ms;
  hung.timeout = 100ms;
  hung.run = [&](Clock::TimePoint) {
    ++hung_reads;
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return release; });
  };
  hung.commit = [&] { ++hung_commits; };
  hung.on_timeout = [&] { ++timeouts; };
  uint64_t hung_id = sched.Add(hung);
  REQUIRE(Eventually([&] { return hung_reads.load() == 1; }));

  TaskSpec fast;
  fast.interval = 10ms;
  fast.timeout = 1s;
  fast.run = [&](Clock::TimePoint) { ++fast_reads; };
  uint64_t fast_id = sched.Add(fast);
  // 50 reads at 10 ms take ~0.5 s; the hung read holds its worker for all of it.
  REQUIRE(Eventually([&] { return fast_reads.load() >= 50; }));
  CHECK(timeouts.load() == 1);       // counted once, not once per tick
  CHECK(hung_reads.load() == 1);     // not re-dispatched while still in its read
  CHECK(sched.live_workers() >= 2);  // the stuck one plus its replacement

  // Remove does not wait for a read that is past its timeout.
  sched.Remove(hung_id);
  {
    std::lock_guard lock(mu);
    release = true;
  }
  cv.notify_all();
  // The late result is discarded: the commit of a timed-out read never runs.
  REQUIRE(Eventually([&] { return sched.live_workers() == 1; }));
  CHECK(hung_commits.load() == 0);
  sched.Remove(fast_id);
}

TEST_CASE("interval and jitter with a fake clock") {
  FakeClock clock;
  SensorScheduler sched(&clock, 2);
  std::atomic<int> reads{0};
  TaskSpec t;
  t.interval = 1s;
  t.jitter = 0ms;
  t.run = [&](Clock::TimePoint) { ++reads; };
  uint64_t id = sched.Add(t);
  REQUIRE(Eventually([&] { return reads.load() == 1; }));
  clock.Advance(500ms);
  sched.Wake();
  // Not due yet: give the timer a chance to (wrongly) run it, then check the count is unchanged
  // after the next due run.
  clock.Advance(500ms);
  sched.Wake();
  REQUIRE(Eventually([&] { return reads.load() == 2; }));
  // A 10 s stall skips the missed ticks instead of bursting.
  clock.Advance(10s);
  sched.Wake();
  REQUIRE(Eventually([&] { return reads.load() == 3; }));
  clock.Advance(999ms);
  sched.Wake();
  clock.Advance(1ms);
  sched.Wake();
  REQUIRE(Eventually([&] { return reads.load() == 4; }));
  CHECK(reads.load() == 4);
  sched.Remove(id);

  // With jitter the first read comes at a random point within the jitter window, not before.
  std::atomic<int> jreads{0};
  TaskSpec j;
  j.interval = 10s;
  j.jitter = 5s;
  j.run = [&](Clock::TimePoint) { ++jreads; };
  uint64_t jid = sched.Add(j);
  clock.Advance(5s);
  sched.Wake();
  REQUIRE(Eventually([&] { return jreads.load() == 1; }));
  sched.Remove(jid);
}

TEST_CASE("Remove waits for a commit in progress and none runs after it") {
  SensorScheduler sched(SystemClock(), 2);
  std::atomic<int> in_commit{0};
  std::atomic<int> commits{0};
  std::mutex mu;
  std::condition_variable cv;
  bool release = false;
  TaskSpec t;
  t.interval = 5ms;
  t.timeout = 50ms;  // the commit (a blocked Append) is not covered by the timeout
  t.run = [](Clock::TimePoint) {};
  t.commit = [&] {
    ++in_commit;
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return release; });
    ++commits;
    --in_commit;
  };
  std::atomic<int> timeouts{0};
  t.on_timeout = [&] { ++timeouts; };
  uint64_t id = sched.Add(t);
  REQUIRE(Eventually([&] { return in_commit.load() == 1; }));
  std::atomic<int> in_commit_when_removed{-1};
  std::thread remover([&] {
    sched.Remove(id);
    in_commit_when_removed = in_commit.load();
  });
  {
    std::lock_guard lock(mu);
    release = true;
  }
  cv.notify_all();
  remover.join();
  CHECK(in_commit_when_removed.load() == 0);  // Remove returned only after the commit finished
  CHECK(timeouts.load() == 0);
  int after = commits.load();
  CHECK(after >= 1);
  // Another task runs 10 times; the removed one commits no more.
  std::atomic<int> other{0};
  TaskSpec o;
  o.interval = 5ms;
  o.run = [&](Clock::TimePoint) { ++other; };
  uint64_t oid = sched.Add(o);
  REQUIRE(Eventually([&] { return other.load() >= 10; }));
  sched.Remove(oid);
  CHECK(commits.load() == after);
}

}  // namespace
}  // namespace edgeferry::sensors
