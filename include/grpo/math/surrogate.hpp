// SPDX-License-Identifier: MIT
// PPO's clipped surrogate at one token, with every clipping variant the peers use, and its derivative with
// respect to the ratio. The one definition both backends call.
#pragma once

#include "common.hpp"

GRPO_NAMESPACE_BEGIN
namespace math {

/// Clipping parameters in ratio space.
template <class C>
struct clip_bounds {
    C low;    ///< 1 - epsilon_low
    C high;   ///< 1 + epsilon_high
    C delta;  ///< TRL's two-sided cap on the unclipped ratio; +infinity when off
    C dual_c; ///< verl's dual-clip bound for A < 0 (clip_ratio_c); 0 when off
};

/// One token's surrogate: loss, d loss / d ratio, and which clip fired (for the diagnostics peers log).
template <class C>
struct surrogate_term {
    C loss;
    C dloss_dratio;
    bool clipped_low;  ///< ratio < 1 - eps_low with A < 0 (TRL clip_ratio/low_mean)
    bool clipped_high; ///< ratio > 1 + eps_high with A > 0 (TRL clip_ratio/high_mean)
    bool dual_clipped; ///< the dual-clip bound -c*A was taken (verl pg_clipfrac_lower)
};

/// loss = -min(min(r, delta) * A, clamp(r, low, high) * A), then, for A < 0 with dual clip on,
/// loss = min(loss, -c * A).  (TRL _compute_loss; verl compute_policy_loss_vanilla.)
/// Derivatives follow torch exactly, ties in min included (torch.minimum splits the gradient in half),
/// so finite differences and torch autograd agree with it everywhere.
template <class C>
GRPO_HOST_DEVICE GRPO_FORCEINLINE surrogate_term<C> clipped_surrogate(C ratio, C advantage,
                                                                      const clip_bounds<C>& clip) {
    const C capped = ratio > clip.delta ? clip.delta : ratio;
    const clamped<C> clipped = clamp_with_grad(ratio, clip.low, clip.high);
    const C unclipped_obj = capped * advantage;
    const C clipped_obj = clipped.value * advantage;
    const C d_unclipped = ratio > clip.delta ? C(0) : advantage;
    const C d_clipped = clipped.grad * advantage;

    surrogate_term<C> t;
    if (unclipped_obj < clipped_obj) {
        t.loss = -unclipped_obj;
        t.dloss_dratio = -d_unclipped;
    } else if (clipped_obj < unclipped_obj) {
        t.loss = -clipped_obj;
        t.dloss_dratio = -d_clipped;
    } else {
        t.loss = -unclipped_obj;
        t.dloss_dratio = -C(0.5) * (d_unclipped + d_clipped);
    }
    t.clipped_low = advantage < C(0) && ratio < clip.low;
    t.clipped_high = advantage > C(0) && ratio > clip.high;
    t.dual_clipped = false;
    if (clip.dual_c > C(0) && advantage < C(0)) {
        const C bound = -clip.dual_c * advantage;
        if (bound < t.loss) {
            t.loss = bound;
            t.dloss_dratio = C(0);
            t.dual_clipped = true;
        } else if (bound == t.loss) {
            t.dloss_dratio *= C(0.5);
        }
    }
    return t;
}

} // namespace math
GRPO_NAMESPACE_END
