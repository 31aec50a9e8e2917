// SPDX-License-Identifier: MIT
// Kernels of the CUDA token_advantages, written against the block model of block.hpp (CUDA-free). The formulas
// are math/advantage.hpp's (discounted_return, whitening_scale, otb_energy, otb_baseline); the order of every
// sum is the CPU backend's where it matters for the bits (each group's sums over its rows in row order).
//
// Launches, all on the caller's stream:
//   0. memset of the flag, pivot and counter slots.
//   1. tok_validate_kernel (grid-stride over cells, then rows): the CPU's value checks; a bad value raises the
//      flag (the entry point reruns the CPU checks on a host copy for the exact message). For id-based prompt
//      groups it also writes the radix-sort keys (id) and values (row).
//   2. id-based prompt groups only (optimal token baseline): the stable radix sort and adv_offsets_kernel.
//   3. tok_row_kernel (a thread per row): G by the backward recursion; for the optimal baseline the realized
//      energy W forward, the row's unmasked count and (TIR) the column of each unmasked position.
//   4. tok_moments_kernel (three launches over chunks of cells, as adv_batch_kernel): count, mean and m2 of G
//      over the unmasked tokens (REINFORCE++'s whitening, the returns' figures).
//   5. tok_group_kernel (optimal baseline; a block per group, a thread per position): the sums of G W and W over
//      the group's rows in row order (the CPU's order: bit-identical sums), and the group's tail figures.
//   6. tok_write_kernel (a thread per row; twice): first every advantage and return checked against T (the
//      flag), then written, with the advantage in double kept in place of G for the statistics.
//   7. tok_stats_kernel (two launches over chunks of cells): the advantage figures and the record.
// Every kernel after the validation returns without writing when the flag is up, so the outputs stay untouched.
#pragma once

#include <cstddef>
#include <cstdint>

#include "../../types/advantage_types.hpp"
#include "advantage_kernels.hpp"
#include "block.hpp"

GRPO_NAMESPACE_BEGIN
namespace detail {
namespace cuda {

constexpr int tok_row_block = 128;
constexpr int tok_group_block = 128;

/// Doubles of the record: token_advantage_stats in field order (tokens, return_mean, return_std, advantage_mean,
/// advantage_std, advantage_min, advantage_max), then [7] the flag (0 = valid).
constexpr int tok_stats_fields = 8;

/// Slots: [0] the flag of bad inputs, [1] the first unmasked cell (cells - c, 0 = none), [2..5] last-block
/// counters, [6] the flag of values that do not fit T (the range check's own: it never reads it while other
/// blocks may set it).
enum tok_slot : int {
    tok_flag = 0,
    tok_pivot = 1,
    tok_counter_moments1 = 2,
    tok_counter_moments2 = 3,
    tok_counter_stats1 = 4,
    tok_counter_stats2 = 5,
    tok_range_flag = 6,
    tok_slots = 7
};
/// Scalars: G's count, mean and m2, the whitening scale, the advantages' mean, min and max.
enum tok_scalar : int {
    tok_count = 0,
    tok_mean = 1,
    tok_m2 = 2,
    tok_white_scale = 3,
    tok_adv_count = 4,
    tok_adv_mean = 5,
    tok_adv_min = 6,
    tok_adv_max = 7,
    tok_scalar_fields = 8
};

struct tok_params {
    index_t rows, cols, cells, k;
    index_t group_size; ///< contiguous prompt groups; 0 for id-based
    bool contiguous;
    token_estimator est;
    bool otb, tir, zero_tail;
    double gamma, whiten_epsilon, otb_epsilon;
};

template <class T>
struct tok_views {
    matrix_view<const T, device_space> rewards, mask, old_logp, sum_pi_squared, is_weights;
    vector_view<const T, device_space> baselines;
    vector_view<const std::int64_t, device_space> ids;
    matrix_view<T, device_space> advantages, returns;
};

/// Pointers into the workspace (256-byte aligned).
struct tok_scratch {
    double* g = nullptr;                   ///< cells: G, then the advantages in double
    double* energy = nullptr;              ///< cells (optimal baseline): W
    double* column = nullptr;              ///< cells (TIR): the column of row i's p-th unmasked token at [i * cols + p]
    double* length = nullptr;              ///< rows (optimal baseline): unmasked tokens
    double* sum_gw = nullptr;              ///< k * cols
    double* sum_w = nullptr;               ///< k * cols
    math::otb_group_tail* tails = nullptr; ///< k
    double* partials = nullptr;            ///< adv_chunks(cells) * adv_partial_fields
    double* scalars = nullptr;             ///< tok_scalar_fields
    double* stats = nullptr;               ///< tok_stats_fields
    unsigned long long* slots = nullptr;   ///< tok_slots
    std::uint64_t* keys_in = nullptr;      ///< rows (id-based only), then as in adv_scratch
    std::uint64_t* keys_out = nullptr;
    std::int64_t* rows_in = nullptr;
    std::int64_t* rows_out = nullptr;
    std::int64_t* begin = nullptr; ///< k
    std::int64_t* end = nullptr;
    void* sort_temp = nullptr;
    std::size_t sort_temp_bytes = 0;
};

/// Byte layout of the token scratch; `base` null = sizing only. Returns the total bytes.
inline std::size_t tok_layout(const tok_params& p, bool by_id, std::size_t sort_bytes, void* base, tok_scratch* s) {
    std::size_t off = 0;
    auto take = [&](std::size_t bytes) -> void* {
        const std::size_t at = off;
        off += (bytes + 255) / 256 * 256;
        return base ? static_cast<void*>(static_cast<char*>(base) + at) : nullptr;
    };
    const std::size_t cells = static_cast<std::size_t>(p.cells), d = sizeof(double);
    const std::size_t k = static_cast<std::size_t>(p.k), cols = static_cast<std::size_t>(p.cols);
    tok_scratch t;
    t.g = static_cast<double*>(take(cells * d));
    if (p.otb) {
        t.energy = static_cast<double*>(take(cells * d));
        if (p.tir) t.column = static_cast<double*>(take(cells * d));
        t.length = static_cast<double*>(take(static_cast<std::size_t>(p.rows) * d));
        t.sum_gw = static_cast<double*>(take(k * cols * d));
        t.sum_w = static_cast<double*>(take(k * cols * d));
        t.tails = static_cast<math::otb_group_tail*>(take(k * sizeof(math::otb_group_tail)));
    }
    t.partials = static_cast<double*>(take(static_cast<std::size_t>(adv_chunks(p.cells)) * adv_partial_fields * d));
    t.scalars = static_cast<double*>(take(tok_scalar_fields * d));
    t.stats = static_cast<double*>(take(tok_stats_fields * d));
    t.slots = static_cast<unsigned long long*>(take(tok_slots * sizeof(unsigned long long)));
    if (by_id) {
        const std::size_t rows = static_cast<std::size_t>(p.rows);
        t.keys_in = static_cast<std::uint64_t*>(take(rows * sizeof(std::uint64_t)));
        t.keys_out = static_cast<std::uint64_t*>(take(rows * sizeof(std::uint64_t)));
        t.rows_in = static_cast<std::int64_t*>(take(rows * sizeof(std::int64_t)));
        t.rows_out = static_cast<std::int64_t*>(take(rows * sizeof(std::int64_t)));
        t.begin = static_cast<std::int64_t*>(take(k * sizeof(std::int64_t)));
        t.end = static_cast<std::int64_t*>(take(k * sizeof(std::int64_t)));
        t.sort_temp = take(sort_bytes);
        t.sort_temp_bytes = sort_bytes;
    }
    if (s) *s = t;
    return off;
}

GRPO_HOST_DEVICE inline bool tok_failed(const tok_scratch& s) {
    return (s.slots[tok_flag] | s.slots[tok_range_flag]) != 0;
}

template <class T>
GRPO_HOST_DEVICE inline bool tok_valid(const tok_views<T>& v, index_t i, index_t t) {
    return static_cast<double>(v.mask(i, t)) != 0;
}

/// The CPU's value checks (check_token_advantage_call), any failure raising the flag.
template <class T>
struct tok_validate_kernel {
    static constexpr int block = adv_elem_block;
    tok_views<T> v;
    tok_params p;
    tok_scratch s;

    template <class B>
    GRPO_HOST_DEVICE void operator()(B& b) const {
        const double inf = infinity();
        auto finite = [&](double x) { return adv_abs(x) < inf; };
        bool bad = false;
        for (index_t c = grid_first(b); c < p.cells; c += grid_stride(b)) {
            const index_t i = c / p.cols, t = c % p.cols;
            const double m = static_cast<double>(v.mask(i, t));
            if (m != 0 && m != 1) bad = true;
            if (m == 0) continue; // masked tokens are never read
            if (!finite(static_cast<double>(v.rewards(i, t)))) bad = true;
            if (!p.otb) continue;
            const double lp = static_cast<double>(v.old_logp(i, t)), sq = static_cast<double>(v.sum_pi_squared(i, t));
            if (!(lp <= 0) || !finite(lp) || !(sq >= 0 && sq <= 1)) bad = true;
            if (v.is_weights.present()) {
                const double rho = static_cast<double>(v.is_weights(i, t));
                if (!(rho >= 0) || !finite(rho)) bad = true;
            }
        }
        for (index_t i = grid_first(b); i < p.rows; i += grid_stride(b)) {
            if (p.est == token_estimator::remax && !finite(static_cast<double>(v.baselines[i]))) bad = true;
            if (p.otb && !p.contiguous) {
                const std::int64_t id = v.ids[i];
                const bool ok = id >= 0 && id < p.k;
                if (!ok) bad = true;
                s.keys_in[i] = ok ? static_cast<std::uint64_t>(id) : static_cast<std::uint64_t>(p.k);
                s.rows_in[i] = static_cast<std::int64_t>(i);
            }
        }
        if (bad) b.atomic_max(&s.slots[tok_flag], 1);
    }
};

/// A thread per row: G (math::discounted_return, as the CPU), and for the optimal baseline W, the unmasked
/// count and (TIR) the columns of the unmasked positions.
template <class T>
struct tok_row_kernel {
    static constexpr int block = tok_row_block;
    tok_views<T> v;
    tok_params p;
    tok_scratch s;

    template <class B>
    GRPO_HOST_DEVICE void operator()(B& b) const {
        if (tok_failed(s)) return;
        const bool plain_sum = p.est != token_estimator::reinforce_plus_plus; // remax, otb: no discount or restart
        for (index_t i = grid_first(b); i < p.rows; i += grid_stride(b)) {
            double* g = s.g + i * p.cols;
            double carry = 0;
            for (index_t t = p.cols - 1; t >= 0; --t) {
                const bool valid = tok_valid(v, i, t);
                const double r = valid ? static_cast<double>(v.rewards(i, t)) : 0.0;
                const math::return_step step = math::discounted_return(r, plain_sum ? 1.0 : p.gamma, carry, valid);
                carry = plain_sum ? step.value : step.carry;
                g[t] = valid ? step.value : 0.0;
            }
            if (!p.otb) continue;
            double w = 0;
            index_t n = 0;
            for (index_t t = 0; t < p.cols; ++t) {
                if (tok_valid(v, i, t)) {
                    w += math::otb_energy(static_cast<double>(v.old_logp(i, t)),
                                          static_cast<double>(v.sum_pi_squared(i, t)),
                                          v.is_weights.present() ? static_cast<double>(v.is_weights(i, t)) : 1.0);
                    if (p.tir) s.column[i * p.cols + n] = static_cast<double>(t);
                    ++n;
                }
                s.energy[i * p.cols + t] = w;
            }
            s.length[i] = static_cast<double>(n);
        }
    }
};

/// Count, mean and m2 of G over the unmasked cells, in three launches (`phase` 0: the pivot, the first
/// unmasked cell; 1: counts and shifted sums; 2: squared deviations), chunk partials combined in chunk order
/// by the last block. REINFORCE++ with fewer than 2 unmasked tokens raises the flag.
template <class T>
struct tok_moments_kernel {
    static constexpr int block = adv_reduce_block;
    tok_views<T> v;
    tok_params p;
    tok_scratch s;
    int phase;

    template <class B>
    GRPO_HOST_DEVICE void operator()(B& b) const {
        if (tok_failed(s)) return;
        const index_t chunks = adv_chunks(p.cells);
        auto valid = [&](index_t c) { return tok_valid(v, c / p.cols, c % p.cols); };
        if (phase == 0) {
            for (index_t c = b.block(); c < chunks; c += b.blocks()) {
                const adv_chunk_range r = adv_chunk_of(c, p.cells);
                const index_t first = adv_block_first(b, r.lo, r.hi, valid);
                if (b.thread() == 0 && first < r.hi)
                    b.atomic_max(&s.slots[tok_pivot], static_cast<unsigned long long>(p.cells - first));
            }
            return;
        }
        const index_t pivot_cell = adv_pivot_row(s.slots, tok_pivot, p.cells);
        const double pivot = pivot_cell >= 0 ? s.g[pivot_cell] : 0.0;
        if (phase == 1) {
            double tot[2]; // count and shifted sum of G
            const bool last = adv_reduce_chunks(
                b, s.partials, &s.slots[tok_counter_moments1], p.cells, "ss",
                [&](index_t lo, index_t hi, double* part) {
                    auto m = math::group_moments<double>::with_pivot(pivot);
                    for (index_t q = lo + b.thread(); q < hi; q += b.threads())
                        if (valid(q)) m.add_shifted(s.g[q]);
                    part[0] = m.count, part[1] = m.shifted_sum;
                },
                tot);
            if (!last) return;
            auto m = math::group_moments<double>::with_pivot(pivot);
            m.count = tot[0];
            m.shifted_sum = tot[1];
            s.scalars[tok_count] = m.count;
            s.scalars[tok_mean] = m.mean();
            // CPU: "at least 2 unmasked tokens (verl masked_whiten needs 2)"
            if (p.est == token_estimator::reinforce_plus_plus && !(m.count > 1)) s.slots[tok_flag] = 1;
            return;
        }
        const double mean = s.scalars[tok_mean];
        double tot[1]; // m2 of G
        const bool last = adv_reduce_chunks(
            b, s.partials, &s.slots[tok_counter_moments2], p.cells, "s",
            [&](index_t lo, index_t hi, double* part) {
                math::group_moments<double> d;
                for (index_t q = lo + b.thread(); q < hi; q += b.threads())
                    if (valid(q)) d.add_second_pass(s.g[q], mean);
                part[0] = d.m2;
            },
            tot);
        if (!last) return;
        s.scalars[tok_m2] = tot[0];
        s.scalars[tok_white_scale] = p.est == token_estimator::reinforce_plus_plus
                                         ? math::whitening_scale(tot[0], s.scalars[tok_count], p.whiten_epsilon)
                                         : 1.0;
    }
};

/// Row of the q-th member of prompt group j (row order within the group).
GRPO_HOST_DEVICE inline index_t tok_member(const tok_params& p, const tok_scratch& s, index_t j, index_t q) {
    return p.contiguous ? j * p.group_size + q : static_cast<index_t>(s.rows_out[s.begin[j] + q]);
}
GRPO_HOST_DEVICE inline index_t tok_group_size(const tok_params& p, const tok_scratch& s, index_t j) {
    return p.contiguous ? p.group_size : static_cast<index_t>(s.end[j] - s.begin[j]);
}
template <class T>
GRPO_HOST_DEVICE inline index_t tok_group_of(const tok_params& p, const tok_views<T>& v, index_t i) {
    return static_cast<index_t>(math::group_of_row(i, p.group_size, p.contiguous ? 0 : v.ids[i]));
}

/// The optimal baseline's per-group sums: a block per group, a thread per position, each summing over the
/// group's members in row order (members: every row, or for TIR the rows with an unmasked token); thread 0
/// also keeps the group's tail figures.
template <class T>
struct tok_group_kernel {
    static constexpr int block = tok_group_block;
    tok_views<T> v;
    tok_params p;
    tok_scratch s;

    template <class B>
    GRPO_HOST_DEVICE void operator()(B& b) const {
        if (tok_failed(s)) return;
        for (index_t j = b.block(); j < p.k; j += b.blocks()) {
            const index_t size = tok_group_size(p, s, j);
            for (index_t pos = b.thread(); pos < p.cols; pos += b.threads()) {
                double gw = 0, w = 0;
                for (index_t q = 0; q < size; ++q) {
                    const index_t i = tok_member(p, s, j, q);
                    index_t t = pos;
                    if (p.tir) {
                        if (!(s.length[i] > static_cast<double>(pos))) continue;
                        t = static_cast<index_t>(s.column[i * p.cols + pos]);
                    } else if (!tok_valid(v, i, t)) {
                        continue;
                    }
                    gw += s.g[i * p.cols + t] * s.energy[i * p.cols + t];
                    w += s.energy[i * p.cols + t];
                }
                s.sum_gw[j * p.cols + pos] = gw;
                s.sum_w[j * p.cols + pos] = w;
            }
            if (b.thread() != 0) continue;
            math::otb_group_tail tail; // in row order, as the CPU backend adds them
            for (index_t q = 0; q < size; ++q) {
                const index_t i = tok_member(p, s, j, q);
                if (!(p.tir && s.length[i] == 0)) tail.add(s.length[i], static_cast<double>(i));
            }
            s.tails[j] = tail;
        }
    }
};

/// Advantage of unmasked (i, t) at position `pos` (the column, or for TIR the unmasked index), from G.
template <class T>
GRPO_HOST_DEVICE inline double tok_advantage(const tok_params& p, const tok_views<T>& v, const tok_scratch& s,
                                             index_t i, index_t pos, double g) {
    math::token_advantage_params tp;
    tp.est = p.est;
    tp.white_mean = s.scalars[tok_mean];
    tp.white_scale = s.scalars[tok_white_scale];
    double baseline = 0;
    if (p.est == token_estimator::remax) baseline = static_cast<double>(v.baselines[i]);
    if (p.otb) {
        const index_t j = tok_group_of(p, v, i);
        if (!s.tails[j].no_baseline(static_cast<double>(i), static_cast<double>(pos), p.zero_tail))
            baseline = math::otb_baseline(s.sum_gw[j * p.cols + pos], s.sum_w[j * p.cols + pos], p.otb_epsilon);
    }
    return math::token_advantage(tp, g, baseline);
}

/// A thread per row. `check`: every unmasked token's advantage and return must fit T (else the flag, and
/// nothing is written); otherwise the outputs are written (0 at masked tokens) and the advantages in double
/// replace G in the scratch for the statistics.
template <class T>
struct tok_write_kernel {
    static constexpr int block = tok_row_block;
    tok_views<T> v;
    tok_params p;
    tok_scratch s;
    bool check;

    template <class B>
    GRPO_HOST_DEVICE void operator()(B& b) const {
        // The check pass reads only the input flag: it sets the range flag itself, from any block at any time.
        if (check ? s.slots[tok_flag] != 0 : tok_failed(s)) return;
        const double limit = adv_type_max<T>();
        bool bad = false;
        for (index_t i = grid_first(b); i < p.rows; i += grid_stride(b)) {
            double* g = s.g + i * p.cols;
            index_t pos = 0;
            for (index_t t = 0; t < p.cols; ++t) {
                const bool valid = tok_valid(v, i, t);
                const double x = g[t];
                const double a = valid ? tok_advantage(p, v, s, i, p.tir ? pos++ : t, x) : 0.0;
                if (check) {
                    if (valid && (!(adv_abs(a) <= limit) || !(adv_abs(x) <= limit))) bad = true;
                    continue;
                }
                v.advantages(i, t) = static_cast<T>(a);
                if (v.returns.present()) v.returns(i, t) = static_cast<T>(x);
                g[t] = a;
            }
        }
        if (bad) b.atomic_max(&s.slots[tok_range_flag], 1);
    }
};

/// The record, in two launches over chunks of cells (as adv_stats_kernel): phase 1 the count, shifted sum, min
/// and max of the advantages in double, phase 2 the squared deviations of the stored ones, then the record.
/// With the flag up, block 0 writes a record with only the flag.
template <class T>
struct tok_stats_kernel {
    static constexpr int block = adv_reduce_block;
    tok_views<T> v;
    tok_params p;
    tok_scratch s;
    double* stats;
    int phase;

    template <class B>
    GRPO_HOST_DEVICE void operator()(B& b) const {
        if (tok_failed(s)) {
            if (phase == 1 && b.block() == 0 && b.thread() == 0) {
                for (int f = 0; f < tok_stats_fields; ++f) stats[f] = 0;
                stats[tok_stats_fields - 1] = 1;
            }
            return;
        }
        auto valid = [&](index_t c) { return tok_valid(v, c / p.cols, c % p.cols); };
        const index_t pivot_cell = adv_pivot_row(s.slots, tok_pivot, p.cells);
        if (phase == 1) {
            double f[5];
            if (!adv_figures_first_pass(
                    b, s.partials, &s.slots[tok_counter_stats1], p.cells, pivot_cell >= 0 ? s.g[pivot_cell] : 0.0,
                    valid, [&](index_t q) { return s.g[q]; }, [](index_t) { return 0.0; }, f))
                return;
            s.scalars[tok_adv_count] = f[0];
            s.scalars[tok_adv_mean] = f[1];
            s.scalars[tok_adv_min] = f[2];
            s.scalars[tok_adv_max] = f[3];
            return;
        }
        const double mean = s.scalars[tok_adv_mean];
        double m2 = 0;
        if (!adv_figures_second_pass(
                b, s.partials, &s.slots[tok_counter_stats2], p.cells, mean, valid,
                [&](index_t q) { return static_cast<double>(v.advantages(q / p.cols, q % p.cols)); }, m2))
            return;
        math::group_moments<double> ret, adv;
        ret.count = s.scalars[tok_count];
        ret.m2 = s.scalars[tok_m2];
        adv.count = s.scalars[tok_adv_count];
        adv.m2 = m2;
        double st[tok_stats_fields] = {};
        st[0] = ret.count;
        st[1] = s.scalars[tok_mean];
        st[2] = ret.std(std_estimator::unbiased);
        if (adv.count > 0) {
            st[3] = mean;
            st[4] = adv.std(std_estimator::unbiased);
            st[5] = s.scalars[tok_adv_min];
            st[6] = s.scalars[tok_adv_max];
        }
        for (int f = 0; f < tok_stats_fields; ++f) stats[f] = st[f];
    }
};

} // namespace cuda
} // namespace detail
GRPO_NAMESPACE_END
