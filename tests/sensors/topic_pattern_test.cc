#include <doctest/doctest.h>

#include "sensors/sensors.h"

namespace edgeferry::sensors {
namespace {

TEST_CASE("topic pattern captures levels by name") {
  std::map<std::string, std::string> c;
  CHECK(MatchTopicPattern("plant/{device}/+/{sensor}", "plant/pump7/x/temp", &c));
  CHECK(c == std::map<std::string, std::string>{{"device", "pump7"}, {"sensor", "temp"}});
  CHECK(MatchTopicPattern("a/{device}/#", "a/d1/b/c/d", &c));
  CHECK(c == std::map<std::string, std::string>{{"device", "d1"}});
  CHECK(MatchTopicPattern("a/{device}/#", "a/d1", &c));  // '#' also matches the parent level
  CHECK(MatchTopicPattern("{device}", "x", &c));
  CHECK(c.at("device") == "x");
}

TEST_CASE("topic pattern mismatches") {
  std::map<std::string, std::string> c{{"old", "kept"}};
  CHECK_FALSE(MatchTopicPattern("plant/{device}/temp", "plant/pump7/hum", &c));
  CHECK_FALSE(MatchTopicPattern("plant/{device}", "plant/pump7/extra", &c));
  CHECK_FALSE(MatchTopicPattern("plant/{device}/x", "plant/pump7", &c));
  CHECK_FALSE(MatchTopicPattern("plant/{device}", "plant/", &c));  // empty capture
  CHECK_FALSE(MatchTopicPattern("a/#/b", "a/x/b", &c));
  CHECK(c.at("old") == "kept");  // untouched on mismatch
}

}  // namespace
}  // namespace edgeferry::sensors
