// SPDX-License-Identifier: MIT
// Configuration, inputs, outputs and statistics of the standalone per-token KL (per_token_kl), shared by every
// backend: the same estimator the loss adds as beta * KL, without a policy term or advantages.
#pragma once

#include <cstdint>
#include <limits>

#include "../core/check.hpp"
#include "../core/config.hpp"
#include "../core/view.hpp"
#include "../math/kl.hpp"
#include "loss_types.hpp"

GRPO_NAMESPACE_BEGIN

/// The KL estimator and its options, as in loss_config (whose KL fields kl_config::of copies).
struct kl_config {
    /// KL estimator. TRL: k3; verl `kl_loss_type` (its default low_var_kl = k3 with clamps).
    kl_estimator kl = kl_estimator::k3;
    /// Clamp of logp - ref before the estimator; 0 = off (low_var_kl: 20 when 0).
    double kl_log_ratio_clamp = 0;
    /// Clamp of the estimate itself; 0 = off (low_var_kl: 10 when 0).
    double kl_value_clamp = 0;
    /// Keep the estimator's value but use the k2 gradient (logp - ref): verl's "k3+" style names.
    bool kl_straight_through = false;
    validation checks = validation::full;

    /// The KL settings of a loss configuration: per_token_kl then gives the KL_it that loss_and_grad adds.
    static kl_config of(const loss_config& c) {
        kl_config k;
        k.kl = c.kl;
        k.kl_log_ratio_clamp = c.kl_log_ratio_clamp;
        k.kl_value_clamp = c.kl_value_clamp;
        k.kl_straight_through = c.kl_straight_through;
        k.checks = c.checks;
        return k;
    }
};

/// The per-token inputs, [completions, tokens] views of the host's buffers; absent optional views mean "not given".
template <class T, class Space = host_space>
struct kl_inputs {
    matrix_view<const T, Space> logp;               ///< log-probs under the current policy (required)
    matrix_view<const T, Space> ref_logp;           ///< log-probs of the reference policy (required)
    matrix_view<const T, Space> mask;               ///< 1 = token counts, 0 = masked; absent = all ones
    vector_view<const std::int64_t, Space> lengths; ///< tokens t >= lengths[i] are masked; absent = all valid
};

/// Where results go; both optional.
template <class T, class Space = host_space>
struct kl_outputs {
    matrix_view<T, Space> kl;        ///< KL_it, 0 at masked positions
    matrix_view<T, Space> grad_logp; ///< d KL_it / d logp_it (per token, unaggregated), 0 at masked positions
};

/// Sums over the call's unmasked tokens.
struct kl_stats {
    double kl_sum = 0;      ///< sum of KL_it
    double kl_mean = 0;     ///< kl_sum / token_count (TRL's logged "kl"); 0 without tokens
    double token_count = 0; ///< unmasked tokens
};

namespace detail {

/// Checks the configuration and the shapes of every view; throws grpo::error before anything is touched.
template <class T, class S>
kl_params check_kl_call(const char* where, const kl_inputs<T, S>& in, const kl_outputs<T, S>& out,
                        const kl_config& cfg) {
    const kl_params k = checked_kl(where, cfg.kl, cfg.kl_log_ratio_clamp, cfg.kl_value_clamp, cfg.kl_straight_through);
    check_enum(where, "config.checks", cfg.checks, 2);
    const index_t rows = in.logp.rows(), cols = in.logp.cols();
    if (!in.logp.present() &&
        (!in.ref_logp.empty() || !in.mask.empty() || !in.lengths.empty() || !out.kl.empty() || !out.grad_logp.empty()))
        raise_argument(errc::invalid_value, where, "logp", "a view of the current log-probs", "an absent view");
    if (!in.ref_logp.present() && rows * cols > 0)
        raise_argument(errc::invalid_value, where, "ref_logp", "reference log-probs", "an absent view");
    if (in.ref_logp.present()) check_shape(where, "ref_logp", in.ref_logp, rows, cols);
    if (in.mask.present()) check_shape(where, "mask", in.mask, rows, cols);
    if (in.lengths.present()) check_size(where, "lengths", in.lengths, rows);
    if (out.kl.present()) check_shape(where, "kl", out.kl, rows, cols);
    if (out.grad_logp.present()) check_shape(where, "grad_logp", out.grad_logp, rows, cols);
    check_outputs_disjoint(where, {{"kl", range_of(out.kl)}, {"grad_logp", range_of(out.grad_logp)}},
                           {{"logp", range_of(in.logp)},
                            {"ref_logp", range_of(in.ref_logp)},
                            {"mask", range_of(in.mask)},
                            {"lengths", range_of(in.lengths)}});
    return k;
}

} // namespace detail
GRPO_NAMESPACE_END
