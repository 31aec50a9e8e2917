// SPDX-License-Identifier: MIT
// logprobs_from_logits and its backward on a device executor (exec::cuda, exec::cuda_emulated): the CPU
// backend's shape and configuration checks on the host, then the kernels of backend/kernels/logprob_kernels.hpp;
// each call waits for its stream once and throws the CPU backend's grpo::error on a bad value, outputs untouched.
// CUDA-free; the launch policy (a "device") is described in device_entry.hpp.
#pragma once

#include <type_traits>

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

GRPO_NAMESPACE_END
