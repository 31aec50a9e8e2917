// SPDX-License-Identifier: MIT
// Forwarding header: <grpo/error.hpp> moved to <grpo/core/error.hpp>.
// This path stays for the 0.x series; include <grpo/grpo.hpp> (or the new path) instead.
#pragma once

#include "core/error.hpp"
