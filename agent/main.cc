// edgeferry: forwards sensor and MQTT readings to Apache Kafka through a crash-safe on-device
// buffer. Everything is in agent/cli.cc and the components; main only hands over.
#include "agent/cli.h"

int main(int argc, char** argv) { return edgeferry::agent::RunCli(argc, argv); }
