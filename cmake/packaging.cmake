# Debian package (CPack DEB): `cpack -G DEB` in a build directory makes
# edgeferry_<version>_<arch>.deb with the binary, the systemd unit, the sysusers.d and tmpfiles.d
# entries, /etc/edgeferry/edgeferry.json as a conffile and the example configs (the install() rules
# of agent/ and systemd/), for the architecture the build targets (amd64, arm64, armhf).
#
# This file is included twice: by the top CMakeLists.txt at configure time, and by cpack itself as
# CPACK_PROJECT_CONFIG_FILE (the second half below), where it computes Depends from the binary's
# real NEEDED entries. dpkg-shlibdeps needs a dpkg database of the target architecture, which a
# cross build does not have; instead a fixed table maps each soname we may link to the Debian
# package that ships it (checked against dpkg / the sysroot's package manifest by
# tests/packaging), and cpack fails on any NEEDED soname the table does not know.

# soname;package;minimum version (the bookworm version we build against, or the symbol version
# floor where the library is older and stable).
set(EDGEFERRY_DEB_SHLIBS
  "libc.so.6|libc6|2.36"
  "libm.so.6|libc6|2.36"
  "libpthread.so.0|libc6|2.36"
  "libdl.so.2|libc6|2.36"
  "librt.so.1|libc6|2.36"
  "libstdc++.so.6|libstdc++6|12"
  "libgcc_s.so.1|libgcc-s1|3.0"
  "librdkafka.so.1|librdkafka1|2.0.2"
  "librdkafka++.so.1|librdkafka++1|2.0.2"
  "libpaho-mqttpp3.so.1|libpaho-mqttpp3-1|1.2.0"
  "libpaho-mqtt3as.so.1|libpaho-mqtt1.3|1.3.12"
  "libpaho-mqtt3a.so.1|libpaho-mqtt1.3|1.3.12"
  "libpaho-mqtt3cs.so.1|libpaho-mqtt1.3|1.3.12"
  "libpaho-mqtt3c.so.1|libpaho-mqtt1.3|1.3.12"
  "libsqlite3.so.0|libsqlite3-0|3.40.1"
  "libzstd.so.1|libzstd1|1.5.4"
  "libsystemd.so.0|libsystemd0|252"
  "libcpp-httplib.so.0.11|libcpp-httplib0.11|0.11.4"
  "libssl.so.3|libssl3|3.0.0"
  "libcrypto.so.3|libssl3|3.0.0"
  "libz.so.1|zlib1g|1:1.2.0"
  "libfmt.so.9|libfmt9|9.1.0"
)

if(NOT CPACK_GENERATOR OR PROJECT_NAME)
  # ---------------------------------------------------------------- configure time (in the project)
  if(NOT CMAKE_INSTALL_PREFIX STREQUAL "/usr")
    message(STATUS "packaging: CMAKE_INSTALL_PREFIX is ${CMAKE_INSTALL_PREFIX}; cpack refuses to "
                   "build a .deb unless it is /usr (the unit and the conffile paths depend on it)")
  endif()

  if(EDGEFERRY_TARGET_DEB_ARCH)
    set(_ef_deb_arch ${EDGEFERRY_TARGET_DEB_ARCH})  # from toolchains/*.cmake
  else()
    execute_process(COMMAND dpkg --print-architecture OUTPUT_VARIABLE _ef_deb_arch
                    OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE _ef_rc)
    if(NOT _ef_rc EQUAL 0)
      set(_ef_deb_arch amd64)
    endif()
  endif()

  # The table, for cpack (below) and for tests/packaging.
  set(EDGEFERRY_DEB_SHLIBS_FILE ${PROJECT_BINARY_DIR}/packaging/deb-shlibs.txt)
  string(REPLACE ";" "\n" _ef_table "${EDGEFERRY_DEB_SHLIBS}")
  file(WRITE ${EDGEFERRY_DEB_SHLIBS_FILE} "${_ef_table}\n")
  # The binary's path is only known at generate time.
  file(GENERATE OUTPUT ${PROJECT_BINARY_DIR}/packaging/binary-path.txt
       CONTENT "$<TARGET_FILE:edgeferry>")

  # Maintainer scripts. postinst creates the user and the state directory at once (otherwise that
  # waits for the next boot) and tells systemd about the unit; each step only where the tool
  # exists and systemd runs (a container or chroot has neither). The service is not enabled or
  # started: /etc/edgeferry/edgeferry.json names the Kafka brokers and has to be edited first.
  set(_ef_scripts ${PROJECT_BINARY_DIR}/packaging/debian)
  file(MAKE_DIRECTORY ${_ef_scripts})
  file(WRITE ${_ef_scripts}/postinst [=[#!/bin/sh
set -e
if [ "$1" = "configure" ]; then
  if command -v systemd-sysusers >/dev/null 2>&1 && [ -f /usr/lib/sysusers.d/edgeferry.conf ]; then
    systemd-sysusers /usr/lib/sysusers.d/edgeferry.conf
  fi
  if command -v systemd-tmpfiles >/dev/null 2>&1 && [ -f /usr/lib/tmpfiles.d/edgeferry.conf ]; then
    systemd-tmpfiles --create /usr/lib/tmpfiles.d/edgeferry.conf || true
  fi
  if [ -d /run/systemd/system ]; then
    systemctl --system daemon-reload >/dev/null 2>&1 || true
    if systemctl is-active --quiet edgeferry.service; then
      # An upgrade: restart into the new binary (buffered records survive a restart).
      systemctl restart edgeferry.service || true
    fi
  fi
fi
exit 0
]=])
  file(WRITE ${_ef_scripts}/prerm [=[#!/bin/sh
set -e
# Stop before the files go away (graceful: pending appends and the cursor are flushed).
if [ "$1" = "remove" ] && [ -d /run/systemd/system ]; then
  systemctl stop edgeferry.service >/dev/null 2>&1 || true
fi
exit 0
]=])
  file(WRITE ${_ef_scripts}/postrm [=[#!/bin/sh
set -e
# The buffer in /var/lib/edgeferry may hold records not yet delivered: neither remove nor purge
# deletes it; delete it by hand once it is no longer needed.
if [ -d /run/systemd/system ]; then
  systemctl --system daemon-reload >/dev/null 2>&1 || true
fi
exit 0
]=])
  # The default config is installed by systemd/CMakeLists.txt along with the unit.
  if(EXISTS ${PROJECT_SOURCE_DIR}/systemd/edgeferry.service.in)
    file(WRITE ${_ef_scripts}/conffiles "/etc/edgeferry/edgeferry.json\n")
    set(_ef_conffiles ${_ef_scripts}/conffiles)
  else()
    file(REMOVE ${_ef_scripts}/conffiles)
    set(_ef_conffiles "")
  endif()
  file(CHMOD ${_ef_scripts}/postinst ${_ef_scripts}/prerm ${_ef_scripts}/postrm
       FILE_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE
                        WORLD_READ WORLD_EXECUTE)

  set(CPACK_GENERATOR DEB)
  set(CPACK_PACKAGE_NAME edgeferry)
  set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
  set(CPACK_PACKAGE_VENDOR "edgeferry")
  set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
      "sensor and MQTT readings to Apache Kafka through a crash-safe on-device buffer")
  set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
  set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
  set(CPACK_DEBIAN_PACKAGE_ARCHITECTURE ${_ef_deb_arch})
  set(CPACK_DEBIAN_PACKAGE_MAINTAINER "edgeferry developers")
  set(CPACK_DEBIAN_PACKAGE_SECTION net)
  set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
  set(CPACK_DEBIAN_PACKAGE_DESCRIPTION
      "sensor and MQTT readings to Apache Kafka through a crash-safe on-device buffer\n\
edgeferry reads sensors (sysfs hwmon, thermal, IIO, 1-Wire, system metrics) and MQTT topics,\n\
writes every reading into a SQLite log buffer on the device, and forwards it in compressed\n\
batches to Apache Kafka, resuming from its stored offset after any outage. It runs as the\n\
systemd service edgeferry.service, configured by /etc/edgeferry/edgeferry.json.")
  set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
      ${_ef_scripts}/postinst ${_ef_scripts}/prerm ${_ef_scripts}/postrm ${_ef_conffiles})
  set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION TRUE)
  # Strip the binary in the package (the build tree keeps its symbols).
  set(CPACK_STRIP_FILES TRUE)
  # Depends is computed when cpack runs (the second half of this file).
  set(CPACK_PROJECT_CONFIG_FILE ${CMAKE_CURRENT_LIST_FILE})
  set(CPACK_EDGEFERRY_BINARY_DIR ${PROJECT_BINARY_DIR})
  set(CPACK_EDGEFERRY_INSTALL_PREFIX ${CMAKE_INSTALL_PREFIX})
  set(CPACK_EDGEFERRY_READELF ${CMAKE_READELF})
  if(NOT CPACK_EDGEFERRY_READELF)
    set(CPACK_EDGEFERRY_READELF readelf)
  endif()
  include(CPack)
else()
  # -------------------------------------------------------- cpack time (CPACK_PROJECT_CONFIG_FILE)
  cmake_policy(SET CMP0057 NEW)  # IN_LIST (cpack runs this file without the project's policies)
  if(NOT CPACK_EDGEFERRY_INSTALL_PREFIX STREQUAL "/usr")
    message(FATAL_ERROR "edgeferry .deb: configure with -DCMAKE_INSTALL_PREFIX=/usr (it is "
                        "${CPACK_EDGEFERRY_INSTALL_PREFIX}): the unit's ExecStart and /etc paths "
                        "are fixed at configure time")
  endif()
  file(READ ${CPACK_EDGEFERRY_BINARY_DIR}/packaging/binary-path.txt _ef_bin)
  if(NOT EXISTS "${_ef_bin}")
    message(FATAL_ERROR "edgeferry .deb: ${_ef_bin} is not built")
  endif()
  execute_process(COMMAND ${CPACK_EDGEFERRY_READELF} -d "${_ef_bin}" OUTPUT_VARIABLE _ef_dyn
                  RESULT_VARIABLE _ef_rc)
  if(NOT _ef_rc EQUAL 0)
    message(FATAL_ERROR "edgeferry .deb: `${CPACK_EDGEFERRY_READELF} -d ${_ef_bin}` failed")
  endif()
  string(REGEX MATCHALL "\\(NEEDED\\)[^\n]*\\[[^]\n]+\\]" _ef_needed_lines "${_ef_dyn}")
  set(_ef_depends "")
  set(_ef_seen "")
  foreach(_line IN LISTS _ef_needed_lines)
    string(REGEX REPLACE ".*\\[([^]]+)\\].*" "\\1" _soname "${_line}")
    set(_found "")
    foreach(_entry IN LISTS EDGEFERRY_DEB_SHLIBS)
      string(REPLACE "|" ";" _f "${_entry}")
      list(GET _f 0 _so)
      if(_so STREQUAL _soname)
        list(GET _f 1 _pkg)
        list(GET _f 2 _ver)
        set(_found "${_pkg} (>= ${_ver})")
      endif()
    endforeach()
    if(NOT _found)
      message(FATAL_ERROR "edgeferry .deb: ${_ef_bin} needs ${_soname}, which the soname table in "
                          "cmake/packaging.cmake does not list: add it with the Debian package that "
                          "ships it (dpkg -S on the library) and its minimum version")
    endif()
    if(NOT _found IN_LIST _ef_seen)
      list(APPEND _ef_seen "${_found}")
    endif()
  endforeach()
  list(SORT _ef_seen)
  string(REPLACE ";" ", " CPACK_DEBIAN_PACKAGE_DEPENDS "${_ef_seen}")
  message(STATUS "edgeferry .deb Depends: ${CPACK_DEBIAN_PACKAGE_DEPENDS}")
endif()
