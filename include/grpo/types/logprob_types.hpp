// SPDX-License-Identifier: MIT
// Inputs, outputs, configuration and statistics of the log-probs-from-logits entry points
// (logprobs_from_logits and its backward), shared by every backend, with their host-side checks.
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "../core/check.hpp"
#include "../core/config.hpp"
#include "../core/view.hpp"
#include "loss_types.hpp"

GRPO_NAMESPACE_BEGIN

/// How logits become log-probabilities.
struct logprob_config {
    /// Logits are divided by it before the softmax (TRL/verl: the sampling temperature). Finite, > 0.
    double temperature = 1.0;
    /// full: mask values 0/1, token ids in [0, V), logits neither NaN nor +inf, and the sampled token's logit not
    /// -inf, at unmasked rows (the forward checks while it reads; the backward reads the logits once more
    /// first). shapes_only: shapes, ids and configuration only.
    validation checks = validation::full;
};

/// The rows of one call: logits [M, V] (any row stride; unit column stride), the sampled token of each row, and
/// an optional row mask (0 = padding: the row's logits are never read). Token is std::int64_t (LibTorch) or
/// std::int32_t.
template <class T, class Token = std::int64_t, class Space = host_space>
struct logits_inputs {
    matrix_view<const T, Space> logits;     ///< [M, V] (required)
    vector_view<const Token, Space> tokens; ///< [M], ids in [0, V) (required)
    vector_view<const T, Space> mask;       ///< [M], 0 or 1 (absent: every row)
};

/// Forward outputs, one value per row; 0 at masked rows.
template <class T, class Space = host_space>
struct logprob_outputs {
    vector_view<T, Space> logp;     ///< log p(token) = z_token - lse (required)
    vector_view<T, Space> entropy;  ///< -sum_v p_v log p_v (optional)
    vector_view<double, Space> lse; ///< log sum_v exp(z_v), z = logits / temperature (optional; the backward
                                    ///< needs it)
};

/// What the backward reads besides the logits: the forward's per-row results and the upstream gradients.
template <class T, class Space = host_space>
struct logprob_grad_inputs {
    vector_view<const double, Space> lse;     ///< [M] from the forward (required)
    vector_view<const T, Space> entropy;      ///< [M] from the forward (required with grad_entropy)
    vector_view<const T, Space> grad_logp;    ///< [M] dLoss/dlogp of each row's token (required; for a
                                              ///< [B, T] loss: loss_and_grad's grad_logp, flattened)
    vector_view<const T, Space> grad_entropy; ///< [M] dLoss/dentropy (optional: an entropy bonus)
};

/// Sums over the unmasked rows of the forward.
struct logprob_stats {
    double rows = 0;        ///< unmasked rows
    double logp_sum = 0;    ///< sum of log p(token)
    double entropy_sum = 0; ///< sum of the entropies (computed even when no entropy output is given)
    /// Mean entropy of the unmasked rows (TRL logs it as "entropy"); 0 without rows.
    double entropy_mean() const { return rows > 0 ? entropy_sum / rows : 0.0; }
};

namespace detail {

template <class Token>
constexpr bool is_token_type = std::is_same<Token, std::int64_t>::value || std::is_same<Token, std::int32_t>::value;

/// Shapes, configuration and the aliasing rule shared by the forward and the backward; returns V.
template <class T, class Token, class S>
index_t check_logits_inputs(const char* where, const logits_inputs<T, Token, S>& in, const logprob_config& cfg) {
    check_range(where, "config.temperature", cfg.temperature, 0, HUGE_VAL, "a finite value > 0");
    if (cfg.temperature == 0)
        raise_argument(errc::invalid_value, where, "config.temperature", "a finite value > 0",
                       num_str(cfg.temperature));
    check_representable<T>(where, "config.temperature", cfg.temperature);
    check_enum(where, "config.checks", cfg.checks, 2);
    if (!in.logits.present() && in.logits.size() > 0)
        raise_argument(errc::invalid_value, where, "logits", "a view of [rows, vocabulary] logits", "an absent view");
    const index_t rows = in.logits.rows(), vocab = in.logits.cols();
    if (rows > 0 && vocab < 1)
        raise_argument(errc::shape_mismatch, where, "logits", "at least one column (the vocabulary)",
                       shape_str(rows, vocab));
    if (vocab > 1 && in.logits.col_stride() != 1)
        raise_argument(errc::invalid_value, where, "logits", "column stride 1 (any row stride)",
                       "column stride " + to_str(in.logits.col_stride()));
    if (rows > 0 && !in.tokens.present())
        raise_argument(errc::invalid_value, where, "tokens", "the sampled token of each row", "an absent view");
    check_size(where, "tokens", in.tokens, rows);
    if (in.mask.present()) check_size(where, "mask", in.mask, rows);
    return vocab;
}

/// Token ids and mask values of the unmasked rows (mask values are checked with validation::full only).
template <class T, class Token, class S>
void check_tokens_and_mask(const char* where, const logits_inputs<T, Token, S>& in, bool full) {
    const index_t rows = in.logits.rows(), vocab = in.logits.cols();
    for (index_t i = 0; i < rows; ++i) {
        if (in.mask.present()) {
            const T m = in.mask[i];
            if (full && !(m == T(0) || m == T(1)))
                raise_argument(errc::invalid_value, where, "mask", "values 0 or 1",
                               num_str(static_cast<double>(m)) + " at row " + to_str(i));
            if (m == T(0)) continue;
        }
        const auto id = static_cast<long long>(in.tokens[i]);
        if (id < 0 || id >= static_cast<long long>(vocab))
            raise_argument(errc::invalid_value, where, "tokens", "ids in [0, " + to_str(vocab) + ")",
                           std::to_string(id) + " at row " + to_str(i));
    }
}

} // namespace detail
GRPO_NAMESPACE_END
