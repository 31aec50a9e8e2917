# SPDX-License-Identifier: MIT
# cmake -P install.cmake: configures grpo's source tree with packaging options into a fresh build directory
# and installs it into a fresh prefix, the way a packager does.
#   GRPO_SOURCE_DIR, WORK (scratch, emptied), PREFIX (emptied), GENERATOR, CXX
#   ARGS  configure arguments, separated by '|'
cmake_minimum_required(VERSION 3.16)
file(REMOVE_RECURSE "${WORK}" "${PREFIX}")
string(REPLACE "|" ";" _args "${ARGS}")
execute_process(COMMAND "${CMAKE_COMMAND}" -S "${GRPO_SOURCE_DIR}" -B "${WORK}" -G "${GENERATOR}"
                        "-DCMAKE_CXX_COMPILER=${CXX}" -DCMAKE_BUILD_TYPE=Release ${_args}
                RESULT_VARIABLE _rc)
if(NOT _rc EQUAL 0)
  message(FATAL_ERROR "install.cmake: configure failed")
endif()
# An install-only build enables no language but CXX and probes for no optional package (README, CMakeLists.txt).
file(STRINGS "${WORK}/CMakeCache.txt" _probes
     REGEX "^(CMAKE_CUDA_COMPILER|CUDAToolkit_BIN_DIR|Torch_DIR|Eigen3_DIR|xtensor_DIR|ggml_DIR)[:=]")
if(_probes)
  message(FATAL_ERROR "install.cmake: the install-only configure probed for optional packages: ${_probes}")
endif()
execute_process(COMMAND "${CMAKE_COMMAND}" --install "${WORK}" --prefix "${PREFIX}" RESULT_VARIABLE _rc)
if(NOT _rc EQUAL 0)
  message(FATAL_ERROR "install.cmake: install failed")
endif()
# Header-only: nothing architecture-specific may be installed besides the CMake files.
file(GLOB_RECURSE _files RELATIVE "${PREFIX}" "${PREFIX}/*")
foreach(_f IN LISTS _files)
  if(_f MATCHES "\\.(a|so|lib|dll|dylib)$")
    message(FATAL_ERROR "install.cmake: a header-only install produced ${_f}")
  endif()
endforeach()
