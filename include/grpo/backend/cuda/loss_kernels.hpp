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

#include "../../loss_types.hpp"
#include "block.hpp"

GRPO_NAMESPACE_BEGIN
namespace detail {
namespace cuda {

constexpr int loss_block = 256;
/// Per-row partials (doubles): same fields as the CPU backend's row_partials.
constexpr int row_fields = 11; // policy, kl, kl_sum, tokens, clip_low, clip_high, dual, ratio_sum, rmin, rmax, neg_lr
/// The stats record: loss_stats in field order, then the error fields (see loss_error).
constexpr int stats_fields = 17;
/// Error codes of the record ([13]; [14] row, [15] column, [16] the bad value), in the CPU's check order.
/// [14] and [15] always hold int64 bit patterns (int64_as_double_bits), [16] too for loss_bad_length (the
/// length); otherwise [16] is the bad value as a double.
enum loss_error : int {
    loss_ok = 0,
    loss_bad_length = 1, ///< lengths[i] outside [0, cols] ([15] unused, [16] the length as int64 bits)
    loss_bad_mask = 2,   ///< a mask value other than 0 or 1
    loss_bad_logp = 3,   ///< non-finite values at unmasked tokens:
    loss_bad_old_logp = 4,
    loss_bad_ref_logp = 5,
    loss_bad_advantages = 6,
    loss_bad_global_count = 7, ///< global_token_count below this call's tokens ([14] the tokens as int64 bits,
                               ///< [16] the count as a double)
};
constexpr int loss_error_kinds = 8; ///< column keys are column * loss_error_kinds + code

/// Type the per-token math runs in: the element type itself for float/double (device.cuh: float for 16-bit).
template <class T>
struct compute_type {
    using type = T;
};
template <class T>
using compute_t = typename compute_type<T>::type;

/// Element types the loss pass accepts (device.cuh adds __half and __nv_bfloat16).
template <class T>
struct is_loss_element : std::integral_constant<bool, std::is_same<T, float>::value || std::is_same<T, double>::value> {};

template <class T>
struct device_loss_views {
    matrix_view<const T, device_space> logp, old_logp, ref_logp, adv, mask;
    vector_view<const std::int64_t, device_space> lengths;
    matrix_view<T, device_space> grad, per_token;
};

/// The loss scratch in the workspace: per-row token counts, first errors and partials, the batch token
/// count and error, the stats record of the syncing overload, and the two last-block counters (zeroed before
/// every call).
struct loss_scratch {
    double* row_tokens = nullptr; ///< rows
    double* row_error = nullptr;  ///< rows: the row's first bad column key (column * loss_error_kinds + code), -1
    double* partials = nullptr;   ///< rows * row_fields
    double* total = nullptr;      ///< 1
    double* error = nullptr;      ///< 4: code, row, column, value (loss_error; int64 bits as documented there)
    double* stats = nullptr;      ///< stats_fields
    unsigned long long* counters = nullptr; ///< 2
};

inline std::size_t loss_scratch_doubles(index_t rows) {
    return static_cast<std::size_t>(rows) * (2 + row_fields) + 1 + 4 + stats_fields + 2;
}

inline loss_scratch loss_layout(double* base, index_t rows) {
    loss_scratch s;
    const std::size_t r = static_cast<std::size_t>(rows);
    s.row_tokens = base;
    s.row_error = s.row_tokens + r;
    s.partials = s.row_error + r;
    s.total = s.partials + r * row_fields;
    s.error = s.total + 1;
    s.stats = s.error + 4;
    s.counters = reinterpret_cast<unsigned long long*>(s.stats + stats_fields);
    return s;
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
        return t < end ? static_cast<double>((end - 1 - t) / b.threads() + 1) : 0.0;
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
    double global_tokens; ///< loss_config::global_token_count (0: this call's count)

    /// This thread's first problem in row i as a column key (column * loss_error_kinds + code), or -1, and
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
            const double key = static_cast<double>(t) * loss_error_kinds;
            if (v.mask.present()) {
                const C m = C(v.mask(i, t));
                if (m != C(0) && m != C(1)) return key + loss_bad_mask;
                if (m == C(0)) continue;
            }
            tokens += 1;
            if (!is_finite_value(C(v.logp(i, t)))) return key + loss_bad_logp;
            if (v.old_logp.present() && !is_finite_value(C(v.old_logp(i, t)))) return key + loss_bad_old_logp;
            if (need_ref && !is_finite_value(C(v.ref_logp(i, t)))) return key + loss_bad_ref_logp;
            if (!is_finite_value(C(v.adv(i, t)))) return key + loss_bad_advantages;
        }
        return -1;
    }

    template <class B>
    GRPO_HOST_DEVICE void operator()(B& b) const {
        const index_t rows = v.logp.rows(), cols = v.logp.cols();
        const double none = infinity();
        for (index_t i = b.block(); i < rows; i += b.blocks()) {
            double tokens = 0, key = -1;
            const bool bad_length =
                check_values && v.lengths.present() && (v.lengths[i] < 0 || v.lengths[i] > cols);
            if (!bad_length) key = scan_row(b, i, tokens);
            tokens = b.sum(tokens);
            key = b.min(key < 0 ? none : key);
            if (b.thread() == 0) {
                s.row_tokens[i] = tokens;
                s.row_error[i] = bad_length ? static_cast<double>(loss_bad_length) : key < none ? key : -1.0;
            }
        }
        if (!b.last_block_done(s.counters)) return;
        // Fixed-order total; the first error as the CPU reports it: a bad length anywhere first, then the
        // first row with a bad value.
        double total = 0, first_length = none, first_value = none;
        for (index_t i = b.thread(); i < rows; i += b.threads()) {
            total += b.load(s.row_tokens + i);
            const double e = b.load(s.row_error + i);
            const double row = static_cast<double>(i);
            if (e == loss_bad_length && row < first_length) first_length = row;
            if (e >= loss_bad_mask && row < first_value) first_value = row; // a value key (any column)
        }
        total = b.sum(total);
        first_length = b.min(first_length);
        first_value = b.min(first_value);
        if (b.thread() != 0) return;
        *s.total = total;
        double err[4] = {0, 0, 0, 0};
        if (first_length < none) {
            const index_t i = static_cast<index_t>(first_length);
            err[0] = loss_bad_length;
            err[1] = int64_as_double_bits(i);
            err[3] = int64_as_double_bits(v.lengths[i]);
        } else if (first_value < none) {
            const index_t i = static_cast<index_t>(first_value);
            const double key = b.load(s.row_error + i);
            const index_t t = static_cast<index_t>(key) / loss_error_kinds;
            const int code = static_cast<int>(static_cast<index_t>(key) % loss_error_kinds);
            const matrix_view<const T, device_space>& m = code == loss_bad_mask       ? v.mask
                                                          : code == loss_bad_logp     ? v.logp
                                                          : code == loss_bad_old_logp ? v.old_logp
                                                          : code == loss_bad_ref_logp ? v.ref_logp
                                                                                      : v.adv;
            err[0] = code;
            err[1] = int64_as_double_bits(i);
            err[2] = int64_as_double_bits(t);
            err[3] = static_cast<double>(compute_t<T>(m(i, t)));
        } else if (check_values && global_tokens > 0 && global_tokens < total) {
            err[0] = loss_bad_global_count;
            err[1] = int64_as_double_bits(static_cast<std::int64_t>(total));
            err[3] = global_tokens;
        }
        for (int k = 0; k < 4; ++k) s.error[k] = err[k];
    }
};

/// The fused pass: loss terms, gradient, per-token loss, per-row partials, and the stats in the last block.
template <class T>
struct loss_main_kernel {
    static constexpr int block = loss_block;
    device_loss_views<T> v;
    loss_params p;
    loss_scratch s;
    bool counted;         ///< loss_check_kernel ran before: s.row_tokens, *s.total and s.error are set
    double global_tokens; ///< loss_config::global_token_count (0: this call's count)
    double* stats;        ///< stats_fields doubles: the caller's record

    template <class B>
    GRPO_HOST_DEVICE void operator()(B& b) const {
        using C = compute_t<T>;
        const index_t rows = v.logp.rows();
        const index_t cols = v.logp.cols();
        const bool sequence = p.ratio != ratio_level::token;
        const bool row_count_first = sequence || (p.agg == aggregation::seq_mean_token_mean && !counted);
        const double total = global_tokens > 0 ? global_tokens : (counted ? *s.total : 0.0);
        const bool failed = counted && s.error[0] != 0; // bad values: write nothing but the error record
        const math::clip_bounds<C> clip{C(p.clip.low), C(p.clip.high), C(p.clip.delta), C(p.clip.dual_c)};
        const C lr_clamp = C(p.log_ratio_clamp), beta = C(p.beta);
        const C kl_in = C(p.kl_log_ratio_clamp), kl_out = C(p.kl_value_clamp);
        const bool with_kl = p.beta != 0;
        const double inf = infinity();

        for (index_t i = failed ? rows : b.block(); i < rows; i += b.blocks()) {
            const index_t end = valid_end(v, i);
            // Row count (and for GSPO the mean log-ratio) before any gradient: the weight depends on them.
            double n = counted ? s.row_tokens[i] : 0.0;
            double seq = 1, dseq = 0, dloss_dseq = 0;
            if (row_count_first) {
                double lr = 0;
                if (sequence)
                    for (index_t t = b.thread(); t < end; t += b.threads())
                        if (is_valid(v, i, t)) lr += static_cast<double>(C(v.logp(i, t)) - C(old_at(v, i, t)));
                n = b.sum(thread_valid_tokens(b, v, i));
                if (sequence) lr = b.sum(lr);
                if (sequence && n > 0) {
                    const math::clamped<double> c = math::clamp_symmetric(lr / n, p.log_ratio_clamp);
                    seq = math::exp(c.value);
                    dseq = seq * c.grad;
                    if (p.ratio == ratio_level::sequence) { // dL/ds sums over the row's tokens
                        double d = 0;
                        for (index_t t = b.thread(); t < end; t += b.threads())
                            if (is_valid(v, i, t))
                                d += static_cast<double>(
                                    math::clipped_surrogate<C>(C(seq), C(v.adv(i, t)), clip).dloss_dratio);
                        dloss_dseq = b.sum(d);
                    }
                }
            }
            const double w =
                p.loss_scale * math::row_weight<double>(p.agg, n, total, p.sequences, p.constant_length);
            // chain(): exactly 0 when no token's loss depends on the sequence ratio, even where dseq overflowed.
            const double cross =
                (p.ratio == ratio_level::sequence && n > 0) ? math::chain(w * dloss_dseq, dseq) / n : 0.0;
            const C cw = C(w), ccross = C(cross), seq_ratio = C(seq);
            const C seq_dratio = p.ratio == ratio_level::sequence_token ? C(dseq) : C(0);

            double acc[row_fields] = {0, 0, 0, 0, 0, 0, 0, 0, inf, -inf, 0};
            for (index_t t = b.thread(); t < cols; t += b.threads()) {
                const bool valid = t < end && is_valid(v, i, t);
                C g = 0, l = 0;
                if (valid) {
                    const C x = C(v.logp(i, t));
                    const C log_ratio = x - C(old_at(v, i, t));
                    const C a = C(v.adv(i, t));
                    const math::clamped<C> lr = math::clamp_symmetric(log_ratio, lr_clamp);
                    const C token_ratio = math::exp(lr.value);
                    const C rr = sequence ? seq_ratio : token_ratio;
                    const C dr = sequence ? seq_dratio : token_ratio * lr.grad;
                    const math::surrogate_term<C> sur = math::clipped_surrogate<C>(rr, a, clip);
                    C kl_value = 0, kl_grad = 0;
                    if (with_kl) {
                        const math::kl_term<C> term = math::kl_penalty<C>(p.kl, x, C(v.ref_logp(i, t)), kl_in,
                                                                          kl_out, p.kl_straight_through);
                        kl_value = term.value;
                        kl_grad = term.grad;
                    }
                    // As the CPU row pass: a zero factor (clipped branch, beta = 0, zero weight) gives exactly 0
                    // even where the ratio overflowed to inf, so finite inputs never give a NaN gradient.
                    g = math::token_gradient(cw, sur.dloss_dratio, dr, beta, kl_grad, ccross);
                    l = sur.loss + beta * kl_value;
                    acc[0] += static_cast<double>(sur.loss);
                    acc[2] += static_cast<double>(kl_value);
                    acc[3] += 1;
                    acc[4] += static_cast<double>(sur.clipped_low);
                    acc[5] += static_cast<double>(sur.clipped_high);
                    acc[6] += static_cast<double>(sur.dual_clipped);
                    acc[7] += static_cast<double>(rr);
                    acc[8] = acc[8] < double(rr) ? acc[8] : double(rr);
                    acc[9] = acc[9] > double(rr) ? acc[9] : double(rr);
                    acc[10] += -static_cast<double>(log_ratio); // approx_kl: unmasked tokens only, as on the CPU
                }
                if (v.grad.present()) v.grad(i, t) = T(g);
                if (v.per_token.present()) v.per_token(i, t) = T(l);
            }
            double out[row_fields];
            for (int f = 0; f < row_fields; ++f) {
                if (f == 1) continue;
                out[f] = f == 8 ? b.min(acc[f]) : f == 9 ? b.max(acc[f]) : b.sum(acc[f]);
            }
            if (b.thread() == 0) {
                double* o = s.partials + i * row_fields;
                for (int f = 0; f < row_fields; ++f) o[f] = out[f];
                o[0] = out[0] * w;
                o[1] = out[2] * w;
            }
        }
        if (b.last_block_done(s.counters + 1)) write_stats(b, failed ? 0 : rows);
    }

    /// The last block: the row partials in a fixed order (per thread in row order, then the block reduction).
    template <class B>
    GRPO_HOST_DEVICE void write_stats(B& b, index_t rows) const {
        const double inf = infinity();
        double f[row_fields] = {0, 0, 0, 0, 0, 0, 0, 0, inf, -inf, 0};
        for (index_t i = b.thread(); i < rows; i += b.threads()) {
            const double* o = s.partials + i * row_fields;
            for (int k = 0; k < row_fields; ++k) {
                const double x = b.load(o + k);
                f[k] = k == 8 ? (x < f[k] ? x : f[k]) : k == 9 ? (x > f[k] ? x : f[k]) : f[k] + x;
            }
        }
        for (int k = 0; k < row_fields; ++k) f[k] = k == 8 ? b.min(f[k]) : k == 9 ? b.max(f[k]) : b.sum(f[k]);
        if (b.thread() != 0) return;
        const double n = f[3];
        double st[stats_fields] = {f[0] + p.beta * f[1], f[0], f[1], n, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
        if (n > 0) {
            st[4] = f[4] / n;
            st[5] = f[5] / n;
            st[6] = (f[4] + f[5]) / n;
            st[7] = f[6] / n;
            st[8] = f[7] / n;
            st[9] = f[8];
            st[10] = f[9];
            st[11] = f[2] / n;
            st[12] = f[10] / n;
        }
        if (counted)
            for (int k = 0; k < 4; ++k) st[13 + k] = s.error[k];
        for (int k = 0; k < stats_fields; ++k) stats[k] = st[k];
    }
};

} // namespace cuda
} // namespace detail
GRPO_NAMESPACE_END
