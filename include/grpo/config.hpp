// SPDX-License-Identifier: MIT
// Forwarding header: <grpo/config.hpp> moved to <grpo/core/config.hpp>.
// This path stays for the 0.x series; include <grpo/grpo.hpp> (or the new path) instead.
#pragma once

#include "core/config.hpp"
