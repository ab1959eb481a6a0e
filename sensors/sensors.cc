#include "sensors/sensors.h"

#include "sensors/mqtt_input.h"
#include "sensors/sensor_input.h"

namespace edgeferry::sensors {

Result<std::unique_ptr<Input>> CreateInput(const config::InputConfig& cfg,
                                           const std::string& device_id, RecordSink* sink,
                                           Clock* clock,
                                           std::shared_ptr<SensorScheduler> scheduler) {
  if (sink == nullptr) return Status::InvalidArgument("input " + cfg.name + ": no sink");
  if (clock == nullptr) clock = SystemClock();
  if (cfg.type == "mqtt") {
    return MakeMqttInput(cfg, device_id, sink, clock);
  }
  if (!cfg.sensor) {
    return Status::InvalidArgument("input " + cfg.name + ": type \"" + cfg.type +
                                   "\" needs its sensor settings");
  }
  auto reader = MakeReader(cfg, clock);
  if (!reader.ok()) return reader.status();
  if (!scheduler) scheduler = NewSensorScheduler(clock);
  return std::unique_ptr<Input>(std::make_unique<SensorInput>(
      cfg, device_id, sink, clock, std::move(scheduler), std::move(reader).value()));
}

}  // namespace edgeferry::sensors
