// Crash test: a child process appends with durable acknowledgments and is killed with SIGKILL
// at random moments, over and over; after every kill the reopened buffer must hold every
// acknowledged record exactly once, in order.
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <map>
#include <random>
#include <set>
#include <sstream>

#include "buffer/buffer.h"
#include "tests/buffer/test_util.h"

#ifndef EDGEFERRY_CRASH_CHILD
#error "EDGEFERRY_CRASH_CHILD must name the buffer_crash_child binary"
#endif

namespace edgeferry::buffer {
namespace {

struct Child {
  pid_t pid = -1;
  int out = -1;
};

Child Spawn(const std::string& db, const char* sync, int run) {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::dup2(fds[1], 1);
    ::close(fds[0]);
    ::close(fds[1]);
    int devnull = ::open("/dev/null", O_WRONLY);
    ::dup2(devnull, 2);
    std::string r = std::to_string(run);
    ::execl(EDGEFERRY_CRASH_CHILD, EDGEFERRY_CRASH_CHILD, db.c_str(), sync, r.c_str(), nullptr);
    ::_exit(127);
  }
  ::close(fds[1]);
  return {pid, fds[0]};
}

// Reads whole lines; returns false at EOF.
bool ReadLines(int fd, std::string* pending, std::vector<std::string>* lines) {
  char buf[4096];
  ssize_t n = ::read(fd, buf, sizeof buf);
  if (n <= 0) return false;
  pending->append(buf, n);
  size_t pos;
  while ((pos = pending->find('\n')) != std::string::npos) {
    lines->push_back(pending->substr(0, pos));
    pending->erase(0, pos + 1);
  }
  return true;
}

TEST_CASE("SIGKILL at random moments never loses or duplicates an acknowledged record") {
  testing::TempDir dir;
  std::string db = dir.File("crash.db");
  std::mt19937 rng(12345);
  // acked[run/thread] = highest record number acknowledged (all below it were acknowledged too).
  std::map<std::string, long> acked;
  constexpr int kRuns = 120;
  uint64_t total_acked = 0;
  for (int run = 0; run < kRuns; ++run) {
    const char* sync = run % 2 == 0 ? "full" : "normal";
    Child c = Spawn(db, sync, run);
    std::string pending;
    std::vector<std::string> lines;
    size_t kill_after = std::uniform_int_distribution<size_t>(0, 150)(rng);
    while (lines.size() < kill_after && ReadLines(c.out, &pending, &lines)) {
    }
    if (kill_after > 0)
      REQUIRE_MESSAGE(lines.size() >= kill_after, "child exited early, run " << run);
    ::usleep(
        std::uniform_int_distribution<int>(0, 3000)(rng));  // a random moment, not a sync point
    ::kill(c.pid, SIGKILL);
    int status = 0;
    ::waitpid(c.pid, &status, 0);
    REQUIRE(WIFSIGNALED(status));
    while (ReadLines(c.out, &pending, &lines)) {
    }
    ::close(c.out);
    for (const auto& l : lines) {
      std::istringstream in(l);
      int t;
      long first, last;
      in >> t >> first >> last;
      std::string key = std::to_string(run) + "/" + std::to_string(t);
      auto it = acked.find(key);
      REQUIRE((it == acked.end() ? -1 : it->second) == first - 1);  // acks come in order
      acked[key] = last;
      total_acked += last - first + 1;
    }

    auto b = Buffer::Open(config::BufferConfig{.path = db}, SystemClock());
    REQUIRE_MESSAGE(b.ok(), b.status().ToString());
    auto all = (*b)->ReadAfter(0, SIZE_MAX, SIZE_MAX);
    REQUIRE(all.ok());
    CHECK((*b)->GetStats().recoveries == 0);
    std::map<std::string, long> seen;  // per run/thread: last record number seen, in seq order
    uint64_t prev_seq = 0;
    for (const auto& sr : *all) {
      REQUIRE(sr.seq > prev_seq);
      prev_seq = sr.seq;
      const std::string& p = sr.record.payload;
      size_t slash = p.rfind('/');
      std::string key = p.substr(0, slash);
      long n = std::stol(p.substr(slash + 1));
      auto it = seen.find(key);
      // Exactly once and in order: each thread's records appear as 0, 1, 2, ... without holes.
      REQUIRE_MESSAGE((it == seen.end() ? -1 : it->second) == n - 1, "record " << p);
      seen[key] = n;
    }
    for (const auto& [key, last] : acked) {
      auto it = seen.find(key);
      REQUIRE_MESSAGE(it != seen.end(), "all acknowledged records of " << key << " lost");
      REQUIRE_MESSAGE(it->second >= last,
                      key << ": acked up to " << last << ", found " << it->second);
    }
  }
  MESSAGE(kRuns << " SIGKILLs, " << total_acked << " acknowledged records, none lost");
}

}  // namespace
}  // namespace edgeferry::buffer
