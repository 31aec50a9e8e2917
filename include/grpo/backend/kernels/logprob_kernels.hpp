// SPDX-License-Identifier: MIT
// Kernels of logprobs_from_logits and its backward on the block model of block.hpp (CUDA-free), one block per
// row (grid-stride over rows), the formulas of math/logprob.hpp:
//   logprob_forward_kernel   per row: the row's maximum (and the first NaN/+inf), then the sums s and u against
//                            it (two reads of the row, the second from cache), logp, entropy, lse into scratch;
//                            the last block to finish picks the first error in the CPU backend's order or,
//                            without one, copies the results to the outputs and sums them in a fixed order.
//   logprob_check_kernel     the backward's validation before anything is written: ids, mask values, the
//                            per-row values and (validation::full) a read of the logits for NaN/+inf; the last
//                            block records the first error.
//   logprob_backward_kernel  per element: d loss / d logits = softmax_grad + [j == y] g_logp, over the
//                            temperature, written in place when grad_logits is the logits' memory (each element
//                            is read and then written by the same thread). Nothing when the check failed.
// Sums are in double, per thread in index order then a block reduction of fixed shape: deterministic for a fixed
// block size. Element types: float, double and, on the GPU, __half and __nv_bfloat16 (math in float).
#pragma once

#include <cstdint>

#include "../../math/logprob.hpp"
#include "../../types/logprob_types.hpp"
#include "block.hpp"
#include "loss_kernels.hpp"

GRPO_NAMESPACE_BEGIN
namespace detail {
namespace cuda {

constexpr int logprob_block = 256;

/// One row's forward results, or its first problem (code: a logit_error).
struct logprob_row {
    double lse, logp, entropy;
    double code;    ///< logit_error
    double column;  ///< the logit's column (logit errors)
    double value;   ///< the offending value (bad_token: the id's int64 bits)
    double counted; ///< 1 for an unmasked row
    double pad;
};

/// What the host reads back after a call: the first error, and the forward's sums.
struct logprob_record {
    double code; ///< logit_error (none: no error)
    double row;
    double column;
    double value;
    double rows, logp_sum, entropy_sum;
    double pad;
};

/// The scratch of one call in the workspace: a result per row, the record and the last-block counter.
struct logprob_scratch {
    logprob_row* rows = nullptr;
    logprob_record* record = nullptr;
    unsigned long long* counter = nullptr;
};

inline std::size_t logprob_scratch_doubles(index_t rows) {
    return static_cast<std::size_t>(rows) * doubles_of(sizeof(logprob_row)) + doubles_of(sizeof(logprob_record)) + 1;
}
inline logprob_scratch logprob_layout(double* base, index_t rows) {
    logprob_scratch s;
    s.rows = reinterpret_cast<logprob_row*>(base);
    s.record =
        reinterpret_cast<logprob_record*>(base + static_cast<std::size_t>(rows) * doubles_of(sizeof(logprob_row)));
    s.counter = reinterpret_cast<unsigned long long*>(base + logprob_scratch_doubles(rows) - 1);
    return s;
}

/// The order in which errors are reported (the CPU backend's): ids and mask values of every row first, then the
/// per-row values, then the logits.
GRPO_HOST_DEVICE inline double error_stage(double code) {
    const auto e = static_cast<logit_error>(static_cast<int>(code));
    return e == logit_error::bad_mask || e == logit_error::bad_token ? 0.0
           : e == logit_error::bad_lse || e == logit_error::bad_grad_logp || e == logit_error::bad_entropy ||
                   e == logit_error::bad_grad_entropy
               ? 1.0
               : 2.0;
}

template <class T, class Token>
struct logprob_views {
    matrix_view<const T, device_space> logits;
    vector_view<const Token, device_space> tokens;
    vector_view<const T, device_space> mask;
};

/// The row's checks that need no read of the logits: mask value (validation::full) and token id. Sets r.code
/// and r.value on failure; returns the id.
template <class T, class Token>
GRPO_HOST_DEVICE inline long long check_row_ids(const vector_view<const Token, device_space>& tokens,
                                                const vector_view<const T, device_space>& mask, index_t vocab,
                                                index_t i, bool full, bool& masked, logprob_row& r) {
    using C = compute_t<T>;
    masked = false;
    if (mask.present()) {
        const C m = C(mask[i]);
        if (full && m != C(0) && m != C(1)) {
            r.code = static_cast<double>(logit_error::bad_mask);
            r.value = static_cast<double>(m);
            return 0;
        }
        masked = m == C(0);
    }
    if (masked) return 0;
    const auto id = static_cast<long long>(tokens[i]);
    if (id < 0 || id >= static_cast<long long>(vocab)) {
        r.code = static_cast<double>(logit_error::bad_token);
        r.value = int64_as_double_bits(static_cast<std::int64_t>(id));
    }
    return id;
}

/// Collective over the block: the row's maximum of z = x / tau and its first column holding NaN or +inf
/// (vocab when none).
template <class C, class T, class B>
GRPO_HOST_DEVICE inline void row_max(B& b, const T* x, index_t vocab, C tau, double& m, double& first_bad) {
    C tmax = -math::infinity<C>();
    index_t bad = vocab;
    for (index_t j = b.thread(); j < vocab; j += b.threads()) {
        const C z = C(x[j]) / tau;
        tmax = z > tmax ? z : tmax;
        if (!(z < math::infinity<C>()) && bad == vocab) bad = j;
    }
    m = b.max(static_cast<double>(tmax));
    first_bad = b.min(static_cast<double>(bad));
}

/// Collective over the block: softmax_stats of the row against its maximum m (finite).
template <class C, class T, class B>
GRPO_HOST_DEVICE inline math::softmax_stats row_sums(B& b, const T* x, index_t vocab, C tau, double m) {
    const C mc = C(m);
    double s = 0, u = 0;
    for (index_t j = b.thread(); j < vocab; j += b.threads()) {
        const C z = C(x[j]) / tau;
        const C w = math::softmax_weight(z, mc);
        s += static_cast<double>(w);
        u += static_cast<double>(math::softmax_moment(z, mc, w));
    }
    math::softmax_stats st;
    st.m = m;
    st.s = b.sum(s);
    st.u = b.sum(u);
    return st;
}

/// In the last block: the first error by (stage, row); -1 when none. Every thread gets it.
template <class B>
GRPO_HOST_DEVICE inline double first_error(B& b, const logprob_scratch& s, index_t rows, bool full) {
    double best = infinity();
    for (index_t i = b.thread(); i < rows; i += b.threads()) {
        const double code = b.load(&s.rows[i].code);
        // Without validation::full only an id outside [0, V) is an error (the others give NaN, as arithmetic does).
        const bool reported = code != 0 && (full || code == static_cast<double>(logit_error::bad_token));
        const double key = error_stage(code) * static_cast<double>(rows) + static_cast<double>(i);
        best = reported && key < best ? key : best;
    }
    best = b.min(best);
    if (!(best < infinity())) return -1;
    return best -
           static_cast<double>(rows) * static_cast<double>(static_cast<index_t>(best / static_cast<double>(rows)));
}

template <class B>
GRPO_HOST_DEVICE inline void write_error_record(B& b, const logprob_scratch& s, index_t row) {
    if (b.thread() != 0) return;
    logprob_record r{};
    r.code = b.load(&s.rows[row].code);
    r.row = static_cast<double>(row);
    r.column = b.load(&s.rows[row].column);
    r.value = b.load(&s.rows[row].value);
    *s.record = r;
}

/// Collective over the block: the forward of one unmasked row x[0 .. vocab) with a valid id (logp, entropy, lse
/// into r, or its logit error).
template <class C, class T, class B>
GRPO_HOST_DEVICE inline void forward_row(B& b, const T* x, index_t vocab, long long id, C tau, logprob_row& r) {
    r.counted = 1;
    double m = 0, first_bad = 0;
    row_max<C>(b, x, vocab, tau, m, first_bad);
    if (first_bad < static_cast<double>(vocab)) {
        const auto j = static_cast<index_t>(first_bad);
        const double xv = static_cast<double>(C(x[j]));
        r.code = static_cast<double>(xv == xv && xv < infinity() ? logit_error::overflow : logit_error::bad_logit);
        r.column = first_bad;
        r.value = xv;
        r.lse = r.logp = r.entropy = infinity() - infinity(); // NaN, as the arithmetic gives
        return;
    }
    // All -inf: s stays 0 (the CPU backend skips the sums too), and the results are NaN.
    const math::softmax_stats st = m == -infinity() ? math::softmax_stats{} : row_sums<C>(b, x, vocab, tau, m);
    const C z_token = C(x[id]) / tau;
    r.lse = math::log_sum_exp(st);
    r.logp = math::log_prob(static_cast<double>(z_token), st);
    r.entropy = math::softmax_entropy(st);
    if (z_token == -math::infinity<C>()) {
        r.code = static_cast<double>(logit_error::banned_token);
        r.column = static_cast<double>(id);
        r.value = -infinity();
    }
}

/// In the last block of a forward: the first error into the record or, without one, every row's results into the
/// outputs and their sums (in a fixed order) into the record.
template <class T, class B>
GRPO_HOST_DEVICE inline void finish_forward(B& b, const logprob_scratch& s, index_t rows, bool full,
                                            const vector_view<T, device_space>& logp,
                                            const vector_view<T, device_space>& entropy,
                                            const vector_view<double, device_space>& lse) {
    using C = compute_t<T>;
    const double bad = first_error(b, s, rows, full);
    if (bad >= 0) return write_error_record(b, s, static_cast<index_t>(bad));
    double n = 0, logp_sum = 0, entropy_sum = 0;
    for (index_t i = b.thread(); i < rows; i += b.threads()) {
        const double l = b.load(&s.rows[i].logp), h = b.load(&s.rows[i].entropy);
        if (logp.present()) logp[i] = T(static_cast<C>(l));
        if (entropy.present()) entropy[i] = T(static_cast<C>(h));
        if (lse.present()) lse[i] = b.load(&s.rows[i].lse);
        if (b.load(&s.rows[i].counted) == 0) continue;
        n += 1;
        logp_sum += l;
        entropy_sum += h;
    }
    n = b.sum(n);
    logp_sum = b.sum(logp_sum);
    entropy_sum = b.sum(entropy_sum);
    if (b.thread() == 0) {
        logprob_record r{};
        r.rows = n;
        r.logp_sum = logp_sum;
        r.entropy_sum = entropy_sum;
        *s.record = r;
    }
}

/// Collective over the block: dLoss/dlogits of one unmasked row into out (which may be x itself: each element is
/// read, then written, by the same thread).
template <class C, class T, class B>
GRPO_HOST_DEVICE inline void backward_row(B& b, const T* x, T* out, index_t vocab, index_t id, C tau, double lse, C gl,
                                          C ge, C h) {
    // lse split into a part exact in C and the rest; past |lse| = 2^20 the row's maximum and log s are recomputed
    // instead (the CPU backend's rule, row-uniform).
    double hi = static_cast<double>(C(lse)), lo = lse - hi;
    if (!(lse <= 1048576.0 && lse >= -1048576.0)) {
        double m = 0, first_bad = 0;
        row_max<C>(b, x, vocab, tau, m, first_bad);
        const math::softmax_stats st = row_sums<C>(b, x, vocab, tau, m);
        hi = st.m;
        lo = ::log(st.s);
    }
    const C lse_hi = C(hi), lse_lo = C(lo);
    for (index_t j = b.thread(); j < vocab; j += b.threads()) {
        C d = math::softmax_grad(C(x[j]) / tau, lse_hi, lse_lo, h, gl, ge);
        if (j == id) d += gl; // the [j == y] g_logp term
        out[j] = T(d / tau);
    }
}

template <class T, class Token>
struct logprob_forward_kernel {
    static constexpr int block = logprob_block;
    logprob_views<T, Token> v;
    vector_view<T, device_space> logp, entropy;
    vector_view<double, device_space> lse;
    double temperature;
    bool full;
    logprob_scratch s;

    template <class B>
    GRPO_HOST_DEVICE void operator()(B& b) const {
        using C = compute_t<T>;
        const index_t rows = v.logits.rows(), vocab = v.logits.cols();
        const C tau = C(temperature);
        for (index_t i = b.block(); i < rows; i += b.blocks()) {
            logprob_row r{};
            bool masked = false;
            const long long id = check_row_ids(v.tokens, v.mask, vocab, i, full, masked, r);
            if (!masked && r.code == 0) // row-uniform: every thread of the block takes this branch or none
                forward_row<C>(b, v.logits.data() + i * v.logits.row_stride(), vocab, id, tau, r);
            if (b.thread() == 0) s.rows[i] = r;
        }
        if (b.last_block_done(s.counter)) finish_forward<T>(b, s, rows, full, logp, entropy, lse);
    }
};

template <class T>
struct logprob_grad_views {
    vector_view<const double, device_space> lse;
    vector_view<const T, device_space> entropy, grad_logp, grad_entropy;
};

/// The backward's validation: nothing is written to the gradient unless every row passes.
template <class T, class Token>
struct logprob_check_kernel {
    static constexpr int block = logprob_block;
    logprob_views<T, Token> v;
    logprob_grad_views<T> g;
    double temperature;
    bool full;
    logprob_scratch s;
    bool scan_logits = true; ///< false for the hidden form, whose logits do not exist yet

    template <class B>
    GRPO_HOST_DEVICE void operator()(B& b) const {
        using C = compute_t<T>;
        const index_t rows = v.logits.rows(), vocab = v.logits.cols();
        for (index_t i = b.block(); i < rows; i += b.blocks()) {
            logprob_row r{};
            bool masked = false;
            check_row_ids(v.tokens, v.mask, vocab, i, full, masked, r);
            if (!masked && r.code == 0 && full) {
                const auto check = [&](logit_error e, double x) {
                    if (r.code == 0 && !is_finite_value(x)) {
                        r.code = static_cast<double>(e);
                        r.value = x;
                    }
                };
                check(logit_error::bad_lse, g.lse[i]);
                check(logit_error::bad_grad_logp, static_cast<double>(C(g.grad_logp[i])));
                if (g.grad_entropy.present()) {
                    check(logit_error::bad_entropy, static_cast<double>(C(g.entropy[i])));
                    check(logit_error::bad_grad_entropy, static_cast<double>(C(g.grad_entropy[i])));
                }
                if (r.code == 0 && scan_logits) {
                    const T* x = v.logits.data() + i * v.logits.row_stride();
                    index_t bad = vocab;
                    for (index_t j = b.thread(); j < vocab; j += b.threads())
                        if (!(C(x[j]) < math::infinity<C>())) {
                            bad = j;
                            break;
                        }
                    const double first_bad = b.min(static_cast<double>(bad));
                    if (first_bad < static_cast<double>(vocab)) {
                        r.code = static_cast<double>(logit_error::bad_logit);
                        r.column = first_bad;
                        r.value = static_cast<double>(C(x[static_cast<index_t>(first_bad)]));
                    }
                }
            }
            if (b.thread() == 0) s.rows[i] = r;
        }
        if (!b.last_block_done(s.counter)) return;
        const double bad = first_error(b, s, rows, full);
        if (bad >= 0) return write_error_record(b, s, static_cast<index_t>(bad));
        if (b.thread() == 0) *s.record = logprob_record{};
    }
};

template <class T, class Token>
struct logprob_backward_kernel {
    static constexpr int block = logprob_block;
    logprob_views<T, Token> v;
    logprob_grad_views<T> g;
    matrix_view<T, device_space> grad_logits;
    double temperature;
    const logprob_record* record; ///< the check kernel's: nothing is written when it holds an error

    template <class B>
    GRPO_HOST_DEVICE void operator()(B& b) const {
        using C = compute_t<T>;
        const index_t rows = v.logits.rows(), vocab = v.logits.cols();
        if (record->code != 0) return;
        const C tau = C(temperature);
        for (index_t i = b.block(); i < rows; i += b.blocks()) {
            T* out = grad_logits.data() + i * grad_logits.row_stride();
            if (v.mask.present() && C(v.mask[i]) == C(0)) {
                for (index_t j = b.thread(); j < vocab; j += b.threads()) out[j] = T(C(0));
                continue;
            }
            const C gl = C(g.grad_logp[i]);
            const C ge = g.grad_entropy.present() ? C(g.grad_entropy[i]) : C(0);
            const C h = g.grad_entropy.present() ? C(g.entropy[i]) : C(0);
            backward_row<C>(b, v.logits.data() + i * v.logits.row_stride(), out, vocab,
                            static_cast<index_t>(v.tokens[i]), tau, g.lse[i], gl, ge, h);
        }
    }
};

} // namespace cuda
} // namespace detail
GRPO_NAMESPACE_END
