// SPDX-License-Identifier: MIT
// logprobs_from_hidden and its backward: log-probs and entropies from the final hidden states and the LM head,
// chunk by chunk. Not part of <grpo/grpo.hpp> because it needs Eigen for its matrix products: include this header
// and link grpo::eigen (find_package(grpo CONFIG COMPONENTS eigen)).
#pragma once

#include "grpo.hpp"
#include "api/logprob_hidden.hpp"
