// SPDX-License-Identifier: MIT
// One include for tests that works with Catch2 v2 (single header) and v3 (split headers).
#pragma once
#if defined(GRPO_CATCH3)
#include <catch2/catch_approx.hpp>
#include <catch2/catch_template_test_macros.hpp>
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>
using Catch::Approx;
#else
#include <catch2/catch.hpp>
#endif
