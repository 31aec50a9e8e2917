// SPDX-License-Identifier: MIT
// ggml adapter: grpo views of ggml tensors, and the way dLoss/dlogp from grpo enters a ggml graph. Include it
// yourself (it is not part of grpo/grpo.hpp) and link grpo::ggml (find_package(grpo CONFIG COMPONENTS ggml)).
//
//   grpo::ggml::matrix(t)        matrix_view<float> of an F32 tensor in host memory, no copy. ggml's ne[0] is
//                                the innermost axis: ne = {tokens, completions, 1, 1} is the view
//                                [completions, tokens] with row stride nb[1]/4 and column stride nb[0]/4.
//   grpo::ggml::vector(t)        vector_view<float> of an F32 host tensor with ne = {n, 1, 1, 1}.
//   grpo::ggml::float_matrix     a float copy for what cannot be viewed: F16/BF16 tensors (grpo computes in
//                                fp32 or fp64) and tensors in device buffers (read with
//                                ggml_backend_tensor_get, which waits for the backend). read(t) for inputs;
//                                for_output(t) + write_back() for outputs.
//   grpo::ggml::add_policy_gradient_loss(ctx, logp)
//                                builds loss = sum(logp * G) with G a non-parameter F32 input of logp's shape:
//                                backward gives dloss/dlogp = G exactly, so writing grpo's grad_logp into G
//                                makes ggml backpropagate the GRPO loss (cpp-anchors §4b; docs/adapters/ggml.md).
//   grpo::ggml::token_ids(t)     vector_view<const int32_t> of an I32 host tensor with ne = {n, 1, 1, 1}.
//   grpo::ggml::logits_inputs_of(logits, tokens[, mask])
//                                logits_inputs<float, int32_t> for grpo::logprobs_from_logits(_backward): logits
//                                ne = {V, M} (the [M, V] view), tokens I32 ne = {M}, mask F32 ne = {M}. The
//                                backward writes dLoss/dlogits into matrix(G) with G from
//                                add_policy_gradient_loss(ctx, logits): ggml backpropagates it to the parameters.
//
// Quantized types and other element types are rejected with a grpo::error (errc::unsupported) naming the
// tensor and its type, as are ranks above 2, unallocated tensors, strides that are not a whole number of
// elements, and (for matrix/vector) tensors that need float_matrix.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include <ggml-backend.h>
#include <ggml.h>

#include "../core/error.hpp"
#include "../core/view.hpp"
#include "../types/logprob_types.hpp"

GRPO_NAMESPACE_BEGIN
namespace ggml {
namespace detail {

inline std::string describe(const ggml_tensor* t) {
    std::string s = "tensor '";
    s += t->name[0] != '\0' ? t->name : "(unnamed)";
    s += "' of type ";
    s += ggml_type_name(t->type);
    s += ", ne = {";
    for (int d = 0; d < 4; ++d) s += (d ? ", " : "") + std::to_string(static_cast<long long>(t->ne[d]));
    return s + "}";
}

/// Rank, strides and allocation of any tensor grpo reads (`arg` names it in the error).
inline void check_layout(const char* where, const char* arg, const ggml_tensor* t) {
    if (t->ne[2] != 1 || t->ne[3] != 1)
        grpo::detail::raise_argument(errc::shape_mismatch, where, arg,
                                     "rank <= 2 (ne[2] == ne[3] == 1; ne[0] = tokens, ne[1] = completions)",
                                     describe(t));
    const std::size_t size = ggml_type_size(t->type);
    if (t->nb[0] % size != 0 || t->nb[1] % size != 0)
        grpo::detail::raise_argument(
            errc::invalid_value, where, arg, "strides nb[0], nb[1] in whole elements",
            describe(t) + ", nb = {" + std::to_string(t->nb[0]) + ", " + std::to_string(t->nb[1]) + "}");
    if (t->data == nullptr)
        grpo::detail::raise_argument(errc::invalid_value, where, arg, "an allocated tensor (data != NULL)",
                                     describe(t));
}

inline void check_tensor(const char* where, const ggml_tensor* t, const char* arg = "t") {
    if (t == nullptr) grpo::detail::raise_argument(errc::invalid_value, where, arg, "a ggml_tensor", "a null pointer");
    if (ggml_is_quantized(t->type) || ggml_blck_size(t->type) != 1)
        grpo::detail::raise_argument(errc::unsupported, where, arg, "an F32, F16 or BF16 tensor (not quantized)",
                                     describe(t));
    if (t->type != GGML_TYPE_F32 && t->type != GGML_TYPE_F16 && t->type != GGML_TYPE_BF16)
        grpo::detail::raise_argument(errc::unsupported, where, arg, "an F32, F16 or BF16 tensor", describe(t));
    check_layout(where, arg, t);
}

/// Host memory: tensors of a context with its own memory (no buffer) or of a host backend buffer.
inline bool in_host_memory(const ggml_tensor* t) {
    return t->buffer == nullptr || ggml_backend_buffer_is_host(t->buffer);
}

inline void check_viewable(const char* where, const ggml_tensor* t, const char* arg = "t") {
    check_tensor(where, t, arg);
    if (t->type != GGML_TYPE_F32)
        grpo::detail::raise_argument(errc::unsupported, where, arg,
                                     "an F32 tensor (use grpo::ggml::float_matrix for F16/BF16)", describe(t));
    if (!in_host_memory(t))
        grpo::detail::raise_argument(errc::memory_space, where, arg,
                                     "a tensor in host memory (use grpo::ggml::float_matrix for device buffers)",
                                     describe(t));
}

inline index_t element_stride(const ggml_tensor* t, int dim) {
    return static_cast<index_t>(t->nb[dim] / ggml_type_size(t->type));
}

inline matrix_view<float> matrix_of(const char* where, const char* arg, ggml_tensor* t) {
    check_viewable(where, t, arg);
    return matrix_view<float>(static_cast<float*>(t->data), t->ne[1], t->ne[0], element_stride(t, 1),
                              element_stride(t, 0));
}

/// ne = {n, 1, 1, 1}, and n == rows when rows >= 0 (`what_rows` says what the count must match).
inline void check_rank1(const char* where, const char* arg, const ggml_tensor* t, index_t rows = -1,
                        const char* what_rows = "") {
    if (t->ne[1] != 1 || (rows >= 0 && t->ne[0] != rows))
        grpo::detail::raise_argument(
            errc::shape_mismatch, where, arg,
            rows >= 0 ? "ne = {" + std::to_string(static_cast<long long>(rows)) + ", 1, 1, 1} (" + what_rows + ")"
                      : std::string("ne = {n, 1, 1, 1}"),
            describe(t));
}

inline vector_view<float> vector_of(const char* where, const char* arg, ggml_tensor* t, index_t rows = -1,
                                    const char* what_rows = "") {
    check_viewable(where, t, arg);
    check_rank1(where, arg, t, rows, what_rows);
    return vector_view<float>(static_cast<float*>(t->data), t->ne[0], element_stride(t, 0));
}

inline vector_view<const std::int32_t> token_ids_of(const char* where, const char* arg, const ggml_tensor* t,
                                                    index_t rows = -1, const char* what_rows = "") {
    if (t == nullptr) grpo::detail::raise_argument(errc::invalid_value, where, arg, "a ggml_tensor", "a null pointer");
    if (t->type != GGML_TYPE_I32)
        grpo::detail::raise_argument(errc::unsupported, where, arg, "an I32 tensor of token ids", describe(t));
    check_layout(where, arg, t);
    if (!in_host_memory(t))
        grpo::detail::raise_argument(errc::memory_space, where, arg,
                                     "a tensor in host memory (copy device token ids with ggml_backend_tensor_get)",
                                     describe(t));
    check_rank1(where, arg, t, rows, what_rows);
    return vector_view<const std::int32_t>(static_cast<const std::int32_t*>(t->data), t->ne[0], element_stride(t, 0));
}

} // namespace detail

/// True when matrix()/vector() can view t without a copy (F32, host memory, rank <= 2).
inline bool is_viewable(const ggml_tensor* t) {
    return t != nullptr && t->type == GGML_TYPE_F32 && t->ne[2] == 1 && t->ne[3] == 1 && t->data != nullptr &&
           detail::in_host_memory(t);
}

/// [ne[1], ne[0]] view of an F32 host tensor: element (i, j) is the float at data + i*nb[1] + j*nb[0].
inline matrix_view<float> matrix(ggml_tensor* t) { return detail::matrix_of("ggml::matrix", "t", t); }
inline matrix_view<const float> matrix(const ggml_tensor* t) {
    return matrix(const_cast<ggml_tensor*>(t)); // constness restored by the return type
}

/// Rank-1 view of an F32 host tensor with ne = {n, 1, 1, 1} (per-completion rewards or advantages).
inline vector_view<float> vector(ggml_tensor* t) { return detail::vector_of("ggml::vector", "t", t); }
inline vector_view<const float> vector(const ggml_tensor* t) { return vector(const_cast<ggml_tensor*>(t)); }

/// Rank-1 view of an I32 host tensor with ne = {n, 1, 1, 1}: the sampled token ids of logprobs_from_logits
/// (ggml's index type, as ggml_get_rows takes them), no copy. Other types (I64, F32), ranks, device buffers and
/// unallocated tensors are a grpo::error naming the tensor.
inline vector_view<const std::int32_t> token_ids(const ggml_tensor* t) {
    return detail::token_ids_of("ggml::token_ids", "t", t);
}

/// The inputs of grpo::logprobs_from_logits(_backward) from a ggml graph's tensors, no copy: logits F32 with
/// ne = {V, M} (the [M, V] view; a [B, T, V] model output is ggml_reshape_2d'd to ne = {V, B * T} first),
/// tokens I32 with ne = {M}, mask (optional) F32 with ne = {M}, 0 = padding (that row is never read). All in
/// host memory, after the forward graph that produced them ran. grpo computes per row
/// logp_i = z_{i,y_i} - logsumexp_v z_iv and entropy_i = -sum_v p_iv log p_iv (z = logits / temperature),
/// i.e. TRL's selective_log_softmax + entropy_from_logits, verl's logprobs_from_logits + entropy_from_logits;
/// its backward writes dLoss/dlogits into matrix(G) with G = add_policy_gradient_loss(ctx, logits).gradient,
/// so ggml backpropagates it below the logits (docs/adapters/ggml.md). Errors name the argument (logits,
/// tokens, mask), the tensor, and what was expected: also a token or mask count other than the logits' M.
inline logits_inputs<float, std::int32_t> logits_inputs_of(const ggml_tensor* logits, const ggml_tensor* tokens,
                                                           const ggml_tensor* mask = nullptr) {
    constexpr const char* where = "ggml::logits_inputs_of";
    if (logits != nullptr && (logits->ne[2] != 1 || logits->ne[3] != 1))
        grpo::detail::raise_argument(errc::shape_mismatch, where, "logits",
                                     "ne = {V, M, 1, 1} (ggml_reshape_2d [B, T, V] logits to ne = {V, B * T})",
                                     detail::describe(logits));
    logits_inputs<float, std::int32_t> in;
    in.logits = detail::matrix_of(where, "logits", const_cast<ggml_tensor*>(logits));
    const index_t rows = in.logits.rows();
    in.tokens = detail::token_ids_of(where, "tokens", tokens, rows, "M = the logits' ne[1]");
    if (mask != nullptr)
        in.mask = detail::vector_of(where, "mask", const_cast<ggml_tensor*>(mask), rows, "M = the logits' ne[1]");
    return in;
}

/// A float copy of a rank <= 2 F32/F16/BF16 tensor in host or device memory, laid out [ne[1], ne[0]]
/// row-major. Inputs: float_matrix::read(t).view(). Outputs: auto g = float_matrix::for_output(t); give
/// g.mutable_view() to grpo; then g.write_back() converts and stores into t (ggml_backend_tensor_set for
/// device buffers). Holds no reference to the ggml context beyond the tensor pointer of for_output.
class float_matrix {
public:
    static float_matrix read(const ggml_tensor* t) {
        detail::check_tensor("ggml::float_matrix::read", t);
        float_matrix m(t);
        const std::size_t esize = ggml_type_size(t->type);
        const std::size_t row_bytes = static_cast<std::size_t>(m.cols_) * esize;
        const bool packed_rows = t->nb[0] == esize;
        std::vector<unsigned char> staging;
        for (index_t i = 0; i < m.rows_; ++i) {
            const std::size_t row_offset = static_cast<std::size_t>(i) * t->nb[1];
            const unsigned char* src = nullptr;
            if (detail::in_host_memory(t) && packed_rows) {
                src = static_cast<const unsigned char*>(t->data) + row_offset;
            } else if (packed_rows) { // device buffer: one copy per row (waits for the backend)
                staging.resize(row_bytes);
                ggml_backend_tensor_get(t, staging.data(), row_offset, row_bytes);
                src = staging.data();
            } else { // strided row: gather element by element
                staging.resize(row_bytes);
                for (index_t j = 0; j < m.cols_; ++j) {
                    const std::size_t off = row_offset + static_cast<std::size_t>(j) * t->nb[0];
                    if (detail::in_host_memory(t))
                        std::memcpy(&staging[static_cast<std::size_t>(j) * esize],
                                    static_cast<const unsigned char*>(t->data) + off, esize);
                    else ggml_backend_tensor_get(t, &staging[static_cast<std::size_t>(j) * esize], off, esize);
                }
                src = staging.data();
            }
            m.to_float(src, &m.data_[static_cast<std::size_t>(i * m.cols_)], m.cols_);
        }
        return m;
    }

    static float_matrix for_output(ggml_tensor* t) {
        detail::check_tensor("ggml::float_matrix::for_output", t);
        float_matrix m(t);
        m.target_ = t;
        return m;
    }

    matrix_view<const float> view() const { return matrix_view<const float>(data_.data(), rows_, cols_); }
    matrix_view<float> mutable_view() { return matrix_view<float>(data_.data(), rows_, cols_); }
    vector_view<const float> vector() const { return vector_view<const float>(data_.data(), rows_ * cols_); }

    /// Converts to the target's type and stores into it (for_output only).
    void write_back() const {
        if (target_ == nullptr)
            grpo::detail::raise_argument(errc::invalid_value, "ggml::float_matrix::write_back", "this",
                                         "a float_matrix made by for_output()", "one made by read()");
        const ggml_tensor* t = target_;
        const std::size_t esize = ggml_type_size(t->type);
        std::vector<unsigned char> row(static_cast<std::size_t>(cols_) * esize);
        const bool packed = t->nb[0] == esize;
        for (index_t i = 0; i < rows_; ++i) {
            from_float(&data_[static_cast<std::size_t>(i * cols_)], row.data(), cols_);
            const std::size_t row_offset = static_cast<std::size_t>(i) * t->nb[1];
            if (packed) {
                store(row_offset, row.data(), row.size());
            } else {
                for (index_t j = 0; j < cols_; ++j)
                    store(row_offset + static_cast<std::size_t>(j) * t->nb[0],
                          &row[static_cast<std::size_t>(j) * esize], esize);
            }
        }
    }

private:
    explicit float_matrix(const ggml_tensor* t)
        : type_(t->type), rows_(t->ne[1]), cols_(t->ne[0]), data_(static_cast<std::size_t>(t->ne[0] * t->ne[1])) {}

    void store(std::size_t offset, const unsigned char* src, std::size_t bytes) const {
        if (detail::in_host_memory(target_))
            std::memcpy(static_cast<unsigned char*>(target_->data) + offset, src, bytes);
        else ggml_backend_tensor_set(target_, src, offset, bytes); // device buffer: ggml copies and syncs
    }
    void to_float(const unsigned char* src, float* dst, index_t n) const {
        switch (type_) {
        case GGML_TYPE_F32: std::memcpy(dst, src, static_cast<std::size_t>(n) * sizeof(float)); break;
        case GGML_TYPE_F16: ggml_fp16_to_fp32_row(reinterpret_cast<const ggml_fp16_t*>(src), dst, n); break;
        default: ggml_bf16_to_fp32_row(reinterpret_cast<const ggml_bf16_t*>(src), dst, n); break;
        }
    }
    void from_float(const float* src, unsigned char* dst, index_t n) const {
        switch (type_) {
        case GGML_TYPE_F32: std::memcpy(dst, src, static_cast<std::size_t>(n) * sizeof(float)); break;
        case GGML_TYPE_F16: ggml_fp32_to_fp16_row(src, reinterpret_cast<ggml_fp16_t*>(dst), n); break;
        default: ggml_fp32_to_bf16_row_ref(src, reinterpret_cast<ggml_bf16_t*>(dst), n); break; // round to nearest even
        }
    }

    ggml_type type_;
    index_t rows_, cols_;
    std::vector<float> data_;
    ggml_tensor* target_ = nullptr;
};

/// The two tensors of the policy-gradient surrogate: write grpo's dLoss/dlogp into `gradient`, compute the
/// backward graph of `loss`, and the parameters receive the GRPO loss's gradient.
struct policy_gradient_loss {
    ggml_tensor* gradient = nullptr; ///< F32 input of logp's shape (not a parameter: no gradient flows into it)
    ggml_tensor* loss = nullptr;     ///< scalar sum(logp * gradient), marked with ggml_set_loss
};

/// Adds loss = sum(logp * G) [+ extra] to ctx, with G = `gradient` a fresh F32 input of logp's shape, and
/// marks it as the graph's loss. `extra` (optional, a scalar F32 tensor) is the host's own regularizer, such as
/// an entropy bonus: mark only this returned loss with ggml_set_loss, never `extra` as well (ggml would seed
/// both with gradient 1).
/// d loss / d logp = G, so after G <- grpo's grad_logp the backward pass of `loss` is the backward pass of the
/// GRPO loss. The value of `loss` is not the GRPO loss: report loss_stats::loss from grpo. With mu > 1 inner
/// updates G depends on the current logp (ratio, clip, KL): run the forward graph first, read logp, call grpo,
/// fill G, then run the backward graph (docs/adapters/ggml.md). With ggml_opt, use ggml_mul(logp, G) as the
/// outputs with GGML_OPT_LOSS_TYPE_SUM and fold 1/accumulation-steps into G (SUM is not rescaled).
inline policy_gradient_loss add_policy_gradient_loss(ggml_context* ctx, ggml_tensor* logp,
                                                     ggml_tensor* extra = nullptr) {
    if (ctx == nullptr || logp == nullptr)
        grpo::detail::raise_argument(errc::invalid_value, "ggml::add_policy_gradient_loss",
                                     ctx == nullptr ? "ctx" : "logp", "non-null", "a null pointer");
    if (logp->type != GGML_TYPE_F32)
        grpo::detail::raise_argument(errc::unsupported, "ggml::add_policy_gradient_loss", "logp",
                                     "an F32 tensor (keep log-probs in fp32)", detail::describe(logp));
    policy_gradient_loss r;
    r.gradient = ggml_new_tensor(ctx, GGML_TYPE_F32, GGML_MAX_DIMS, logp->ne);
    ggml_set_name(r.gradient, "grpo_dloss_dlogp");
    ggml_set_input(r.gradient);
    if (extra != nullptr && (extra->type != GGML_TYPE_F32 || !ggml_is_scalar(extra)))
        grpo::detail::raise_argument(errc::shape_mismatch, "ggml::add_policy_gradient_loss", "extra",
                                     "a scalar F32 tensor", detail::describe(extra));
    r.loss = ggml_sum(ctx, ggml_mul(ctx, logp, r.gradient));
    if (extra != nullptr) r.loss = ggml_add(ctx, r.loss, extra);
    ggml_set_name(r.loss, "grpo_surrogate_loss");
    ggml_set_loss(r.loss);
    return r;
}

} // namespace ggml
GRPO_NAMESPACE_END
