// SPDX-License-Identifier: MIT
// LibTorch adapter: grpo views of torch::Tensor and the GRPO loss as a LibTorch autograd function. Include it
// yourself (it is not part of grpo/grpo.hpp) and link grpo::torch (find_package(grpo CONFIG COMPONENTS torch)).
// Written against LibTorch 1.13 (Debian's libtorch-dev) and 2.x; it uses only API present in both.
//
//   grpo::libtorch::matrix<const float>(t)   matrix_view of a 2-D tensor, no copy: sizes, strides (in
//                                            elements, 0 from expand() allowed for read-only views) and the
//                                            storage offset are taken as they are. matrix<float>(t) is a
//                                            writable view (strides must not overlap).
//   grpo::libtorch::vector<const float>(t)   vector_view of a 1-D tensor, likewise.
//   grpo::libtorch::grpo_loss(logp, old_logp, ref_logp, advantages, mask, cfg)
//                                            the GRPO loss as a 0-dim tensor whose backward() is grpo's
//                                            fused dLoss/dlogp: one pass computes loss and gradient, the
//                                            gradient is kept for backward.
//   grpo::libtorch::logprobs_from_logits(logits, tokens, options)
//                                            {logp, entropy} of the sampled tokens from [..., V] logits as an
//                                            autograd function (CPU): no [tokens, V] log-softmax tensor, and a
//                                            backward that can write dLoss/dlogits in place.
//   grpo::libtorch::logprobs_from_hidden(hidden, weight, bias, tokens, options)
//                                            the same from the final hidden states and the LM head's weight
//                                            (and bias), chunk by chunk: the [tokens, V] logits never exist.
//                                            Needs Eigen: available when <Eigen/Core> is on the include path
//                                            (grpo::torch links grpo::eigen when Eigen is found).
//
// The element type named in matrix<T>/vector<T> must be the tensor's dtype (float = kFloat, double = kDouble,
// std::int64_t = kLong); anything else is a grpo::error (errc::unsupported) naming the argument, the dtype
// wanted and the dtype found. grpo_loss itself accepts float16/bfloat16/float32/float64 log-probs (the math
// runs in fp32, or fp64 for double, and torch casts the gradient back) and bool/integer/floating masks.
//
// Devices: CPU tensors run on grpo's CPU backend. CUDA tensors run on grpo's CUDA backend on torch's current
// stream when this header is compiled by nvcc in a translation unit that also links grpo::cuda (then
// <grpo/cuda.cuh> and c10's CUDA stream API are available); elsewhere a CUDA tensor is rejected with
// errc::memory_space, as is every other device.
#pragma once

#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>

#include <torch/torch.h>

#include "../grpo.hpp"

// A CUDA build of LibTorch ships c10/cuda/impl/cuda_cmake_macros.h; CPU-only builds (Debian's) may ship the
// other c10/cuda headers without it, and those cannot be included.
#if defined(__CUDACC__) && __has_include(<c10/cuda/CUDAStream.h>) && __has_include(<c10/cuda/impl/cuda_cmake_macros.h>)
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include "../cuda.cuh"
#define GRPO_TORCH_HAS_CUDA 1
#else
#define GRPO_TORCH_HAS_CUDA 0
#endif

#if __has_include(<Eigen/Core>)
#include "../api/logprob_hidden.hpp"
#define GRPO_TORCH_HAS_HIDDEN 1
#else
#define GRPO_TORCH_HAS_HIDDEN 0
#endif

GRPO_NAMESPACE_BEGIN
namespace libtorch {
namespace detail {

using grpo::detail::raise_argument;
using grpo::detail::to_str;

template <class T>
struct dtype_of;
template <>
struct dtype_of<float> {
    static constexpr c10::ScalarType value = c10::ScalarType::Float;
};
template <>
struct dtype_of<double> {
    static constexpr c10::ScalarType value = c10::ScalarType::Double;
};
template <>
struct dtype_of<std::int64_t> {
    static constexpr c10::ScalarType value = c10::ScalarType::Long;
};

inline std::string dtype_name(c10::ScalarType t) { return std::string("torch.") + c10::toString(t); }

inline std::string sizes_str(c10::IntArrayRef sizes) {
    std::string s = "[";
    for (std::size_t d = 0; d < sizes.size(); ++d) s += (d ? ", " : "") + std::to_string(sizes[d]);
    return s + "]";
}
inline std::string sizes_str(const at::Tensor& t) { return sizes_str(t.sizes()); }

/// Checks what every view needs: a defined tensor of dtype T, rank `rank`, on a device `Space` can reach.
template <class T, class Space>
void check_viewable(const at::Tensor& t, const char* where, const char* name, std::int64_t rank) {
    using value_type = std::remove_cv_t<T>;
    static_assert(std::is_same<value_type, float>::value || std::is_same<value_type, double>::value ||
                      std::is_same<value_type, std::int64_t>::value,
                  "grpo::libtorch: views exist for float, double and std::int64_t elements");
    if (!t.defined()) raise_argument(errc::invalid_value, where, name, "a defined tensor", "an undefined tensor");
    if (t.scalar_type() != dtype_of<value_type>::value)
        raise_argument(errc::unsupported, where, name, "dtype " + dtype_name(dtype_of<value_type>::value),
                       "dtype " + dtype_name(t.scalar_type()));
    if (t.dim() != rank)
        raise_argument(errc::shape_mismatch, where, name, std::to_string(rank) + "-D tensor",
                       std::to_string(t.dim()) + "-D tensor of shape " + sizes_str(t));
    const bool want_cuda = std::is_same<Space, device_space>::value;
    if (want_cuda ? !t.is_cuda() : !t.is_cpu())
        raise_argument(errc::memory_space, where, name, want_cuda ? "a CUDA tensor" : "a CPU tensor",
                       "a tensor on " + t.device().str());
}

template <class T>
T* data_of(const at::Tensor& t) {
    // data_ptr() already includes the storage offset (slices, narrow, select).
    return const_cast<T*>(t.data_ptr<std::remove_cv_t<T>>());
}

} // namespace detail

/// matrix_view over a 2-D tensor without a copy: element (i, j) is t[i][j]. T is the tensor's element type,
/// const-qualified for a read-only view (which may have stride 0, e.g. from expand()). Space is host_space
/// for CPU tensors, device_space for CUDA tensors. Throws grpo::error for an undefined tensor, another dtype,
/// another rank, another device, or (writable views) overlapping strides.
template <class T, class Space = host_space>
matrix_view<T, Space> matrix(const at::Tensor& t, const char* name = "tensor") {
    detail::check_viewable<T, Space>(t, "libtorch::matrix", name, 2);
    return matrix_view<T, Space>(detail::data_of<T>(t), t.size(0), t.size(1), t.stride(0), t.stride(1));
}

/// vector_view over a 1-D tensor without a copy (same rules as matrix).
template <class T, class Space = host_space>
vector_view<T, Space> vector(const at::Tensor& t, const char* name = "tensor") {
    detail::check_viewable<T, Space>(t, "libtorch::vector", name, 1);
    return vector_view<T, Space>(detail::data_of<T>(t), t.size(0), t.stride(0));
}

/// What grpo_loss can hand back besides the loss tensor.
struct loss_extras {
    /// If set, receives the diagnostics (clip fractions, ratio and KL means, token count) of the call.
    loss_stats* stats = nullptr;
    /// Optional int64 [completions] valid lengths: tokens t >= lengths[i] are masked (as loss_inputs).
    at::Tensor lengths;
    /// CPU only: the pool the fused pass runs on (nullptr = the calling thread). Results do not depend on it.
    thread_pool* pool = nullptr;
};

namespace detail {

/// The floating type grpo computes in for a tensor of dtype t: fp64 for double, fp32 for everything else.
inline c10::ScalarType compute_dtype(c10::ScalarType t) {
    return t == c10::ScalarType::Double ? c10::ScalarType::Double : c10::ScalarType::Float;
}

/// Runs the fused pass (CPU or CUDA) on tensors of dtype T; grad may be undefined (forward only).
template <class T>
loss_stats fused_pass(const at::Tensor& logp, const at::Tensor& old_logp, const at::Tensor& ref_logp,
                      const at::Tensor& advantages, const at::Tensor& mask, const at::Tensor& lengths,
                      const at::Tensor& grad, const loss_config& cfg, thread_pool* pool) {
    auto run = [&](auto space) -> loss_stats {
        using S = decltype(space);
        loss_inputs<T, S> in;
        in.logp = matrix<const T, S>(logp, "logp");
        if (old_logp.defined()) in.old_logp = matrix<const T, S>(old_logp, "old_logp");
        if (ref_logp.defined()) in.ref_logp = matrix<const T, S>(ref_logp, "ref_logp");
        in.advantages = matrix<const T, S>(advantages, "advantages");
        if (mask.defined()) in.mask = matrix<const T, S>(mask, "mask");
        if (lengths.defined()) in.lengths = vector<const std::int64_t, S>(lengths, "lengths");
        loss_outputs<T, S> out;
        if (grad.defined()) out.grad_logp = matrix<T, S>(grad, "grad_logp");
#if GRPO_TORCH_HAS_CUDA
        if constexpr (std::is_same<S, device_space>::value) {
            const c10::cuda::CUDAGuard guard(logp.device());
            thread_local cuda_workspace ws;
            return loss_and_grad(exec::cuda{c10::cuda::getCurrentCUDAStream().stream()}, in, out, cfg, ws);
        } else
#endif
        {
            thread_local workspace ws; // reused: no heap allocation once it has seen the batch size
            return loss_and_grad(exec::host{pool}, in, out, cfg, ws);
        }
    };
#if GRPO_TORCH_HAS_CUDA
    if (logp.is_cuda()) return run(device_space{});
#endif
    return run(host_space{}); // grpo_loss has checked the device
}

/// The autograd node: forward runs the fused pass once and keeps dLoss/dlogp; backward scales it by the
/// incoming gradient. Only logp receives a gradient (old, ref, advantages and mask are data).
struct loss_function : public torch::autograd::Function<loss_function> {
    // Optional inputs travel as c10::optional: LibTorch 1.13 cannot record an undefined at::Tensor argument.
    static at::Tensor forward(torch::autograd::AutogradContext* ctx, at::Tensor logp,
                              c10::optional<at::Tensor> old_logp, c10::optional<at::Tensor> ref_logp,
                              at::Tensor advantages, c10::optional<at::Tensor> mask, c10::optional<at::Tensor> lengths,
                              loss_config cfg, loss_stats* stats, thread_pool* pool) {
        const bool need_grad = logp.requires_grad();
        at::Tensor grad;
        if (need_grad) grad = at::empty(logp.sizes(), logp.options());
        const auto get = [](const c10::optional<at::Tensor>& t) { return t.has_value() ? *t : at::Tensor(); };
        const loss_stats st = logp.scalar_type() == c10::ScalarType::Double
                                  ? fused_pass<double>(logp, get(old_logp), get(ref_logp), advantages, get(mask),
                                                       get(lengths), grad, cfg, pool)
                                  : fused_pass<float>(logp, get(old_logp), get(ref_logp), advantages, get(mask),
                                                      get(lengths), grad, cfg, pool);
        if (stats) *stats = st;
        if (need_grad) ctx->save_for_backward({grad});
        return at::scalar_tensor(st.loss, logp.options());
    }

    static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                   torch::autograd::variable_list grad_out) {
        const at::Tensor grad = ctx->get_saved_variables()[0];
        // One gradient per forward argument; the non-differentiable ones get undefined tensors.
        return {grad * grad_out[0], at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(),
                at::Tensor(),       at::Tensor(), at::Tensor(), at::Tensor()};
    }
};

/// Brings an optional input to the compute dtype (a no-op when it already is); checks its device.
inline c10::optional<at::Tensor> prepare(const at::Tensor& t, const at::Tensor& like, const char* name, bool required) {
    if (!t.defined()) {
        if (required)
            raise_argument(errc::invalid_value, "libtorch::grpo_loss", name, "a defined tensor", "an undefined tensor");
        return c10::nullopt;
    }
    if (t.device() != like.device())
        raise_argument(errc::memory_space, "libtorch::grpo_loss", name, "a tensor on " + like.device().str(),
                       "a tensor on " + t.device().str());
    if (!(at::isFloatingType(t.scalar_type()) || at::isIntegralType(t.scalar_type(), /*includeBool=*/true)))
        raise_argument(errc::unsupported, "libtorch::grpo_loss", name, "a real floating, integer or bool dtype",
                       "dtype " + dtype_name(t.scalar_type()));
    return t.detach().to(like.scalar_type());
}

} // namespace detail

/// The GRPO loss of a batch as a LibTorch autograd value: loss.backward() sends grpo's fused dLoss/dlogp into
/// the host's graph (chain rule through whatever produced logp).
///
///   loss = loss_scale * sum_i w_i sum_t m_it * ( -min(r_it A_it, clip(r_it, 1-eps_low, 1+eps_high) A_it)
///                                                + beta * KL_k3(logp_it, ref_it) ),   r_it = exp(logp - old)
/// with every variant of loss_config (clip-higher, dual clip, delta, GSPO ratios, KL estimators and clamps,
/// aggregation modes). TRL: GRPOTrainer._compute_loss; verl: compute_policy_loss + kl_penalty + agg_loss.
///
/// @param logp        [B, T] log-probs under the current policy (float16/bfloat16/float32/float64); the only
///                    input that receives a gradient.
/// @param old_logp    [B, T] log-probs of the sampling policy, or an undefined tensor (on-policy: ratio 1).
/// @param ref_logp    [B, T] reference log-probs; required when cfg.beta != 0, may be undefined otherwise.
/// @param advantages  [B] per completion (broadcast along tokens without a copy) or [B, T] per token.
/// @param mask        [B, T] 1 = token counts (bool, integer or floating), or undefined (all tokens count).
/// @param cfg         loss_config (TRL defaults; loss_config::verl(), ::deepseekmath(), ::dapo(), ...).
/// @param extras      optional stats out, lengths, CPU thread pool.
/// @returns a 0-dim tensor of logp's compute dtype (fp32, or fp64 for double).
/// Throws grpo::error for a bad dtype, device, rank or shape, naming the argument (nothing is computed).
/// Inputs other than logp are detached and converted to the compute dtype when they differ (a copy); advantages
/// of shape [B] are expanded with stride 0 (no copy). First-order only: the saved gradient is a constant.
inline at::Tensor grpo_loss(const at::Tensor& logp, const at::Tensor& old_logp, const at::Tensor& ref_logp,
                            const at::Tensor& advantages, const at::Tensor& mask, const loss_config& cfg = {},
                            const loss_extras& extras = {}) {
    constexpr const char* where = "libtorch::grpo_loss";
    if (!logp.defined())
        detail::raise_argument(errc::invalid_value, where, "logp", "a defined tensor", "an undefined tensor");
    if (!at::isFloatingType(logp.scalar_type()))
        detail::raise_argument(errc::unsupported, where, "logp",
                               "a floating dtype (float16, bfloat16, float32, float64)",
                               "dtype " + detail::dtype_name(logp.scalar_type()));
    if (logp.dim() != 2)
        detail::raise_argument(errc::shape_mismatch, where, "logp", "2-D tensor [completions, tokens]",
                               std::to_string(logp.dim()) + "-D tensor of shape " + detail::sizes_str(logp));
    if (!(logp.is_cpu() || (GRPO_TORCH_HAS_CUDA && logp.is_cuda())))
        detail::raise_argument(errc::memory_space, where, "logp",
                               GRPO_TORCH_HAS_CUDA ? "a CPU or CUDA tensor"
                                                   : "a CPU tensor (CUDA tensors need this header compiled by "
                                                     "nvcc with grpo::cuda linked)",
                               "a tensor on " + logp.device().str());
    // Autograd-aware cast: backward casts the gradient back to logp's dtype.
    const at::Tensor x = logp.to(detail::compute_dtype(logp.scalar_type()));
    at::Tensor adv = *detail::prepare(advantages, x, "advantages", true);
    const std::int64_t rows = x.size(0), cols = x.size(1);
    const bool per_row = adv.dim() == 1 && adv.size(0) == rows;
    if (!per_row && !(adv.dim() == 2 && adv.size(0) == rows && adv.size(1) == cols)) {
        // Name the likely mistake: advantages that fit logp's transpose.
        const bool transposed =
            (adv.dim() == 1 && adv.size(0) == cols) || (adv.dim() == 2 && adv.size(0) == cols && adv.size(1) == rows);
        detail::raise_argument(errc::shape_mismatch, where, "advantages",
                               "shape [" + std::to_string(rows) + "] (one per completion) or [" + std::to_string(rows) +
                                   ", " + std::to_string(cols) + "] (per token) for logp of shape " +
                                   detail::sizes_str(x) + " [completions, tokens]",
                               "shape " + detail::sizes_str(adv) +
                                   (transposed ? " (is logp transposed? it must be [completions, tokens])" : ""));
    }
    if (per_row) adv = adv.unsqueeze(1).expand({rows, cols});
    c10::optional<at::Tensor> lengths;
    if (extras.lengths.defined()) lengths = extras.lengths; // dtype, rank and device checked by the view
    return detail::loss_function::apply(
        x, detail::prepare(old_logp, x, "old_logp", false), detail::prepare(ref_logp, x, "ref_logp", false), adv,
        detail::prepare(mask, x, "mask", false), lengths, cfg, extras.stats, extras.pool);
}

/// Options of logprobs_from_logits.
struct logprob_options {
    /// Logits are divided by it first (the sampling temperature, as TRL and verl do).
    double temperature = 1.0;
    /// Optional [...] mask of the token positions (shape of tokens; bool, integer or floating): 0 = padding, whose
    /// logits are never read and whose results and gradient are 0.
    at::Tensor mask;
    /// Backward writes dLoss/dlogits into the logits tensor's own memory and returns it as the gradient: no second
    /// [tokens, V] buffer. Only when nothing else reads those logits after the forward (they are overwritten);
    /// the logits must then be a contiguous float/double CPU tensor that autograd lets us modify (a leaf that
    /// requires grad cannot be). Default off: a fresh gradient tensor.
    bool backward_in_place = false;
    /// If set, receives the sums of the call (logprob_stats: rows, logp_sum, entropy_sum).
    logprob_stats* stats = nullptr;
    /// CPU pool the passes run on (nullptr = the calling thread). Results do not depend on it.
    thread_pool* pool = nullptr;
};

namespace detail {

/// The autograd node of logprobs_from_logits: forward keeps lse and the entropy per row (and the logits, which
/// autograd keeps alive anyway); backward runs grpo's backward pass with the incoming dLoss/dlogp and
/// dLoss/dentropy.
struct logprob_function : public torch::autograd::Function<logprob_function> {
    template <class T>
    static logprob_stats run_forward(const at::Tensor& logits2d, const at::Tensor& tokens, const at::Tensor& mask,
                                     const at::Tensor& logp, const at::Tensor& entropy, const at::Tensor& lse,
                                     double temperature, thread_pool* pool) {
        logits_inputs<T> in;
        in.logits = matrix<const T>(logits2d, "logits");
        in.tokens = vector<const std::int64_t>(tokens, "tokens");
        if (mask.defined()) in.mask = vector<const T>(mask, "mask");
        logprob_outputs<T> out;
        out.logp = vector<T>(logp, "logp");
        out.entropy = vector<T>(entropy, "entropy");
        out.lse = vector<double>(lse, "lse");
        logprob_config cfg;
        cfg.temperature = temperature;
        thread_local workspace ws;
        return logprobs_from_logits(exec::host{pool}, in, out, cfg, ws);
    }

    static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, at::Tensor logits2d,
                                                  at::Tensor tokens, c10::optional<at::Tensor> mask, double temperature,
                                                  bool in_place, logprob_stats* stats, thread_pool* pool) {
        const std::int64_t rows = logits2d.size(0);
        const auto opts = logits2d.options();
        at::Tensor logp = at::empty({rows}, opts), entropy = at::empty({rows}, opts);
        at::Tensor lse = at::empty({rows}, opts.dtype(c10::ScalarType::Double));
        const at::Tensor m = mask.has_value() ? *mask : at::Tensor();
        const logprob_stats st = logits2d.scalar_type() == c10::ScalarType::Double
                                     ? run_forward<double>(logits2d, tokens, m, logp, entropy, lse, temperature, pool)
                                     : run_forward<float>(logits2d, tokens, m, logp, entropy, lse, temperature, pool);
        if (stats) *stats = st;
        ctx->save_for_backward({logits2d, tokens, m, lse, entropy});
        ctx->saved_data["temperature"] = temperature;
        ctx->saved_data["in_place"] = in_place;
        ctx->saved_data["pool"] = reinterpret_cast<std::int64_t>(pool);
        return {logp, entropy};
    }

    template <class T>
    static void run_backward(const at::Tensor& logits2d, const at::Tensor& tokens, const at::Tensor& mask,
                             const at::Tensor& lse, const at::Tensor& entropy, const at::Tensor& g_logp,
                             const at::Tensor& g_entropy, const at::Tensor& grad, double temperature,
                             thread_pool* pool) {
        logits_inputs<T> in;
        in.logits = matrix<const T>(logits2d, "logits");
        in.tokens = vector<const std::int64_t>(tokens, "tokens");
        if (mask.defined()) in.mask = vector<const T>(mask, "mask");
        logprob_grad_inputs<T> g;
        g.lse = vector<const double>(lse, "lse");
        g.grad_logp = vector<const T>(g_logp, "grad_logp");
        if (g_entropy.defined()) {
            g.entropy = vector<const T>(entropy, "entropy");
            g.grad_entropy = vector<const T>(g_entropy, "grad_entropy");
        }
        logprob_config cfg;
        cfg.temperature = temperature;
        thread_local workspace ws;
        logprobs_from_logits_backward(exec::host{pool}, in, g, matrix<T>(grad, "grad_logits"), cfg, ws);
    }

    static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                   torch::autograd::variable_list grad_out) {
        const auto saved = ctx->get_saved_variables();
        const at::Tensor& logits2d = saved[0];
        const double temperature = ctx->saved_data["temperature"].toDouble();
        const bool in_place = ctx->saved_data["in_place"].toBool();
        auto* pool = reinterpret_cast<thread_pool*>(ctx->saved_data["pool"].toInt());
        const at::Tensor g_logp =
            grad_out[0].defined() ? grad_out[0].contiguous() : at::zeros({logits2d.size(0)}, logits2d.options());
        const at::Tensor g_entropy = grad_out[1].defined() ? grad_out[1].contiguous() : at::Tensor();
        at::Tensor grad = in_place ? logits2d : at::empty(logits2d.sizes(), logits2d.options());
        if (logits2d.scalar_type() == c10::ScalarType::Double)
            run_backward<double>(logits2d, saved[1], saved[2], saved[3], saved[4], g_logp, g_entropy, grad, temperature,
                                 pool);
        else
            run_backward<float>(logits2d, saved[1], saved[2], saved[3], saved[4], g_logp, g_entropy, grad, temperature,
                                pool);
        return {grad, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
    }
};

} // namespace detail

/// Log-probabilities of the sampled tokens and the entropies, from logits, as a LibTorch autograd function:
/// the `log_softmax(logits / temperature).gather(tokens)` and entropy of TRL's
/// _get_per_token_logps_and_entropies (verl: logprobs_from_logits, entropy_from_logits) without the [tokens, V]
/// log_softmax tensor, in one read of the logits; backward writes dLoss/dlogits in one more pass (in place with
/// options.backward_in_place). Composes with grpo_loss: `grpo_loss(logp, ...)` then `loss.backward()`.
///
/// @param logits  [..., V] float or double (float16/bfloat16 are converted to float32 first: a copy) CPU tensor;
///                the leading dimensions are flattened (contiguous rows are viewed, not copied).
/// @param tokens  [...] int64 ids of the sampled tokens (int32 is converted).
/// @returns {logp, entropy}, each of shape [...] and logits' compute dtype.
/// Throws grpo::error (naming the argument) for bad shapes, dtypes, devices, ids, NaN logits, a temperature
/// that is not finite and > 0, and for in-place backward on logits that cannot be overwritten.
inline std::pair<at::Tensor, at::Tensor> logprobs_from_logits(const at::Tensor& logits, const at::Tensor& tokens,
                                                              const logprob_options& options = {}) {
    constexpr const char* where = "libtorch::logprobs_from_logits";
    if (!logits.defined())
        detail::raise_argument(errc::invalid_value, where, "logits", "a defined tensor", "an undefined tensor");
    if (!at::isFloatingType(logits.scalar_type()))
        detail::raise_argument(errc::unsupported, where, "logits", "a floating dtype",
                               "dtype " + detail::dtype_name(logits.scalar_type()));
    if (!logits.is_cpu())
        detail::raise_argument(errc::memory_space, where, "logits", "a CPU tensor",
                               "a tensor on " + logits.device().str());
    if (logits.dim() < 1)
        detail::raise_argument(errc::shape_mismatch, where, "logits", "[..., vocabulary]", "a 0-D tensor");
    const c10::IntArrayRef lead = logits.sizes().slice(0, static_cast<std::size_t>(logits.dim() - 1));
    if (!tokens.defined() || tokens.sizes() != lead)
        detail::raise_argument(errc::shape_mismatch, where, "tokens",
                               "shape " + detail::sizes_str(lead) + " (logits' shape without the vocabulary)",
                               tokens.defined() ? "shape " + detail::sizes_str(tokens) : "an undefined tensor");
    if (!at::isIntegralType(tokens.scalar_type(), /*includeBool=*/false))
        detail::raise_argument(errc::unsupported, where, "tokens", "an integer dtype (int64)",
                               "dtype " + detail::dtype_name(tokens.scalar_type()));
    const auto compute = detail::compute_dtype(logits.scalar_type());
    const std::int64_t vocab = logits.size(-1), rows = tokens.numel();
    // Autograd-aware: a 16-bit input is converted (the gradient flows back through the cast).
    at::Tensor x = logits.scalar_type() == compute ? logits : logits.to(compute);
    if (x.stride(-1) != 1) x = x.contiguous();
    const at::Tensor x2 = x.reshape({rows, vocab});
    if (options.backward_in_place &&
        (!x2.is_contiguous() || x2.data_ptr() != logits.data_ptr() || (logits.is_leaf() && logits.requires_grad())))
        detail::raise_argument(errc::invalid_value, where, "options.backward_in_place",
                               "contiguous float/double logits that autograd lets grpo overwrite (not a leaf that "
                               "requires grad)",
                               "logits of dtype " + detail::dtype_name(logits.scalar_type()) +
                                   (logits.is_leaf() && logits.requires_grad() ? ", a leaf that requires grad"
                                                                               : ", not viewable in place"));
    const at::Tensor ids = tokens.reshape({rows}).to(c10::ScalarType::Long).detach();
    c10::optional<at::Tensor> mask;
    if (options.mask.defined()) {
        if (options.mask.sizes() != tokens.sizes())
            detail::raise_argument(errc::shape_mismatch, where, "options.mask",
                                   "the shape of tokens, " + detail::sizes_str(tokens),
                                   "shape " + detail::sizes_str(options.mask));
        mask = options.mask.reshape({rows}).to(compute).detach();
    }
    const auto out = detail::logprob_function::apply(x2, ids, mask, options.temperature, options.backward_in_place,
                                                     options.stats, options.pool);
    return {out[0].view(tokens.sizes()), out[1].view(tokens.sizes())};
}

#if GRPO_TORCH_HAS_HIDDEN
/// Options of logprobs_from_hidden: those of logprobs_from_logits (backward_in_place does not apply: there are
/// no logits to overwrite) and the chunk size.
struct hidden_logprob_options : logprob_options {
    /// Rows of logits computed at a time (hidden_logprob_config::chunk_rows; 0 = 2^25 / V rows).
    std::int64_t chunk_rows = 0;
};

namespace detail {

/// The autograd node of logprobs_from_hidden: forward keeps lse and the entropy per row; backward recomputes each
/// chunk's logits and returns dLoss/dhidden, dLoss/dweight and dLoss/dbias (each only when autograd needs it).
struct hidden_logprob_function : public torch::autograd::Function<hidden_logprob_function> {
    template <class T>
    static hidden_inputs<T> inputs(const at::Tensor& hidden2d, const at::Tensor& weight, const at::Tensor& bias,
                                   const at::Tensor& tokens, const at::Tensor& mask) {
        hidden_inputs<T> in;
        in.hidden = matrix<const T>(hidden2d, "hidden");
        in.weight = matrix<const T>(weight, "weight");
        if (bias.defined()) in.bias = vector<const T>(bias, "bias");
        in.tokens = vector<const std::int64_t>(tokens, "tokens");
        if (mask.defined()) in.mask = vector<const T>(mask, "mask");
        return in;
    }
    static hidden_logprob_config config(double temperature, std::int64_t chunk_rows) {
        hidden_logprob_config cfg;
        cfg.temperature = temperature;
        cfg.chunk_rows = chunk_rows;
        return cfg;
    }

    template <class T>
    static logprob_stats run_forward(const at::Tensor& hidden2d, const at::Tensor& weight, const at::Tensor& bias,
                                     const at::Tensor& tokens, const at::Tensor& mask, const at::Tensor& logp,
                                     const at::Tensor& entropy, const at::Tensor& lse, const hidden_logprob_config& cfg,
                                     thread_pool* pool) {
        logprob_outputs<T> out;
        out.logp = vector<T>(logp, "logp");
        out.entropy = vector<T>(entropy, "entropy");
        out.lse = vector<double>(lse, "lse");
        thread_local workspace ws;
        return logprobs_from_hidden(exec::host{pool}, inputs<T>(hidden2d, weight, bias, tokens, mask), out, cfg, ws);
    }

    static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, at::Tensor hidden2d,
                                                  at::Tensor weight, c10::optional<at::Tensor> bias, at::Tensor tokens,
                                                  c10::optional<at::Tensor> mask, double temperature,
                                                  std::int64_t chunk_rows, logprob_stats* stats, thread_pool* pool) {
        const std::int64_t rows = hidden2d.size(0);
        const auto opts = hidden2d.options();
        at::Tensor logp = at::empty({rows}, opts), entropy = at::empty({rows}, opts);
        at::Tensor lse = at::empty({rows}, opts.dtype(c10::ScalarType::Double));
        const at::Tensor b = bias.has_value() ? *bias : at::Tensor(), m = mask.has_value() ? *mask : at::Tensor();
        const hidden_logprob_config cfg = config(temperature, chunk_rows);
        const logprob_stats st =
            hidden2d.scalar_type() == c10::ScalarType::Double
                ? run_forward<double>(hidden2d, weight, b, tokens, m, logp, entropy, lse, cfg, pool)
                : run_forward<float>(hidden2d, weight, b, tokens, m, logp, entropy, lse, cfg, pool);
        if (stats) *stats = st;
        ctx->save_for_backward({hidden2d, weight, b, tokens, m, lse, entropy});
        ctx->saved_data["temperature"] = temperature;
        ctx->saved_data["chunk_rows"] = chunk_rows;
        ctx->saved_data["pool"] = reinterpret_cast<std::int64_t>(pool);
        return {logp, entropy};
    }

    template <class T>
    static void run_backward(const torch::autograd::variable_list& saved, const at::Tensor& g_logp,
                             const at::Tensor& g_entropy, const at::Tensor& d_hidden, const at::Tensor& d_weight,
                             const at::Tensor& d_bias, const hidden_logprob_config& cfg, thread_pool* pool) {
        logprob_grad_inputs<T> g;
        g.lse = vector<const double>(saved[5], "lse");
        g.grad_logp = vector<const T>(g_logp, "grad_logp");
        if (g_entropy.defined()) {
            g.entropy = vector<const T>(saved[6], "entropy");
            g.grad_entropy = vector<const T>(g_entropy, "grad_entropy");
        }
        hidden_grads<T> out;
        if (d_hidden.defined()) out.hidden = matrix<T>(d_hidden, "grad_hidden");
        if (d_weight.defined()) out.weight = matrix<T>(d_weight, "grad_weight");
        if (d_bias.defined()) out.bias = vector<T>(d_bias, "grad_bias");
        thread_local workspace ws;
        logprobs_from_hidden_backward(exec::host{pool}, inputs<T>(saved[0], saved[1], saved[2], saved[3], saved[4]), g,
                                      out, cfg, ws);
    }

    static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                   torch::autograd::variable_list grad_out) {
        const auto saved = ctx->get_saved_variables();
        const at::Tensor &hidden2d = saved[0], &weight = saved[1], &bias = saved[2];
        const hidden_logprob_config cfg =
            config(ctx->saved_data["temperature"].toDouble(), ctx->saved_data["chunk_rows"].toInt());
        auto* pool = reinterpret_cast<thread_pool*>(ctx->saved_data["pool"].toInt());
        const at::Tensor g_logp =
            grad_out[0].defined() ? grad_out[0].contiguous() : at::zeros({hidden2d.size(0)}, hidden2d.options());
        const at::Tensor g_entropy = grad_out[1].defined() ? grad_out[1].contiguous() : at::Tensor();
        const at::Tensor d_hidden =
            ctx->needs_input_grad(0) ? at::empty(hidden2d.sizes(), hidden2d.options()) : at::Tensor();
        const at::Tensor d_weight =
            ctx->needs_input_grad(1) ? at::zeros(weight.sizes(), weight.options()) : at::Tensor();
        const at::Tensor d_bias =
            bias.defined() && ctx->needs_input_grad(2) ? at::zeros(bias.sizes(), bias.options()) : at::Tensor();
        if (hidden2d.scalar_type() == c10::ScalarType::Double)
            run_backward<double>(saved, g_logp, g_entropy, d_hidden, d_weight, d_bias, cfg, pool);
        else run_backward<float>(saved, g_logp, g_entropy, d_hidden, d_weight, d_bias, cfg, pool);
        return {d_hidden,     d_weight,     d_bias,       at::Tensor(), at::Tensor(),
                at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
    }
};

} // namespace detail

/// Log-probabilities of the sampled tokens and the entropies from the final hidden states and the LM head, as a
/// LibTorch autograd function: `logits = hidden @ weight.T + bias` followed by logprobs_from_logits, computed
/// options.chunk_rows rows at a time so that the [tokens, V] logits are never held (forward or backward). TRL: the
/// lm_head projection + selective_log_softmax + entropy_from_logits; verl: FusedLinearForPPO; Liger-Kernel:
/// LigerFusedLinearGRPOLoss's chunked head.
///
/// @param hidden  [..., H] float or double CPU tensor (16-bit is converted to float32: a copy).
/// @param weight  [V, H], the head's weight (torch::nn::Linear(H, V)->weight), same dtype as hidden.
/// @param bias    [V] or an undefined tensor (no bias).
/// @param tokens  [...] (hidden's shape without H) int64 ids of the sampled tokens (int32 is converted).
/// @returns {logp, entropy}, each of shape [...] and hidden's compute dtype; backward gives dLoss/dhidden,
///          dLoss/dweight and dLoss/dbias.
/// Throws grpo::error (naming the argument) for bad shapes, dtypes, devices, ids, non-finite values.
inline std::pair<at::Tensor, at::Tensor> logprobs_from_hidden(const at::Tensor& hidden, const at::Tensor& weight,
                                                              const at::Tensor& bias, const at::Tensor& tokens,
                                                              const hidden_logprob_options& options = {}) {
    constexpr const char* where = "libtorch::logprobs_from_hidden";
    const auto check_float_cpu = [&](const at::Tensor& t, const char* name) {
        if (!t.defined())
            detail::raise_argument(errc::invalid_value, where, name, "a defined tensor", "an undefined tensor");
        if (!at::isFloatingType(t.scalar_type()))
            detail::raise_argument(errc::unsupported, where, name, "a floating dtype",
                                   "dtype " + detail::dtype_name(t.scalar_type()));
        if (!t.is_cpu())
            detail::raise_argument(errc::memory_space, where, name, "a CPU tensor", "a tensor on " + t.device().str());
    };
    check_float_cpu(hidden, "hidden");
    check_float_cpu(weight, "weight");
    if (bias.defined()) check_float_cpu(bias, "bias");
    if (hidden.dim() < 1)
        detail::raise_argument(errc::shape_mismatch, where, "hidden", "[..., hidden size]", "a 0-D tensor");
    const std::int64_t width = hidden.size(-1);
    if (weight.dim() != 2 || weight.size(1) != width)
        detail::raise_argument(errc::shape_mismatch, where, "weight",
                               "[vocabulary, " + std::to_string(width) + "] (torch::nn::Linear(H, V)->weight)",
                               "shape " + detail::sizes_str(weight));
    if (bias.defined() && (bias.dim() != 1 || bias.size(0) != weight.size(0)))
        detail::raise_argument(errc::shape_mismatch, where, "bias", "[" + std::to_string(weight.size(0)) + "]",
                               "shape " + detail::sizes_str(bias));
    const auto compute = detail::compute_dtype(hidden.scalar_type());
    if (detail::compute_dtype(weight.scalar_type()) != compute ||
        (bias.defined() && detail::compute_dtype(bias.scalar_type()) != compute))
        detail::raise_argument(errc::unsupported, where, "weight", "hidden's dtype for weight and bias",
                               "hidden " + detail::dtype_name(hidden.scalar_type()) + ", weight " +
                                   detail::dtype_name(weight.scalar_type()) +
                                   (bias.defined() ? ", bias " + detail::dtype_name(bias.scalar_type()) : ""));
    const c10::IntArrayRef lead = hidden.sizes().slice(0, static_cast<std::size_t>(hidden.dim() - 1));
    if (!tokens.defined() || tokens.sizes() != lead)
        detail::raise_argument(errc::shape_mismatch, where, "tokens",
                               "shape " + detail::sizes_str(lead) + " (hidden's shape without the hidden size)",
                               tokens.defined() ? "shape " + detail::sizes_str(tokens) : "an undefined tensor");
    if (!at::isIntegralType(tokens.scalar_type(), /*includeBool=*/false))
        detail::raise_argument(errc::unsupported, where, "tokens", "an integer dtype (int64)",
                               "dtype " + detail::dtype_name(tokens.scalar_type()));
    const std::int64_t rows = tokens.numel();
    // Autograd-aware conversions: a 16-bit input or a strided column is copied (the gradient flows back).
    const auto prepared = [&](const at::Tensor& t) {
        at::Tensor x = t.scalar_type() == compute ? t : t.to(compute);
        return x.stride(-1) == 1 ? x : x.contiguous();
    };
    const at::Tensor h2 = prepared(hidden).reshape({rows, width});
    const at::Tensor w = prepared(weight);
    c10::optional<at::Tensor> b;
    if (bias.defined()) b = prepared(bias).contiguous();
    const at::Tensor ids = tokens.reshape({rows}).to(c10::ScalarType::Long).detach();
    c10::optional<at::Tensor> mask;
    if (options.mask.defined()) {
        if (options.mask.sizes() != tokens.sizes())
            detail::raise_argument(errc::shape_mismatch, where, "options.mask",
                                   "the shape of tokens, " + detail::sizes_str(tokens),
                                   "shape " + detail::sizes_str(options.mask));
        mask = options.mask.reshape({rows}).to(compute).detach();
    }
    if (options.backward_in_place)
        detail::raise_argument(errc::invalid_value, where, "options.backward_in_place",
                               "false (the hidden-state form has no logits to overwrite)", "true");
    const auto out = detail::hidden_logprob_function::apply(h2, w, b, ids, mask, options.temperature,
                                                            options.chunk_rows, options.stats, options.pool);
    return {out[0].view(tokens.sizes()), out[1].view(tokens.sizes())};
}
#endif // GRPO_TORCH_HAS_HIDDEN

} // namespace libtorch
GRPO_NAMESPACE_END
