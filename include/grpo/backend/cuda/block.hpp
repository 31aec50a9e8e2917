// SPDX-License-Identifier: MIT
// Forwarding header: <grpo/backend/cuda/block.hpp> moved to <grpo/backend/kernels/block.hpp>.
// This path stays for the 0.x series; include <grpo/grpo.hpp> (or the new path) instead.
#pragma once

#include "../kernels/block.hpp"
