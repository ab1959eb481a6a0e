// The rig's own plumbing: processes, temp dirs, ports, waits.
#include <doctest/doctest.h>
#include <signal.h>

#include <chrono>
#include <filesystem>

#include "tests/rig/rig.h"

namespace rig = edgeferry::rig;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

TEST_CASE("Process reports exit codes, signals, env and output") {
  rig::TempDir dir;
  rig::Process::Options o;
  o.env["RIG_X"] = "hello";
  o.stdout_path = dir / "out";
  o.stderr_path = dir / "err";
  rig::Process p({"sh", "-c", "echo \"$RIG_X\"; echo oops >&2; exit 7"}, o);
  CHECK(p.Wait(10s) == 7);
  CHECK_FALSE(p.running());
  CHECK(rig::ReadFile(dir / "out") == "hello\n");
  CHECK(rig::ReadFile(dir / "err") == "oops\n");

  rig::Process sleeper({"sleep", "60"});
  CHECK(sleeper.running());
  CHECK_FALSE(sleeper.Wait(50ms).has_value());
  sleeper.Signal(SIGTERM);
  CHECK(sleeper.Wait(10s) == 128 + SIGTERM);

  rig::Process killed({"sleep", "60"});
  killed.Kill();
  CHECK(killed.exit_status() == 128 + SIGKILL);
}

TEST_CASE("Process throws for a missing binary and its destructor kills the child") {
  CHECK_THROWS_AS(rig::Process({"/nonexistent/edgeferry-nope"}), rig::RigError);
  pid_t pid;
  {
    rig::Process p({"sleep", "60"});
    pid = p.pid();
    CHECK(::kill(pid, 0) == 0);
  }
  CHECK(::kill(pid, 0) != 0);  // killed and reaped: no such process
}

TEST_CASE("TempDir removes itself, FreeLoopbackPort is free, WaitFor honours the deadline") {
  fs::path kept;
  {
    rig::TempDir d("rig-selftest");
    kept = d.path();
    CHECK(fs::is_directory(kept));
    fs::create_directories(d / "a/b");
  }
  CHECK_FALSE(fs::exists(kept));

  int port = rig::FreeLoopbackPort();
  CHECK(port > 0);
  CHECK_FALSE(rig::PortOpen(port));

  int calls = 0;
  auto start = std::chrono::steady_clock::now();
  CHECK_FALSE(rig::WaitFor([&] { return ++calls < 0; }, 200ms));
  CHECK(std::chrono::steady_clock::now() - start >= rig::Scaled(200ms));
  CHECK(calls >= 3);
  CHECK(rig::WaitFor([&] { return ++calls > 5; }, 10s));

  CHECK(rig::UniqueName("t") != rig::UniqueName("t"));
  CHECK(fs::path(rig::EdgeferryBinary()).filename() == "edgeferry");
}
