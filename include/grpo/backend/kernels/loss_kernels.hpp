// SPDX-License-Identifier: MIT
// Kernels of the CUDA loss pass, written against the block model of block.hpp (CUDA-free; see there).
//
// One call is at most two launches on the caller's stream, plus a memset of two counters:
//   loss_check_kernel  for validation::full (the default) and for aggregation::token_mean with a local token
//                      count (the gradient of every token depends on the batch's token count): per row, the
//                      valid tokens and, under validation::full, the first bad value in the CPU backend's
//                      order (lengths, then per token: mask in {0,1}, finite logp, old_logp, ref_logp,
//                      advantages at unmasked tokens); the last block to finish sums the counts in a fixed
//                      order and records the first error (or a global_token_count below the sum). Without
//                      validation it reads the mask only.
//   loss_main_kernel   the fused pass, one block per row (grid-stride over rows): ratio, clip, KL, mask,
//                      gradient and per-token loss written once, per-row partials of the loss and of every
//                      diagnostic; the last block to finish reduces the row partials in a fixed order into the
//                      loss_stats scalars. Rows whose weight depends on their own token count
//                      (seq_mean_token_mean) or that need the sequence ratio (GSPO) first count / sum over the
//                      row in the same block; that re-read of the row's mask (and logp, old_logp for GSPO, and
//                      the advantages for ratio_level::sequence) follows the first read directly.
// Every sum is in double, first per thread in index order, then a block reduction of fixed shape: for a
// fixed block size the results are identical on every run. No float atomics.
//
// Element types: float and double (math in the same type) and, on the GPU, __half and __nv_bfloat16 (loaded
// into float, math in float, grad_logp / per_token_loss rounded back to the input type on store; the
// compute_type specializations live in device.cuh).
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "../../types/loss_record.hpp"
#include "block.hpp"

GRPO_NAMESPACE_BEGIN
namespace detail {
namespace cuda {

constexpr int loss_block = 256;
GRPO_HOST_DEVICE constexpr std::size_t doubles_of(std::size_t bytes) { return bytes / sizeof(double); }
static_assert(sizeof(loss_partials) % sizeof(double) == 0 && sizeof(loss_value_error) % sizeof(double) == 0 &&
                  sizeof(loss_record) % sizeof(double) == 0,
              "the loss scratch is laid out in doubles");

/// Type the per-token math runs in: the element type itself for float/double (device.cuh: float for 16-bit).
template <class T>
struct compute_type {
    using type = T;
};
template <class T>
using compute_t = typename compute_type<T>::type;

/// Element types the loss pass accepts (device.cuh adds __half and __nv_bfloat16).
template <class T>
struct is_loss_element : std::integral_constant<bool, std::is_same<T, float>::value || std::is_same<T, double>::value> {
};

template <class T>
struct device_loss_views {
    matrix_view<const T, device_space> logp, old_logp, ref_logp, adv, mask;
    vector_view<const std::int64_t, device_space> lengths;
    matrix_view<T, device_space> grad, per_token;
    matrix_view<const T, device_space> samp;    ///< sampling_logp (read only by the sampling corrections)
    matrix_view<T, device_space> ratio;         ///< optional per-token ratio output
    matrix_view<const T, device_space> entropy; ///< per-token entropies (read only when a term uses them)
    matrix_view<T, device_space> grad_entropy;  ///< optional dLoss/dH output
};

/// The loss scratch in the workspace: per-row token counts, first errors and partials, the batch token
/// count and error, the record of the syncing overload, and the two last-block counters (zeroed before every
/// call).
struct loss_scratch {
    double* row_tokens = nullptr;      ///< rows
    double* row_error = nullptr;       ///< rows: the row's first bad column key (column * loss_error_count + code), -1
    loss_partials* partials = nullptr; ///< rows
    double* total = nullptr;           ///< 2: this call's unmasked tokens, and its rows with at least one
    loss_value_error* error = nullptr; ///< 1: the first error of the call (code none: no error)
    loss_record* record = nullptr;     ///< 1: the syncing overload's record
    unsigned long long* counters = nullptr; ///< 3
    // The per-token sorts (only when a selection is computed here): the top-entropy quantile and the
    // covariance selection sort one key per token in turn, in the same buffers.
    std::uint64_t* keys_in = nullptr;  ///< rows * cols: order-preserving bits of each key (max when not eligible)
    std::uint64_t* keys_out = nullptr; ///< rows * cols, sorted
    std::int64_t* values_in = nullptr; ///< rows * cols: the token's flat index (the sort's payload)
    std::int64_t* values_out = nullptr;
    void* sort_temp = nullptr;
    std::size_t sort_temp_bytes = 0;
    double* entropy_threshold = nullptr;       ///< 1
    double* cov_row_sums = nullptr;            ///< 2 * rows: sums of A and logp over each row's unmasked tokens
    math::covariance_selection* cov = nullptr; ///< 1: the call's covariance selection
};

inline std::size_t loss_scratch_doubles(index_t rows) {
    return static_cast<std::size_t>(rows) * (2 + doubles_of(sizeof(loss_partials))) + 1 +
           doubles_of(sizeof(loss_value_error)) + doubles_of(sizeof(loss_record)) + 4;
}

static_assert(sizeof(math::covariance_selection) % sizeof(double) == 0, "the selection is laid out in doubles");

/// Doubles the per-token sorts add after loss_scratch_doubles(rows): keys, payloads, the sort's temporary
/// storage, the entropy threshold, the covariance row sums and selection.
inline std::size_t token_sort_doubles(std::size_t tokens, std::size_t rows, std::size_t sort_bytes) {
    return 4 * tokens + (sort_bytes + sizeof(double) - 1) / sizeof(double) + 1 + 2 * rows +
           doubles_of(sizeof(math::covariance_selection));
}

inline loss_scratch loss_layout(double* base, index_t rows) {
    loss_scratch s;
    const std::size_t r = static_cast<std::size_t>(rows);
    s.row_tokens = base;
    s.row_error = s.row_tokens + r;
    s.partials = reinterpret_cast<loss_partials*>(s.row_error + r);
    s.total = s.row_error + r + r * doubles_of(sizeof(loss_partials));
    s.error = reinterpret_cast<loss_value_error*>(s.total + 2);
    s.record = reinterpret_cast<loss_record*>(s.total + 2 + doubles_of(sizeof(loss_value_error)));
    s.counters = reinterpret_cast<unsigned long long*>(s.total + 2 + doubles_of(sizeof(loss_value_error)) +
                                                       doubles_of(sizeof(loss_record)));
    return s;
}

/// The sorts' part of the scratch, at `base` (loss_scratch_doubles(rows) doubles into the workspace).
inline void token_sort_layout(loss_scratch& s, double* base, std::size_t tokens, std::size_t rows,
                              std::size_t sort_bytes) {
    s.keys_in = reinterpret_cast<std::uint64_t*>(base);
    s.keys_out = s.keys_in + tokens;
    s.values_in = reinterpret_cast<std::int64_t*>(s.keys_out + tokens);
    s.values_out = s.values_in + tokens;
    s.sort_temp = s.values_out + tokens;
    s.sort_temp_bytes = sort_bytes;
    s.entropy_threshold = base + 4 * tokens + (sort_bytes + sizeof(double) - 1) / sizeof(double);
    s.cov_row_sums = s.entropy_threshold + 1;
    s.cov = reinterpret_cast<math::covariance_selection*>(s.cov_row_sums + 2 * rows);
}

/// A double's bits as an unsigned key in the same order (negatives reversed below the positives), and back.
GRPO_HOST_DEVICE inline std::uint64_t order_key(double x) {
    const std::uint64_t bits = static_cast<std::uint64_t>(double_bits_as_int64(x));
    return (bits >> 63) != 0 ? ~bits : bits | (std::uint64_t(1) << 63);
}
GRPO_HOST_DEVICE inline double from_order_key(std::uint64_t k) {
    const std::uint64_t bits = (k >> 63) != 0 ? k & ~(std::uint64_t(1) << 63) : ~k;
    return int64_as_double_bits(static_cast<std::int64_t>(bits));
}

/// The block-wide combination of every thread's partials (same shape on every run: deterministic).
template <class B>
GRPO_HOST_DEVICE loss_partials block_reduce(B& b, loss_partials x) {
    x.for_each_field([&](double& f, fold how) {
        f = how == fold::min ? b.min(f) : how == fold::max ? b.max(f) : b.sum(f);
    });
    return x;
}

template <class T>
GRPO_HOST_DEVICE inline index_t valid_end(const device_loss_views<T>& v, index_t i) {
    const index_t cols = v.logp.cols();
    if (!v.lengths.present()) return cols;
    const index_t l = static_cast<index_t>(v.lengths[i]);
    return l < 0 ? 0 : (l > cols ? cols : l);
}
template <class T>
GRPO_HOST_DEVICE inline bool is_valid(const device_loss_views<T>& v, index_t i, index_t t) {
    return !v.mask.present() || compute_t<T>(v.mask(i, t)) != compute_t<T>(0);
}
template <class T>
GRPO_HOST_DEVICE inline T old_at(const device_loss_views<T>& v, index_t i, index_t t) {
    return v.old_logp.present() ? v.old_logp(i, t) : v.logp(i, t);
}

/// Valid tokens of row i that this thread sees (index order); the caller reduces over the block.
template <class T, class B>
GRPO_HOST_DEVICE inline double thread_valid_tokens(const B& b, const device_loss_views<T>& v, index_t i) {
    const index_t end = valid_end(v, i);
    if (!v.mask.present()) { // lengths only: the count needs no read of the row
        const index_t t = b.thread();
        if (t >= end) return 0.0;
        const index_t seen = (end - 1 - t) / b.threads() + 1; // t, t + threads, ... below end
        return static_cast<double>(seen);
    }
    double n = 0;
    for (index_t t = b.thread(); t < end; t += b.threads()) n += is_valid(v, i, t) ? 1.0 : 0.0;
    return n;
}

/// x is neither NaN nor infinite (x - x is 0 exactly then; works for every compute type, host and device).
template <class C>
GRPO_HOST_DEVICE inline bool is_finite_value(C x) {
    return x - x == C(0);
}

/// Per-row valid-token counts and first bad values; in the last block, the batch total and the first error.
template <class T>
struct loss_check_kernel {
    static constexpr int block = loss_block;
    device_loss_views<T> v;
    loss_scratch s;
    bool check_values;    ///< validation::full
    bool need_ref;        ///< beta != 0: ref_logp is read, so it is checked
    bool need_samp;       ///< a sampling correction: sampling_logp is read, so it is checked
    bool need_entropy;    ///< an entropy term: the entropies are read, so they are checked
    double global_tokens; ///< loss_config::global_token_count (0: this call's count)
    /// Check global_tokens against this call's count: loss_params::checks_global_tokens, the rule the CPU
    /// backend follows too, so both reject the same calls.
    bool check_global;

    /// This thread's first problem in row i as a column key (column * loss_error_count + code), or -1, and
    /// its count of valid tokens. Same order as the CPU backend's check_row.
    template <class B>
    GRPO_HOST_DEVICE double scan_row(const B& b, index_t i, double& tokens) const {
        using C = compute_t<T>;
        const index_t end = valid_end(v, i);
        if (!check_values) {
            tokens = thread_valid_tokens(b, v, i);
            return -1;
        }
        tokens = 0;
        for (index_t t = b.thread(); t < end; t += b.threads()) {
            const double key = static_cast<double>(t) * loss_error_count;
            const auto at = [&](loss_error e) { return key + static_cast<double>(e); };
            if (v.mask.present()) {
                const C m = C(v.mask(i, t));
                if (m != C(0) && m != C(1)) return at(loss_error::bad_mask);
                if (m == C(0)) continue;
            }
            tokens += 1;
            if (!is_finite_value(C(v.logp(i, t)))) return at(loss_error::bad_logp);
            if (v.old_logp.present() && !is_finite_value(C(v.old_logp(i, t)))) return at(loss_error::bad_old_logp);
            if (need_ref && !is_finite_value(C(v.ref_logp(i, t)))) return at(loss_error::bad_ref_logp);
            if (!is_finite_value(C(v.adv(i, t)))) return at(loss_error::bad_advantages);
            if (need_samp && !is_finite_value(C(v.samp(i, t)))) return at(loss_error::bad_sampling_logp);
            if (need_entropy && !is_finite_value(C(v.entropy(i, t)))) return at(loss_error::bad_entropy);
        }
        return -1;
    }

    template <class B>
    GRPO_HOST_DEVICE void operator()(B& b) const {
        const index_t rows = v.logp.rows(), cols = v.logp.cols();
        const double none = infinity();
        for (index_t i = b.block(); i < rows; i += b.blocks()) {
            double tokens = 0, key = -1;
            const bool bad_length = check_values && v.lengths.present() && (v.lengths[i] < 0 || v.lengths[i] > cols);
            if (!bad_length) key = scan_row(b, i, tokens);
            tokens = b.sum(tokens);
            key = b.min(key < 0 ? none : key);
            if (b.thread() == 0) {
                s.row_tokens[i] = tokens;
                s.row_error[i] = bad_length ? static_cast<double>(loss_error::bad_length) : key < none ? key : -1.0;
            }
        }
        if (!b.last_block_done(s.counters)) return;
        // Fixed-order total; the first error as the CPU reports it: a bad length anywhere first, then the
        // first row with a bad value.
        double total = 0, nonempty = 0, first_length = none, first_value = none;
        for (index_t i = b.thread(); i < rows; i += b.threads()) {
            const double n = b.load(s.row_tokens + i);
            total += n;
            nonempty += n > 0 ? 1.0 : 0.0;
            const double e = b.load(s.row_error + i);
            const double row = static_cast<double>(i);
            if (e == static_cast<double>(loss_error::bad_length) && row < first_length) first_length = row;
            if (e >= static_cast<double>(loss_error::bad_mask) && row < first_value) first_value = row; // a value key
        }
        total = b.sum(total);
        nonempty = b.sum(nonempty);
        first_length = b.min(first_length);
        first_value = b.min(first_value);
        if (b.thread() != 0) return;
        s.total[0] = total;
        s.total[1] = nonempty;
        loss_value_error err{loss_error::none, 0, 0, 0, 0};
        if (first_length < none) {
            const index_t i = static_cast<index_t>(first_length);
            err = {loss_error::bad_length, i, 0, v.lengths[i], 0};
        } else if (first_value < none) {
            const index_t i = static_cast<index_t>(first_value);
            const index_t key = static_cast<index_t>(b.load(s.row_error + i));
            const index_t t = key / loss_error_count;
            const loss_error code = static_cast<loss_error>(key % loss_error_count);
            const matrix_view<const T, device_space>& m = code == loss_error::bad_mask            ? v.mask
                                                          : code == loss_error::bad_logp          ? v.logp
                                                          : code == loss_error::bad_old_logp      ? v.old_logp
                                                          : code == loss_error::bad_ref_logp      ? v.ref_logp
                                                          : code == loss_error::bad_sampling_logp ? v.samp
                                                          : code == loss_error::bad_entropy       ? v.entropy
                                                                                                  : v.adv;
            err = {code, i, t, 0, static_cast<double>(compute_t<T>(m(i, t)))};
        } else if (check_global && global_tokens > 0 && global_tokens < total) {
            err = {loss_error::bad_global_count, static_cast<std::int64_t>(total), 0, 0, global_tokens};
        }
        *s.error = err;
    }
};

/// The top-entropy quantile, step 1 (after loss_check_kernel, whose token count step 3 reads): one sort key per
/// token, the entropy's order_key at unmasked tokens and the largest key at masked ones (sorted last).
template <class T>
struct entropy_keys_kernel {
    static constexpr int block = loss_block;
    device_loss_views<T> v;
    loss_scratch s;

    template <class B>
    GRPO_HOST_DEVICE void operator()(B& b) const {
        using C = compute_t<T>;
        const index_t cols = v.logp.cols(), n = v.logp.rows() * cols;
        for (index_t k = grid_first(b); k < n; k += grid_stride(b)) {
            const index_t i = k / cols, t = k % cols;
            const bool valid = t < valid_end(v, i) && is_valid(v, i, t);
            s.keys_in[k] = valid ? order_key(static_cast<double>(C(v.entropy(i, t)))) : ~std::uint64_t(0);
            s.values_in[k] = k;
        }
    }
};

/// Step 3 (after the sort): torch.quantile's linear interpolation between the sorted entropies around
/// q (n - 1), n = this call's unmasked tokens; -infinity when there are none. Thread 0 of one block.
struct entropy_threshold_kernel {
    static constexpr int block = loss_block;
    loss_scratch s;
    double q;

    template <class B>
    GRPO_HOST_DEVICE void operator()(B& b) const {
        if (b.thread() != 0 || b.block() != 0) return;
        const double n = s.total[0];
        if (!(n > 0)) {
            *s.entropy_threshold = -infinity();
            return;
        }
        const math::quantile_position at = math::quantile_at(q, n);
        const index_t lo = static_cast<index_t>(at.lo);
        const double v_lo = from_order_key(s.keys_out[lo]);
        const double v_hi = static_cast<double>(lo + 1) < n ? from_order_key(s.keys_out[lo + 1]) : v_lo;
        *s.entropy_threshold = math::quantile_value(v_lo, v_hi, at.frac);
    }
};

/// The covariance selection (clip_cov, kl_cov), step 1 (after loss_check_kernel, whose token count it reads):
/// the sums of A and logp over each row's unmasked tokens, then, in the last block, the means over the call in a
/// fixed order (the CPU backend's values).
template <class T>
struct cov_means_kernel {
    static constexpr int block = loss_block;
    device_loss_views<T> v;
    loss_scratch s;
    math::covariance_selection init; ///< the seed; (key, index) = (-infinity, -1)

    template <class B>
    GRPO_HOST_DEVICE void operator()(B& b) const {
        using C = compute_t<T>;
        const index_t rows = v.logp.rows();
        for (index_t i = b.block(); i < rows; i += b.blocks()) {
            double a = 0, lp = 0;
            for (index_t t = b.thread(), end = valid_end(v, i); t < end; t += b.threads())
                if (is_valid(v, i, t)) {
                    a += static_cast<double>(C(v.adv(i, t)));
                    lp += static_cast<double>(C(v.logp(i, t)));
                }
            a = b.sum(a);
            lp = b.sum(lp);
            if (b.thread() == 0) {
                s.cov_row_sums[2 * i] = a;
                s.cov_row_sums[2 * i + 1] = lp;
            }
        }
        if (!b.last_block_done(s.counters + 2)) return;
        if (b.thread() != 0) return;
        // One thread in row order: the CPU backend's sum, bit for bit.
        double a = 0, lp = 0;
        for (index_t i = 0; i < rows; ++i) {
            a += b.load(s.cov_row_sums + 2 * i);
            lp += b.load(s.cov_row_sums + 2 * i + 1);
        }
        const double n = s.total[0];
        math::covariance_selection out = init;
        out.mean_advantage = n > 0 ? a / n : 0.0;
        out.mean_logp = n > 0 ? lp / n : 0.0;
        *s.cov = out;
    }
};

/// Step 2: one sort key per token, math::covariance_candidate's key (order_key) at eligible tokens and the
/// largest key elsewhere (sorted last); the payload is the flat index, so the stable sort breaks ties by it.
template <class T>
struct cov_keys_kernel {
    static constexpr int block = loss_block;
    device_loss_views<T> v;
    loss_params call;
    loss_scratch s;

    template <class B>
    GRPO_HOST_DEVICE void operator()(B& b) const {
        using C = compute_t<T>;
        const index_t cols = v.logp.cols(), n = v.logp.rows() * cols;
        math::objective_params<C> o = call_objective_params<C>(call);
        o.cov = *s.cov;
        const C clamp = C(call.token.log_ratio_clamp);
        for (index_t k = grid_first(b); k < n; k += grid_stride(b)) {
            const index_t i = k / cols, t = k % cols;
            std::uint64_t key = ~std::uint64_t(0);
            if (t < valid_end(v, i) && is_valid(v, i, t)) {
                const math::selection_candidate c =
                    math::selection_at<C>(o, clamp, C(v.logp(i, t)), C(old_at(v, i, t)), C(v.adv(i, t)), k);
                if (c.eligible) key = order_key(c.key);
            }
            s.keys_in[k] = key;
            s.values_in[k] = k;
        }
    }
};

/// Step 4 (after the sort): the threshold pair, the k-th smallest (key, flat index) with k = min(cov_ratio's
/// count, the eligible tokens); (-infinity, -1) when k is 0. Thread 0 of one block.
struct cov_threshold_kernel {
    static constexpr int block = loss_block;
    loss_scratch s;
    double cov_ratio;
    index_t tokens; ///< rows * cols (the sorted length)

    template <class B>
    GRPO_HOST_DEVICE void operator()(B& b) const {
        if (b.thread() != 0 || b.block() != 0) return;
        // The eligible keys come first: binary search for the first "not eligible" key.
        index_t lo = 0, hi = tokens;
        while (lo < hi) {
            const index_t mid = lo + (hi - lo) / 2;
            if (s.keys_out[mid] == ~std::uint64_t(0)) hi = mid;
            else lo = mid + 1;
        }
        const double count = math::covariance_selection_count(cov_ratio, s.total[0]);
        const double k = count < static_cast<double>(lo) ? count : static_cast<double>(lo);
        if (!(k >= 1)) return; // *s.cov keeps (-infinity, -1)
        const index_t at = static_cast<index_t>(k) - 1;
        s.cov->key = from_order_key(s.keys_out[at]);
        s.cov->index = static_cast<double>(s.values_out[at]);
    }
};

/// The last block of a pass: the row partials in a fixed order (per thread in row order, then the block
/// reduction), finalized into `record`, with the pre-pass's error when it ran (`counted`).
template <class B>
GRPO_HOST_DEVICE void write_loss_record(B& b, const loss_scratch& s, index_t rows, double beta, double entropy_coef,
                                        bool counted, loss_record* record) {
    loss_partials f = loss_partials::identity();
    for (index_t i = b.thread(); i < rows; i += b.threads()) {
        loss_partials row;
        const double* src = reinterpret_cast<const double*>(s.partials + i);
        double* dst = reinterpret_cast<double*>(&row);
        for (std::size_t k = 0; k < doubles_of(sizeof(loss_partials)); ++k) dst[k] = b.load(src + k);
        f.merge(row);
    }
    f = block_reduce(b, f);
    if (b.thread() != 0) return;
    const loss_value_error none{loss_error::none, 0, 0, 0, 0};
    *record = loss_record{f.finalize(beta, entropy_coef), counted ? *s.error : none};
}

/// The fused pass: loss terms, gradient, per-token loss, per-row partials, and the record in the last block.
/// Iteration and reduction only: every token's numbers come from math::token_loss, as on the CPU.
template <class T>
struct loss_main_kernel {
    static constexpr int block = loss_block;
    device_loss_views<T> v;
    loss_params call;
    loss_scratch s;
    bool counted;         ///< loss_check_kernel ran before: s.row_tokens, s.total and *s.error are set
    double global_tokens; ///< loss_config::global_token_count (0: this call's count)
    loss_record* record;  ///< the caller's record

    template <class B>
    GRPO_HOST_DEVICE void operator()(B& b) const {
        using C = compute_t<T>;
        const index_t rows = v.logp.rows();
        const index_t cols = v.logp.cols();
        loss_params p = call;
        if (p.count_nonempty_rows) p.sequences = s.total[1];                         // the pre-pass counted them
        if (p.entropy_quantile_needed()) p.entropy_threshold = *s.entropy_threshold; // entropy_threshold_kernel
        if (p.covariance_selection()) p.token.objective.cov = *s.cov;                // cov_threshold_kernel
        const bool row_sums_first = p.row_log_ratio_sum() || p.row_sampling_sum() || p.row_objective_sum() ||
                                    (p.agg == aggregation::seq_mean_token_mean && !counted);
        const math::objective_params<C> call_objective = call_objective_params<C>(p);
        const math::correction_params<C> correction{p.token.correction.mode, C(p.token.correction.ratio_min),
                                                    C(p.token.correction.ratio_max)};
        const double total = global_tokens > 0 ? global_tokens : (counted ? *s.total : 0.0);
        const bool failed = counted && s.error->code != loss_error::none; // write nothing but the record
        const bool with_kl = p.with_kl();

        for (index_t i = failed ? rows : b.block(); i < rows; i += b.blocks()) {
            const index_t end = valid_end(v, i);
            // The row's sums (count, log-ratio, sampling log-ratio) before any gradient: its constants need them.
            row_sums sums;
            sums.tokens = counted ? s.row_tokens[i] : 0.0;
            if (row_sums_first) {
                double lr = 0, slr = 0, obj = 0;
                for (index_t t = b.thread(); t < end; t += b.threads())
                    if (is_valid(v, i, t)) {
                        const C d = C(v.logp(i, t)) - C(old_at(v, i, t));
                        if (p.row_log_ratio_sum()) lr += static_cast<double>(d);
                        if (p.row_sampling_sum()) slr += static_cast<double>(C(old_at(v, i, t)) - C(v.samp(i, t)));
                        if (p.row_objective_sum()) {
                            const C log_w = p.token_sampling()
                                                ? math::log(math::sampling_weight(
                                                      correction, C(C(old_at(v, i, t)) - C(v.samp(i, t)))))
                                                : C(0);
                            obj += static_cast<double>(
                                math::objective_row_term<C>(call_objective, d, C(v.adv(i, t)), log_w));
                        }
                    }
                sums.tokens = b.sum(thread_valid_tokens(b, v, i));
                if (p.row_log_ratio_sum()) sums.log_ratio = b.sum(lr);
                if (p.row_sampling_sum()) sums.sampling_log_ratio = b.sum(slr);
                if (p.row_objective_sum()) sums.objective = b.sum(obj);
            }
            const double n = sums.tokens;
            const row_setup rs = make_row_setup(p, sums, total);
            math::token_params<C> tp = row_token_params<C>(p, rs, 0.0);
            if (p.ratio == ratio_level::sequence && n > 0) { // dL/ds sums over the row's tokens
                double d = 0;
                for (index_t t = b.thread(); t < end; t += b.threads())
                    if (is_valid(v, i, t))
                        d += static_cast<double>(math::sequence_sensitivity<C>(
                            tp, with_kl, C(v.logp(i, t)), with_kl ? C(v.ref_logp(i, t)) : C(0), C(v.adv(i, t)),
                            token_weight(tp, i, t), entropy_at(p, i, t)));
                tp.sequence_term = C(math::sequence_gradient(rs.weight, b.sum(d), rs.sequence, rs.sequence_count));
            }
            const double w = rs.weight;

            loss_partials acc = loss_partials::identity();
            for (index_t t = b.thread(); t < cols; t += b.threads()) {
                const bool valid = t < end && is_valid(v, i, t);
                C g = 0, l = 0, ratio = 0, gh = 0;
                if (valid) {
                    const math::token_result<C> r = math::token_loss<C>(
                        tp, with_kl, C(v.logp(i, t)), C(old_at(v, i, t)), with_kl ? C(v.ref_logp(i, t)) : C(0),
                        C(v.adv(i, t)), token_weight(tp, i, t), entropy_at(p, i, t), i * cols + t);
                    g = r.grad;
                    l = r.loss;
                    ratio = r.ratio;
                    gh = r.grad_entropy;
                    acc.add(r);
                }
                if (v.grad.present()) v.grad(i, t) = T(g);
                if (v.per_token.present()) v.per_token(i, t) = T(l);
                if (v.ratio.present()) v.ratio(i, t) = T(ratio);
                if (v.grad_entropy.present()) v.grad_entropy(i, t) = T(gh);
            }
            acc = block_reduce(b, acc);
            if (b.thread() == 0) {
                acc.weigh(w);
                s.partials[i] = acc;
            }
        }
        if (b.last_block_done(s.counters + 1))
            write_loss_record(b, s, failed ? 0 : rows, call.token.beta, call.entropy_coef, counted, record);
    }

    /// The entropy at (i, t) when a term reads it; 0 otherwise.
    GRPO_HOST_DEVICE compute_t<T> entropy_at(const loss_params& p, index_t i, index_t t) const {
        using C = compute_t<T>;
        return p.entropy_given ? C(v.entropy(i, t)) : C(0);
    }

    /// The token-level sampling correction's weight at (i, t); 1 (unused) otherwise.
    template <class C>
    GRPO_HOST_DEVICE C token_weight(const math::token_params<C>& tp, index_t i, index_t t) const {
        if (!math::is_token_correction(tp.correction.mode)) return C(1);
        return math::sampling_weight(tp.correction, C(C(old_at(v, i, t)) - C(v.samp(i, t))));
    }
};

} // namespace cuda
} // namespace detail
GRPO_NAMESPACE_END
