// SPDX-License-Identifier: MIT
// Forwarding header: <grpo/advantages.hpp> moved to <grpo/api/advantages.hpp>.
// This path stays for the 0.x series; include <grpo/grpo.hpp> (or the new path) instead.
#pragma once

#include "api/advantages.hpp"
