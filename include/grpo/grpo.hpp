// SPDX-License-Identifier: MIT
// grpo: GRPO (Group Relative Policy Optimization) numerics for any C++ training stack.
// This umbrella brings the whole host-side API and includes nothing beyond the standard library.
// CUDA entry points live in <grpo/cuda.cuh>; adapters in <grpo/adapters/*.hpp>.
#pragma once

#include "version.hpp"
#include "config.hpp"
#include "error.hpp"
#include "view.hpp"
#include "exec.hpp"
#include "workspace.hpp"
#include "math/kl.hpp"
#include "math/surrogate.hpp"
#include "math/aggregation.hpp"
#include "math/advantage.hpp"
#include "advantages.hpp"
#include "loss.hpp"
#include "sampler.hpp"
#include "rewards.hpp"
#include "process_rewards.hpp"
#include "train_step.hpp"
