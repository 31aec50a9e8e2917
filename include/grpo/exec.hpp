// SPDX-License-Identifier: MIT
// Forwarding header: <grpo/exec.hpp> moved to <grpo/core/exec.hpp>.
// This path stays for the 0.x series; include <grpo/grpo.hpp> (or the new path) instead.
#pragma once

#include "core/exec.hpp"
