// SPDX-License-Identifier: MIT
// Forwarding header: <grpo/workspace.hpp> moved to <grpo/core/workspace.hpp>.
// This path stays for the 0.x series; include <grpo/grpo.hpp> (or the new path) instead.
#pragma once

#include "core/workspace.hpp"
