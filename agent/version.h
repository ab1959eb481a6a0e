// The agent's version, from the top-level CMake project() (set by agent/CMakeLists.txt).
#pragma once

namespace edgeferry::agent {

inline constexpr const char* kVersion = EDGEFERRY_VERSION;

}  // namespace edgeferry::agent
