// Constructors of the sensor readers (internal to sensors/; tests use them directly).
#pragma once

#include <initializer_list>
#include <memory>

#include "sensors/sensor_input.h"

namespace edgeferry::sensors {

std::unique_ptr<SensorReader> MakeSimulatedReader(const config::SensorInputConfig& cfg,
                                                  Clock* clock);
std::unique_ptr<SensorReader> MakeHwmonReader(const config::SensorInputConfig& cfg);
std::unique_ptr<SensorReader> MakeThermalReader(const config::SensorInputConfig& cfg);
std::unique_ptr<SensorReader> MakeIioReader(const config::SensorInputConfig& cfg);
std::unique_ptr<SensorReader> MakeW1Reader(const config::SensorInputConfig& cfg);
std::unique_ptr<SensorReader> MakeSystemReader(const config::SensorInputConfig& cfg);
std::unique_ptr<SensorReader> MakeExecReader(const config::SensorInputConfig& cfg, Clock* clock);

// True if `name` matches any of the globs (fnmatch); an empty list matches everything.
bool MatchesAny(const std::vector<std::string>& globs, const std::string& name);
// True if any of `names` (e.g. the full sensor name, the device name, the zone type) matches.
bool MatchesAny(const std::vector<std::string>& globs, std::initializer_list<std::string> names);

}  // namespace edgeferry::sensors
