// SPDX-License-Identifier: MIT
// The grpo_compiled library (CMake target grpo::compiled): the host entry points for float and double,
// instantiated once here so that consumers defining GRPO_COMPILED skip them (include/grpo/api/instantiations.hpp).
#define GRPO_BUILDING_COMPILED_LIBRARY 1
#include <grpo/grpo.hpp>

GRPO_NAMESPACE_BEGIN
GRPO_HOST_ENTRY_POINTS(template, float)
GRPO_HOST_ENTRY_POINTS(template, double)
GRPO_NAMESPACE_END
