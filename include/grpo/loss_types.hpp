// SPDX-License-Identifier: MIT
// Forwarding header: <grpo/loss_types.hpp> moved to <grpo/types/loss_types.hpp>.
// This path stays for the 0.x series; include <grpo/grpo.hpp> (or the new path) instead.
#pragma once

#include "types/loss_types.hpp"
