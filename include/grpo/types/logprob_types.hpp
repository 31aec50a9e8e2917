// SPDX-License-Identifier: MIT
// Inputs, outputs, configuration and statistics of the log-probs-from-logits entry points
// (logprobs_from_logits and its backward), shared by every backend, with their host-side checks.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
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

/// The hidden-state form (logprobs_from_hidden): the logits are z = (hidden weight^T + bias) / temperature,
/// computed a chunk of rows at a time and never held whole.
template <class T, class Token = std::int64_t, class Space = host_space>
struct hidden_inputs {
    matrix_view<const T, Space> hidden;     ///< [M, H] final hidden states (required; unit column stride)
    matrix_view<const T, Space> weight;     ///< [V, H] the LM head, torch.nn.Linear(H, V).weight (required; unit
                                            ///< column stride)
    vector_view<const T, Space> bias;       ///< [V] (optional: no bias)
    vector_view<const Token, Space> tokens; ///< [M], ids in [0, V) (required)
    vector_view<const T, Space> mask;       ///< [M], 0 or 1 (absent: every row)
};

/// What the hidden-state backward writes; each is optional (a frozen head needs no weight gradient).
template <class T, class Space = host_space>
struct hidden_grads {
    matrix_view<T, Space> hidden; ///< [M, H] dLoss/dhidden, written (0 at masked rows)
    matrix_view<T, Space> weight; ///< [V, H] dLoss/dweight, accumulated into (+=), as a parameter's gradient is
    vector_view<T, Space> bias;   ///< [V] dLoss/dbias, accumulated into (+=)
};

/// Configuration of the hidden-state form: the logits form's, and the chunk size.
struct hidden_logprob_config : logprob_config {
    /// Rows of logits computed at a time; the peak extra memory is about chunk_rows x (V + 2 H) elements.
    /// 0 picks 2^25 / V rows (128 MiB of float logits), at least 64 and at most M. Results do not depend on the
    /// thread count; they may differ in the last bits between chunk sizes (the products are blocked by it).
    index_t chunk_rows = 0;
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

/// Why a row failed validation, in the order the checks run (tokens and mask of every row first, then the
/// backward's per-row values, then the logits), shared by the CPU backend and the kernels.
enum class logit_error : int {
    none = 0,
    bad_mask,
    bad_token,
    bad_lse,
    bad_grad_logp,
    bad_entropy,
    bad_grad_entropy,
    bad_logit,       ///< NaN or +inf
    overflow,        ///< finite, but logits / temperature overflows
    banned_token,    ///< the sampled token's logit is -inf
    bad_hidden,      ///< hidden form: a non-finite hidden state (unmasked row)
    bad_weight,      ///< hidden form: a non-finite weight
    bad_bias,        ///< hidden form: a non-finite bias
    hidden_overflow, ///< hidden form: logits (hidden weight^T + bias) / temperature overflow, or may (backward)
    gradient_bound   ///< hidden form's backward: upstream gradients so large that a gradient may overflow
};

/// The grpo::error of a row that failed: its code, row, column (logits) and offending value.
[[noreturn]] inline void raise_logit_error(const char* where, logit_error e, index_t row, index_t column,
                                           double value) {
    const std::string at = " at (" + to_str(row) + ", " + to_str(column) + ")";
    switch (e) {
    case logit_error::bad_mask:
        raise_argument(errc::invalid_value, where, "mask", "values 0 or 1", num_str(value) + " at row " + to_str(row));
    case logit_error::bad_lse:
    case logit_error::bad_grad_logp:
    case logit_error::bad_entropy:
    case logit_error::bad_grad_entropy: {
        const char* name = e == logit_error::bad_lse         ? "lse"
                           : e == logit_error::bad_grad_logp ? "grad_logp"
                           : e == logit_error::bad_entropy   ? "entropy"
                                                             : "grad_entropy";
        raise_argument(errc::non_finite, where, name, "finite values at unmasked rows",
                       num_str(value) + " at row " + to_str(row));
    }
    case logit_error::banned_token:
        raise_argument(errc::invalid_value, where, "tokens",
                       "a sampled token whose logit is not -inf (a banned token cannot have been sampled)",
                       "logit -inf" + at);
    case logit_error::overflow:
        raise_argument(errc::invalid_value, where, "logits", "logits / temperature finite in the element type's math",
                       num_str(value) + at + ", which overflows after dividing by the temperature");
    case logit_error::bad_hidden:
        raise_argument(errc::non_finite, where, "hidden", "finite values at unmasked rows", num_str(value) + at);
    case logit_error::bad_weight:
        raise_argument(errc::non_finite, where, "weight", "finite values", num_str(value) + at);
    case logit_error::bad_bias:
        raise_argument(errc::non_finite, where, "bias", "finite values", num_str(value) + " at " + to_str(column));
    case logit_error::hidden_overflow:
        raise_argument(errc::invalid_value, where, "hidden",
                       "logits (hidden weight^T + bias) / temperature that fit the element type", num_str(value) + at);
    case logit_error::gradient_bound:
        raise_argument(errc::invalid_value, where, "grad_logp",
                       "upstream gradients whose dLoss/dhidden, dLoss/dweight and dLoss/dbias fit the element type",
                       "gradients bounded only by " + num_str(value) + " by row " + to_str(row));
    default:
        raise_argument(errc::non_finite, where, "logits", "values that are finite or -inf (a banned token)",
                       num_str(value) + at);
    }
}

[[noreturn]] inline void raise_mask_error(const char* where, index_t row, double value) {
    raise_logit_error(where, logit_error::bad_mask, row, 0, value);
}
[[noreturn]] inline void raise_token_error(const char* where, index_t row, long long id, index_t vocab) {
    raise_argument(errc::invalid_value, where, "tokens", "ids in [0, " + to_str(vocab) + ")",
                   std::to_string(id) + " at row " + to_str(row));
}

/// Token ids in [0, vocab) at the unmasked rows, and mask values 0/1 (checked with validation::full only).
template <class T, class Token, class S>
void check_tokens_and_mask(const char* where, const vector_view<const Token, S>& tokens,
                           const vector_view<const T, S>& mask, index_t vocab, bool full) {
    for (index_t i = 0; i < tokens.size(); ++i) {
        if (mask.present()) {
            const T m = mask[i];
            if (full && !(m == T(0) || m == T(1))) raise_mask_error(where, i, static_cast<double>(m));
            if (m == T(0)) continue;
        }
        const auto id = static_cast<long long>(tokens[i]);
        if (id < 0 || id >= static_cast<long long>(vocab)) raise_token_error(where, i, id, vocab);
    }
}

/// The forward's outputs: logp [rows] (required), entropy and lse [rows] (optional).
template <class T, class S>
void check_forward_outputs(const char* where, const logprob_outputs<T, S>& out, index_t rows) {
    if (rows > 0 && !out.logp.present())
        raise_argument(errc::invalid_value, where, "logp", "an output of [rows] log-probs", "an absent view");
    check_size(where, "logp", out.logp, rows);
    if (out.entropy.present()) check_size(where, "entropy", out.entropy, rows);
    if (out.lse.present()) check_size(where, "lse", out.lse, rows);
}

/// The backward's per-row inputs: lse and grad_logp [rows] (required), grad_entropy with the forward's entropy.
template <class T, class S>
void check_grad_inputs(const char* where, const logprob_grad_inputs<T, S>& grad, index_t rows) {
    if (rows > 0 && !grad.lse.present())
        raise_argument(errc::invalid_value, where, "lse", "the forward's lse output", "an absent view");
    if (rows > 0 && !grad.grad_logp.present())
        raise_argument(errc::invalid_value, where, "grad_logp", "dLoss/dlogp per row", "an absent view");
    check_size(where, "lse", grad.lse, rows);
    check_size(where, "grad_logp", grad.grad_logp, rows);
    if (grad.grad_entropy.present() != grad.entropy.present())
        raise_argument(errc::invalid_value, where, grad.grad_entropy.present() ? "entropy" : "grad_entropy",
                       "grad_entropy and the forward's entropy together", "only one of them");
    if (grad.grad_entropy.present()) {
        check_size(where, "grad_entropy", grad.grad_entropy, rows);
        check_size(where, "entropy", grad.entropy, rows);
    }
}

/// Shapes, configuration and aliasing of a forward call (every backend).
template <class T, class Token, class S>
void check_logprob_call(const char* where, const logits_inputs<T, Token, S>& in, const logprob_outputs<T, S>& out,
                        const logprob_config& cfg) {
    const index_t rows = in.logits.rows();
    check_logits_inputs(where, in, cfg);
    check_forward_outputs(where, out, rows);
    check_outputs_disjoint(
        where, {{"logp", range_of(out.logp)}, {"entropy", range_of(out.entropy)}, {"lse", range_of(out.lse)}},
        {{"logits", range_of(in.logits)}, {"tokens", range_of(in.tokens)}, {"mask", range_of(in.mask)}});
}

/// Shapes, configuration and aliasing of a backward call (every backend); returns whether it is in place
/// (grad_logits is exactly the logits' view).
template <class T, class Token, class S>
bool check_logprob_backward_call(const char* where, const logits_inputs<T, Token, S>& in,
                                 const logprob_grad_inputs<T, S>& grad, const matrix_view<T, S>& grad_logits,
                                 const logprob_config& cfg) {
    const index_t rows = in.logits.rows(), vocab = check_logits_inputs(where, in, cfg);
    check_grad_inputs(where, grad, rows);
    if (rows > 0 && !grad_logits.present())
        raise_argument(errc::invalid_value, where, "grad_logits", "an output of [rows, vocabulary]", "an absent view");
    check_shape(where, "grad_logits", grad_logits, rows, vocab);
    if (vocab > 1 && grad_logits.col_stride() != 1)
        raise_argument(errc::invalid_value, where, "grad_logits", "column stride 1 (any row stride)",
                       "column stride " + to_str(grad_logits.col_stride()));
    // In place: exactly the logits' view. Any other overlap would read elements already overwritten.
    const bool in_place = grad_logits.data() == in.logits.data() && grad_logits.row_stride() == in.logits.row_stride();
    check_outputs_disjoint(where, {{"grad_logits", range_of(grad_logits)}},
                           {{"tokens", range_of(in.tokens)},
                            {"mask", range_of(in.mask)},
                            {"lse", range_of(grad.lse)},
                            {"entropy", range_of(grad.entropy)},
                            {"grad_logp", range_of(grad.grad_logp)},
                            {"grad_entropy", range_of(grad.grad_entropy)}});
    if (!in_place) check_no_alias(where, "grad_logits", grad_logits, "logits", in.logits);
    return in_place;
}

template <class T, class Token, class S>
void check_tokens_and_mask(const char* where, const logits_inputs<T, Token, S>& in, bool full) {
    check_tokens_and_mask(where, in.tokens, in.mask, in.logits.cols(), full);
}

/// Shapes, configuration and aliasing of the hidden-state form's inputs; returns V.
template <class T, class Token, class S>
index_t check_hidden_inputs(const char* where, const hidden_inputs<T, Token, S>& in, const hidden_logprob_config& cfg) {
    logits_inputs<T, Token, S> shape_only; // the configuration checks of the logits form
    check_logits_inputs(where, shape_only, cfg);
    if (cfg.chunk_rows < 0)
        raise_argument(errc::invalid_value, where, "config.chunk_rows", "0 (the default) or a positive row count",
                       to_str(cfg.chunk_rows));
    const index_t rows = in.hidden.rows(), width = in.hidden.cols(), vocab = in.weight.rows();
    if (rows > 0 && !in.hidden.present())
        raise_argument(errc::invalid_value, where, "hidden", "a view of [rows, hidden size]", "an absent view");
    if (!in.weight.present())
        raise_argument(errc::invalid_value, where, "weight", "a view of the [vocabulary, hidden size] LM head",
                       "an absent view");
    if (vocab < 1)
        raise_argument(errc::shape_mismatch, where, "weight", "at least one row (the vocabulary)",
                       shape_str(vocab, in.weight.cols()));
    if (in.weight.cols() != width)
        raise_argument(errc::shape_mismatch, where, "weight",
                       "[vocabulary, " + to_str(width) + "] (hidden's columns, as torch.nn.Linear's weight)",
                       shape_str(vocab, in.weight.cols()) + (in.weight.rows() == width && in.weight.cols() != width
                                                                 ? " (is it transposed? it must be [V, H])"
                                                                 : ""));
    if (width > 1 && in.hidden.col_stride() != 1)
        raise_argument(errc::invalid_value, where, "hidden", "column stride 1 (any row stride)",
                       "column stride " + to_str(in.hidden.col_stride()));
    if (width > 1 && in.weight.col_stride() != 1)
        raise_argument(errc::invalid_value, where, "weight", "column stride 1 (any row stride)",
                       "column stride " + to_str(in.weight.col_stride()));
    if (in.bias.present()) check_size(where, "bias", in.bias, vocab);
    if (rows > 0 && !in.tokens.present())
        raise_argument(errc::invalid_value, where, "tokens", "the sampled token of each row", "an absent view");
    check_size(where, "tokens", in.tokens, rows);
    if (in.mask.present()) check_size(where, "mask", in.mask, rows);
    return vocab;
}


/// Shapes, configuration and aliasing of a logprobs_from_hidden call (every backend); returns V.
template <class T, class Token, class S>
index_t check_hidden_call(const char* where, const hidden_inputs<T, Token, S>& in, const logprob_outputs<T, S>& out,
                          const hidden_logprob_config& cfg) {
    const index_t rows = in.hidden.rows();
    const index_t vocab = check_hidden_inputs(where, in, cfg);
    check_forward_outputs(where, out, rows);
    check_outputs_disjoint(
        where, {{"logp", range_of(out.logp)}, {"entropy", range_of(out.entropy)}, {"lse", range_of(out.lse)}},
        {{"hidden", range_of(in.hidden)},
         {"weight", range_of(in.weight)},
         {"bias", range_of(in.bias)},
         {"tokens", range_of(in.tokens)},
         {"mask", range_of(in.mask)}});
    return vocab;
}

/// Shapes, configuration and aliasing of a logprobs_from_hidden_backward call (every backend); returns V.
template <class T, class Token, class S>
index_t check_hidden_backward_call(const char* where, const hidden_inputs<T, Token, S>& in,
                                   const logprob_grad_inputs<T, S>& grad, const hidden_grads<T, S>& grads,
                                   const hidden_logprob_config& cfg) {
    const index_t rows = in.hidden.rows(), width = in.hidden.cols();
    const index_t vocab = check_hidden_inputs(where, in, cfg);
    check_grad_inputs(where, grad, rows);
    if (grads.hidden.present()) {
        check_shape(where, "grads.hidden", grads.hidden, rows, width);
        if (width > 1 && grads.hidden.col_stride() != 1)
            raise_argument(errc::invalid_value, where, "grads.hidden", "column stride 1 (any row stride)",
                           "column stride " + to_str(grads.hidden.col_stride()));
    }
    if (grads.weight.present()) {
        check_shape(where, "grads.weight", grads.weight, vocab, width);
        if (width > 1 && grads.weight.col_stride() != 1)
            raise_argument(errc::invalid_value, where, "grads.weight", "column stride 1 (any row stride)",
                           "column stride " + to_str(grads.weight.col_stride()));
    }
    if (grads.bias.present()) {
        if (!in.bias.present())
            raise_argument(errc::invalid_value, where, "grads.bias", "absent when the head has no bias",
                           "a view of size " + to_str(grads.bias.size()));
        check_size(where, "grads.bias", grads.bias, vocab);
    }
    check_outputs_disjoint(where,
                           {{"grads.hidden", range_of(grads.hidden)},
                            {"grads.weight", range_of(grads.weight)},
                            {"grads.bias", range_of(grads.bias)}},
                           {{"hidden", range_of(in.hidden)},
                            {"weight", range_of(in.weight)},
                            {"bias", range_of(in.bias)},
                            {"tokens", range_of(in.tokens)},
                            {"mask", range_of(in.mask)},
                            {"lse", range_of(grad.lse)},
                            {"entropy", range_of(grad.entropy)},
                            {"grad_logp", range_of(grad.grad_logp)},
                            {"grad_entropy", range_of(grad.grad_entropy)}});
    return vocab;
}

/// Logits per chunk of the hidden-state form when the configuration says 0 (128 MiB of fp32 logits).
constexpr index_t hidden_default_chunk_elements = index_t(1) << 25;

/// The chunk size in rows: the configured one, or the default (2^25 / V, at least 64), clamped to [1, rows].
inline index_t hidden_chunk_rows(const hidden_logprob_config& cfg, index_t rows, index_t vocab) {
    index_t c = cfg.chunk_rows;
    if (c == 0) c = std::max<index_t>(64, hidden_default_chunk_elements / std::max<index_t>(1, vocab));
    return std::max<index_t>(1, std::min(c, rows));
}

} // namespace detail
GRPO_NAMESPACE_END
