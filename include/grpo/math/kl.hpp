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
    k3,  ///< exp(-x) + x - 1 (>= 0).    TRL/Liger/DeepSeekMath; verl "low_var_kl"/"k3"; OpenRLHF k3
    abs, ///< |x|.                        verl "abs"
};

namespace math {

/// Value of a KL estimate at one token and its derivative d/d logp.
template <class C>
struct kl_term {
    C value;
    C grad;
};

/// KL estimate at one token.
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
    C value, dvalue_dx;
    switch (estimator) {
    case kl_estimator::k1:
        value = x.value;
        dvalue_dx = C(1);
        break;
    case kl_estimator::k2:
        value = C(0.5) * x.value * x.value;
        dvalue_dx = x.value;
        break;
    case kl_estimator::abs:
        value = x.value < C(0) ? -x.value : x.value;
        dvalue_dx = x.value > C(0) ? C(1) : (x.value < C(0) ? C(-1) : C(0)); // torch.abs: sign(x), 0 at 0
        break;
    case kl_estimator::k3:
    default: {
        const C e = math::exp(-x.value);
        value = e + x.value - C(1);
        dvalue_dx = C(1) - e;
        break;
    }
    }
    const clamped<C> out = clamp_symmetric(value, output_clamp);
    if (straight_through) return {out.value, raw};
    return {out.value, out.grad * dvalue_dx * x.grad};
}

} // namespace math
GRPO_NAMESPACE_END
