// SPDX-License-Identifier: MIT
// CPU backend of logprobs_from_hidden and its backward: the logits hidden weight^T + bias of a chunk of unmasked
// rows at a time (Eigen's matrix product, one task per fixed tile of the vocabulary), then the logits form's row
// functions on that chunk. The product shapes depend on the chunk size and the tile, never on the thread count, so
// results are bit-identical for any pool.
#pragma once

#include <algorithm>
#include <cstring>

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
/// Logits per chunk when the configuration says 0.
constexpr index_t hidden_default_chunk_elements = index_t(1) << 25;

/// The chunk size in rows: the configured one, or the default, clamped to [1, rows].
inline index_t hidden_chunk_rows(const hidden_logprob_config& cfg, index_t rows, index_t vocab) {
    index_t c = cfg.chunk_rows;
    if (c == 0) c = std::max<index_t>(64, hidden_default_chunk_elements / std::max<index_t>(1, vocab));
    return std::max<index_t>(1, std::min(c, rows));
}

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

/// validation::full of the hidden form's dense inputs: hidden (unmasked rows), weight and bias are finite.
template <class T, class Token>
void check_hidden_values(const exec::host& ex, const char* where, const hidden_inputs<T, Token>& in, workspace& ws) {
    const auto first_non_finite = [](const T* x, index_t n) {
        for (index_t j = 0; j < n; ++j)
            if (!(x[j] - x[j] == T(0))) return j;
        return index_t(-1);
    };
    const index_t rows = in.hidden.rows(), vocab = in.weight.rows(), width = in.hidden.cols();
    double* bad = ws.doubles(static_cast<std::size_t>(checked_add(where, "rows", rows, vocab)), where);
    const index_t grain = std::max<index_t>(1, index_t(65536) / std::max<index_t>(1, width));
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
            raise_argument(errc::non_finite, where, h ? "hidden" : "weight",
                           h ? "finite values at unmasked rows" : "finite values",
                           num_str(static_cast<double>(v)) + " at (" + to_str(r) + ", " + to_str(j) + ")");
        }
    for (index_t v = 0; v < in.bias.size(); ++v)
        if (!(in.bias[v] - in.bias[v] == T(0)))
            raise_argument(errc::non_finite, where, "bias", "finite values",
                           num_str(static_cast<double>(in.bias[v])) + " at " + to_str(v));
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
                raise_argument(
                    errc::invalid_value, where, "hidden",
                    "logits (hidden weight^T + bias) / temperature finite in the element type's math",
                    num_str(value[i]) + " at (" + to_str(i) + ", " + to_str(static_cast<index_t>(column[i])) + ")");
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
    if (want_hidden)
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
