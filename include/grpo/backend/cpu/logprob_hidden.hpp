// SPDX-License-Identifier: MIT
// CPU backend of logprobs_from_hidden and its backward: the logits hidden weight^T + bias of a chunk of unmasked
// rows at a time (Eigen's matrix product, one task per fixed tile of the vocabulary), then the logits form's row
// functions on that chunk. The product shapes depend on the chunk size and the tile, never on the thread count, so
// results are bit-identical for any pool.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include <Eigen/Core>

#include "../../core/check.hpp"
#include "../../core/exec.hpp"
#include "../../core/workspace.hpp"
#include "../../types/logprob_types.hpp"
#include "logprob.hpp"

GRPO_NAMESPACE_BEGIN
namespace detail {
namespace cpu {

/// Columns of logits per product task (a tile of the vocabulary: its weight rows are read once per chunk).
constexpr index_t hidden_vocab_tile = 4096;
/// Rows per dhidden product task.
constexpr index_t hidden_row_block = 64;
template <class T>
using row_major_matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using matrix_map = Eigen::Map<row_major_matrix<T>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <class T>
using const_matrix_map = Eigen::Map<const row_major_matrix<T>, Eigen::Unaligned, Eigen::OuterStride<>>;

template <class T>
const_matrix_map<T> eigen_map(const matrix_view<const T>& m) {
    return {m.data(), m.rows(), m.cols(), Eigen::OuterStride<>(m.row_stride())};
}
template <class T>
matrix_map<T> eigen_map(T* data, index_t rows, index_t cols, index_t row_stride) {
    return {data, rows, cols, Eigen::OuterStride<>(row_stride)};
}
template <class T>
const_matrix_map<T> const_eigen_map(const T* data, index_t rows, index_t cols, index_t row_stride) {
    return {data, rows, cols, Eigen::OuterStride<>(row_stride)};
}

/// The scratch of one call, carved out of the workspace's doubles: per-row results (forward), the rows of the
/// current chunk, its hidden states, its logits (then their gradient) and its dhidden.
template <class T>
struct hidden_scratch {
    double* row_results = nullptr; ///< 6 per row: lse, logp, entropy, error, column, value
    double* chunk_rows = nullptr;  ///< indices of the chunk's unmasked rows
    T* hidden = nullptr;           ///< [chunk, H]
    T* logits = nullptr;           ///< [chunk, V]
    T* grad_hidden = nullptr;      ///< [chunk, H] (backward)
};

template <class T>
hidden_scratch<T> carve_hidden_scratch(workspace& ws, const char* where, index_t rows, index_t chunk, index_t vocab,
                                       index_t width, bool with_row_results, bool with_grad_hidden) {
    // Sizes in doubles, each rounded up (a double's alignment suits T).
    const auto in_doubles = [&](index_t elements) {
        const index_t bytes = checked_mul(where, "chunk scratch", elements, static_cast<index_t>(sizeof(T)));
        return (bytes + 7) / 8;
    };
    const index_t results = with_row_results ? checked_mul(where, "rows", rows, 6) : 0;
    const index_t hidden = in_doubles(checked_mul(where, "chunk scratch", chunk, width));
    const index_t logits = in_doubles(checked_mul(where, "chunk scratch", chunk, vocab));
    const index_t grad_hidden = with_grad_hidden ? hidden : 0;
    const index_t total =
        checked_add(where, "chunk scratch",
                    checked_add(where, "chunk scratch", checked_add(where, "chunk scratch", results, chunk), hidden),
                    checked_add(where, "chunk scratch", logits, grad_hidden));
    double* base = ws.doubles(static_cast<std::size_t>(total), where);
    hidden_scratch<T> s;
    s.row_results = base;
    s.chunk_rows = base + results;
    s.hidden = reinterpret_cast<T*>(s.chunk_rows + chunk);
    s.logits = reinterpret_cast<T*>(s.chunk_rows + chunk + hidden);
    s.grad_hidden = with_grad_hidden ? reinterpret_cast<T*>(s.chunk_rows + chunk + hidden + logits) : nullptr;
    return s;
}

/// Collects the next (at most `chunk`) unmasked rows from `next` on into s.chunk_rows and gathers their hidden
/// states; returns how many, and advances `next` past them.
template <class T, class Token>
index_t gather_chunk(const hidden_inputs<T, Token>& in, const hidden_scratch<T>& s, index_t chunk, index_t& next) {
    const index_t rows = in.hidden.rows(), width = in.hidden.cols();
    index_t c = 0;
    for (; next < rows && c < chunk; ++next) {
        if (row_is_masked(in.mask, next)) continue;
        s.chunk_rows[c] = static_cast<double>(next);
        if (width > 0)
            std::memcpy(s.hidden + c * width, in.hidden.data() + next * in.hidden.row_stride(),
                        static_cast<std::size_t>(width) * sizeof(T));
        ++c;
    }
    return c;
}

template <class T>
index_t chunk_row(const hidden_scratch<T>& s, index_t r) {
    return static_cast<index_t>(s.chunk_rows[r]);
}

/// logits[c, V] = hidden_chunk weight^T + bias, one task per vocabulary tile.
template <class T, class Token>
void chunk_logits(const exec::host& ex, const hidden_inputs<T, Token>& in, const hidden_scratch<T>& s, index_t c) {
    const index_t vocab = in.weight.rows(), width = in.weight.cols();
    const index_t tiles = (vocab + hidden_vocab_tile - 1) / hidden_vocab_tile;
    const auto hc = const_eigen_map(s.hidden, c, width, width);
    const auto w = eigen_map(in.weight);
    parallel_for(ex, tiles, 1, [&](index_t first, index_t last) {
        for (index_t t = first; t < last; ++t) {
            const index_t v0 = t * hidden_vocab_tile, n = std::min(hidden_vocab_tile, vocab - v0);
            auto z = eigen_map(s.logits + v0, c, n, vocab);
            if (width > 0) z.noalias() = hc * w.middleRows(v0, n).transpose();
            else z.setZero();
            if (in.bias.present())
                for (index_t r = 0; r < c; ++r)
                    for (index_t k = 0; k < n; ++k) z(r, k) += in.bias[v0 + k];
        }
    });
}

/// The hidden states (unmasked rows) and the weight are finite: one read, rows split over the pool, the first bad
/// element in row order (hidden first) reported. Needs width > 0 (an empty row has no elements, and its stride
/// may be anything).
template <class T, class Token>
void check_dense_values(const exec::host& ex, const char* where, const hidden_inputs<T, Token>& in, workspace& ws,
                        index_t rows, index_t vocab, index_t width) {
    const auto first_non_finite = [](const T* x, index_t n) {
        for (index_t j = 0; j < n; ++j)
            if (!(x[j] - x[j] == T(0))) return j;
        return index_t(-1);
    };
    double* bad = ws.doubles(static_cast<std::size_t>(checked_add(where, "rows", rows, vocab)), where);
    const index_t grain = std::max<index_t>(1, index_t(65536) / width);
    parallel_for(ex, rows + vocab, grain, [&](index_t first, index_t last) {
        for (index_t i = first; i < last; ++i) {
            if (i < rows)
                bad[i] =
                    row_is_masked(in.mask, i)
                        ? -1.0
                        : static_cast<double>(first_non_finite(in.hidden.data() + i * in.hidden.row_stride(), width));
            else
                bad[i] = static_cast<double>(
                    first_non_finite(in.weight.data() + (i - rows) * in.weight.row_stride(), width));
        }
    });
    for (index_t i = 0; i < rows + vocab; ++i)
        if (bad[i] >= 0) {
            const bool h = i < rows;
            const index_t r = h ? i : i - rows, j = static_cast<index_t>(bad[i]);
            const T v =
                h ? in.hidden.data()[r * in.hidden.row_stride() + j] : in.weight.data()[r * in.weight.row_stride() + j];
            raise_logit_error(where, h ? logit_error::bad_hidden : logit_error::bad_weight, r, j,
                              static_cast<double>(v));
        }
}

/// validation::full of the hidden form's dense inputs: hidden (unmasked rows), weight and bias are finite.
template <class T, class Token>
void check_hidden_values(const exec::host& ex, const char* where, const hidden_inputs<T, Token>& in, workspace& ws) {
    const index_t rows = in.hidden.rows(), vocab = in.weight.rows(), width = in.hidden.cols();
    if (width > 0) check_dense_values(ex, where, in, ws, rows, vocab, width);
    for (index_t v = 0; v < in.bias.size(); ++v)
        if (!(in.bias[v] - in.bias[v] == T(0)))
            raise_logit_error(where, logit_error::bad_bias, 0, v, static_cast<double>(in.bias[v]));
}

/// validation::full of the backward, once the values are known finite: bounds (in double, from sums of absolute
/// values, so that they also bound every partial sum of the products) under which no logit and no gradient
/// element can overflow T. Without them a huge grad_logp could overflow dLoss/dlogits to +-inf, and a product
/// would add +inf and -inf into NaN. (The forward needs none: it sees its logits.)
///   |z_iv| <= (|hidden_i|_1 max|W| + max|b|) / tau,       |G_iv| <= S_i = 2 (|g_i| + |h_i| (H_i + 1)) / tau,
///   |dhidden_ik| <= S_i max|W|,   |dweight_vk| <= sum_i S_i max_k |hidden_ik|,   |dbias_v| <= sum_i S_i
template <class T, class Token>
void check_gradient_bounds(const exec::host& ex, const char* where, const hidden_inputs<T, Token>& in,
                           const logprob_grad_inputs<T>& gin, double temperature, workspace& ws) {
    const index_t rows = in.hidden.rows(), vocab = in.weight.rows(), width = in.hidden.cols();
    const double limit = 0.25 * static_cast<double>(std::numeric_limits<T>::max());
    // Per hidden row: |hidden_i|_1 and max_k |hidden_ik|; per weight row: max_k |W_vk|.
    const index_t n = checked_add(where, "rows", rows, vocab);
    double* a = ws.doubles(static_cast<std::size_t>(checked_mul(where, "rows", n, 2)), where);
    parallel_for(ex, n, std::max<index_t>(1, index_t(65536) / std::max<index_t>(1, width)),
                 [&](index_t first, index_t last) {
                     for (index_t i = first; i < last; ++i) {
                         double l1 = 0, mx = 0;
                         if (width > 0 && (i >= rows || !row_is_masked(in.mask, i))) {
                             const T* x = i < rows ? in.hidden.data() + i * in.hidden.row_stride()
                                                   : in.weight.data() + (i - rows) * in.weight.row_stride();
                             for (index_t k = 0; k < width; ++k) {
                                 const double v = std::fabs(static_cast<double>(x[k]));
                                 l1 += v;
                                 mx = v > mx ? v : mx;
                             }
                         }
                         a[2 * i] = l1;
                         a[2 * i + 1] = mx;
                     }
                 });
    double w_max = 0, b_max = 0;
    for (index_t v = 0; v < vocab; ++v) w_max = std::max(w_max, a[2 * (rows + v) + 1]);
    for (index_t v = 0; v < in.bias.size(); ++v) b_max = std::max(b_max, std::fabs(static_cast<double>(in.bias[v])));
    double dweight = 0, dbias = 0;
    for (index_t i = 0; i < rows; ++i) {
        if (row_is_masked(in.mask, i)) continue;
        const double z = (a[2 * i] * w_max + b_max) / temperature;
        const double h = gin.grad_entropy.present() ? std::fabs(static_cast<double>(gin.grad_entropy[i])) *
                                                          (std::fabs(static_cast<double>(gin.entropy[i])) + 1)
                                                    : 0.0;
        const double bound = 2 * (std::fabs(static_cast<double>(gin.grad_logp[i])) + h) / temperature;
        dweight += bound * a[2 * i + 1];
        dbias += bound;
        if (!(z < limit)) raise_logit_error(where, logit_error::hidden_overflow, i, 0, z);
        const double worst = std::max(bound * w_max, std::max(dweight, dbias));
        if (!(worst < limit)) raise_logit_error(where, logit_error::gradient_bound, i, 0, worst);
    }
}

/// Forward: per chunk, the logits product, then one row task per row of the chunk (the logits form's row
/// function). Results go to the workspace first; the first failing row in row order is reported.
template <class T, class Token>
logprob_stats logprobs_from_hidden(const exec::host& ex, const hidden_inputs<T, Token>& in,
                                   const logprob_outputs<T>& out, const hidden_logprob_config& cfg, workspace& ws,
                                   const char* where) {
    const index_t rows = in.hidden.rows(), vocab = in.weight.rows(), width = in.hidden.cols();
    const index_t chunk = hidden_chunk_rows(cfg, rows, vocab);
    const hidden_scratch<T> s = carve_hidden_scratch<T>(ws, where, rows, chunk, vocab, width, true, false);
    double* lse = s.row_results;
    double* logp = lse + rows;
    double* entropy = logp + rows;
    double* failed = entropy + rows; // logit_error, then the column and the value
    double* column = failed + rows;
    double* value = column + rows;
    for (index_t i = 0; i < rows; ++i) lse[i] = logp[i] = entropy[i] = failed[i] = 0;
    for (index_t next = 0; next < rows;) {
        const index_t c = gather_chunk(in, s, chunk, next);
        if (c == 0) break;
        chunk_logits(ex, in, s, c);
        parallel_for(ex, c, logit_rows_per_task(vocab), [&](index_t first, index_t last) {
            for (index_t r = first; r < last; ++r) {
                const index_t i = chunk_row(s, r);
                const logit_row res = logits_row_forward(s.logits + r * vocab, vocab,
                                                         static_cast<index_t>(in.tokens[i]), cfg.temperature);
                lse[i] = res.lse;
                logp[i] = res.logp;
                entropy[i] = res.entropy;
                failed[i] = static_cast<double>(res.error);
                column[i] = static_cast<double>(res.column);
                value[i] = res.value;
            }
        });
    }
    if (cfg.checks == validation::full)
        for (index_t i = 0; i < rows; ++i)
            if (failed[i] != 0) // finite inputs (checked first), so the product or the division overflowed
                raise_logit_error(where, logit_error::hidden_overflow, i, static_cast<index_t>(column[i]), value[i]);
    return write_forward_results(out, in.mask, rows, lse, logp, entropy);
}

/// Backward: per chunk, the logits again (the forward's chunks, so the same values), their gradient in place
/// (the logits form's row function), then dweight and dbias per vocabulary tile and dhidden per block of rows.
template <class T, class Token>
void logprobs_from_hidden_backward(const exec::host& ex, const hidden_inputs<T, Token>& in,
                                   const logprob_grad_inputs<T>& gin, const hidden_grads<T>& out,
                                   const hidden_logprob_config& cfg, workspace& ws, const char* where) {
    const index_t rows = in.hidden.rows(), vocab = in.weight.rows(), width = in.hidden.cols();
    const index_t chunk = hidden_chunk_rows(cfg, rows, vocab);
    const bool want_hidden = out.hidden.present(), want_weight = out.weight.present(), want_bias = out.bias.present();
    const hidden_scratch<T> s = carve_hidden_scratch<T>(ws, where, rows, chunk, vocab, width, false, want_hidden);
    if (want_hidden && width > 0)
        for (index_t i = 0; i < rows; ++i)
            if (row_is_masked(in.mask, i))
                std::fill(out.hidden.data() + i * out.hidden.row_stride(),
                          out.hidden.data() + i * out.hidden.row_stride() + width, T(0));
    const index_t tiles = (vocab + hidden_vocab_tile - 1) / hidden_vocab_tile;
    for (index_t next = 0; next < rows;) {
        const index_t c = gather_chunk(in, s, chunk, next);
        if (c == 0) break;
        chunk_logits(ex, in, s, c);
        parallel_for(ex, c, logit_rows_per_task(vocab), [&](index_t first, index_t last) {
            for (index_t r = first; r < last; ++r) {
                const index_t i = chunk_row(s, r);
                const double ge = gin.grad_entropy.present() ? static_cast<double>(gin.grad_entropy[i]) : 0.0;
                const double h = gin.grad_entropy.present() ? static_cast<double>(gin.entropy[i]) : 0.0;
                T* z = s.logits + r * vocab;
                logits_row_backward(z, z, vocab, static_cast<index_t>(in.tokens[i]), cfg.temperature, gin.lse[i], h,
                                    static_cast<double>(gin.grad_logp[i]), ge);
            }
        });
        const auto hc = const_eigen_map(s.hidden, c, width, width);
        if (want_weight || want_bias)
            parallel_for(ex, tiles, 1, [&](index_t first, index_t last) {
                for (index_t t = first; t < last; ++t) {
                    const index_t v0 = t * hidden_vocab_tile, n = std::min(hidden_vocab_tile, vocab - v0);
                    const auto g = const_eigen_map(s.logits + v0, c, n, vocab);
                    if (want_weight && width > 0) {
                        auto dw = eigen_map(out.weight.data() + v0 * out.weight.row_stride(), n, width,
                                            out.weight.row_stride());
                        dw.noalias() += g.transpose() * hc;
                    }
                    if (want_bias)
                        for (index_t k = 0; k < n; ++k) {
                            double sum = 0; // rows in chunk order: fixed
                            for (index_t r = 0; r < c; ++r) sum += static_cast<double>(g(r, k));
                            out.bias[v0 + k] = static_cast<T>(static_cast<double>(out.bias[v0 + k]) + sum);
                        }
                }
            });
        if (want_hidden && width > 0) {
            const auto w = eigen_map(in.weight);
            const index_t blocks = (c + hidden_row_block - 1) / hidden_row_block;
            parallel_for(ex, blocks, 1, [&](index_t first, index_t last) {
                for (index_t b = first; b < last; ++b) {
                    const index_t r0 = b * hidden_row_block, n = std::min(hidden_row_block, c - r0);
                    auto dh = eigen_map(s.grad_hidden + r0 * width, n, width, width);
                    dh.noalias() = const_eigen_map(s.logits + r0 * vocab, n, vocab, vocab) * w;
                    for (index_t r = r0; r < r0 + n; ++r)
                        std::memcpy(out.hidden.data() + chunk_row(s, r) * out.hidden.row_stride(),
                                    s.grad_hidden + r * width, static_cast<std::size_t>(width) * sizeof(T));
                }
            });
        }
    }
}

} // namespace cpu
} // namespace detail
GRPO_NAMESPACE_END
