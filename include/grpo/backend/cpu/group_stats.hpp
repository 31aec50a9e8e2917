// SPDX-License-Identifier: MIT
// The CPU's group statistics: two passes of math::group_moments over values spread across groups, in a fixed
// order (bit-identical on every run), the per-group outputs, and the batch figures of advantage_stats.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "../../core/exec.hpp"
#include "../../types/advantage_types.hpp"

GRPO_NAMESPACE_BEGIN
namespace detail {
namespace cpu {

using moments = math::group_moments<double>;

/// Two-pass, pivot-shifted moments of values spread over `slots` (a group, or a group and a reward function).
/// `each(emit)` must call emit(slot, x) for every value, in the same order both times it is called; `batch`,
/// when given, also gets every value. The slots start empty (moments{}).
template <class Each>
void two_pass_moments(const Each& each, moments* slots, moments* batch = nullptr) {
    each([&](index_t s, double x) {
        slots[s].add_first_pass(x);
        if (batch) batch->add_first_pass(x);
    });
    const double batch_mean = batch ? batch->mean() : 0.0;
    each([&](index_t s, double x) {
        moments& m = slots[s];
        m.add_second_pass(x, m.mean());
        if (batch) batch->add_second_pass(x, batch_mean);
    });
}

/// The moments of the scored (not NaN) values of x per group, in row order: slots[group_of(g, i)], and the
/// batch's when `batch` is given. `slots` holds g.num_groups(n) empty moments.
template <class T>
void group_moments_of(vector_view<const T> x, const groups& g, moments* slots, moments* batch = nullptr) {
    two_pass_moments(
        [&](auto&& emit) {
            for (index_t i = 0; i < x.size(); ++i) {
                const double v = static_cast<double>(x[i]);
                if (!std::isnan(v)) emit(group_of(g, i), v);
            }
        },
        slots, batch);
}

/// group_moments_of for large batches, the same bits: contiguous groups each in one task of the pool (a group's
/// values are still added in row order), id groups in row order with each group's mean taken once into `means`
/// (g.num_groups(n) doubles) rather than at every value; then the batch's moments in row order.
template <class T>
void group_moments_of(const exec::host& ex, vector_view<const T> x, const groups& g, moments* slots, moments& batch,
                      double* means) {
    const index_t n = x.size(), k = g.num_groups(n);
    const auto value = [&](index_t i) { return static_cast<double>(x[i]); };
    if (g.is_contiguous()) {
        const index_t size = g.size();
        parallel_for(ex, k, std::max<index_t>(1, 16384 / size), [&](index_t first, index_t last) {
            for (index_t j = first; j < last; ++j) {
                moments m = slots[j]; // (a local: the sums stay in registers)
                const index_t begin = j * size, end = std::min(n, begin + size);
                for (index_t i = begin; i < end; ++i)
                    if (!std::isnan(value(i))) m.add_first_pass(value(i));
                const double mean = m.mean();
                for (index_t i = begin; i < end; ++i)
                    if (!std::isnan(value(i))) m.add_second_pass(value(i), mean);
                slots[j] = m;
            }
        });
    } else {
        for (index_t i = 0; i < n; ++i)
            if (!std::isnan(value(i))) slots[group_of(g, i)].add_first_pass(value(i));
        for (index_t j = 0; j < k; ++j) means[j] = slots[j].mean();
        for (index_t i = 0; i < n; ++i)
            if (!std::isnan(value(i))) {
                const index_t j = group_of(g, i);
                slots[j].add_second_pass(value(i), means[j]);
            }
    }
    moments b = batch;
    for (index_t i = 0; i < n; ++i)
        if (!std::isnan(value(i))) b.add_first_pass(value(i));
    const double batch_mean = b.mean();
    for (index_t i = 0; i < n; ++i)
        if (!std::isnan(value(i))) b.add_second_pass(value(i), batch_mean);
    batch = b;
}

/// Writes the requested per-group outputs of k groups and returns how many have zero variance.
inline index_t write_group_outputs(const moments* slots, index_t k, std_estimator e, const group_outputs& go) {
    index_t zero = 0;
    for (index_t j = 0; j < k; ++j) {
        const math::group_summary s = math::summarize(slots[j], e);
        zero += s.zero_variance;
        if (go.mean.present()) go.mean[j] = s.mean;
        if (go.std.present()) go.std[j] = s.std;
        if (go.zero_variance.present()) go.zero_variance[j] = s.zero_variance;
        if (go.count.present()) go.count[j] = s.count;
    }
    return zero;
}

/// advantage_stats' group and reward figures: k groups, how many have zero variance, and the batch moments of
/// the scored rewards.
inline void set_reward_figures(advantage_stats& st, index_t k, index_t zero_variance_groups, const moments& batch,
                               std_estimator e) {
    st.num_groups = k;
    st.zero_variance_groups = zero_variance_groups;
    st.zero_variance_fraction = k > 0 ? static_cast<double>(zero_variance_groups) / static_cast<double>(k) : 0;
    st.scored = static_cast<index_t>(batch.count);
    st.reward_mean = batch.mean();
    st.reward_std = batch.std(e);
}

/// advantage_stats' advantage figures, in two passes like every statistic here: first() with each advantage
/// in double, then second() with each as stored (after rounding to the output type), in the same order.
struct advantage_figures {
    moments m;
    double min = std::numeric_limits<double>::infinity(), max = -std::numeric_limits<double>::infinity();
    double mean = 0;

    void first(double a) {
        m.add_first_pass(a);
        min = std::min(min, a);
        max = std::max(max, a);
    }
    void end_first() { mean = m.mean(); }
    void second(double a) { m.add_second_pass(a, mean); }
    void write(advantage_stats& st, std_estimator e) const {
        if (!(m.count > 0)) return;
        st.advantage_mean = mean;
        st.advantage_std = m.std(e);
        st.advantage_min = min;
        st.advantage_max = max;
    }
};

} // namespace cpu
} // namespace detail
GRPO_NAMESPACE_END
