// SPDX-License-Identifier: MIT
// Catch2 v2 needs one translation unit with the runner; v3 brings Catch2WithMain instead.
#ifndef GRPO_CATCH3
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
#endif
