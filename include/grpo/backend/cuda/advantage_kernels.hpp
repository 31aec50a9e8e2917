// SPDX-License-Identifier: MIT
// Forwarding header: <grpo/backend/cuda/advantage_kernels.hpp> moved to <grpo/backend/kernels/advantage_kernels.hpp>.
// This path stays for the 0.x series; include <grpo/grpo.hpp> (or the new path) instead.
#pragma once

#include "../kernels/advantage_kernels.hpp"
