// SPDX-License-Identifier: MIT
// Forwarding header: <grpo/rewards.hpp> moved to <grpo/rl/rewards.hpp>.
// This path stays for the 0.x series; include <grpo/grpo.hpp> (or the new path) instead.
#pragma once

#include "rl/rewards.hpp"
