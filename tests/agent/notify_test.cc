#include "agent/notify.h"

#include <doctest/doctest.h>
#include <stdlib.h>

#include "tests/agent/harness.h"

namespace edgeferry::agent {
namespace {

TEST_CASE("Notifier: messages reach NOTIFY_SOCKET, the watchdog timeout comes from WATCHDOG_USEC") {
  rig::TempDir dir("edgeferry-notify-unit");
  agent_test::NotifySocket sock(dir / "notify.sock");
  setenv("NOTIFY_SOCKET", sock.path().c_str(), 1);
  setenv("WATCHDOG_USEC", "3000000", 1);
  unsetenv("WATCHDOG_PID");
  Notifier n;
  CHECK(n.watchdog_timeout() == std::optional<std::chrono::microseconds>(std::chrono::seconds(3)));
  n.Ready();
  n.Status("backlog 3 records\nsecond line");
  n.Watchdog();
  n.Stopping();
  REQUIRE(rig::WaitFor([&] { return sock.Count("STOPPING=1") == 1; }, std::chrono::seconds(5)));
  CHECK(sock.Count("READY=1") == 1);
  CHECK(sock.Messages("STATUS=") ==
        std::vector<std::string>{"STATUS=backlog 3 records second line"});
  CHECK(sock.Count("WATCHDOG=1") == 1);
  CHECK(sock.Count("STOPPING=1") == 1);

  setenv("WATCHDOG_PID", "1", 1);  // meant for another process
  CHECK(!Notifier().watchdog_timeout().has_value());
  unsetenv("WATCHDOG_PID");
  unsetenv("WATCHDOG_USEC");
  CHECK(!Notifier().watchdog_timeout().has_value());
  unsetenv("NOTIFY_SOCKET");
  Notifier quiet;
  quiet.Ready();  // no socket: a no-op, no crash
}

}  // namespace
}  // namespace edgeferry::agent
