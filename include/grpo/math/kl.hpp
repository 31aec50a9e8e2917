// SPDX-License-Identifier: MIT
// Per-token KL estimators of KL(pi || pi_ref) and their derivatives with respect to logp (Schulman's k1, k2,
// k3 and |x|). The one place these formulas live; the CPU and CUDA backends both call kl_penalty().
#pragma once

#include "common.hpp"

GRPO_NAMESPACE_BEGIN

/// Which per-token KL estimate to use; x = logp - ref_logp.
enum class kl_estimator {
    k1,  ///< x.                          verl "kl"/"k1"; OpenRLHF k1
    k2,  ///< x^2 / 2.                    verl "mse"/"k2"; OpenRLHF k2
    k3,  ///< exp(-x) + x - 1 (>= 0).    TRL/Liger/DeepSeekMath; verl "k3"; OpenRLHF k3
    abs, ///< |x|.                        verl "abs"
    /// k3 with x clamped to +-20 and the estimate to +-10 (unless kl_log_ratio_clamp / kl_value_clamp set
    /// other bounds): verl "low_var_kl" exactly. Changing the estimator drops these clamps.
    low_var_kl,
};
/// Number of kl_estimator values (for validation).
constexpr int kl_estimator_count = 5;
/// verl low_var_kl's bounds: log-ratio clamp and value clamp.
constexpr double low_var_kl_log_ratio_clamp = 20.0;
constexpr double low_var_kl_value_clamp = 10.0;

namespace math {

/// Value of a KL estimate at one token and its derivative d/d logp.
template <class C>
struct kl_term {
    C value;
    C grad;
};

/// KL estimate at one token (low_var_kl is k3 here: its clamps arrive as input_clamp and output_clamp).
///  - input_clamp > 0 clamps the log-ratio x to [-input_clamp, input_clamp] first (verl low_var_kl: 20);
///  - output_clamp > 0 clamps the estimate to [-output_clamp, output_clamp] (verl low_var_kl, OpenRLHF: 10);
///  - straight_through keeps the value but uses the k2 gradient x (verl's "k3+"-style estimators).
/// Clamped regions have zero gradient, as torch.clamp gives.
/// k3's gradient is 1 - exp(ref - logp) (TRL/Liger's Triton backward uses exactly this).
template <class C>
GRPO_HOST_DEVICE GRPO_FORCEINLINE kl_term<C> kl_penalty(kl_estimator estimator, C logp, C ref_logp, C input_clamp,
                                                        C output_clamp, bool straight_through) {
    const C raw = logp - ref_logp;
    const clamped<C> x = clamp_symmetric(raw, input_clamp);
    // Every estimator is evaluated and one is selected: no branches, so token loops vectorize.
    const C e = math::exp(-x.value);
    const C sign = select(x.value > C(0), C(1), select(x.value < C(0), C(-1), C(0))); // torch.abs': 0 at 0
    const bool k1 = estimator == kl_estimator::k1, k2 = estimator == kl_estimator::k2,
               abs_ = estimator == kl_estimator::abs;
    // k3 at x = -inf (a log-ratio that overflowed): exp(-x) + x is inf - inf; its limit is +inf.
    const C k3 = select(x.value == -infinity<C>(), infinity<C>(), e + x.value - C(1));
    const C value = select(k1, x.value, select(k2, C(0.5) * x.value * x.value, select(abs_, sign * x.value, k3)));
    const C dvalue_dx = select(k1, C(1), select(k2, x.value, select(abs_, sign, C(1) - e)));
    const clamped<C> out = clamp_symmetric(value, output_clamp);
    return {out.value, select(straight_through, raw, out.grad * dvalue_dx * x.grad)};
}

} // namespace math
GRPO_NAMESPACE_END
