# Shared part of the Debian cross toolchain files; included by <triplet>.cmake after it has set
# EDGEFERRY_TARGET_TRIPLET, EDGEFERRY_TARGET_DEB_ARCH and EDGEFERRY_TARGET_QEMU.
#
# The sysroot holds the target's Debian -dev packages (toolchains/make-sysroot builds it). Where it
# is, first found wins:
#   -DEDGEFERRY_SYSROOT=<dir>, $EDGEFERRY_SYSROOT,
#   $EDGEFERRY_CACHE_DIR/sysroot-<deb-arch>, ${XDG_CACHE_HOME:-$HOME/.cache}/edgeferry/sysroot-<deb-arch>.
# A sysroot made by the host-multiarch fallback is a directory with a `root` symlink to `/`: the
# target's libraries are then in the host's /usr/lib/<triplet>.

if(NOT EDGEFERRY_SYSROOT)
  if(DEFINED ENV{EDGEFERRY_SYSROOT} AND NOT "$ENV{EDGEFERRY_SYSROOT}" STREQUAL "")
    set(_ef_sysroot "$ENV{EDGEFERRY_SYSROOT}")
  else()
    if(DEFINED ENV{EDGEFERRY_CACHE_DIR} AND NOT "$ENV{EDGEFERRY_CACHE_DIR}" STREQUAL "")
      set(_ef_cache "$ENV{EDGEFERRY_CACHE_DIR}")
    elseif(DEFINED ENV{XDG_CACHE_HOME} AND NOT "$ENV{XDG_CACHE_HOME}" STREQUAL "")
      set(_ef_cache "$ENV{XDG_CACHE_HOME}/edgeferry")
    else()
      set(_ef_cache "$ENV{HOME}/.cache/edgeferry")
    endif()
    set(_ef_sysroot "${_ef_cache}/sysroot-${EDGEFERRY_TARGET_DEB_ARCH}")
  endif()
  # A cache entry, so that try_compile projects and later re-configures see the same sysroot.
  set(EDGEFERRY_SYSROOT "${_ef_sysroot}" CACHE PATH "Target sysroot (Debian ${EDGEFERRY_TARGET_DEB_ARCH} packages)")
endif()
if(NOT EXISTS "${EDGEFERRY_SYSROOT}/.edgeferry-sysroot")
  message(FATAL_ERROR "No ${EDGEFERRY_TARGET_DEB_ARCH} sysroot at ${EDGEFERRY_SYSROOT}: run "
                      "`scripts/cross` (or toolchains/make-sysroot ${EDGEFERRY_TARGET_DEB_ARCH} <dir>) first")
endif()
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES EDGEFERRY_SYSROOT)

set(CMAKE_C_COMPILER ${EDGEFERRY_TARGET_TRIPLET}-gcc)
set(CMAKE_CXX_COMPILER ${EDGEFERRY_TARGET_TRIPLET}-g++)
set(CMAKE_LIBRARY_ARCHITECTURE ${EDGEFERRY_TARGET_TRIPLET})

if(IS_SYMLINK "${EDGEFERRY_SYSROOT}/root")
  # Host multiarch: no separate sysroot; the target's files live beside the host's.
  set(_ef_root "/")
  set(CMAKE_FIND_ROOT_PATH "/")
  set(ENV{PKG_CONFIG_SYSROOT_DIR} "")
  set(_ef_pc "/usr/lib/${EDGEFERRY_TARGET_TRIPLET}/pkgconfig:/usr/share/pkgconfig")
else()
  set(_ef_root "${EDGEFERRY_SYSROOT}")
  set(CMAKE_SYSROOT "${EDGEFERRY_SYSROOT}")
  set(ENV{PKG_CONFIG_SYSROOT_DIR} "${EDGEFERRY_SYSROOT}")
  set(_ef_pc "${EDGEFERRY_SYSROOT}/usr/lib/${EDGEFERRY_TARGET_TRIPLET}/pkgconfig:${EDGEFERRY_SYSROOT}/usr/share/pkgconfig:${EDGEFERRY_SYSROOT}/usr/lib/pkgconfig")
endif()

# Without these, pkg-config answers with the host's (x86_64) libraries.
set(ENV{PKG_CONFIG_LIBDIR} "${_ef_pc}")
set(ENV{PKG_CONFIG_PATH} "")

# Programs (code generators, pkg-config itself) come from the host; everything linked into the
# target comes from the sysroot only.
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# qemu-user runs target programs (doctest test discovery at build time, ctest) without
# binfmt_misc; -L makes it load the target's dynamic loader and libraries from the sysroot.
find_program(EDGEFERRY_QEMU_PROGRAM ${EDGEFERRY_TARGET_QEMU})
if(EDGEFERRY_QEMU_PROGRAM)
  set(CMAKE_CROSSCOMPILING_EMULATOR "${EDGEFERRY_QEMU_PROGRAM};-L;${_ef_root}")
else()
  message(WARNING "${EDGEFERRY_TARGET_QEMU} not found (Debian package qemu-user-static): "
                  "target programs cannot run, so test discovery fails")
endif()
