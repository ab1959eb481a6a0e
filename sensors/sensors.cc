#include "sensors/sensors.h"

namespace edgeferry::sensors {

// Placeholder while the adapters land (issue 5): the API above is final.
Result<std::unique_ptr<Input>> CreateInput(const config::InputConfig& cfg, const std::string&,
                                           RecordSink*, Clock*, std::shared_ptr<SensorScheduler>) {
  return Status::InvalidArgument("input " + cfg.name + ": type " + cfg.type +
                                 " is not implemented yet");
}

}  // namespace edgeferry::sensors
