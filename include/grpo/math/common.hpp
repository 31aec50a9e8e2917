// SPDX-License-Identifier: MIT
// Scalar helpers used by every formula; callable from host and device code.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "../core/config.hpp"

GRPO_NAMESPACE_BEGIN
namespace math {

/// c ? a : b without a branch. GCC (with its default -ftrapping-math) will not if-convert a conditional
/// whose arms do floating-point arithmetic, which stops token loops from vectorizing; selecting the bits
/// does vectorize, and both arms are computed anyway. Device code uses the plain conditional.
template <class C>
GRPO_HOST_DEVICE GRPO_FORCEINLINE C select(bool c, C a, C b) {
#if defined(__CUDA_ARCH__)
    return c ? a : b;
#else
    using bits_t = typename std::conditional<sizeof(C) == 4, std::uint32_t, std::uint64_t>::type;
    static_assert(sizeof(C) == sizeof(bits_t), "select: float or double");
    bits_t ia, ib;
    std::memcpy(&ia, &a, sizeof a);
    std::memcpy(&ib, &b, sizeof b);
    const bits_t m = bits_t(0) - static_cast<bits_t>(c);
    const bits_t r = (ia & m) | (ib & ~m);
    C out;
    std::memcpy(&out, &r, sizeof out);
    return out;
#endif
}

namespace detail {

/// exp written without calls or branches so that CPU loops over tokens vectorize: Cody-Waite reduction
/// x = n ln2 + r, |r| <= ln2/2, a Taylor polynomial (degree 7 in float, 13 in double: truncation below
/// 0.1 ulp), and 2^n built in the exponent bits. Overflow gives +inf, underflow 0, NaN stays NaN, like
/// std::exp; accuracy within a few ulp (checked against std::exp in tests/test_math.cpp).
template <class C, class I, int Mantissa, int Bias, int Degree>
inline C exp_vectorizable(C x) {
    const C log2e = C(1.4426950408889634), ln2_hi = C(0.693145751953125), ln2_lo = C(1.4286068203094173e-06);
    const C max_x = C(Bias) * C(0.6931471805599453), min_x = -max_x + C(1); // keep 2^n a normal number
    const C xc = select(x > max_x, max_x, select(x < min_x, min_x, x));
    const C shifter = C(1.5) * C(I(1) << Mantissa); // adding it rounds to an integer in the low bits
    const C shifted = xc * log2e + shifter;
    const C n = shifted - shifter;
    const C r = (xc - n * ln2_hi) - n * ln2_lo;
    // Horner on sum_k r^k / k!, with 1/k! as constants (no division in the loop).
    constexpr double inv_factorial[14] = {
        1.0,        1.0,         1.0 / 2,      1.0 / 6,       1.0 / 24,       1.0 / 120,       1.0 / 720,
        1.0 / 5040, 1.0 / 40320, 1.0 / 362880, 1.0 / 3628800, 1.0 / 39916800, 1.0 / 479001600, 1.0 / 6227020800.0};
    C p = C(inv_factorial[Degree]);
    for (int k = Degree - 1; k >= 0; --k) p = p * r + C(inv_factorial[k]);
    // 2^n from the bits: n is the difference of the bit patterns of `shifted` and `shifter` (no float-to-int
    // conversion, which would be UB for NaN), in unsigned arithmetic so that no value makes the shift UB.
    using U = std::make_unsigned_t<I>;
    U shifted_bits, shifter_bits;
    std::memcpy(&shifted_bits, &shifted, sizeof shifted_bits);
    std::memcpy(&shifter_bits, &shifter, sizeof shifter_bits);
    const U bits = (shifted_bits - shifter_bits + U(Bias)) << Mantissa;
    C scale;
    std::memcpy(&scale, &bits, sizeof scale);
    C y = p * scale;
    y = select(x > max_x, std::numeric_limits<C>::infinity(), y);
    y = select(x < min_x, C(0), y);
    return select(x != x, x, y);
}

inline float exp_host(float x) { return exp_vectorizable<float, std::int32_t, 23, 127, 7>(x); }
inline double exp_host(double x) { return exp_vectorizable<double, std::int64_t, 52, 1023, 13>(x); }

} // namespace detail

template <class C>
GRPO_HOST_DEVICE GRPO_FORCEINLINE C exp(C x) {
#if defined(__CUDA_ARCH__)
    return ::exp(x);
#else
    return detail::exp_host(x);
#endif
}
template <class C>
GRPO_HOST_DEVICE GRPO_FORCEINLINE C log(C x) {
    using std::log;
    return log(x);
}
template <class C>
GRPO_HOST_DEVICE GRPO_FORCEINLINE C sqrt(C x) {
    using std::sqrt;
    return sqrt(x);
}

/// +infinity in C, in host and device code alike (HUGE_VAL is a constant expression on both).
template <class C>
GRPO_HOST_DEVICE GRPO_FORCEINLINE C infinity() {
    return static_cast<C>(HUGE_VAL);
}

/// d_outer * d_inner by the chain rule, except that a zero outer factor gives exactly 0 even where the inner one
/// overflowed to +-inf: a branch whose value does not depend on logp (a clipped ratio, a zero advantage, a zero
/// weight) has derivative 0 whatever the ratio, and IEEE's 0 * inf = NaN must not say otherwise.
template <class C>
GRPO_HOST_DEVICE GRPO_FORCEINLINE C chain(C d_outer, C d_inner) {
    return select(d_outer == C(0), C(0), d_outer * d_inner);
}

/// A value clamped to [lo, hi] together with the derivative torch.clamp uses: 1 on the closed interval,
/// 0 strictly outside. A bound of 0 or less for `limit` in clamp_symmetric means "no clamp".
template <class C>
struct clamped {
    C value;
    C grad;
};

// Written with selects, not branches, so that token loops vectorize.
template <class C>
GRPO_HOST_DEVICE GRPO_FORCEINLINE clamped<C> clamp_with_grad(C x, C lo, C hi) {
    const bool inside = !(x < lo) & !(x > hi); // & not &&: no branch
    return {select(x < lo, lo, select(x > hi, hi, x)), select(inside, C(1), C(0))};
}

/// clamp(x, -limit, limit) when limit > 0, identity otherwise.
template <class C>
GRPO_HOST_DEVICE GRPO_FORCEINLINE clamped<C> clamp_symmetric(C x, C limit) {
    const bool on = limit > C(0);
    const clamped<C> c = clamp_with_grad(x, -limit, limit);
    return {select(on, c.value, x), select(on, c.grad, C(1))};
}

} // namespace math
GRPO_NAMESPACE_END
