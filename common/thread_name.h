// Names the calling thread, so that `top -H`, `ps -L`, /proc/PID/task/*/comm and gdb tell the
// agent's threads apart (librdkafka names its own rdk:*). Linux keeps 15 characters; a longer
// name is cut, never refused.
#pragma once

#include <pthread.h>

#include <string>

namespace edgeferry {

inline void SetThreadName(const std::string& name) {
  (void)pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
}

}  // namespace edgeferry
