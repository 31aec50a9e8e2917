// SPDX-License-Identifier: MIT
// Forwarding header: <grpo/process_rewards.hpp> moved to <grpo/rl/process_rewards.hpp>.
// This path stays for the 0.x series; include <grpo/grpo.hpp> (or the new path) instead.
#pragma once

#include "rl/process_rewards.hpp"
