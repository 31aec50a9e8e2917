// SPDX-License-Identifier: MIT
// Forwarding header: <grpo/train_step.hpp> moved to <grpo/rl/train_step.hpp>.
// This path stays for the 0.x series; include <grpo/grpo.hpp> (or the new path) instead.
#pragma once

#include "rl/train_step.hpp"
