// SPDX-License-Identifier: MIT
// Kernels of logprobs_from_hidden and its backward on the block model of block.hpp (CUDA-free). The entry point
// (api/device_logprob.hpp) checks first, then loops over chunks of unmasked rows on the host; the products are the
// device's gemm (cuBLAS on a GPU):
//   hidden_check_kernel        per row: ids and mask values, the backward's per-row values, a hidden row's
//                              finiteness with its |.|_1 and max |.|; per weight row: finiteness and max |.|; the
//                              last block checks the bias, picks the first error in the CPU backend's order, checks
//                              the backward's overflow bounds (math of cpu/logprob_hidden.hpp, one thread, row
//                              order) and lists the unmasked rows (one thread: the chunks' row indices).
//   hidden_gather_kernel       a chunk's hidden rows into a dense [c, H] buffer.
//   hidden_rows_kernel         per chunk row: the bias added to its logits, then the logits form's forward_row
//                              (forward) or backward_row in place (backward).
//   logprob_finish_kernel      one block: the logits form's finish_forward (first error, or outputs and sums).
//   hidden_bias_grad_kernel    per vocabulary column: dbias += the column's sum over the chunk, in row order.
//   hidden_scatter_kernel      a chunk's dhidden rows to their rows of grads.hidden; hidden_zero_masked_kernel
//                              zeroes the masked ones.
#pragma once

#include <cstdint>

#include "logprob_kernels.hpp"

GRPO_NAMESPACE_BEGIN
namespace detail {
namespace cuda {

/// One item of the check: a hidden row (code, column, value, |row|_1, max |row|) or a weight row (max |row|).
struct hidden_check_item {
    double code, column, value, l1, max, pad0, pad1, pad2;
};

/// The hidden form's scratch: the logits form's per-row results and record, the check items and record, the
/// unmasked rows, and the chunk's buffers.
template <class T>
struct hidden_device_scratch {
    logprob_scratch results;        ///< per-row forward results, the forward's record and counter
    hidden_check_item* items;       ///< rows + vocab
    logprob_record* check_record;   ///< the check's first error
    unsigned long long* check_done; ///< the check's last-block counter
    std::int64_t* unmasked;         ///< rows: the unmasked rows in order
    double* count;                  ///< how many
    T* hidden;                      ///< [chunk, H]
    T* logits;                      ///< [chunk, V]: the logits, then (backward) dLoss/dlogits
    T* grad_hidden;                 ///< [chunk, H] (backward)
};

inline std::size_t hidden_scratch_doubles(index_t rows, index_t vocab, index_t width, index_t chunk, std::size_t elem) {
    const auto in_doubles = [&](index_t n) { return (static_cast<std::size_t>(n) * elem + 7) / 8; };
    return logprob_scratch_doubles(rows) +
           static_cast<std::size_t>(rows + vocab) * doubles_of(sizeof(hidden_check_item)) +
           doubles_of(sizeof(logprob_record)) + 1 + static_cast<std::size_t>(rows) + 1 + 2 * in_doubles(chunk * width) +
           in_doubles(chunk * vocab);
}

template <class T>
hidden_device_scratch<T> hidden_layout(double* base, index_t rows, index_t vocab, index_t width, index_t chunk) {
    const auto in_doubles = [&](index_t n) { return (static_cast<std::size_t>(n) * sizeof(T) + 7) / 8; };
    hidden_device_scratch<T> s;
    s.results = logprob_layout(base, rows);
    double* p = base + logprob_scratch_doubles(rows);
    s.items = reinterpret_cast<hidden_check_item*>(p);
    p += static_cast<std::size_t>(rows + vocab) * doubles_of(sizeof(hidden_check_item));
    s.check_record = reinterpret_cast<logprob_record*>(p);
    p += doubles_of(sizeof(logprob_record));
    s.check_done = reinterpret_cast<unsigned long long*>(p);
    p += 1;
    s.unmasked = reinterpret_cast<std::int64_t*>(p);
    p += rows;
    s.count = p;
    p += 1;
    s.hidden = reinterpret_cast<T*>(p);
    p += in_doubles(chunk * width);
    s.logits = reinterpret_cast<T*>(p);
    p += in_doubles(chunk * vocab);
    s.grad_hidden = reinterpret_cast<T*>(p);
    return s;
}

template <class T, class Token>
struct hidden_device_views {
    matrix_view<const T, device_space> hidden, weight;
    vector_view<const T, device_space> bias;
    vector_view<const Token, device_space> tokens;
    vector_view<const T, device_space> mask;
};

template <class T, class Token>
struct hidden_check_kernel {
    static constexpr int block = logprob_block;
    hidden_device_views<T, Token> v;
    logprob_grad_views<T> g; ///< the backward's per-row values (absent in the forward)
    double temperature;
    bool full, backward;
    hidden_device_scratch<T> s;

    /// Collective: a row's first non-finite column (or n), |row|_1 and max |row|.
    template <class B>
    GRPO_HOST_DEVICE static void scan(B& b, const T* x, index_t n, double& first_bad, double& l1, double& mx) {
        using C = compute_t<T>;
        index_t bad = n;
        double a = 0, m = 0;
        for (index_t j = b.thread(); j < n; j += b.threads()) {
            const double e = static_cast<double>(C(x[j]));
            if (!is_finite_value(e) && bad == n) bad = j;
            const double f = e < 0 ? -e : e;
            a += f;
            m = f > m ? f : m;
        }
        first_bad = b.min(static_cast<double>(bad));
        l1 = b.sum(a);
        mx = b.max(m);
    }

    template <class B>
    GRPO_HOST_DEVICE void operator()(B& b) const {
        using C = compute_t<T>;
        const index_t rows = v.hidden.rows(), vocab = v.weight.rows(), width = v.hidden.cols();
        for (index_t i = b.block(); i < rows + vocab; i += b.blocks()) {
            hidden_check_item it{};
            if (i < rows) {
                logprob_row r{};
                bool masked = false;
                check_row_ids(v.tokens, v.mask, vocab, i, full, masked, r);
                it.code = r.code;
                it.value = r.value;
                if (!masked && r.code == 0 && full) {
                    const auto check = [&](logit_error e, double x) {
                        if (it.code == 0 && !is_finite_value(x)) {
                            it.code = static_cast<double>(e);
                            it.value = x;
                        }
                    };
                    if (backward) {
                        check(logit_error::bad_lse, g.lse[i]);
                        check(logit_error::bad_grad_logp, static_cast<double>(C(g.grad_logp[i])));
                        if (g.grad_entropy.present()) {
                            check(logit_error::bad_entropy, static_cast<double>(C(g.entropy[i])));
                            check(logit_error::bad_grad_entropy, static_cast<double>(C(g.grad_entropy[i])));
                        }
                    }
                    if (it.code == 0 && width > 0) { // row-uniform
                        const T* x = v.hidden.data() + i * v.hidden.row_stride();
                        double first_bad = 0;
                        scan(b, x, width, first_bad, it.l1, it.max);
                        if (first_bad < static_cast<double>(width)) {
                            it.code = static_cast<double>(logit_error::bad_hidden);
                            it.column = first_bad;
                            it.value = static_cast<double>(C(x[static_cast<index_t>(first_bad)]));
                        }
                    }
                }
            } else if (full && width > 0) {
                const T* x = v.weight.data() + (i - rows) * v.weight.row_stride();
                double first_bad = 0;
                scan(b, x, width, first_bad, it.l1, it.max);
                if (first_bad < static_cast<double>(width)) {
                    it.code = static_cast<double>(logit_error::bad_weight);
                    it.column = first_bad;
                    it.value = static_cast<double>(C(x[static_cast<index_t>(first_bad)]));
                }
            }
            if (b.thread() == 0) s.items[i] = it;
        }
        if (b.last_block_done(s.check_done)) finish(b);
    }

    template <class B>
    GRPO_HOST_DEVICE void finish(B& b) const {
        using C = compute_t<T>;
        const index_t rows = v.hidden.rows(), vocab = v.weight.rows(), n = rows + vocab + 1;
        // The bias's first non-finite element is item rows + vocab.
        double bias_bad = infinity(), b_max = 0;
        if (v.bias.present()) {
            for (index_t j = b.thread(); j < vocab; j += b.threads()) {
                const double e = static_cast<double>(C(v.bias[j]));
                if (!is_finite_value(e)) {
                    bias_bad = static_cast<double>(j) < bias_bad ? static_cast<double>(j) : bias_bad;
                    continue;
                }
                const double f = e < 0 ? -e : e;
                b_max = f > b_max ? f : b_max;
            }
            bias_bad = b.min(bias_bad);
            b_max = b.max(b_max);
        }
        // The first error by (stage, item): ids and mask, then per-row values, then hidden, weight, bias values.
        double best = infinity();
        for (index_t i = b.thread(); i < rows + vocab; i += b.threads()) {
            const double code = b.load(&s.items[i].code);
            const double key = error_stage(code) * static_cast<double>(n) + static_cast<double>(i);
            best = code != 0 && key < best ? key : best;
        }
        best = b.min(best);
        if (full && bias_bad < infinity()) {
            const double key = 2.0 * static_cast<double>(n) + static_cast<double>(rows + vocab);
            best = key < best ? key : best;
        }
        double w_max = 0;
        for (index_t i = b.thread(); i < vocab; i += b.threads()) {
            const double m = b.load(&s.items[rows + i].max);
            w_max = m > w_max ? m : w_max;
        }
        w_max = b.max(w_max);
        if (b.thread() != 0) return;
        logprob_record r{};
        if (best < infinity()) {
            const auto item = static_cast<index_t>(
                best -
                static_cast<double>(n) * static_cast<double>(static_cast<index_t>(best / static_cast<double>(n))));
            if (item == rows + vocab) {
                r.code = static_cast<double>(logit_error::bad_bias);
                r.column = bias_bad;
                r.value = static_cast<double>(C(v.bias[static_cast<index_t>(bias_bad)]));
            } else {
                r.code = b.load(&s.items[item].code);
                r.row = static_cast<double>(item < rows ? item : item - rows);
                r.column = b.load(&s.items[item].column);
                r.value = b.load(&s.items[item].value);
            }
            *s.check_record = r;
            return;
        }
        // The backward's bounds (cpu/logprob_hidden.hpp, check_gradient_bounds), in row order.
        if (backward && full) {
            const double limit = 0.25 * (sizeof(C) == sizeof(double) ? 1.7976931348623157e308 : 3.4028234663852886e38);
            double dweight = 0, dbias = 0;
            for (index_t i = 0; i < rows; ++i) {
                if (v.mask.present() && C(v.mask[i]) == C(0)) continue;
                const double z = (b.load(&s.items[i].l1) * w_max + b_max) / temperature;
                const double ge = g.grad_entropy.present() ? static_cast<double>(C(g.grad_entropy[i])) : 0.0;
                const double h = g.grad_entropy.present() ? static_cast<double>(C(g.entropy[i])) : 0.0;
                const double gl = static_cast<double>(C(g.grad_logp[i]));
                const double bound =
                    2 * ((gl < 0 ? -gl : gl) + (ge < 0 ? -ge : ge) * ((h < 0 ? -h : h) + 1)) / temperature;
                dweight += bound * b.load(&s.items[i].max);
                dbias += bound;
                const double worst = bound * w_max > dweight ? (bound * w_max > dbias ? bound * w_max : dbias)
                                                             : (dweight > dbias ? dweight : dbias);
                if (!(z < limit) || !(worst < limit)) {
                    r.code =
                        static_cast<double>(!(z < limit) ? logit_error::hidden_overflow : logit_error::gradient_bound);
                    r.row = static_cast<double>(i);
                    r.value = !(z < limit) ? z : worst;
                    *s.check_record = r;
                    return;
                }
            }
        }
        *s.check_record = r;
        // The unmasked rows, in order: the chunks' row indices.
        std::int64_t k = 0;
        for (index_t i = 0; i < rows; ++i)
            if (!(v.mask.present() && C(v.mask[i]) == C(0))) s.unmasked[k++] = static_cast<std::int64_t>(i);
        *s.count = static_cast<double>(k);
    }
};

/// A chunk's hidden rows (unmasked[first .. first + c)) into s.hidden [c, H].
template <class T>
struct hidden_gather_kernel {
    static constexpr int block = logprob_block;
    matrix_view<const T, device_space> hidden;
    const std::int64_t* unmasked;
    index_t first, chunk;
    T* out;

    template <class B>
    GRPO_HOST_DEVICE void operator()(B& b) const {
        const index_t width = hidden.cols();
        for (index_t r = b.block(); r < chunk; r += b.blocks()) {
            const T* x = hidden.data() + static_cast<index_t>(unmasked[first + r]) * hidden.row_stride();
            for (index_t k = b.thread(); k < width; k += b.threads()) out[r * width + k] = x[k];
        }
    }
};

/// Per chunk row: the bias added to its logits (each thread adds to the elements it reads next), then the forward
/// of the row into the per-row results, or its backward in place.
template <class T, class Token>
struct hidden_rows_kernel {
    static constexpr int block = logprob_block;
    hidden_device_views<T, Token> v;
    logprob_grad_views<T> g; ///< backward only
    const std::int64_t* unmasked;
    index_t first, chunk;
    T* logits; ///< [chunk, V]
    double temperature;
    bool backward;
    logprob_row* results; ///< forward: per row of the batch

    template <class B>
    GRPO_HOST_DEVICE void operator()(B& b) const {
        using C = compute_t<T>;
        const index_t vocab = v.weight.rows();
        const C tau = C(temperature);
        for (index_t r = b.block(); r < chunk; r += b.blocks()) {
            const auto i = static_cast<index_t>(unmasked[first + r]);
            T* x = logits + r * vocab;
            if (v.bias.present())
                for (index_t j = b.thread(); j < vocab; j += b.threads()) x[j] = T(C(x[j]) + C(v.bias[j]));
            const auto id = static_cast<long long>(v.tokens[i]);
            if (backward) {
                const C gl = C(g.grad_logp[i]);
                const C ge = g.grad_entropy.present() ? C(g.grad_entropy[i]) : C(0);
                const C h = g.grad_entropy.present() ? C(g.entropy[i]) : C(0);
                backward_row<C>(b, x, x, vocab, static_cast<index_t>(id), tau, g.lse[i], gl, ge, h);
            } else {
                logprob_row res{};
                forward_row<C>(b, x, vocab, id, tau, res);
                if (b.thread() == 0) results[i] = res;
            }
        }
    }
};

/// One block: the logits form's finish over every row of the batch.
template <class T>
struct logprob_finish_kernel {
    static constexpr int block = logprob_block;
    logprob_scratch s;
    index_t rows;
    bool full;
    vector_view<T, device_space> logp, entropy;
    vector_view<double, device_space> lse;

    template <class B>
    GRPO_HOST_DEVICE void operator()(B& b) const {
        finish_forward<T>(b, s, rows, full, logp, entropy, lse);
    }
};

/// dbias[v] += sum over the chunk's rows of dLoss/dlogits[r, v], in row order (one thread per column).
template <class T>
struct hidden_bias_grad_kernel {
    static constexpr int block = logprob_block;
    const T* grad_logits; ///< [chunk, V]
    index_t chunk, vocab;
    vector_view<T, device_space> grad_bias;

    template <class B>
    GRPO_HOST_DEVICE void operator()(B& b) const {
        using C = compute_t<T>;
        for (index_t j = grid_first(b); j < vocab; j += grid_stride(b)) {
            double sum = 0;
            for (index_t r = 0; r < chunk; ++r) sum += static_cast<double>(C(grad_logits[r * vocab + j]));
            grad_bias[j] = T(C(static_cast<double>(C(grad_bias[j])) + sum));
        }
    }
};

/// A chunk's dhidden rows [c, H] to their rows of grads.hidden.
template <class T>
struct hidden_scatter_kernel {
    static constexpr int block = logprob_block;
    const T* grad_chunk;
    const std::int64_t* unmasked;
    index_t first, chunk;
    matrix_view<T, device_space> grad_hidden;

    template <class B>
    GRPO_HOST_DEVICE void operator()(B& b) const {
        const index_t width = grad_hidden.cols();
        for (index_t r = b.block(); r < chunk; r += b.blocks()) {
            T* out = grad_hidden.data() + static_cast<index_t>(unmasked[first + r]) * grad_hidden.row_stride();
            for (index_t k = b.thread(); k < width; k += b.threads()) out[k] = grad_chunk[r * width + k];
        }
    }
};

/// The masked rows of grads.hidden: 0.
template <class T>
struct hidden_zero_masked_kernel {
    static constexpr int block = logprob_block;
    vector_view<const T, device_space> mask;
    matrix_view<T, device_space> grad_hidden;

    template <class B>
    GRPO_HOST_DEVICE void operator()(B& b) const {
        using C = compute_t<T>;
        const index_t rows = grad_hidden.rows(), width = grad_hidden.cols();
        for (index_t i = b.block(); i < rows; i += b.blocks()) {
            if (!(mask.present() && C(mask[i]) == C(0))) continue;
            T* out = grad_hidden.data() + i * grad_hidden.row_stride();
            for (index_t k = b.thread(); k < width; k += b.threads()) out[k] = T(C(0));
        }
    }
};

} // namespace cuda
} // namespace detail
GRPO_NAMESPACE_END
