// SPDX-License-Identifier: MIT
// Forwarding header: <grpo/version.hpp> moved to <grpo/core/version.hpp>.
// This path stays for the 0.x series; include <grpo/grpo.hpp> (or the new path) instead.
#pragma once

#include "core/version.hpp"
