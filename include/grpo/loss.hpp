// SPDX-License-Identifier: MIT
// Forwarding header: <grpo/loss.hpp> moved to <grpo/api/loss.hpp>.
// This path stays for the 0.x series; include <grpo/grpo.hpp> (or the new path) instead.
#pragma once

#include "api/loss.hpp"
