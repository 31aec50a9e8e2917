// SPDX-License-Identifier: MIT
// The single source of truth for grpo's version; CMake parses these three lines.
#pragma once

#define GRPO_VERSION_MAJOR 0
#define GRPO_VERSION_MINOR 1
#define GRPO_VERSION_PATCH 0

#define GRPO_VERSION (GRPO_VERSION_MAJOR * 10000 + GRPO_VERSION_MINOR * 100 + GRPO_VERSION_PATCH)
