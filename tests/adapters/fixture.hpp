// SPDX-License-Identifier: MIT
// The loss every adapter test computes: fixed inputs (3 completions x 5 tokens, masked positions, KL on),
// evaluated once through raw row-major pointers. An adapter is right when the same numbers, laid out in a
// framework's storage of any layout, give the same loss and the same gradient.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include <grpo/grpo.hpp>

#include "catch.hpp"

namespace grpo_adapter_test {

using grpo::index_t;

template <class T>
struct reference_loss {
    static constexpr index_t rows = 3, cols = 5;
    std::vector<T> logp, old_logp, ref_logp, adv, mask, adv_seq;
    std::vector<std::int64_t> lengths;
    std::vector<T> grad, grad_seq; // reference gradients: per-token advantages / per-sequence + lengths
    grpo::loss_stats stats{}, stats_seq{};

    static grpo::loss_config config() {
        grpo::loss_config c;
        c.beta = 0.04;
        c.epsilon_high = 0.28;
        return c;
    }

    reference_loss()
        : logp(rows * cols),
          old_logp(rows * cols),
          ref_logp(rows * cols),
          adv(rows * cols),
          mask(rows * cols),
          adv_seq{T(1.5), T(-0.5), T(0.25)},
          lengths{5, 3, 4},
          grad(rows * cols, T(-9)),
          grad_seq(rows * cols, T(-9)) {
        for (index_t k = 0; k < rows * cols; ++k) {
            const double x = static_cast<double>(k);
            logp[k] = T(-0.1 - 0.13 * x);
            old_logp[k] = T(-0.1 - 0.13 * x + 0.3 * std::sin(1.7 * x)); // ratios ~[0.74, 1.35]: some clipped
            ref_logp[k] = T(-0.1 - 0.13 * x + 0.2 * std::cos(0.9 * x));
            adv[k] = T(std::sin(0.7 * x + 0.3) * 1.5);
            mask[k] = (k % 4 == 3) ? T(0) : T(1);
        }
        grpo::loss_inputs<T> in;
        in.logp = grpo::matrix_view<const T>(logp.data(), rows, cols);
        in.old_logp = grpo::matrix_view<const T>(old_logp.data(), rows, cols);
        in.ref_logp = grpo::matrix_view<const T>(ref_logp.data(), rows, cols);
        in.advantages = grpo::matrix_view<const T>(adv.data(), rows, cols);
        in.mask = grpo::matrix_view<const T>(mask.data(), rows, cols);
        grpo::loss_outputs<T> out;
        out.grad_logp = grpo::matrix_view<T>(grad.data(), rows, cols);
        stats = grpo::loss_and_grad(grpo::exec::host{}, in, out, config());

        grpo::loss_inputs<T> in2 = in;
        in2.mask = {};
        in2.advantages = grpo::broadcast_to_tokens(grpo::vector_view<const T>(adv_seq.data(), rows), cols);
        in2.lengths = grpo::vector_view<const std::int64_t>(lengths.data(), rows);
        out.grad_logp = grpo::matrix_view<T>(grad_seq.data(), rows, cols);
        stats_seq = grpo::loss_and_grad(grpo::exec::host{}, in2, out, config());
    }

    /// Writes the row-major values v into any object with (i, j) access (Eigen or xtensor).
    template <class M>
    static void fill(M&& m, const std::vector<T>& v) {
        for (index_t i = 0; i < rows; ++i)
            for (index_t j = 0; j < cols; ++j) m(i, j) = v[static_cast<std::size_t>(i * cols + j)];
    }
    /// Writes the row-major values v into a raw buffer with the given strides.
    static void fill(T* p, index_t row_stride, index_t col_stride, const std::vector<T>& v) {
        for (index_t i = 0; i < rows; ++i)
            for (index_t j = 0; j < cols; ++j)
                p[i * row_stride + j * col_stride] = v[static_cast<std::size_t>(i * cols + j)];
    }
};

template <class T>
inline double tolerance() {
    return sizeof(T) == 4 ? 1e-6 : 1e-13;
}

/// An adapter's layout may take another CPU version of the pass than the row-major reference (contiguous rows run
/// the FMA copies, strided ones the baseline): the two agree within docs/numerics.md's cross-version tolerance,
/// 16 eps * max(1, max |x|), as an absolute margin.
template <class T>
inline double version_margin(double largest) {
    return 16 * static_cast<double>(std::numeric_limits<T>::epsilon()) * std::fmax(1.0, largest);
}

/// The loss and the gradient computed through the adapter match the raw-pointer reference. `grad` is any
/// object with (i, j) access over the storage the adapter's output view wrote into.
template <class T, class G>
void check_matches(const grpo::loss_stats& s, const G& grad, const grpo::loss_stats& ref_stats,
                   const std::vector<T>& ref_grad) {
    using R = reference_loss<T>;
    CHECK(s.loss ==
          Approx(ref_stats.loss).epsilon(tolerance<T>()).margin(version_margin<T>(std::fabs(ref_stats.loss))));
    CHECK(s.kl_loss ==
          Approx(ref_stats.kl_loss).epsilon(tolerance<T>()).margin(version_margin<T>(std::fabs(ref_stats.kl_loss))));
    double largest = 0;
    for (const T g : ref_grad) largest = std::fmax(largest, std::fabs(static_cast<double>(g)));
    CHECK(s.token_count == ref_stats.token_count);
    CHECK(s.clip_fraction_region == ref_stats.clip_fraction_region);
    for (index_t i = 0; i < R::rows; ++i)
        for (index_t j = 0; j < R::cols; ++j) {
            INFO("grad(" << i << ", " << j << ")");
            CHECK(double(grad(i, j)) == Approx(double(ref_grad[static_cast<std::size_t>(i * R::cols + j)]))
                                            .epsilon(tolerance<T>())
                                            .margin(version_margin<T>(largest)));
        }
}

} // namespace grpo_adapter_test
