// SPDX-License-Identifier: MIT
// grpo: GRPO (Group Relative Policy Optimization) numerics for any C++ training stack.
// This umbrella brings the whole host-side API and includes nothing beyond the standard library.
// CUDA entry points live in <grpo/cuda.cuh>; adapters in <grpo/adapters/*.hpp>.
#pragma once

#include "core/version.hpp"
#include "core/config.hpp"
#include "core/error.hpp"
#include "core/view.hpp"
#include "core/exec.hpp"
#include "core/workspace.hpp"
#include "math/kl.hpp"
#include "math/surrogate.hpp"
#include "math/aggregation.hpp"
#include "math/advantage.hpp"
#include "math/correction.hpp"
#include "math/objective.hpp"
#include "math/token_loss.hpp"
#include "math/logprob.hpp"
#include "types/advantage_types.hpp"
#include "types/loss_types.hpp"
#include "types/loss_record.hpp"
#include "types/kl_types.hpp"
#include "types/logprob_types.hpp"
#include "api/advantages.hpp"
#include "api/loss.hpp"
#include "api/kl.hpp"
#include "api/logprob.hpp"
#include "api/instantiations.hpp"
#include "rl/sampler.hpp"
#include "rl/rewards.hpp"
#include "rl/process_rewards.hpp"
#include "rl/train_step.hpp"
