// SPDX-License-Identifier: MIT
// Forwarding header: <grpo/detail/check.hpp> moved to <grpo/core/check.hpp>.
// This path stays for the 0.x series; include <grpo/grpo.hpp> (or the new path) instead.
#pragma once

#include "../core/check.hpp"
