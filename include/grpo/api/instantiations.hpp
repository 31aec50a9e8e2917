// SPDX-License-Identifier: MIT
// The compiled mode (opt-in, in the spirit of fmt's compiled library): the host entry points for float and
// double are instantiated once in the grpo_compiled library (src/instantiations.cpp, CMake target
// grpo::compiled), and a translation unit that defines GRPO_COMPILED (linking grpo::compiled does) sees them
// as `extern template`, so it no longer instantiates the fused loss pass, the advantage estimators and the KL
// pass itself: a program calling loss_and_grad compiles in about the time of including grpo.hpp. Header-only
// use (the default) is unchanged. The list below is the one place that names the instantiated signatures.
#pragma once

#include "advantages.hpp"
#include "kl.hpp"
#include "logprob.hpp"
#include "loss.hpp"

/// Applies `PREFIX` (`template` or `extern template`) to every host entry point instantiated for element type T.
// NOLINTBEGIN(bugprone-macro-parentheses): PREFIX is a keyword sequence and T a type, neither an expression
#define GRPO_HOST_ENTRY_POINTS(PREFIX, T)                                                                              \
    PREFIX loss_stats loss_and_grad<T>(const exec::host&, const loss_inputs<T, host_space>&,                           \
                                       const loss_outputs<T, host_space>&, const loss_config&, workspace&);            \
    PREFIX loss_stats loss_and_grad<T>(const exec::host&, const loss_inputs<T, host_space>&,                           \
                                       const loss_outputs<T, host_space>&, const loss_config&);                        \
    PREFIX kl_stats per_token_kl<T>(const exec::host&, const kl_inputs<T, host_space>&,                                \
                                    const kl_outputs<T, host_space>&, const kl_config&, workspace&);                   \
    PREFIX kl_stats per_token_kl<T>(const exec::host&, const kl_inputs<T, host_space>&,                                \
                                    const kl_outputs<T, host_space>&, const kl_config&);                               \
    PREFIX advantage_stats compute_advantages<const T, T>(const exec::host&, vector_view<const T>, const groups&,      \
                                                          vector_view<T>, const advantage_config&, workspace&,         \
                                                          const group_outputs&, vector_view<const double>);            \
    PREFIX advantage_stats compute_advantages<const T, T>(const exec::host&, vector_view<const T>, const groups&,      \
                                                          vector_view<T>, const advantage_config&,                     \
                                                          const group_outputs&, vector_view<const double>);            \
    PREFIX token_advantage_stats token_advantages<T>(const exec::host&, const token_advantage_inputs<T>&,              \
                                                     const token_advantage_outputs<T>&, const token_advantage_config&, \
                                                     workspace&);                                                      \
    PREFIX token_advantage_stats token_advantages<T>(const exec::host&, const token_advantage_inputs<T>&,              \
                                                     const token_advantage_outputs<T>&,                                \
                                                     const token_advantage_config&);                                   \
    PREFIX logprob_stats logprobs_from_logits<T, std::int64_t>(                                                        \
        const exec::host&, const logits_inputs<T>&, const logprob_outputs<T>&, const logprob_config&, workspace&);     \
    PREFIX void logprobs_from_logits_backward<T, std::int64_t>(const exec::host&, const logits_inputs<T>&,             \
                                                               const logprob_grad_inputs<T>&, const matrix_view<T>&,   \
                                                               const logprob_config&, workspace&);
// NOLINTEND(bugprone-macro-parentheses)

#if defined(GRPO_COMPILED) && !defined(GRPO_BUILDING_COMPILED_LIBRARY)
GRPO_NAMESPACE_BEGIN
GRPO_HOST_ENTRY_POINTS(extern template, float)
GRPO_HOST_ENTRY_POINTS(extern template, double)
GRPO_NAMESPACE_END
#endif
