// SPDX-License-Identifier: MIT
// logprobs_from_logits and its backward on a device executor (exec::cuda, exec::cuda_emulated): the CPU
// backend's shape and configuration checks on the host, then the kernels of backend/kernels/logprob_kernels.hpp;
// each call waits for its stream once and throws the CPU backend's grpo::error on a bad value, outputs untouched.
// The hidden-state form multiplies with the device's gemm (row-major C = op(A) op(B) + beta C: cuBLAS on a GPU, a
// plain loop in the emulator). CUDA-free; the launch policy (a "device") is described in device_entry.hpp.
#pragma once

#include <type_traits>

#include "../backend/kernels/logprob_hidden_kernels.hpp"
#include "../backend/kernels/logprob_kernels.hpp"
#include "../types/logprob_types.hpp"
#include "device_entry.hpp"
#include "logprob.hpp"

GRPO_NAMESPACE_BEGIN
namespace detail {
namespace cuda {

template <class T, class Token>
constexpr void check_logprob_types() {
    static_assert(is_loss_element<T>::value,
                  "grpo::logprobs_from_logits (CUDA): logits must be float, double, __half or __nv_bfloat16");
    static_assert(is_token_type<Token>, "grpo::logprobs_from_logits (CUDA): tokens must be int64 or int32");
}

/// Waits for the call's record and throws its error, if any.
template <class D>
logprob_record read_logprob_record(D& dev, const char* where, const logprob_scratch& s, index_t vocab) {
    dev.check_launch(where);
    auto* h = reinterpret_cast<logprob_record*>(dev.host_doubles(doubles_of(sizeof(logprob_record))));
    dev.copy_to_host(h, s.record, sizeof(logprob_record));
    dev.synchronize(where);
    const auto code = static_cast<logit_error>(static_cast<int>(h->code));
    const auto row = static_cast<index_t>(h->row);
    if (code == logit_error::bad_token)
        raise_token_error(where, row, static_cast<long long>(double_bits_as_int64(h->value)), vocab);
    if (code != logit_error::none) raise_logit_error(where, code, row, static_cast<index_t>(h->column), h->value);
    return *h;
}

template <class T, class Token, class D>
logprob_stats run_logprobs_sync(D& dev, const char* where, const logits_inputs<T, Token, device_space>& in,
                                const logprob_outputs<T, device_space>& out, const logprob_config& cfg) {
    check_logprob_types<T, Token>();
    check_logprob_call(where, in, out, cfg);
    check_device_view(dev, where, "logits", in.logits);
    check_device_view(dev, where, "tokens", in.tokens);
    check_device_view(dev, where, "mask", in.mask);
    check_device_view(dev, where, "logp", out.logp);
    check_device_view(dev, where, "entropy", out.entropy);
    check_device_view(dev, where, "lse", out.lse);
    const index_t rows = in.logits.rows();
    (void)checked_mul(where, "logits rows", checked_add(where, "logits rows", rows, 2),
                      static_cast<index_t>(doubles_of(sizeof(logprob_row))));
    const logprob_scratch s = logprob_layout(dev.scratch_doubles(logprob_scratch_doubles(rows)), rows);
    dev.zero(s.counter, sizeof(unsigned long long));
    const logprob_views<T, Token> v{in.logits, in.tokens, in.mask};
    dev.launch(logprob_forward_kernel<T, Token>{v, out.logp, out.entropy, out.lse, cfg.temperature,
                                                cfg.checks == validation::full, s},
               grid_for_items(rows));
    const logprob_record r = read_logprob_record(dev, where, s, in.logits.cols());
    logprob_stats st;
    st.rows = r.rows;
    st.logp_sum = r.logp_sum;
    st.entropy_sum = r.entropy_sum;
    return st;
}

template <class T, class Token, class D>
void run_logprobs_backward_sync(D& dev, const char* where, const logits_inputs<T, Token, device_space>& in,
                                const logprob_grad_inputs<T, device_space>& grad,
                                const matrix_view<T, device_space>& grad_logits, const logprob_config& cfg) {
    check_logprob_types<T, Token>();
    check_logprob_backward_call(where, in, grad, grad_logits, cfg);
    check_device_view(dev, where, "logits", in.logits);
    check_device_view(dev, where, "tokens", in.tokens);
    check_device_view(dev, where, "mask", in.mask);
    check_device_view(dev, where, "lse", grad.lse);
    check_device_view(dev, where, "entropy", grad.entropy);
    check_device_view(dev, where, "grad_logp", grad.grad_logp);
    check_device_view(dev, where, "grad_entropy", grad.grad_entropy);
    check_device_view(dev, where, "grad_logits", grad_logits);
    const index_t rows = in.logits.rows();
    (void)checked_mul(where, "logits rows", checked_add(where, "logits rows", rows, 2),
                      static_cast<index_t>(doubles_of(sizeof(logprob_row))));
    const logprob_scratch s = logprob_layout(dev.scratch_doubles(logprob_scratch_doubles(rows)), rows);
    dev.zero(s.counter, sizeof(unsigned long long));
    const logprob_views<T, Token> v{in.logits, in.tokens, in.mask};
    const logprob_grad_views<T> g{grad.lse, grad.entropy, grad.grad_logp, grad.grad_entropy};
    const index_t blocks = grid_for_items(rows);
    dev.launch(logprob_check_kernel<T, Token>{v, g, cfg.temperature, cfg.checks == validation::full, s}, blocks);
    dev.launch(logprob_backward_kernel<T, Token>{v, g, grad_logits, cfg.temperature, s.record}, blocks);
    read_logprob_record(dev, where, s, in.logits.cols());
}

template <class T, class Token>
hidden_device_views<T, Token> hidden_views(const hidden_inputs<T, Token, device_space>& in) {
    return {in.hidden, in.weight, in.bias, in.tokens, in.mask};
}

/// The hidden form's shared start: device checks of the views, the scratch, then the check kernel (values,
/// bounds for the backward, the list of unmasked rows), waited for: returns the number of unmasked rows.
template <class T, class Token, class D>
index_t start_hidden(D& dev, const char* where, const hidden_inputs<T, Token, device_space>& in,
                     const logprob_grad_inputs<T, device_space>& grad, const hidden_logprob_config& cfg, bool backward,
                     hidden_device_scratch<T>& s) {
    static_assert(std::is_same<T, float>::value || std::is_same<T, double>::value,
                  "grpo::logprobs_from_hidden (CUDA): hidden states must be float or double");
    static_assert(is_token_type<Token>, "grpo::logprobs_from_hidden (CUDA): tokens must be int64 or int32");
    check_device_view(dev, where, "hidden", in.hidden);
    check_device_view(dev, where, "weight", in.weight);
    check_device_view(dev, where, "bias", in.bias);
    check_device_view(dev, where, "tokens", in.tokens);
    check_device_view(dev, where, "mask", in.mask);
    const index_t rows = in.hidden.rows(), vocab = in.weight.rows(), width = in.hidden.cols();
    const index_t chunk = hidden_chunk_rows(cfg, rows, vocab);
    // The scratch's size fits (each product checked; the sum has room).
    (void)checked_mul(where, "chunk scratch", chunk, checked_add(where, "chunk scratch", vocab, 2 * width));
    (void)checked_mul(where, "rows", checked_add(where, "rows", rows, vocab), 16);
    s = hidden_layout<T>(dev.scratch_doubles(hidden_scratch_doubles(rows, vocab, width, chunk, sizeof(T))), rows, vocab,
                         width, chunk);
    dev.zero(s.check_done, sizeof(unsigned long long));
    const logprob_grad_views<T> g{grad.lse, grad.entropy, grad.grad_logp, grad.grad_entropy};
    dev.launch(hidden_check_kernel<T, Token>{hidden_views(in), g, cfg.temperature, cfg.checks == validation::full,
                                             backward, s},
               grid_for_items(checked_add(where, "rows", rows, vocab)));
    dev.check_launch(where);
    auto* h = reinterpret_cast<logprob_record*>(dev.host_doubles(doubles_of(sizeof(logprob_record)) + 1));
    dev.copy_to_host(h, s.check_record, sizeof(logprob_record));
    dev.copy_to_host(reinterpret_cast<double*>(h) + doubles_of(sizeof(logprob_record)), s.count, sizeof(double));
    dev.synchronize(where);
    const auto code = static_cast<logit_error>(static_cast<int>(h->code));
    if (code == logit_error::bad_token)
        raise_token_error(where, static_cast<index_t>(h->row), static_cast<long long>(double_bits_as_int64(h->value)),
                          vocab);
    if (code != logit_error::none)
        raise_logit_error(where, code, static_cast<index_t>(h->row), static_cast<index_t>(h->column), h->value);
    return static_cast<index_t>(reinterpret_cast<double*>(h)[doubles_of(sizeof(logprob_record))]);
}

/// A chunk's logits: its hidden rows gathered, times weight^T (the bias is added by hidden_rows_kernel).
template <class T, class Token, class D>
void chunk_logits_on_device(D& dev, const hidden_inputs<T, Token, device_space>& in, const hidden_device_scratch<T>& s,
                            index_t first, index_t c) {
    const index_t vocab = in.weight.rows(), width = in.hidden.cols();
    if (width > 0) {
        dev.launch(hidden_gather_kernel<T>{in.hidden, s.unmasked, first, c, s.hidden}, grid_for_items(c));
        dev.gemm(false, true, c, vocab, width, s.hidden, width, in.weight.data(), in.weight.row_stride(), T(0),
                 s.logits, vocab);
    } else {
        dev.zero(s.logits, static_cast<std::size_t>(c * vocab) * sizeof(T));
    }
}

template <class T, class Token, class D>
logprob_stats run_hidden_sync(D& dev, const char* where, const hidden_inputs<T, Token, device_space>& in,
                              const logprob_outputs<T, device_space>& out, const hidden_logprob_config& cfg) {
    check_hidden_call(where, in, out, cfg);
    check_device_view(dev, where, "logp", out.logp);
    check_device_view(dev, where, "entropy", out.entropy);
    check_device_view(dev, where, "lse", out.lse);
    hidden_device_scratch<T> s{};
    const index_t unmasked = start_hidden(dev, where, in, {}, cfg, false, s);
    const index_t rows = in.hidden.rows(), vocab = in.weight.rows();
    const index_t chunk = hidden_chunk_rows(cfg, rows, vocab);
    dev.zero(s.results.rows, static_cast<std::size_t>(rows) * sizeof(logprob_row)); // masked rows: 0
    for (index_t first = 0; first < unmasked; first += chunk) {
        const index_t c = unmasked - first < chunk ? unmasked - first : chunk;
        chunk_logits_on_device(dev, in, s, first, c);
        dev.launch(
            hidden_rows_kernel<T, Token>{
                hidden_views(in), {}, s.unmasked, first, c, s.logits, cfg.temperature, false, s.results.rows},
            grid_for_items(c));
    }
    const bool full = cfg.checks == validation::full;
    dev.launch(logprob_finish_kernel<T>{s.results, rows, full, out.logp, out.entropy, out.lse}, 1);
    dev.check_launch(where);
    auto* h = reinterpret_cast<logprob_record*>(dev.host_doubles(doubles_of(sizeof(logprob_record))));
    dev.copy_to_host(h, s.results.record, sizeof(logprob_record));
    dev.synchronize(where);
    // Finite inputs (checked first): a logit error is the product or the division overflowing.
    if (h->code != 0)
        raise_logit_error(where, logit_error::hidden_overflow, static_cast<index_t>(h->row),
                          static_cast<index_t>(h->column), h->value);
    logprob_stats st;
    st.rows = h->rows;
    st.logp_sum = h->logp_sum;
    st.entropy_sum = h->entropy_sum;
    return st;
}

template <class T, class Token, class D>
void run_hidden_backward_sync(D& dev, const char* where, const hidden_inputs<T, Token, device_space>& in,
                              const logprob_grad_inputs<T, device_space>& grad,
                              const hidden_grads<T, device_space>& out, const hidden_logprob_config& cfg) {
    check_hidden_backward_call(where, in, grad, out, cfg);
    check_device_view(dev, where, "lse", grad.lse);
    check_device_view(dev, where, "entropy", grad.entropy);
    check_device_view(dev, where, "grad_logp", grad.grad_logp);
    check_device_view(dev, where, "grad_entropy", grad.grad_entropy);
    check_device_view(dev, where, "grads.hidden", out.hidden);
    check_device_view(dev, where, "grads.weight", out.weight);
    check_device_view(dev, where, "grads.bias", out.bias);
    hidden_device_scratch<T> s{};
    const index_t unmasked = start_hidden(dev, where, in, grad, cfg, true, s);
    const index_t rows = in.hidden.rows(), vocab = in.weight.rows(), width = in.hidden.cols();
    const index_t chunk = hidden_chunk_rows(cfg, rows, vocab);
    const logprob_grad_views<T> g{grad.lse, grad.entropy, grad.grad_logp, grad.grad_entropy};
    if (out.hidden.present() && width > 0)
        dev.launch(hidden_zero_masked_kernel<T>{in.mask, out.hidden}, grid_for_items(rows));
    for (index_t first = 0; first < unmasked; first += chunk) {
        const index_t c = unmasked - first < chunk ? unmasked - first : chunk;
        chunk_logits_on_device(dev, in, s, first, c);
        dev.launch(hidden_rows_kernel<T, Token>{hidden_views(in), g, s.unmasked, first, c, s.logits, cfg.temperature,
                                                true, nullptr},
                   grid_for_items(c));
        if (width > 0 && out.weight.present()) // dweight += G^T hidden_chunk
            dev.gemm(true, false, vocab, width, c, s.logits, vocab, s.hidden, width, T(1), out.weight.data(),
                     out.weight.row_stride());
        if (out.bias.present())
            dev.launch(hidden_bias_grad_kernel<T>{s.logits, c, vocab, out.bias}, grid_for_items(vocab, logprob_block));
        if (width > 0 && out.hidden.present()) { // dhidden_chunk = G weight
            dev.gemm(false, false, c, width, vocab, s.logits, vocab, in.weight.data(), in.weight.row_stride(), T(0),
                     s.grad_hidden, width);
            dev.launch(hidden_scatter_kernel<T>{s.grad_hidden, s.unmasked, first, c, out.hidden}, grid_for_items(c));
        }
    }
    dev.check_launch(where);
    dev.synchronize(where);
}

} // namespace cuda
} // namespace detail

/// logprobs_from_logits on device (the CPU overload's formulas, checks and errors; see api/logprob.hpp): one block
/// per row, the row read twice (its maximum, then the sums against it). Waits for the stream once and returns
/// the sums; a bad value throws after the wait with the outputs untouched. Logits: float, double, __half or
/// __nv_bfloat16 (math in float); tokens int64 or int32. Deterministic for a fixed block size; the results agree
/// with the CPU backend's to rounding (the sums run in another order). The call holds `ws` until it returns.
template <class Exec, class T, class Token>
detail::if_device_executor<Exec, logprob_stats> logprobs_from_logits(const Exec& ex,
                                                                     const logits_inputs<T, Token, device_space>& in,
                                                                     const logprob_outputs<T, device_space>& out,
                                                                     const logprob_config& cfg,
                                                                     detail::device_workspace_of<Exec>& ws) {
    constexpr const char* where = device_backend_traits<Exec>::logprobs_where;
    const basic_workspace_lease<detail::device_workspace_of<Exec>> lease(ws, where);
    auto dev = device_backend_traits<Exec>::device(ex, ws);
    return detail::cuda::run_logprobs_sync(dev, where, in, out, cfg);
}

/// logprobs_from_logits_backward on device (formulas, in-place rule, checks and errors of the CPU overload): a
/// validation kernel (ids, mask, per-row values and, with validation::full, the logits), then one block per row
/// writing dLoss/dlogits, nothing if the validation failed. Waits for the stream once. Same element types.
template <class Exec, class T, class Token>
detail::if_device_executor<Exec> logprobs_from_logits_backward(
    const Exec& ex, const logits_inputs<T, Token, device_space>& in, const logprob_grad_inputs<T, device_space>& grad,
    const matrix_view<T, device_space>& grad_logits, const logprob_config& cfg, detail::device_workspace_of<Exec>& ws) {
    constexpr const char* where = device_backend_traits<Exec>::logprobs_backward_where;
    const basic_workspace_lease<detail::device_workspace_of<Exec>> lease(ws, where);
    auto dev = device_backend_traits<Exec>::device(ex, ws);
    detail::cuda::run_logprobs_backward_sync(dev, where, in, grad, grad_logits, cfg);
}

/// logprobs_from_hidden on device (the CPU overload's formulas, checks and errors; see api/logprob_hidden.hpp):
/// a check kernel (ids, mask, finite values) waited for, then per chunk of unmasked rows the device's gemm
/// (cuBLAS) for the logits and one block per row for their reduction; waits for the stream once more at the end.
/// float or double. Results agree with the CPU backend's to rounding. The call holds `ws` until it returns.
template <class Exec, class T, class Token>
detail::if_device_executor<Exec, logprob_stats> logprobs_from_hidden(const Exec& ex,
                                                                     const hidden_inputs<T, Token, device_space>& in,
                                                                     const logprob_outputs<T, device_space>& out,
                                                                     const hidden_logprob_config& cfg,
                                                                     detail::device_workspace_of<Exec>& ws) {
    constexpr const char* where = device_backend_traits<Exec>::hidden_where;
    const basic_workspace_lease<detail::device_workspace_of<Exec>> lease(ws, where);
    auto dev = device_backend_traits<Exec>::device(ex, ws);
    return detail::cuda::run_hidden_sync(dev, where, in, out, cfg);
}

/// logprobs_from_hidden_backward on device (formulas, accumulation, checks and errors of the CPU overload): the
/// check kernel (with the overflow bounds) waited for, then per chunk the logits again, dLoss/dlogits in place,
/// and the products dweight += G^T hidden, dhidden = G weight (gemm) and dbias (a column sum in row order).
template <class Exec, class T, class Token>
detail::if_device_executor<Exec> logprobs_from_hidden_backward(const Exec& ex,
                                                               const hidden_inputs<T, Token, device_space>& in,
                                                               const logprob_grad_inputs<T, device_space>& grad,
                                                               const hidden_grads<T, device_space>& grads,
                                                               const hidden_logprob_config& cfg,
                                                               detail::device_workspace_of<Exec>& ws) {
    constexpr const char* where = device_backend_traits<Exec>::hidden_backward_where;
    const basic_workspace_lease<detail::device_workspace_of<Exec>> lease(ws, where);
    auto dev = device_backend_traits<Exec>::device(ex, ws);
    detail::cuda::run_hidden_backward_sync(dev, where, in, grad, grads, cfg);
}

GRPO_NAMESPACE_END
