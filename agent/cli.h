// The edgeferry command line (CLI11): run, check-config, status, version, dead-letters. Exit
// codes are in daemon.h and agent/README.md.
#pragma once

namespace edgeferry::agent {

// Parses argv and runs the subcommand. Never throws; returns the process exit code.
int RunCli(int argc, char** argv);

}  // namespace edgeferry::agent
