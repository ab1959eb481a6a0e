# Cross toolchain for 64-bit ARM Linux (Raspberry Pi 3/4/5, Zero 2 W and CM boards on a 64-bit OS,
# ARM gateways): Debian's gcc-aarch64-linux-gnu against a Debian arm64 sysroot. See docs/arm.md.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(EDGEFERRY_TARGET_TRIPLET aarch64-linux-gnu)
set(EDGEFERRY_TARGET_DEB_ARCH arm64)
set(EDGEFERRY_TARGET_QEMU qemu-aarch64-static)
include(${CMAKE_CURRENT_LIST_DIR}/debian-cross.cmake)
