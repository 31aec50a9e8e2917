// SPDX-License-Identifier: MIT
// Forwarding header: <grpo/backend/cuda/run.hpp> moved to <grpo/api/device_entry.hpp>.
// This path stays for the 0.x series; include <grpo/grpo.hpp> (or the new path) instead.
#pragma once

#include "../../api/device_entry.hpp"
