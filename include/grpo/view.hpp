// SPDX-License-Identifier: MIT
// Forwarding header: <grpo/view.hpp> moved to <grpo/core/view.hpp>.
// This path stays for the 0.x series; include <grpo/grpo.hpp> (or the new path) instead.
#pragma once

#include "core/view.hpp"
