# Cross toolchain for 32-bit ARM Linux with hardware float, ARMv7-A and newer (Raspberry Pi 2/3/4
# and Zero 2 W on a 32-bit OS): Debian's gcc-arm-linux-gnueabihf (its default is Debian's armhf
# baseline, -march=armv7-a -mfpu=vfpv3-d16 -mthumb) against a Debian armhf sysroot. ARMv6 boards
# (Pi 1, Zero, Zero W) are not covered: see docs/arm.md.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR armv7l)
set(EDGEFERRY_TARGET_TRIPLET arm-linux-gnueabihf)
set(EDGEFERRY_TARGET_DEB_ARCH armhf)
set(EDGEFERRY_TARGET_QEMU qemu-arm-static)
# 64-bit off_t/ino_t (Debian 12 armhf defaults to 32-bit): without it readdir() fails with
# EOVERFLOW where the file system hands out 64-bit directory offsets (ext4 with hashed directories
# does to 64-bit callers, and under qemu-user on a 64-bit host every call is one: the sensors'
# sysfs tests fail), and stat() fails on files over 2 GiB (a large buffer).
# -Wno-psabi: GCC notes on every std::map/std::vector iterator passed by value that its ABI
# changed in GCC 7.1; everything here is built with GCC 12, so the note is noise.
set(CMAKE_C_FLAGS_INIT "-D_FILE_OFFSET_BITS=64")
set(CMAKE_CXX_FLAGS_INIT "-D_FILE_OFFSET_BITS=64 -Wno-psabi")
include(${CMAKE_CURRENT_LIST_DIR}/debian-cross.cmake)
