// SPDX-License-Identifier: MIT
// Scalar helpers used by every formula; callable from host and device code.
#pragma once

#include <cmath>

#include "../config.hpp"

GRPO_NAMESPACE_BEGIN
namespace math {

template <class C>
GRPO_HOST_DEVICE GRPO_FORCEINLINE C exp(C x) {
    using std::exp;
    return exp(x);
}
template <class C>
GRPO_HOST_DEVICE GRPO_FORCEINLINE C sqrt(C x) {
    using std::sqrt;
    return sqrt(x);
}

/// A value clamped to [lo, hi] together with the derivative torch.clamp uses: 1 on the closed interval,
/// 0 strictly outside. A bound of 0 or less for `limit` in clamp_symmetric means "no clamp".
template <class C>
struct clamped {
    C value;
    C grad;
};

template <class C>
GRPO_HOST_DEVICE GRPO_FORCEINLINE clamped<C> clamp_with_grad(C x, C lo, C hi) {
    if (x < lo) return {lo, C(0)};
    if (x > hi) return {hi, C(0)};
    return {x, C(1)};
}

/// clamp(x, -limit, limit) when limit > 0, identity otherwise.
template <class C>
GRPO_HOST_DEVICE GRPO_FORCEINLINE clamped<C> clamp_symmetric(C x, C limit) {
    if (!(limit > C(0))) return {x, C(1)};
    return clamp_with_grad(x, -limit, limit);
}

} // namespace math
GRPO_NAMESPACE_END
