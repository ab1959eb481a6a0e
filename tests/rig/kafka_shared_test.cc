// KafkaCluster::Shared() and EDGEFERRY_TEST_KAFKA: handles without process control.
#include <doctest/doctest.h>
#include <stdlib.h>

#include <string>

#include "tests/rig/rig.h"
#include "tests/rig/selftest_util.h"

namespace rig = edgeferry::rig;
using namespace edgeferry::rig::selftest;

TEST_CASE("Shared and external clusters serve records but refuse process control") {
  auto shared = rig::KafkaCluster::Shared();
  const std::string topic = rig::UniqueName("rig-shared");
  shared->CreateTopic(topic, 2);
  auto sent = MakeRecords(10, 2, "s");
  Produce(shared->bootstrap(), topic, sent);
  CheckExactly(shared->ReadAll(topic, sent.size()), sent, topic, 2);

  // EDGEFERRY_TEST_KAFKA turns Start() into a handle on that cluster.
  REQUIRE(setenv("EDGEFERRY_TEST_KAFKA", shared->bootstrap().c_str(), 1) == 0);
  auto external = rig::KafkaCluster::Start(1);
  unsetenv("EDGEFERRY_TEST_KAFKA");
  CHECK_FALSE(external->owned());
  CHECK(external->bootstrap() == shared->bootstrap());
  CHECK_THROWS_AS(external->KillBroker(0), rig::RigError);
  CHECK_THROWS_AS(external->StopBroker(0), rig::RigError);
  CHECK_THROWS_AS(external->DumpLogSegments(topic, 0), rig::RigError);
  CHECK(external->ReadAll(topic, sent.size()).size() == sent.size());
}
