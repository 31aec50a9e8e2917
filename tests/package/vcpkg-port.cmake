# SPDX-License-Identifier: MIT
# cmake -P vcpkg-port.cmake: runs packaging/vcpkg/ports/grpo/portfile.cmake without vcpkg (which these
# machines cannot install), under minimal stand-ins for the vcpkg_* helpers it calls, so that the port's
# configure options and install steps are the ones CI builds and tests. Then checks what vcpkg's post-build
# checks would: headers in include/, CMake config in share/grpo, copyright and usage, nothing in lib/ or debug/.
#   PORT_DIR, WORK (scratch, emptied; the package lands in WORK/packages), GENERATOR, CXX, GRPO_SOURCE_DIR
#
# What the stand-ins do NOT reproduce: vcpkg's manifest/feature resolution (eigen3, xtensor ports), its
# toolchain and triplet flags, vcpkg_from_github (the registry form), the real vcpkg_cmake_config_fixup and
# vcpkg_fixup_pkgconfig rewriting (no-ops here because the files are already where and how vcpkg wants them).
cmake_minimum_required(VERSION 3.19) # string(JSON)

file(REMOVE_RECURSE "${WORK}")
set(PORT grpo)
set(TARGET_TRIPLET x64-linux)
set(CURRENT_PACKAGES_DIR "${WORK}/packages/${PORT}_${TARGET_TRIPLET}")
set(CURRENT_BUILDTREES_DIR "${WORK}/buildtrees/${PORT}")
set(FEATURES core)

# The port's vcpkg.json: valid JSON, and its version is grpo/version.hpp's.
file(READ "${PORT_DIR}/vcpkg.json" _manifest)
string(JSON VERSION GET "${_manifest}" version-semver)
string(JSON _name GET "${_manifest}" name)
string(JSON _features LENGTH "${_manifest}" features)
file(READ "${GRPO_SOURCE_DIR}/include/grpo/core/version.hpp" _vh)
foreach(_p MAJOR MINOR PATCH)
  string(REGEX MATCH "#define GRPO_VERSION_${_p} ([0-9]+)" _ "${_vh}")
  list(APPEND _hv "${CMAKE_MATCH_1}")
endforeach()
list(JOIN _hv "." _header_version)
if(NOT _name STREQUAL "grpo" OR NOT VERSION STREQUAL _header_version)
  message(FATAL_ERROR "vcpkg.json: name '${_name}' version '${VERSION}', grpo/core/version.hpp says ${_header_version}")
endif()
# The developer manifest too.
file(READ "${GRPO_SOURCE_DIR}/vcpkg.json" _root)
string(JSON _root_version GET "${_root}" version-semver)
if(NOT _root_version STREQUAL _header_version)
  message(FATAL_ERROR "vcpkg.json (root): version ${_root_version}, grpo/core/version.hpp says ${_header_version}")
endif()

function(_run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE _rc)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "vcpkg-port.cmake: '${ARGN}' failed (${_rc})")
  endif()
endfunction()

# --- stand-ins for the helpers the portfile calls -------------------------------------------------------
function(vcpkg_cmake_configure)
  cmake_parse_arguments(PARSE_ARGV 0 arg "" "SOURCE_PATH" "OPTIONS;OPTIONS_RELEASE;OPTIONS_DEBUG")
  if(NOT VCPKG_BUILD_TYPE STREQUAL "release")
    message(FATAL_ERROR "portfile: a header-only port sets VCPKG_BUILD_TYPE release")
  endif()
  set(_rel "${CURRENT_BUILDTREES_DIR}/${TARGET_TRIPLET}-rel")
  _run("${CMAKE_COMMAND}" -S "${arg_SOURCE_PATH}" -B "${_rel}" -G "${GENERATOR}" "-DCMAKE_CXX_COMPILER=${CXX}"
       -DCMAKE_BUILD_TYPE=Release "-DCMAKE_INSTALL_PREFIX=${CURRENT_PACKAGES_DIR}" ${arg_OPTIONS} ${arg_OPTIONS_RELEASE})
  set_property(GLOBAL PROPERTY _grpo_vcpkg_rel "${_rel}")
endfunction()
function(vcpkg_cmake_install)
  get_property(_rel GLOBAL PROPERTY _grpo_vcpkg_rel)
  _run("${CMAKE_COMMAND}" --build "${_rel}" --target install)
endfunction()
function(vcpkg_cmake_config_fixup)
  cmake_parse_arguments(PARSE_ARGV 0 arg "" "PACKAGE_NAME;CONFIG_PATH" "")
  if(arg_CONFIG_PATH AND NOT arg_CONFIG_PATH STREQUAL "share/${PORT}")
    message(FATAL_ERROR "stand-in: only CONFIG_PATH share/${PORT} (no move) is reproduced")
  endif()
  if(NOT EXISTS "${CURRENT_PACKAGES_DIR}/share/${PORT}/grpoConfig.cmake")
    message(FATAL_ERROR "vcpkg_cmake_config_fixup: no share/${PORT}/grpoConfig.cmake")
  endif()
endfunction()
function(vcpkg_fixup_pkgconfig)
  file(GLOB_RECURSE _pcs "${CURRENT_PACKAGES_DIR}/*.pc")
  foreach(_pc IN LISTS _pcs)
    file(STRINGS "${_pc}" _prefix REGEX "^prefix=")
    if(NOT _prefix MATCHES "^prefix=\\\${pcfiledir}")
      message(FATAL_ERROR "${_pc}: '${_prefix}' is not relative to \${pcfiledir}")
    endif()
  endforeach()
endfunction()
function(vcpkg_install_copyright)
  cmake_parse_arguments(PARSE_ARGV 0 arg "" "" "FILE_LIST")
  file(READ "${arg_FILE_LIST}" _text)
  file(WRITE "${CURRENT_PACKAGES_DIR}/share/${PORT}/copyright" "${_text}")
endfunction()

# --- the port ------------------------------------------------------------------------------------------
include("${PORT_DIR}/portfile.cmake")

# --- what vcpkg's post-build checks look at -------------------------------------------------------------
foreach(_f include/grpo/grpo.hpp include/grpo/adapters/eigen.hpp include/grpo/adapters/xtensor.hpp
           share/grpo/grpoConfig.cmake share/grpo/grpoConfigVersion.cmake share/grpo/grpoTargets.cmake
           share/grpo/copyright share/grpo/usage share/pkgconfig/grpo.pc)
  if(NOT EXISTS "${CURRENT_PACKAGES_DIR}/${_f}")
    message(FATAL_ERROR "port: ${_f} missing")
  endif()
endforeach()
foreach(_d lib bin debug share/doc)
  if(EXISTS "${CURRENT_PACKAGES_DIR}/${_d}")
    message(FATAL_ERROR "port: a header-only package must not have ${_d}/")
  endif()
endforeach()
message(STATUS "vcpkg port installed into ${CURRENT_PACKAGES_DIR}")
