// SPDX-License-Identifier: MIT
// Forwarding header: <grpo/sampler.hpp> moved to <grpo/rl/sampler.hpp>.
// This path stays for the 0.x series; include <grpo/grpo.hpp> (or the new path) instead.
#pragma once

#include "rl/sampler.hpp"
