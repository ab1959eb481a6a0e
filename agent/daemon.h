// `edgeferry run`: the daemon. It owns the buffer, the forwarder and the inputs, and runs them
// in that start order; the main thread only waits for signals and does the periodic
// housekeeping (status file, sd_notify STATUS= and WATCHDOG=1, metrics snapshot).
//
// Signals (handled synchronously with sigtimedwait in the main thread; nothing runs in an async
// handler): SIGTERM/SIGINT stop cleanly (inputs, then drain and stop the forwarder within
// kafka.shutdown_grace_ms, commit the cursor, exit 0); SIGHUP reloads the config (see Reload in
// daemon.cc); SIGUSR1 serves a request file from the CLI (dead-letters).
//
// Test-only fault hook: with EDGEFERRY_TEST_FAULTS=1 in the environment, SIGUSR2 toggles a hang
// of the forwarder's reads from the buffer (its thread blocks inside the buffer seam), so a test
// can watch WATCHDOG=1 stop. Without that variable SIGUSR2 is ignored.
#pragma once

#include <string>
#include <vector>

#include "config/config.h"

namespace edgeferry::agent {

// Exit codes of the edgeferry command (documented in agent/README.md and --help).
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;     // runtime failure (buffer, Kafka client, I/O)
inline constexpr int kExitBadConfig = 2;   // bad config file or command-line usage
inline constexpr int kExitNotRunning = 3;  // status / dead-letters: no running agent

// Problems that the config loader cannot see because they belong to a component: the Kafka
// section as librdkafka sees it and every enabled input as its adapter sees it. Same shape as
// config::LoadResult's errors. No network I/O, no thread left behind.
std::vector<config::ConfigError> ValidateComponents(const config::Config& cfg);

// Runs the daemon in the foreground until SIGTERM/SIGINT. Returns an exit code above. Must be
// called from the main thread before any other thread exists (it blocks the signals it waits
// for, and threads inherit that mask).
int RunDaemon(const std::string& config_path);

}  // namespace edgeferry::agent
