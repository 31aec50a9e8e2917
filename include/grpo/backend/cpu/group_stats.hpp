// SPDX-License-Identifier: MIT
// The CPU's group statistics: two passes of math::group_moments over values spread across groups, in a fixed
// order (bit-identical on every run and for any pool size: row order per group, row_chunks for a whole batch),
// the per-group outputs, and the batch figures of advantage_stats.
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

/// Sums over a batch that the pool shares and that still give the same bits for any pool size: the rows split
/// into fixed chunks (at least min_rows each, at most max_chunks; they depend on n alone), each chunk summed in
/// `lanes` interleaved partial sums (row begin + 4 q + l into lane l: independent chains of additions instead of
/// one), the lanes added in order, then the chunks in order.
struct row_chunks {
    static constexpr index_t max_chunks = 64, min_rows = 16384;
    static constexpr int lanes = 4;
    index_t n, rows, count;
    // (Divisions rounded up without forming total + divisor - 1, which could overflow.)
    explicit row_chunks(index_t total)
        : n(total),
          rows(std::max(min_rows, total / max_chunks + (total % max_chunks != 0))),
          count(total / rows + (total % rows != 0)) {}
    /// f(chunk, begin, end) for every chunk, spread over the pool.
    template <class F>
    void for_each(const exec::host& ex, const F& f) const {
        parallel_for(ex, count, 1, [&](index_t first, index_t last) {
            for (index_t c = first; c < last; ++c) f(c, c * rows, c * rows + std::min(rows, n - c * rows));
        });
    }
    /// Calls add(lane, i) for every row of [begin, end) in lane order within each group of `lanes` rows.
    template <class Add>
    static void for_lanes(index_t begin, index_t end, const Add& add) {
        index_t i = begin;
        for (; i + lanes <= end; i += lanes)
            for (int l = 0; l < lanes; ++l) add(l, i + l);
        for (int l = 0; i < end; ++i, ++l) add(l, i);
    }
};

/// The first pass of weighted, pivot-shifted moments over the rows whose value(i) is not NaN, in row_chunks; the
/// pivot is the first such value of non-zero weight, as add_first_pass picks it (and the device: a constant
/// batch after rows of weight 0 then has m2 exactly 0). Also their minimum and maximum (in row order: the first
/// of equal values, so -0 and +0 come out as the serial loop's).
template <class Value, class Weight>
moments chunked_first_pass(const exec::host& ex, index_t n, const Value& value, const Weight& weight,
                           double* min_value = nullptr, double* max_value = nullptr) {
    index_t first = 0;
    while (first < n && (std::isnan(value(first)) || weight(first) == 0)) ++first;
    if (first == n) return moments{}; // (no weight: count 0, mean 0)
    const double pivot = value(first);
    struct part {
        double count, shifted_sum, min, max;
    };
    part parts[row_chunks::max_chunks];
    const row_chunks chunks(n);
    chunks.for_each(ex, [&](index_t c, index_t begin, index_t end) {
        double count[row_chunks::lanes] = {}, sum[row_chunks::lanes] = {};
        double lo = std::numeric_limits<double>::infinity(), hi = -lo;
        row_chunks::for_lanes(begin, end, [&](int l, index_t i) {
            const double x = value(i);
            if (std::isnan(x)) return;
            const double w = weight(i);
            count[l] += w;
            sum[l] += w * (x - pivot);
            lo = std::min(lo, x);
            hi = std::max(hi, x);
        });
        part& p = parts[c];
        p = {count[0], sum[0], lo, hi};
        for (int l = 1; l < row_chunks::lanes; ++l) {
            p.count += count[l];
            p.shifted_sum += sum[l];
        }
    });
    moments m = moments::with_pivot(pivot);
    double lo = std::numeric_limits<double>::infinity(), hi = -lo;
    for (index_t c = 0; c < chunks.count; ++c) {
        m.count += parts[c].count;
        m.shifted_sum += parts[c].shifted_sum;
        lo = std::min(lo, parts[c].min);
        hi = std::max(hi, parts[c].max);
    }
    if (min_value) *min_value = lo;
    if (max_value) *max_value = hi;
    return m;
}

/// The second pass: sum of weight(i) (value(i) - mean)^2 over the rows whose value is not NaN, in row_chunks.
template <class Value, class Weight>
double chunked_second_pass(const exec::host& ex, index_t n, const Value& value, const Weight& weight, double mean) {
    double parts[row_chunks::max_chunks];
    const row_chunks chunks(n);
    chunks.for_each(ex, [&](index_t c, index_t begin, index_t end) {
        moments lane[row_chunks::lanes];
        row_chunks::for_lanes(begin, end, [&](int l, index_t i) {
            const double x = value(i);
            if (!std::isnan(x)) lane[l].add_second_pass(x, mean, weight(i));
        });
        parts[c] = lane[0].m2;
        for (int l = 1; l < row_chunks::lanes; ++l) parts[c] += lane[l].m2;
    });
    double m2 = 0;
    for (index_t c = 0; c < chunks.count; ++c) m2 += parts[c];
    return m2;
}

/// Both passes (weight 1 unless given).
template <class Value>
moments chunked_moments(const exec::host& ex, index_t n, const Value& value) {
    const auto one = [](index_t) { return 1.0; };
    moments m = chunked_first_pass(ex, n, value, one);
    m.m2 = chunked_second_pass(ex, n, value, one, m.mean());
    return m;
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

/// group_moments_of for large batches, with the pool: the same bits per group (contiguous groups each in one
/// task, their values added in row order; id groups in row order with each group's mean taken once into `means`,
/// g.num_groups(n) doubles, rather than at every value), and the batch's moments in row_chunks.
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
    batch = chunked_moments(ex, n, value);
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
/// in double, then second() with each as stored (after rounding to the output type), in the same order (or
/// m, min and max from chunked_first_pass, then m.m2 from chunked_second_pass).
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
