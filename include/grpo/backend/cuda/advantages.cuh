// SPDX-License-Identifier: MIT
// CUDA backend of compute_advantages (group-relative advantages from per-completion rewards).
//
// Launches, all on the caller's stream, no host synchronization:
//   0. cudaMemsetAsync of the error slots.
//   1. adv_validate_kernel   (grid-stride over rows): ids in [0, k), rewards finite (or NaN when ignored),
//                             token weights finite >= 0; the first bad index per kind is kept with an integer
//                             atomicMax (order-independent result). For id-based groups it also writes the
//                             sort keys (id) and values (row index).
//   2. id-based groups only: cub::DeviceRadixSort::SortPairs (stable: rows of a group stay in row order),
//                             cudaMemsetAsync + adv_offsets_kernel -> [begin, end) of every group.
//   3. adv_group_kernel      (one block per group): pivot = first scored reward of the group in row order,
//                             then math::group_moments (count, shifted sum, m2) with CUB BlockReduce in double.
//   4. adv_batch_kernel      (one block): batch moments (same pivot rule), batch std and, for
//                             group_centered_batch_whitened, the weighted whitening statistics.
//   5. adv_write_kernel      (grid-stride over max(rows, groups)): math::completion_advantage per row, the
//                             optional per-group outputs.
//   6. adv_stats_kernel      (one block): advantage_stats (or the error record) into the stats buffer.
// Every kernel after the validation returns without writing anything when an error was recorded, so the
// caller's outputs are untouched on invalid values. Sums are block reductions of fixed shape followed by
// nothing else (one block per group / per batch): bit-identical on every run. No float atomics.
#pragma once

#include <cstddef>
#include <cstdint>

#include <cub/block/block_reduce.cuh>
#include <cub/device/device_radix_sort.cuh>
#include <cuda_runtime.h>
#include <math_constants.h>

#include "../../advantages.hpp"
#include "loss.cuh"

GRPO_NAMESPACE_BEGIN
namespace detail {
namespace cuda {

constexpr int adv_group_block = 128;  ///< threads per group (groups are small: G = 4..64 typically)
constexpr int adv_batch_block = 1024; ///< the single block of the batch-level reductions
constexpr int adv_elem_block = 256;

/// Doubles of the stats record: advantage_stats in field order (num_groups, zero_variance_groups,
/// zero_variance_fraction, scored, reward_mean, reward_std, advantage_mean, advantage_std, advantage_min,
/// advantage_max), then error code (adv_error), error row index, offending value (an id's bits for bad_id).
constexpr int adv_stats_fields = 13;

/// Error kinds, in the order the CPU backend checks them (the first present one is reported).
enum adv_error : int {
    adv_ok = 0,
    adv_bad_id = 1,        ///< groups.ids outside [0, num_groups)
    adv_bad_reward = 2,    ///< Inf reward, or NaN with nan_rewards::reject
    adv_bad_weight = 3,    ///< token_weights not finite >= 0 (group_centered_batch_whitened only)
    adv_bad_whitening = 4, ///< total whitening weight <= 1
};
constexpr int adv_error_slots = 4;

/// Batch scalars kept between kernels: scored count, batch mean, batch std, whitening mean and scale.
constexpr int adv_scalar_fields = 5;

struct adv_params {
    index_t n;
    index_t k;
    index_t group_size; ///< contiguous groups; 0 for id-based
    bool contiguous;
    bool reject_nan;
    bool whiten;
    advantage_estimator est;
    std_estimator std_est;
    singleton_group singleton;
    double epsilon;
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

/// Pointers into the cuda_workspace buffer (all 256-byte aligned).
struct adv_scratch {
    math::group_moments<double>* groups = nullptr; ///< k
    double* adv = nullptr;                         ///< n advantages in double (first pass of the stats)
    double* scalars = nullptr;                     ///< adv_scalar_fields
    unsigned long long* errors = nullptr;          ///< adv_error_slots: n - first bad index, 0 = none
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

/// Bytes of CUB temporary storage for sorting n (id, row) pairs (host-side query, no device work).
inline std::size_t adv_sort_temp_bytes(index_t n, index_t k) {
    if (n <= 0) return 0;
    std::size_t bytes = 0;
    const cudaError_t e = cub::DeviceRadixSort::SortPairs(
        nullptr, bytes, static_cast<const std::uint64_t*>(nullptr), static_cast<std::uint64_t*>(nullptr),
        static_cast<const std::int64_t*>(nullptr), static_cast<std::int64_t*>(nullptr), static_cast<std::int64_t>(n),
        0, adv_key_bits(k));
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        raise_argument(errc::invalid_value, "compute_advantages(cuda)", "cub::DeviceRadixSort", "cudaSuccess",
                       cudaGetErrorName(e));
    }
    return bytes;
}

/// Byte layout of the advantages scratch; `base` null = sizing only. Returns the total bytes.
inline std::size_t adv_layout(index_t n, index_t k, bool by_id, std::size_t sort_bytes, void* base,
                              adv_scratch* s) {
    std::size_t off = 0;
    auto take = [&](std::size_t bytes) -> void* {
        const std::size_t at = off;
        off += (bytes + 255) / 256 * 256;
        return base ? static_cast<void*>(static_cast<char*>(base) + at) : nullptr;
    };
    const std::size_t un = static_cast<std::size_t>(n), uk = static_cast<std::size_t>(k);
    adv_scratch t;
    t.groups = static_cast<math::group_moments<double>*>(take(uk * sizeof(math::group_moments<double>)));
    t.adv = static_cast<double*>(take(un * sizeof(double)));
    t.scalars = static_cast<double*>(take(adv_scalar_fields * sizeof(double)));
    t.errors = static_cast<unsigned long long*>(take(adv_error_slots * sizeof(unsigned long long)));
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

__device__ inline bool adv_failed(const unsigned long long* e) { return (e[0] | e[1] | e[2] | e[3]) != 0; }
__device__ inline bool adv_is_scored(double r) { return r == r; } // not NaN
__device__ inline double adv_abs(double x) { return x < 0 ? -x : x; }

/// Row of the q-th member of group j (row order within the group).
__device__ inline index_t adv_member(const adv_params& p, const adv_scratch& s, index_t j, index_t q) {
    return p.contiguous ? j * p.group_size + q : static_cast<index_t>(s.rows_out[s.begin[j] + q]);
}
__device__ inline index_t adv_group_size(const adv_params& p, const adv_scratch& s, index_t j) {
    return p.contiguous ? p.group_size : static_cast<index_t>(s.end[j] - s.begin[j]);
}
template <class T>
__device__ inline index_t adv_group_of(const adv_params& p, const adv_views<T>& v, index_t i) {
    return p.contiguous ? i / p.group_size : static_cast<index_t>(v.ids[i]);
}

template <class T>
__global__ void adv_validate_kernel(adv_views<T> v, adv_params p, adv_scratch s) {
    const unsigned long long n = static_cast<unsigned long long>(p.n);
    for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < p.n;
         i += static_cast<index_t>(gridDim.x) * blockDim.x) {
        const unsigned long long tag = n - static_cast<unsigned long long>(i); // larger = earlier row
        if (!p.contiguous) {
            const std::int64_t id = v.ids[i];
            const bool ok = id >= 0 && id < p.k;
            if (!ok) atomicMax(&s.errors[0], tag);
            s.keys_in[i] = ok ? static_cast<std::uint64_t>(id) : static_cast<std::uint64_t>(p.k);
            s.rows_in[i] = static_cast<std::int64_t>(i);
        }
        const double r = static_cast<double>(v.rewards[i]);
        if (adv_abs(r) == CUDART_INF || (!adv_is_scored(r) && p.reject_nan)) atomicMax(&s.errors[1], tag);
        if (p.whiten && v.token_weights.present()) {
            const double w = v.token_weights[i];
            if (!(adv_abs(w) < CUDART_INF) || w < 0) atomicMax(&s.errors[2], tag);
        }
    }
}

/// [begin, end) of each group in the sorted order (groups without rows keep the memset 0, 0).
__global__ void adv_offsets_kernel(const std::uint64_t* keys, index_t n, index_t k, const unsigned long long* errors,
                                   std::int64_t* begin, std::int64_t* end) {
    if (adv_failed(errors)) return;
    for (index_t q = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; q < n;
         q += static_cast<index_t>(gridDim.x) * blockDim.x) {
        const std::uint64_t key = keys[q];
        if (key >= static_cast<std::uint64_t>(k)) continue;
        if (q == 0 || keys[q - 1] != key) begin[key] = q;
        if (q == n - 1 || keys[q + 1] != key) end[key] = q + 1;
    }
}

/// One block per group: math::group_moments with the group's first scored reward as pivot.
template <class T>
__global__ void __launch_bounds__(adv_group_block) adv_group_kernel(adv_views<T> v, adv_params p, adv_scratch s) {
    using reduce = cub::BlockReduce<double, adv_group_block>;
    __shared__ typename reduce::TempStorage tmp;
    __shared__ double bcast;
    if (adv_failed(s.errors)) return;
    const index_t j = blockIdx.x;
    const index_t size = adv_group_size(p, s, j);
    // First scored member (row order).
    double first = static_cast<double>(size);
    for (index_t q = threadIdx.x; q < size; q += adv_group_block)
        if (adv_is_scored(static_cast<double>(v.rewards[adv_member(p, s, j, q)]))) {
            first = static_cast<double>(q);
            break;
        }
    first = reduce(tmp).Reduce(first, dmin{});
    if (threadIdx.x == 0) bcast = first < size ? static_cast<double>(v.rewards[adv_member(p, s, j, index_t(first))]) : 0.0;
    __syncthreads();
    math::group_moments<double> m = math::group_moments<double>::with_pivot(bcast);
    for (index_t q = threadIdx.x; q < size; q += adv_group_block) {
        const double r = static_cast<double>(v.rewards[adv_member(p, s, j, q)]);
        if (adv_is_scored(r)) m.add_shifted(r);
    }
    __syncthreads();
    const double count = reduce(tmp).Sum(m.count);
    __syncthreads();
    const double shifted = reduce(tmp).Sum(m.shifted_sum);
    if (threadIdx.x == 0) {
        m.count = count;
        m.shifted_sum = shifted;
        bcast = m.mean();
    }
    __syncthreads();
    const double mean = bcast;
    math::group_moments<double> d;
    for (index_t q = threadIdx.x; q < size; q += adv_group_block) {
        const double r = static_cast<double>(v.rewards[adv_member(p, s, j, q)]);
        if (adv_is_scored(r)) d.add_second_pass(r, mean);
    }
    __syncthreads();
    const double m2 = reduce(tmp).Sum(d.m2);
    if (threadIdx.x == 0) {
        m.m2 = m2;
        s.groups[j] = m;
    }
}

/// One block: batch moments, batch std, and the whitening statistics.
template <class T>
__global__ void __launch_bounds__(adv_batch_block) adv_batch_kernel(adv_views<T> v, adv_params p, adv_scratch s) {
    using reduce = cub::BlockReduce<double, adv_batch_block>;
    __shared__ typename reduce::TempStorage tmp;
    __shared__ double bcast[2];
    if (adv_failed(s.errors)) return;
    const index_t n = p.n;
    double first = static_cast<double>(n);
    for (index_t i = threadIdx.x; i < n; i += adv_batch_block)
        if (adv_is_scored(static_cast<double>(v.rewards[i]))) {
            first = static_cast<double>(i);
            break;
        }
    first = reduce(tmp).Reduce(first, dmin{});
    if (threadIdx.x == 0) bcast[0] = first < n ? static_cast<double>(v.rewards[index_t(first)]) : 0.0;
    __syncthreads();
    math::group_moments<double> b = math::group_moments<double>::with_pivot(bcast[0]);
    for (index_t i = threadIdx.x; i < n; i += adv_batch_block) {
        const double r = static_cast<double>(v.rewards[i]);
        if (adv_is_scored(r)) b.add_shifted(r);
    }
    __syncthreads();
    const double count = reduce(tmp).Sum(b.count);
    __syncthreads();
    const double shifted = reduce(tmp).Sum(b.shifted_sum);
    if (threadIdx.x == 0) {
        b.count = count;
        b.shifted_sum = shifted;
        bcast[0] = b.mean();
    }
    __syncthreads();
    const double mean = bcast[0];
    math::group_moments<double> d;
    for (index_t i = threadIdx.x; i < n; i += adv_batch_block) {
        const double r = static_cast<double>(v.rewards[i]);
        if (adv_is_scored(r)) d.add_second_pass(r, mean);
    }
    __syncthreads();
    const double m2 = reduce(tmp).Sum(d.m2);

    double white_mean = 0, white_scale = 1;
    if (p.whiten) {
        // Centered value of a scored row: the estimator's centering step (group_advantage with std 0).
        auto centered = [&](index_t i, double r) {
            const math::group_moments<double>& g = s.groups[adv_group_of(p, v, i)];
            return math::group_advantage<double>(p.est, r, g.count, g.mean(), 0, p.epsilon, p.singleton);
        };
        auto weight = [&](index_t i) { return v.token_weights.present() ? v.token_weights[i] : 1.0; };
        double wsum = 0, wx = 0;
        for (index_t i = threadIdx.x; i < n; i += adv_batch_block) {
            const double r = static_cast<double>(v.rewards[i]);
            if (!adv_is_scored(r)) continue;
            wsum += weight(i);
            wx += weight(i) * centered(i, r);
        }
        __syncthreads();
        wsum = reduce(tmp).Sum(wsum);
        __syncthreads();
        wx = reduce(tmp).Sum(wx);
        if (threadIdx.x == 0) {
            bcast[0] = wsum;
            bcast[1] = wx;
        }
        __syncthreads();
        wsum = bcast[0];
        wx = bcast[1];
        if (!(wsum > 1)) { // CPU: "a total whitening weight > 1"
            if (threadIdx.x == 0) s.errors[3] = 1;
            return;
        }
        white_mean = wx / wsum;
        double wm2 = 0;
        for (index_t i = threadIdx.x; i < n; i += adv_batch_block) {
            const double r = static_cast<double>(v.rewards[i]);
            if (adv_is_scored(r)) wm2 += math::weighted_sq_deviation(weight(i), centered(i, r), white_mean);
        }
        __syncthreads();
        wm2 = reduce(tmp).Sum(wm2);
        white_scale = math::whitening_scale(wm2, wsum, p.whiten_epsilon);
    }
    if (threadIdx.x == 0) { // b.count, b.shifted_sum were set by thread 0 above
        b.m2 = m2;
        s.scalars[0] = count;
        s.scalars[1] = mean;
        s.scalars[2] = b.std(p.std_est);
        s.scalars[3] = white_mean;
        s.scalars[4] = white_scale;
    }
}

/// Advantages per row and the optional per-group outputs.
template <class T>
__global__ void adv_write_kernel(adv_views<T> v, adv_params p, adv_scratch s) {
    if (adv_failed(s.errors)) return;
    const double batch_std = s.scalars[2], white_mean = s.scalars[3], white_scale = s.scalars[4];
    const index_t total = p.n > p.k ? p.n : p.k;
    for (index_t t = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; t < total;
         t += static_cast<index_t>(gridDim.x) * blockDim.x) {
        if (t < p.n) {
            const double r = static_cast<double>(v.rewards[t]);
            double a = 0;
            if (adv_is_scored(r))
                a = math::completion_advantage<double>(p.est, r, s.groups[adv_group_of(p, v, t)], p.std_est, batch_std,
                                                       p.epsilon, p.singleton, white_mean, white_scale);
            s.adv[t] = a;
            v.advantages[t] = static_cast<T>(a);
        }
        if (t < p.k) {
            const math::group_moments<double>& m = s.groups[t];
            if (v.g_mean.present()) v.g_mean[t] = m.mean();
            if (v.g_std.present()) v.g_std[t] = m.std(p.std_est);
            if (v.g_zero.present()) v.g_zero[t] = m.zero_variance();
            if (v.g_count.present()) v.g_count[t] = static_cast<std::int64_t>(m.count);
        }
    }
}

/// One block: advantage_stats (or the error record) into `stats`.
template <class T>
__global__ void __launch_bounds__(adv_batch_block) adv_stats_kernel(adv_views<T> v, adv_params p, adv_scratch s,
                                                                    double* stats) {
    using reduce = cub::BlockReduce<double, adv_batch_block>;
    __shared__ typename reduce::TempStorage tmp;
    __shared__ double bcast;
    const index_t n = p.n;
    if (adv_failed(s.errors)) {
        if (threadIdx.x != 0) return;
        double st[adv_stats_fields] = {};
        for (int e = 0; e < adv_error_slots; ++e) {
            if (s.errors[e] == 0) continue;
            st[10] = e + 1;
            if (e + 1 == adv_bad_whitening) break;
            const index_t i = n - static_cast<index_t>(s.errors[e]);
            st[11] = static_cast<double>(i);
            st[12] = e + 1 == adv_bad_id ? __longlong_as_double(static_cast<long long>(v.ids[i]))
                     : e + 1 == adv_bad_reward ? static_cast<double>(v.rewards[i])
                                               : v.token_weights[i];
            break;
        }
        for (int f = 0; f < adv_stats_fields; ++f) stats[f] = st[f];
        return;
    }
    double first = static_cast<double>(n);
    for (index_t i = threadIdx.x; i < n; i += adv_batch_block)
        if (adv_is_scored(static_cast<double>(v.rewards[i]))) {
            first = static_cast<double>(i);
            break;
        }
    first = reduce(tmp).Reduce(first, dmin{});
    if (threadIdx.x == 0) bcast = first < n ? s.adv[index_t(first)] : 0.0;
    __syncthreads();
    math::group_moments<double> a = math::group_moments<double>::with_pivot(bcast);
    double amin = CUDART_INF, amax = -CUDART_INF;
    for (index_t i = threadIdx.x; i < n; i += adv_batch_block) {
        if (!adv_is_scored(static_cast<double>(v.rewards[i]))) continue;
        const double x = s.adv[i];
        a.add_shifted(x);
        amin = x < amin ? x : amin;
        amax = x > amax ? x : amax;
    }
    __syncthreads();
    const double count = reduce(tmp).Sum(a.count);
    __syncthreads();
    const double shifted = reduce(tmp).Sum(a.shifted_sum);
    __syncthreads();
    amin = reduce(tmp).Reduce(amin, dmin{});
    __syncthreads();
    amax = reduce(tmp).Reduce(amax, dmax{});
    if (threadIdx.x == 0) {
        a.count = count;
        a.shifted_sum = shifted;
        bcast = a.mean();
    }
    __syncthreads();
    const double mean = bcast;
    // Second pass over the stored advantages (the CPU backend does the same: values after rounding to T).
    math::group_moments<double> d;
    for (index_t i = threadIdx.x; i < n; i += adv_batch_block)
        if (adv_is_scored(static_cast<double>(v.rewards[i]))) d.add_second_pass(static_cast<double>(v.advantages[i]), mean);
    double zero = 0;
    for (index_t j = threadIdx.x; j < p.k; j += adv_batch_block) zero += s.groups[j].zero_variance() ? 1.0 : 0.0;
    __syncthreads();
    const double m2 = reduce(tmp).Sum(d.m2);
    __syncthreads();
    zero = reduce(tmp).Sum(zero);
    if (threadIdx.x == 0) {
        a.m2 = m2;
        double st[adv_stats_fields] = {};
        st[0] = static_cast<double>(p.k);
        st[1] = zero;
        st[2] = p.k > 0 ? zero / static_cast<double>(p.k) : 0.0;
        st[3] = s.scalars[0];
        st[4] = s.scalars[1];
        st[5] = s.scalars[2];
        if (count > 0) {
            st[6] = mean;
            st[7] = a.std(p.std_est);
            st[8] = amin;
            st[9] = amax;
        }
        for (int f = 0; f < adv_stats_fields; ++f) stats[f] = st[f];
    }
}

} // namespace cuda
} // namespace detail
GRPO_NAMESPACE_END
