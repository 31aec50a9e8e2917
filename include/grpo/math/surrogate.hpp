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
    // Flags are 0 or 1 in C rather than bool so that they sum directly and token loops vectorize.
    C clipped_low;  ///< 1 when ratio < 1 - eps_low with A < 0 (TRL clip_ratio/low_mean)
    C clipped_high; ///< 1 when ratio > 1 + eps_high with A > 0 (TRL clip_ratio/high_mean)
    C dual_clipped; ///< 1 when the dual-clip bound -c*A was taken (verl pg_clipfrac_lower)
};

/// loss = -min(min(r, delta) * A, clamp(r, low, high) * A), then, for A < 0 with dual clip on,
/// loss = min(loss, -c * A).  (TRL _compute_loss; verl compute_policy_loss_vanilla.)
/// Derivatives follow torch exactly, ties in min included (torch.minimum splits the gradient in half),
/// so finite differences and torch autograd agree with it everywhere.
template <class C>
GRPO_HOST_DEVICE GRPO_FORCEINLINE surrogate_term<C> clipped_surrogate(C ratio, C advantage,
                                                                      const clip_bounds<C>& clip) {
    const C capped = select(ratio > clip.delta, clip.delta, ratio);
    const clamped<C> clipped = clamp_with_grad(ratio, clip.low, clip.high);
    // chain(): a zero advantage gives objective 0 even when the ratio overflowed to +inf (0 * inf = NaN).
    const C unclipped_obj = chain(advantage, capped);
    const C clipped_obj = clipped.value * advantage;
    const C d_unclipped = select(ratio > clip.delta, C(0), advantage);
    const C d_clipped = clipped.grad * advantage;
    // min of the two objectives; on a tie torch.minimum gives each side half the gradient.
    const bool take_unclipped = unclipped_obj < clipped_obj, take_clipped = clipped_obj < unclipped_obj;
    C loss = select(take_clipped, -clipped_obj, -unclipped_obj);
    // The tie's half-and-half is 0.5 a + 0.5 b, not 0.5 (a + b): the same value, but the sum may overflow.
    C dloss = select(take_unclipped, -d_unclipped,
                     select(take_clipped, -d_clipped, C(-0.5) * d_unclipped + C(-0.5) * d_clipped));
    // Dual clip (verl): for A < 0, loss = min(loss, -c * A), again splitting a tie.
    const bool dual_on = (clip.dual_c > C(0)) & (advantage < C(0));
    const C bound = -clip.dual_c * advantage;
    const bool dual = dual_on & (bound < loss), dual_tie = dual_on & (bound == loss);
    loss = select(dual, bound, loss);
    dloss = select(dual, C(0), select(dual_tie, C(0.5) * dloss, dloss));
    return {loss, dloss, select((advantage < C(0)) & (ratio < clip.low), C(1), C(0)),
            select((advantage > C(0)) & (ratio > clip.high), C(1), C(0)), select(dual, C(1), C(0))};
}

} // namespace math
GRPO_NAMESPACE_END
