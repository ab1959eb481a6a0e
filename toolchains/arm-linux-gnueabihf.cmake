# Cross toolchain for 32-bit ARM Linux with hardware float, ARMv7-A and newer (Raspberry Pi 2/3/4
# and Zero 2 W on a 32-bit OS): Debian's gcc-arm-linux-gnueabihf (its default is Debian's armhf
# baseline, -march=armv7-a -mfpu=vfpv3-d16 -mthumb) against a Debian armhf sysroot. ARMv6 boards
# (Pi 1, Zero, Zero W) are not covered: see docs/arm.md.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR armv7l)
set(EDGEFERRY_TARGET_TRIPLET arm-linux-gnueabihf)
set(EDGEFERRY_TARGET_DEB_ARCH armhf)
set(EDGEFERRY_TARGET_QEMU qemu-arm-static)
include(${CMAKE_CURRENT_LIST_DIR}/debian-cross.cmake)
