# SPDX-License-Identifier: MIT
# cmake -P pkg-config.cmake: runs pkg-config/build.sh (the documented pkg-config commands, with `c++` being
# the outer build's compiler) against a fresh install prefix.   PREFIX, WORK (emptied), CXX, PKGCONF_DIR
cmake_minimum_required(VERSION 3.16)
file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}/bin")
file(GLOB _mains "${CMAKE_CURRENT_LIST_DIR}/main*.cpp")
file(COPY ${_mains} "${CMAKE_CURRENT_LIST_DIR}/pkg-config/build.sh" DESTINATION "${WORK}")
file(CREATE_LINK "${CXX}" "${WORK}/bin/c++" SYMBOLIC)
execute_process(
  COMMAND "${CMAKE_COMMAND}" -E env "PATH=${WORK}/bin:$ENV{PATH}" "PKG_CONFIG_PATH=${PREFIX}/${PKGCONF_DIR}"
          sh build.sh
  WORKING_DIRECTORY "${WORK}" RESULT_VARIABLE _rc)
if(NOT _rc EQUAL 0)
  message(FATAL_ERROR "pkg-config consumer failed (${_rc})")
endif()
