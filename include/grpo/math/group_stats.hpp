// SPDX-License-Identifier: MIT
// Group statistics: the group of a row, two-pass pivot-shifted moments and the zero-variance test, written once
// for every entry point that normalizes within groups (advantages, reward combination, dynamic sampling,
// process rewards, the trainer's reward figures) and for both backends.
#pragma once

#include <cstdint>

#include "common.hpp"

GRPO_NAMESPACE_BEGIN

/// Which standard deviation: sample (n - 1, every peer's default) or population (n).
enum class std_estimator {
    unbiased, ///< Bessel-corrected, torch.std default (TRL, verl, OpenRLHF)
    biased,   ///< population std, torch.std(unbiased=False)
};

namespace math {

/// The group of row i: i / size for contiguous groups (size > 0), else the row's id.
GRPO_HOST_DEVICE inline std::int64_t group_of_row(std::int64_t i, std::int64_t contiguous_size, std::int64_t id) {
    return contiguous_size > 0 ? i / contiguous_size : id;
}

/// Two-pass statistics of one group, shifted by the group's first value so that a constant group has
/// exactly zero deviation (sum(x)/n does not round-trip: 0.1+0.1+0.1 != 0.3).
template <class C>
struct group_moments {
    C count = 0;
    C pivot = 0;       ///< first value seen
    C shifted_sum = 0; ///< sum of (x - pivot)
    C m2 = 0;          ///< sum of (x - mean)^2, filled by the second pass

    /// First pass; `weight` (default 1: a count) makes `count` a total weight, as batch whitening needs.
    /// With weight 1 every operation is the unweighted one (1 * y == y exactly).
    GRPO_HOST_DEVICE void add_first_pass(C x, C weight = C(1)) {
        if (count == 0) pivot = x;
        add_shifted(x, weight);
    }
    /// First-pass accumulation against a pivot fixed beforehand (parallel backends: every partial of one
    /// group uses the group's first value as pivot, then the partial count and shifted_sum are summed).
    GRPO_HOST_DEVICE void add_shifted(C x, C weight = C(1)) {
        count += weight;
        shifted_sum += weight * (x - pivot);
    }
    /// Moments with a preset pivot and nothing accumulated yet.
    GRPO_HOST_DEVICE static group_moments with_pivot(C p) {
        group_moments m;
        m.pivot = p;
        return m;
    }
    GRPO_HOST_DEVICE C mean() const { return count > 0 ? pivot + shifted_sum / count : C(0); }
    GRPO_HOST_DEVICE void add_second_pass(C x, C mean_value, C weight = C(1)) {
        const C d = x - mean_value;
        m2 += weight * d * d;
    }
    /// Every value equal, or fewer than two (m2 is then exactly 0): no learning signal (TRL
    /// frac_reward_zero_std, DAPO dynamic sampling). The one zero-variance test of the library. A NaN m2
    /// (statistics that overflowed double) is not zero variance: the estimators report the overflow.
    GRPO_HOST_DEVICE bool zero_variance() const { return m2 == C(0); }
    /// 0 for fewer than two values (or one with the biased estimator's single value).
    GRPO_HOST_DEVICE C std(std_estimator e) const {
        const C dof = e == std_estimator::unbiased ? count - 1 : count;
        return dof > 0 ? math::sqrt(m2 / dof) : C(0);
    }
};

/// What a group reports (compute_advantages' group_outputs): mean, std with the given estimator, the
/// zero-variance flag and the count of values.
struct group_summary {
    double mean, std;
    bool zero_variance;
    std::int64_t count;
};
GRPO_HOST_DEVICE inline group_summary summarize(const group_moments<double>& m, std_estimator e) {
    return {m.mean(), m.std(e), m.zero_variance(), static_cast<std::int64_t>(m.count)};
}

} // namespace math
GRPO_NAMESPACE_END
