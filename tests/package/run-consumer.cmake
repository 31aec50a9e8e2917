# SPDX-License-Identifier: MIT
# cmake -P run-consumer.cmake: copies a consumer project and the consumer programs into a fresh directory,
# configures, builds and runs its tests. Used by tests/package/CMakeLists.txt.
#   PROJECT    consumer project directory (tests/package/<name>)
#   WORK       scratch directory (emptied first)
#   GRPO_SOURCE_DIR  grpo's source tree; linked as <copy>/third_party/grpo when THIRD_PARTY is ON
#   GENERATOR, CXX, CTEST  the outer build's generator, C++ compiler and ctest
#   ARGS       extra configure arguments, separated by '|'
cmake_minimum_required(VERSION 3.16)
foreach(_v PROJECT WORK GRPO_SOURCE_DIR GENERATOR CXX CTEST)
  if(NOT DEFINED ${_v})
    message(FATAL_ERROR "run-consumer.cmake: ${_v} not set")
  endif()
endforeach()

file(REMOVE_RECURSE "${WORK}")
file(COPY "${PROJECT}/" DESTINATION "${WORK}/src")
file(GLOB _mains "${CMAKE_CURRENT_LIST_DIR}/main*.cpp")
file(COPY ${_mains} "${CMAKE_CURRENT_LIST_DIR}/check-quiet.cmake" DESTINATION "${WORK}/src")
if(THIRD_PARTY)
  file(MAKE_DIRECTORY "${WORK}/src/third_party")
  file(CREATE_LINK "${GRPO_SOURCE_DIR}" "${WORK}/src/third_party/grpo" SYMBOLIC COPY_ON_ERROR)
endif()
string(REPLACE "|" ";" _args "${ARGS}")
# Debug (-O0): these tests check how a consumer finds, builds and links grpo, not its speed, and a program with
# one loss_and_grad call compiles in about 6 s at -O0 against 18 s at -O2.
set(_build_type Debug)

function(_run what)
  message(STATUS "run-consumer: ${what}: ${ARGN}")
  execute_process(COMMAND ${ARGN} WORKING_DIRECTORY "${WORK}" RESULT_VARIABLE _rc)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "run-consumer: ${what} failed (${_rc})")
  endif()
endfunction()
_run(configure "${CMAKE_COMMAND}" -S src -B build -G "${GENERATOR}" "-DCMAKE_CXX_COMPILER=${CXX}"
     -DCMAKE_BUILD_TYPE=${_build_type} ${_args})
_run(build "${CMAKE_COMMAND}" --build build --config ${_build_type} --parallel 2)
_run(test "${CMAKE_COMMAND}" -E chdir build "${CTEST}" -C ${_build_type} --output-on-failure --no-tests=error)
