# SPDX-License-Identifier: MIT
# cmake -P check-object.cmake -DNM=<nm> -DOBJECT=<consumer object file>: in the compiled mode a consumer's
# translation unit must reference loss_and_grad<double> (an undefined symbol, resolved from grpo_compiled) and
# define no instantiation of it or of the CPU backend's fused pass.
execute_process(COMMAND "${NM}" -C "${OBJECT}" OUTPUT_VARIABLE _syms RESULT_VARIABLE _rc)
if(NOT _rc EQUAL 0)
  message(FATAL_ERROR "check-object: ${NM} failed on ${OBJECT}")
endif()
string(REGEX MATCH " U [^\n]*loss_and_grad<double>" _ref "${_syms}")
if(NOT _ref)
  message(FATAL_ERROR "check-object: ${OBJECT} does not reference grpo::loss_and_grad<double> from the library")
endif()
string(REGEX MATCH " [TtWw] [^\n]*(loss_and_grad|loss_row)[^\n]*" _def "${_syms}")
if(_def)
  message(FATAL_ERROR "check-object: ${OBJECT} instantiates what grpo_compiled holds:${_def}")
endif()
message(STATUS "check-object: the consumer object uses the compiled library's loss_and_grad<double>")
