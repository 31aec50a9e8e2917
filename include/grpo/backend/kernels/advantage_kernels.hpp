// SPDX-License-Identifier: MIT
// Kernels of the CUDA compute_advantages, written against the block model of block.hpp (CUDA-free).
//
// Launches, all on the caller's stream, no host synchronization:
//   0. memset of the error slots.
//   1. adv_validate_kernel  (grid-stride over rows): ids in [0, k), rewards finite (or NaN when ignored), token
//                           weights finite >= 0; the first bad index per kind is kept with an integer atomic
//                           max (order-independent result). For id-based groups it also writes the sort keys
//                           (id) and values (row index).
//   2. id-based groups only: a stable radix sort of (id, row) pairs (rows of a group stay in row order), a
//                           memset and adv_offsets_kernel -> [begin, end) of every group.
//   3. adv_group_kernel     (a block per group): pivot = first scored reward of the group in row order, then
//                           math::group_moments (count, shifted sum, m2) with block reductions in double; for
//                           passk the best reward, its first row and the runner-up, for opo the length-weighted
//                           moments (math::group_extras).
//   4. adv_batch_kernel     (three launches, grid-stride over chunks of adv_chunk rows): batch moments (same
//                           pivot rule), batch std and, for group_centered_batch_whitened, the whitening
//                           statistics (weighted math::group_moments, pivot = centered value of the first scored
//                           row of non-zero weight, as on the CPU; a constant batch whitens to exactly 0); gpg's
//                           alpha. Phase 0 finds the pivots (integer atomic max), phase 1 the counts and shifted
//                           sums, phase 2 the squared deviations; each chunk's partial is one block reduction,
//                           and the last block of phases 1 and 2 combines the chunk partials in chunk order.
//   5. adv_range_kernel, adv_write_kernel (grid-stride over max(rows, groups)): math::completion_advantage per
//                           row (first checked against T, then written), the optional per-group outputs.
//   6. adv_stats_kernel     (two launches, chunks as in 4): advantage_stats (or the error record) into the
//                           stats buffer.
// Every kernel after the validation returns without writing anything when an error was recorded, so the
// caller's outputs are untouched on invalid values. Sums are block reductions of fixed shape (one block per
// group, per chunk, then over the chunk partials in chunk order): bit-identical on every run, for any grid
// size. No float atomics.
#pragma once

#include <cstddef>
#include <cstdint>

#include "../../types/advantage_types.hpp"
#include "block.hpp"

GRPO_NAMESPACE_BEGIN
namespace detail {
namespace cuda {

constexpr int adv_group_block = 128;  ///< threads per group (groups are small: G = 4..64 typically)
constexpr int adv_reduce_block = 256; ///< threads per chunk of the batch-level reductions
constexpr int adv_elem_block = 256;
/// Rows (or groups) per partial of the batch-level reductions: a fixed partition, so the sums do not depend on
/// the grid size; 10^6 completions make 245 chunks, reduced by as many blocks as the grid allows.
constexpr index_t adv_chunk = 4096;
constexpr index_t adv_reduce_max_blocks = 1024;
/// Doubles per chunk partial (the largest phase: the stats' count, shifted sum, min, max, zero-variance count).
constexpr int adv_partial_fields = 5;

/// Chunks of the batch reductions over `items` rows or groups (0 for none).
GRPO_HOST_DEVICE inline index_t adv_chunks(index_t items) { return (items + adv_chunk - 1) / adv_chunk; }

/// Doubles of the stats record: advantage_stats in field order (num_groups, zero_variance_groups,
/// zero_variance_fraction, scored, reward_mean, reward_std, advantage_mean, advantage_std, advantage_min,
/// advantage_max), then [10] error code (adv_error), [11] error row index (int64 bits, int64_as_double_bits),
/// [12] offending value (the id's int64 bits for adv_bad_id, else the value as a double).
constexpr int adv_stats_fields = 13;

/// Error kinds, in the order the CPU backend checks them (the first present one is reported).
enum adv_error : int {
    adv_ok = 0,
    adv_bad_id = 1,        ///< groups.ids outside [0, num_groups)
    adv_bad_reward = 2,    ///< Inf reward, or NaN with nan_rewards::reject
    adv_bad_weight = 3,    ///< token_weights not finite >= 0 (group_centered_batch_whitened only)
    adv_bad_whitening = 4, ///< total whitening weight <= 1
    adv_bad_advantage = 5, ///< an advantage that does not fit T (or NaN from statistics that overflow double)
};
constexpr int adv_error_slots = 5;

/// Batch scalars kept between kernels.
enum adv_scalar : int {
    adv_scored = 0,      ///< scored rewards
    adv_mean = 1,        ///< batch mean of the rewards
    adv_std = 2,         ///< batch std (config.std)
    adv_white_mean = 3,  ///< whitening mean of the centered values
    adv_white_scale = 4, ///< whitening scale
    adv_gpg_scale = 5,   ///< gpg's N / #nonzero
    adv_white_count = 6, ///< total whitening weight
    adv_out_count = 7,   ///< the stats' first pass: scored advantages, their mean, min, max, zero-variance groups
    adv_out_mean = 8,
    adv_out_min = 9,
    adv_out_max = 10,
    adv_out_zero = 11,
    adv_scalar_fields = 12
};
/// Pivot slots (n - first row, 0 = none; integer atomic max keeps the earliest row) and last-block counters.
enum adv_slot : int {
    adv_pivot_scored = 0,
    adv_pivot_weighted = 1,
    adv_counter_batch1 = 2,
    adv_counter_batch2 = 3,
    adv_counter_stats1 = 4,
    adv_counter_stats2 = 5,
    adv_slots = 6
};

struct adv_params {
    index_t n;
    index_t k;
    index_t group_size; ///< contiguous groups; 0 for id-based
    bool contiguous;
    bool reject_nan;
    bool whiten;
    math::advantage_params ap; ///< the estimator's settings (advantage_config::params())
    double whiten_epsilon;
};

template <class T>
struct adv_views {
    vector_view<const T, device_space> rewards;
    vector_view<T, device_space> advantages;
    vector_view<const std::int64_t, device_space> ids;
    vector_view<const double, device_space> token_weights;
    vector_view<double, device_space> g_mean, g_std;
    vector_view<std::uint8_t, device_space> g_zero;
    vector_view<std::int64_t, device_space> g_count;
};

/// Pointers into the workspace (all 256-byte aligned).
struct adv_scratch {
    math::group_moments<double>* groups = nullptr; ///< k
    math::group_extras* extras = nullptr;          ///< k (passk, opo)
    double* adv = nullptr;                         ///< n advantages in double (first pass of the stats)
    double* scalars = nullptr;                     ///< adv_scalar_fields
    double* partials = nullptr;                    ///< adv_chunks(max(n, k)) * adv_partial_fields
    unsigned long long* errors = nullptr;          ///< adv_error_slots: n - first bad index, 0 = none
    unsigned long long* slots = nullptr;           ///< adv_slots: pivots and counters (zeroed before the launches)
    double* stats = nullptr;                       ///< adv_stats_fields (used by the syncing overload)
    std::uint64_t* keys_in = nullptr;              ///< n (id-based only)
    std::uint64_t* keys_out = nullptr;
    std::int64_t* rows_in = nullptr;
    std::int64_t* rows_out = nullptr;
    std::int64_t* begin = nullptr; ///< k (id-based only)
    std::int64_t* end = nullptr;
    void* sort_temp = nullptr;
    std::size_t sort_temp_bytes = 0;
};

/// Bits the radix sort needs for keys in [0, k] (k itself marks an invalid id).
inline int adv_key_bits(index_t k) {
    int b = 1;
    while (b < 64 && (static_cast<std::uint64_t>(k) >> b) != 0) ++b;
    return b;
}

/// Byte layout of the advantages scratch; `base` null = sizing only. Returns the total bytes.
inline std::size_t adv_layout(index_t n, index_t k, bool by_id, std::size_t sort_bytes, void* base, adv_scratch* s) {
    std::size_t off = 0;
    auto take = [&](std::size_t bytes) -> void* {
        const std::size_t at = off;
        off += (bytes + 255) / 256 * 256;
        return base ? static_cast<void*>(static_cast<char*>(base) + at) : nullptr;
    };
    const std::size_t un = static_cast<std::size_t>(n), uk = static_cast<std::size_t>(k);
    adv_scratch t;
    t.groups = static_cast<math::group_moments<double>*>(take(uk * sizeof(math::group_moments<double>)));
    t.extras = static_cast<math::group_extras*>(take(uk * sizeof(math::group_extras)));
    t.adv = static_cast<double*>(take(un * sizeof(double)));
    t.scalars = static_cast<double*>(take(adv_scalar_fields * sizeof(double)));
    t.partials = static_cast<double*>(
        take(static_cast<std::size_t>(adv_chunks(n > k ? n : k)) * adv_partial_fields * sizeof(double)));
    t.errors = static_cast<unsigned long long*>(take(adv_error_slots * sizeof(unsigned long long)));
    t.slots = static_cast<unsigned long long*>(take(adv_slots * sizeof(unsigned long long)));
    t.stats = static_cast<double*>(take(adv_stats_fields * sizeof(double)));
    if (by_id) {
        t.keys_in = static_cast<std::uint64_t*>(take(un * sizeof(std::uint64_t)));
        t.keys_out = static_cast<std::uint64_t*>(take(un * sizeof(std::uint64_t)));
        t.rows_in = static_cast<std::int64_t*>(take(un * sizeof(std::int64_t)));
        t.rows_out = static_cast<std::int64_t*>(take(un * sizeof(std::int64_t)));
        t.begin = static_cast<std::int64_t*>(take(uk * sizeof(std::int64_t)));
        t.end = static_cast<std::int64_t*>(take(uk * sizeof(std::int64_t)));
        t.sort_temp = take(sort_bytes);
        t.sort_temp_bytes = sort_bytes;
    }
    if (s) *s = t;
    return off;
}

/// Largest finite value of the advantage type (float or double), in host and device code.
template <class T>
GRPO_HOST_DEVICE inline double adv_type_max() {
    return sizeof(T) == sizeof(float) ? 3.4028234663852886e38 : 1.7976931348623157e308;
}
GRPO_HOST_DEVICE inline bool adv_failed(const unsigned long long* e) { return (e[0] | e[1] | e[2] | e[3] | e[4]) != 0; }
GRPO_HOST_DEVICE inline bool adv_is_scored(double r) { return r == r; } // not NaN
GRPO_HOST_DEVICE inline double adv_abs(double x) { return x < 0 ? -x : x; }

/// Row of the q-th member of group j (row order within the group).
GRPO_HOST_DEVICE inline index_t adv_member(const adv_params& p, const adv_scratch& s, index_t j, index_t q) {
    return p.contiguous ? j * p.group_size + q : static_cast<index_t>(s.rows_out[s.begin[j] + q]);
}
GRPO_HOST_DEVICE inline index_t adv_group_size(const adv_params& p, const adv_scratch& s, index_t j) {
    return p.contiguous ? p.group_size : static_cast<index_t>(s.end[j] - s.begin[j]);
}
template <class T>
GRPO_HOST_DEVICE inline index_t adv_group_of(const adv_params& p, const adv_views<T>& v, index_t i) {
    return static_cast<index_t>(math::group_of_row(i, p.group_size, p.contiguous ? 0 : v.ids[i]));
}

/// Block-wide moments of the scored values value(q), q in [0, count), each with weight(q): math::group_moments
/// with the CPU's pivot rule (the first scored value in index order whose weight is not 0: add_first_pass
/// re-pivots while the total weight is 0), then the second pass around the mean. Every thread gets the result.
template <class B, class Scored, class Value, class Weight>
GRPO_HOST_DEVICE math::group_moments<double> block_moments(B& b, index_t count, const Scored& scored,
                                                           const Value& value, const Weight& weight) {
    double first = static_cast<double>(count);
    for (index_t q = b.thread(); q < count; q += b.threads())
        if (scored(q) && weight(q) != 0) {
            first = static_cast<double>(q);
            break;
        }
    first = b.min(first);
    math::group_moments<double> m =
        math::group_moments<double>::with_pivot(first < count ? value(static_cast<index_t>(first)) : 0.0);
    for (index_t q = b.thread(); q < count; q += b.threads())
        if (scored(q)) m.add_shifted(value(q), weight(q));
    m.count = b.sum(m.count);
    m.shifted_sum = b.sum(m.shifted_sum);
    const double mean = m.mean();
    math::group_moments<double> d;
    for (index_t q = b.thread(); q < count; q += b.threads())
        if (scored(q)) d.add_second_pass(value(q), mean, weight(q));
    m.m2 = b.sum(d.m2);
    return m;
}
/// Unweighted: every weight 1 (the same operations as math::group_moments' defaults).
template <class B, class Scored, class Value>
GRPO_HOST_DEVICE math::group_moments<double> block_moments(B& b, index_t count, const Scored& scored,
                                                           const Value& value) {
    return block_moments(b, count, scored, value, [](index_t) { return 1.0; });
}

/// The batch figures the write kernels read, from the scalars the batch kernel kept.
GRPO_HOST_DEVICE inline math::batch_figures adv_batch_figures(const adv_scratch& s) {
    math::batch_figures f;
    f.std = s.scalars[adv_std];
    f.white_mean = s.scalars[adv_white_mean];
    f.white_scale = s.scalars[adv_white_scale];
    f.gpg_scale = s.scalars[adv_gpg_scale];
    return f;
}

/// Row t's advantage (t scored).
template <class T>
GRPO_HOST_DEVICE inline double adv_of_row(const adv_params& p, const adv_views<T>& v, const adv_scratch& s,
                                          const math::batch_figures& f, index_t t, double r) {
    const index_t j = adv_group_of(p, v, t);
    return math::completion_advantage(p.ap, r, static_cast<std::int64_t>(t), s.groups[j], s.extras[j], f);
}

template <class T>
struct adv_validate_kernel {
    static constexpr int block = adv_elem_block;
    adv_views<T> v;
    adv_params p;
    adv_scratch s;

    template <class B>
    GRPO_HOST_DEVICE void operator()(B& b) const {
        const unsigned long long n = static_cast<unsigned long long>(p.n);
        const double inf = infinity();
        for (index_t i = grid_first(b); i < p.n; i += grid_stride(b)) {
            const unsigned long long tag = n - static_cast<unsigned long long>(i); // larger = earlier row
            if (!p.contiguous) {
                const std::int64_t id = v.ids[i];
                const bool ok = id >= 0 && id < p.k;
                if (!ok) b.atomic_max(&s.errors[0], tag);
                s.keys_in[i] = ok ? static_cast<std::uint64_t>(id) : static_cast<std::uint64_t>(p.k);
                s.rows_in[i] = static_cast<std::int64_t>(i);
            }
            const double r = static_cast<double>(v.rewards[i]);
            if (adv_abs(r) == inf || (!adv_is_scored(r) && p.reject_nan)) b.atomic_max(&s.errors[1], tag);
            if (uses_token_weights(p.ap.est) && v.token_weights.present()) {
                const double w = v.token_weights[i];
                if (!(adv_abs(w) < inf) || w < 0) b.atomic_max(&s.errors[2], tag);
            }
        }
    }
};

/// [begin, end) of each group in the sorted order (groups without rows keep the memset 0, 0).
struct adv_offsets_kernel {
    static constexpr int block = adv_elem_block;
    const std::uint64_t* keys;
    index_t n, k;
    const unsigned long long* errors;
    std::int64_t *begin, *end;

    template <class B>
    GRPO_HOST_DEVICE void operator()(B& b) const {
        if (adv_failed(errors)) return;
        for (index_t q = grid_first(b); q < n; q += grid_stride(b)) {
            const std::uint64_t key = keys[q];
            if (key >= static_cast<std::uint64_t>(k)) continue;
            if (q == 0 || keys[q - 1] != key) begin[key] = q;
            if (q == n - 1 || keys[q + 1] != key) end[key] = q + 1;
        }
    }
};

/// A block per group (grid-stride over groups): the group's math::group_moments.
template <class T>
struct adv_group_kernel {
    static constexpr int block = adv_group_block;
    adv_views<T> v;
    adv_params p;
    adv_scratch s;

    template <class B>
    GRPO_HOST_DEVICE void operator()(B& b) const {
        if (adv_failed(s.errors)) return;
        for (index_t j = b.block(); j < p.k; j += b.blocks()) {
            auto reward = [&](index_t q) { return static_cast<double>(v.rewards[adv_member(p, s, j, q)]); };
            auto scored = [&](index_t q) { return adv_is_scored(reward(q)); };
            const index_t size = adv_group_size(p, s, j);
            const math::group_moments<double> m = block_moments(b, size, scored, reward);
            math::group_extras x;
            if (p.ap.est == advantage_estimator::passk) {
                // The best reward, its first member in row order, then the largest among the other members.
                double best = -infinity(), at = static_cast<double>(size);
                for (index_t q = b.thread(); q < size; q += b.threads())
                    if (scored(q) && reward(q) > best) best = reward(q);
                best = b.max(best);
                for (index_t q = b.thread(); q < size; q += b.threads())
                    if (scored(q) && reward(q) == best) {
                        at = static_cast<double>(q);
                        break;
                    }
                at = b.min(at);
                double second = -infinity();
                for (index_t q = b.thread(); q < size; q += b.threads())
                    if (scored(q) && static_cast<double>(q) != at && reward(q) > second) second = reward(q);
                second = b.max(second);
                x.best = best;
                x.second = second;
                x.best_row = at < static_cast<double>(size)
                                 ? static_cast<std::int64_t>(adv_member(p, s, j, static_cast<index_t>(at)))
                                 : -1;
            } else if (p.ap.est == advantage_estimator::opo) {
                auto length = [&](index_t q) { return v.token_weights[adv_member(p, s, j, q)]; };
                x.weighted = block_moments(b, size, scored, reward, length);
            }
            if (b.thread() == 0) {
                s.groups[j] = m;
                s.extras[j] = x;
            }
        }
    }
};

/// Rows [lo, hi) of chunk c of `items`.
struct adv_chunk_range {
    index_t lo, hi;
};
GRPO_HOST_DEVICE inline adv_chunk_range adv_chunk_of(index_t c, index_t items) {
    const index_t lo = c * adv_chunk;
    return {lo, items - lo < adv_chunk ? items : lo + adv_chunk};
}
/// The row a pivot slot holds (n - row; 0 = none), or -1.
GRPO_HOST_DEVICE inline index_t adv_pivot_row(const unsigned long long* slots, int slot, index_t n) {
    const unsigned long long u = slots[slot];
    return u == 0 ? -1 : n - static_cast<index_t>(u);
}
/// Block-wide first row of [lo, hi) with pred(row), or hi; every thread gets it.
template <class B, class Pred>
GRPO_HOST_DEVICE index_t adv_block_first(B& b, index_t lo, index_t hi, const Pred& pred) {
    double first = static_cast<double>(hi);
    for (index_t i = lo + b.thread(); i < hi; i += b.threads())
        if (pred(i)) {
            first = static_cast<double>(i);
            break;
        }
    return static_cast<index_t>(b.min(first));
}
/// One launch of a chunked reduction over `items` rows (or cells): the chunks of adv_chunk items are spread over
/// the grid; for each, every thread fills `Fields` values from its share of [lo, hi) with
/// partial(lo, hi, out) (items lo + thread(), lo + thread() + threads(), ...), which are block-reduced ('s'um,
/// 'm'in or 'M'ax per field, `kind`) into the chunk's partial; the last block to finish (`counter`, zeroed
/// before the launch) combines the partials in chunk order into `total`. One shape on every run, whatever the
/// grid size or block order: deterministic. Returns true in thread 0 of the last block only, the one that
/// writes the results.
template <int Fields, class B, class Partial>
GRPO_HOST_DEVICE bool adv_reduce_chunks(B& b, double* partials, unsigned long long* counter, index_t items,
                                        const char (&kind)[Fields + 1], const Partial& partial,
                                        double (&total)[Fields]) {
    static_assert(Fields <= adv_partial_fields, "adv_partial_fields doubles per chunk");
    auto reduce = [&](int f, double x) { return kind[f] == 's' ? b.sum(x) : kind[f] == 'm' ? b.min(x) : b.max(x); };
    auto identity = [&](int f) { return kind[f] == 's' ? 0.0 : kind[f] == 'm' ? infinity() : -infinity(); };
    const index_t chunks = adv_chunks(items);
    for (index_t c = b.block(); c < chunks; c += b.blocks()) {
        const adv_chunk_range r = adv_chunk_of(c, items);
        double part[Fields];
        for (int f = 0; f < Fields; ++f) part[f] = identity(f);
        partial(r.lo, r.hi, part);
        for (int f = 0; f < Fields; ++f) part[f] = reduce(f, part[f]);
        if (b.thread() == 0)
            for (int f = 0; f < Fields; ++f) partials[c * adv_partial_fields + f] = part[f];
    }
    if (!b.last_block_done(counter)) return false;
    for (int f = 0; f < Fields; ++f) total[f] = identity(f);
    for (index_t c = b.thread(); c < chunks; c += b.threads())
        for (int f = 0; f < Fields; ++f) {
            const double x = b.load(partials + c * adv_partial_fields + f);
            total[f] = kind[f] == 's'   ? total[f] + x
                       : kind[f] == 'm' ? (x < total[f] ? x : total[f])
                                        : (x > total[f] ? x : total[f]);
        }
    for (int f = 0; f < Fields; ++f) total[f] = reduce(f, total[f]);
    return b.thread() == 0;
}

/// The device side of cpu::advantage_figures, first pass over chunks of `items`: count, mean (around `pivot`,
/// the first counted value), min and max of value(i) over counted(i), and the sum of extra(i) over every item;
/// the last block's thread 0 gets true and `out` = {count, mean, min, max, extra sum}.
template <class B, class Counted, class Value, class Extra>
GRPO_HOST_DEVICE bool adv_figures_first_pass(B& b, double* partials, unsigned long long* counter, index_t items,
                                             double pivot, const Counted& counted, const Value& value,
                                             const Extra& extra, double (&out)[5]) {
    double tot[5];
    const bool last = adv_reduce_chunks(
        b, partials, counter, items, "ssmMs",
        [&](index_t lo, index_t hi, double* part) {
            auto a = math::group_moments<double>::with_pivot(pivot);
            for (index_t i = lo + b.thread(); i < hi; i += b.threads()) {
                if (counted(i)) {
                    const double x = value(i);
                    a.add_shifted(x);
                    part[2] = x < part[2] ? x : part[2];
                    part[3] = x > part[3] ? x : part[3];
                }
                part[4] += extra(i);
            }
            part[0] = a.count, part[1] = a.shifted_sum;
        },
        tot);
    if (!last) return false;
    auto a = math::group_moments<double>::with_pivot(pivot);
    a.count = tot[0];
    a.shifted_sum = tot[1];
    out[0] = a.count, out[1] = a.mean(), out[2] = tot[2], out[3] = tot[3], out[4] = tot[4];
    return true;
}
/// Second pass: the squared deviations of stored(i) (the values after rounding to the output type) around
/// `mean`; the last block's thread 0 gets true and `m2`.
template <class B, class Counted, class Stored>
GRPO_HOST_DEVICE bool adv_figures_second_pass(B& b, double* partials, unsigned long long* counter, index_t items,
                                              double mean, const Counted& counted, const Stored& stored, double& m2) {
    double tot[1];
    const bool last = adv_reduce_chunks(
        b, partials, counter, items, "s",
        [&](index_t lo, index_t hi, double* part) {
            math::group_moments<double> d;
            for (index_t i = lo + b.thread(); i < hi; i += b.threads())
                if (counted(i)) d.add_second_pass(stored(i), mean);
            part[0] = d.m2;
        },
        tot);
    m2 = tot[0];
    return last;
}

/// Batch-level statistics over chunks of rows, in three launches (`phase` 0, 1, 2): the pivots, then counts and
/// shifted sums (combined by the last block into the batch count and mean, the whitening weight and mean, and
/// gpg's scale), then squared deviations (combined into the batch std and the whitening scale).
template <class T>
struct adv_batch_kernel {
    static constexpr int block = adv_reduce_block;
    adv_views<T> v;
    adv_params p;
    adv_scratch s;
    int phase;

    template <class B>
    GRPO_HOST_DEVICE void operator()(B& b) const {
        if (adv_failed(s.errors)) return;
        const index_t n = p.n, chunks = adv_chunks(n);
        auto reward = [&](index_t i) { return static_cast<double>(v.rewards[i]); };
        auto scored = [&](index_t i) { return adv_is_scored(reward(i)); };
        auto weight = [&](index_t i) { return v.token_weights.present() ? v.token_weights[i] : 1.0; };
        // Centered value of a scored row: the estimator's centering step (group_advantage with std 0).
        auto centered = [&](index_t i) {
            const math::group_moments<double>& g = s.groups[adv_group_of(p, v, i)];
            return math::group_advantage<double>(p.ap.est, reward(i), g.count, g.mean(), 0, p.ap.epsilon,
                                                 p.ap.singleton);
        };
        if (phase == 0) { // the CPU's pivot rules: the first scored row; for whitening, of non-zero weight
            for (index_t c = b.block(); c < chunks; c += b.blocks()) {
                const adv_chunk_range r = adv_chunk_of(c, n);
                const index_t first = adv_block_first(b, r.lo, r.hi, scored);
                const index_t first_w =
                    p.whiten ? adv_block_first(b, r.lo, r.hi, [&](index_t i) { return scored(i) && weight(i) != 0; })
                             : r.hi;
                if (b.thread() != 0) continue;
                if (first < r.hi) b.atomic_max(&s.slots[adv_pivot_scored], static_cast<unsigned long long>(n - first));
                if (first_w < r.hi)
                    b.atomic_max(&s.slots[adv_pivot_weighted], static_cast<unsigned long long>(n - first_w));
            }
            return;
        }
        const index_t pivot_row = adv_pivot_row(s.slots, adv_pivot_scored, n);
        const index_t white_row = adv_pivot_row(s.slots, adv_pivot_weighted, n);
        const double pivot = pivot_row >= 0 ? reward(pivot_row) : 0.0;
        const double white_pivot = white_row >= 0 ? centered(white_row) : 0.0;
        if (phase == 1) {
            double tot[5]; // count, shifted sum; whitening weight, shifted sum; nonzero rewards
            const bool last = adv_reduce_chunks(
                b, s.partials, &s.slots[adv_counter_batch1], n, "sssss",
                [&](index_t lo, index_t hi, double* part) {
                    auto m = math::group_moments<double>::with_pivot(pivot);
                    auto w = math::group_moments<double>::with_pivot(white_pivot);
                    for (index_t i = lo + b.thread(); i < hi; i += b.threads())
                        if (scored(i)) {
                            m.add_shifted(reward(i));
                            if (p.whiten) w.add_shifted(centered(i), weight(i));
                            part[4] += reward(i) != 0 ? 1.0 : 0.0;
                        }
                    part[0] = m.count, part[1] = m.shifted_sum, part[2] = w.count, part[3] = w.shifted_sum;
                },
                tot);
            if (!last) return;
            auto m = math::group_moments<double>::with_pivot(pivot);
            auto w = math::group_moments<double>::with_pivot(white_pivot);
            m.count = tot[0];
            m.shifted_sum = tot[1];
            w.count = tot[2];
            w.shifted_sum = tot[3];
            s.scalars[adv_scored] = m.count;
            s.scalars[adv_mean] = m.mean();
            s.scalars[adv_white_count] = w.count;
            s.scalars[adv_white_mean] = p.whiten ? w.mean() : 0.0;
            s.scalars[adv_gpg_scale] = p.ap.est == advantage_estimator::gpg ? math::gpg_scale(m.count, tot[4]) : 1.0;
            if (p.whiten && !(w.count > 1)) s.errors[3] = 1; // CPU: "a total whitening weight > 1"
            return;
        }
        // phase 2: the second pass around the means (a constant batch has deviations, m2 and whitening_scale
        // exactly 0, so its advantages are exactly 0 for any whiten_epsilon >= 0).
        const double mean = s.scalars[adv_mean], white_mean = s.scalars[adv_white_mean];
        double tot[2]; // m2 of the rewards, weighted m2 of the centered values
        const bool last = adv_reduce_chunks(
            b, s.partials, &s.slots[adv_counter_batch2], n, "ss",
            [&](index_t lo, index_t hi, double* part) {
                math::group_moments<double> d, wd;
                for (index_t i = lo + b.thread(); i < hi; i += b.threads())
                    if (scored(i)) {
                        d.add_second_pass(reward(i), mean);
                        if (p.whiten) wd.add_second_pass(centered(i), white_mean, weight(i));
                    }
                part[0] = d.m2, part[1] = wd.m2;
            },
            tot);
        if (!last) return;
        math::group_moments<double> m;
        m.count = s.scalars[adv_scored];
        m.m2 = tot[0];
        s.scalars[adv_std] = m.std(p.ap.std);
        s.scalars[adv_white_scale] =
            p.whiten ? math::whitening_scale(tot[1], s.scalars[adv_white_count], p.whiten_epsilon) : 1.0;
    }
};

/// Every scored row's advantage must fit T before anything is written (the CPU backend's check): records the
/// first row whose advantage does not (fp32 RLOO of rewards near 3e38; statistics that overflow double).
template <class T>
struct adv_range_kernel {
    static constexpr int block = adv_elem_block;
    adv_views<T> v;
    adv_params p;
    adv_scratch s;

    template <class B>
    GRPO_HOST_DEVICE void operator()(B& b) const {
        // Only the earlier kernels' slots: this kernel writes slot 4 itself, and a thread that saw another
        // thread's flag there would skip its own (earlier) row.
        if ((s.errors[0] | s.errors[1] | s.errors[2] | s.errors[3]) != 0) return;
        const math::batch_figures f = adv_batch_figures(s);
        const double limit = static_cast<double>(adv_type_max<T>());
        const unsigned long long n = static_cast<unsigned long long>(p.n);
        for (index_t t = grid_first(b); t < p.n; t += grid_stride(b)) {
            const double r = static_cast<double>(v.rewards[t]);
            if (!adv_is_scored(r)) continue;
            const double a = adv_of_row(p, v, s, f, t, r);
            if (!(adv_abs(a) <= limit)) b.atomic_max(&s.errors[4], n - static_cast<unsigned long long>(t));
        }
    }
};

/// Advantages per row and the optional per-group outputs.
template <class T>
struct adv_write_kernel {
    static constexpr int block = adv_elem_block;
    adv_views<T> v;
    adv_params p;
    adv_scratch s;

    template <class B>
    GRPO_HOST_DEVICE void operator()(B& b) const {
        if (adv_failed(s.errors)) return;
        const math::batch_figures f = adv_batch_figures(s);
        const index_t total = p.n > p.k ? p.n : p.k;
        for (index_t t = grid_first(b); t < total; t += grid_stride(b)) {
            if (t < p.n) {
                const double r = static_cast<double>(v.rewards[t]);
                double a = 0;
                if (adv_is_scored(r)) a = adv_of_row(p, v, s, f, t, r);
                s.adv[t] = a;
                v.advantages[t] = static_cast<T>(a);
            }
            if (t < p.k) {
                const math::group_summary g = math::summarize(s.groups[t], p.ap.std);
                if (v.g_mean.present()) v.g_mean[t] = g.mean;
                if (v.g_std.present()) v.g_std[t] = g.std;
                if (v.g_zero.present()) v.g_zero[t] = g.zero_variance;
                if (v.g_count.present()) v.g_count[t] = g.count;
            }
        }
    }
};

/// advantage_stats (or the error record) into `stats`, in two launches over chunks of max(rows, groups):
/// phase 1 the count, shifted sum, min and max of the advantages in double and the zero-variance groups, phase 2
/// the squared deviations of the stored advantages (values after rounding to T), as the CPU backend does.
template <class T>
struct adv_stats_kernel {
    static constexpr int block = adv_reduce_block;
    adv_views<T> v;
    adv_params p;
    adv_scratch s;
    double* stats;
    int phase;

    template <class B>
    GRPO_HOST_DEVICE void operator()(B& b) const {
        const index_t n = p.n, items = n > p.k ? n : p.k;
        if (adv_failed(s.errors)) {
            if (phase == 1 && b.block() == 0 && b.thread() == 0) write_error();
            return;
        }
        auto scored = [&](index_t i) { return adv_is_scored(static_cast<double>(v.rewards[i])); };
        const index_t pivot_row = adv_pivot_row(s.slots, adv_pivot_scored, n);
        auto counted = [&](index_t i) { return i < n && scored(i); };
        if (phase == 1) {
            double f[5];
            if (!adv_figures_first_pass(
                    b, s.partials, &s.slots[adv_counter_stats1], items, pivot_row >= 0 ? s.adv[pivot_row] : 0.0,
                    counted, [&](index_t i) { return s.adv[i]; },
                    [&](index_t j) { return j < p.k && s.groups[j].zero_variance() ? 1.0 : 0.0; }, f))
                return;
            s.scalars[adv_out_count] = f[0];
            s.scalars[adv_out_mean] = f[1];
            s.scalars[adv_out_min] = f[2];
            s.scalars[adv_out_max] = f[3];
            s.scalars[adv_out_zero] = f[4];
            return;
        }
        const double mean = s.scalars[adv_out_mean];
        double m2 = 0;
        if (!adv_figures_second_pass(
                b, s.partials, &s.slots[adv_counter_stats2], items, mean, counted,
                [&](index_t i) { return static_cast<double>(v.advantages[i]); }, m2))
            return;
        math::group_moments<double> a;
        a.count = s.scalars[adv_out_count];
        a.m2 = m2;
        const double zero = s.scalars[adv_out_zero];
        double st[adv_stats_fields] = {};
        st[0] = static_cast<double>(p.k);
        st[1] = zero;
        st[2] = p.k > 0 ? zero / static_cast<double>(p.k) : 0.0;
        st[3] = s.scalars[adv_scored];
        st[4] = s.scalars[adv_mean];
        st[5] = s.scalars[adv_std];
        if (a.count > 0) {
            st[6] = mean;
            st[7] = a.std(p.ap.std);
            st[8] = s.scalars[adv_out_min];
            st[9] = s.scalars[adv_out_max];
        }
        for (int f = 0; f < adv_stats_fields; ++f) stats[f] = st[f];
    }

    /// The error record: the first kind found (CPU order), its first row and the offending value.
    GRPO_HOST_DEVICE void write_error() const {
        double st[adv_stats_fields] = {};
        for (int e = 0; e < adv_error_slots; ++e) {
            if (s.errors[e] == 0) continue;
            st[10] = e + 1;
            if (e + 1 == adv_bad_whitening) break;
            const index_t i = p.n - static_cast<index_t>(s.errors[e]);
            st[11] = int64_as_double_bits(i);
            st[12] = e + 1 == adv_bad_id                                     ? int64_as_double_bits(v.ids[i])
                     : e + 1 == adv_bad_reward || e + 1 == adv_bad_advantage ? static_cast<double>(v.rewards[i])
                                                                             : v.token_weights[i];
            break;
        }
        for (int f = 0; f < adv_stats_fields; ++f) stats[f] = st[f];
    }
};

} // namespace cuda
} // namespace detail
GRPO_NAMESPACE_END
