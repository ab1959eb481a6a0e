// The MQTT input (internal to sensors/; tests include it). See sensors/README.md, "MQTT input",
// for the acknowledgement contract; the client is sensors/mqtt_session.h.
#pragma once

#include <memory>
#include <string>

#include "sensors/sensors.h"

namespace edgeferry::sensors {

// Validates cfg.mqtt and builds the input (does not connect; Start does).
Result<std::unique_ptr<Input>> MakeMqttInput(const config::InputConfig& cfg,
                                             const std::string& device_id, RecordSink* sink,
                                             Clock* clock);

}  // namespace edgeferry::sensors
