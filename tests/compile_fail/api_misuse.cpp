// SPDX-License-Identifier: MIT
// Misuse of the public API that must not compile, one case per GRPO_FAIL_CASE (tests/compile_fail/CMakeLists.txt
// checks that the compiler stops with the expected diagnostic). Case 0 is the correct use of every call below;
// it builds and runs, so the harness itself is known to work.
#include <grpo/cuda_emulated.hpp>
#include <grpo/grpo.hpp>

#include <cstddef>
#include <cstdint>
#include <vector>

int main() {
    std::vector<float> logp(4, -1.0f), adv(4, 1.0f), grad(4);
    std::vector<double> rewards(4, 1.0), out(4);
    grpo::loss_config cfg;
    grpo::loss_inputs<float> in;
    in.logp = {logp.data(), 2, 2};
    in.advantages = {adv.data(), 2, 2};
    grpo::loss_outputs<float> outs;
    outs.grad_logp = {grad.data(), 2, 2};
#if GRPO_FAIL_CASE == 0
    grpo::loss_and_grad(grpo::exec::host{}, in, outs, cfg);
    grpo::kl_inputs<float> kin;
    kin.logp = {logp.data(), 2, 2};
    kin.ref_logp = {adv.data(), 2, 2};
    grpo::per_token_kl(grpo::exec::host{}, kin, grpo::kl_outputs<float>{}, grpo::kl_config{});
    grpo::compute_advantages(grpo::exec::host{}, grpo::vector_view<const double>(rewards.data(), 4),
                             grpo::groups::contiguous(2), grpo::vector_view<double>(out.data(), 4),
                             grpo::advantage_config{});
    grpo::emulated_workspace ews;
    grpo::loss_inputs<float, grpo::device_space> din;
    din.logp = {logp.data(), 2, 2};
    din.advantages = {adv.data(), 2, 2};
    grpo::loss_and_grad(grpo::exec::cuda_emulated{}, din, grpo::loss_outputs<float, grpo::device_space>{}, cfg, ews);
    // Extents of any integer type, as containers give them (size_t), in the brace style of README.
    const std::size_t rows = 2, cols = 2;
    grpo::loss_inputs<float> sized;
    sized.logp = {logp.data(), rows, cols};
    sized.advantages = {adv.data(), rows, cols};
    grpo::loss_and_grad(grpo::exec::host{}, sized, outs, cfg);
#elif GRPO_FAIL_CASE == 1  // an integer element type
    std::vector<int> ints(4);
    grpo::loss_inputs<int> bad;
    bad.logp = {ints.data(), 2, 2};
    grpo::loss_and_grad(grpo::exec::host{}, bad, grpo::loss_outputs<int>{}, cfg);
#elif GRPO_FAIL_CASE == 2  // per_token_kl with an integer element type
    std::vector<int> ints(4);
    grpo::kl_inputs<int> bad;
    bad.logp = {ints.data(), 2, 2};
    grpo::per_token_kl(grpo::exec::host{}, bad, grpo::kl_outputs<int>{}, grpo::kl_config{});
#elif GRPO_FAIL_CASE == 3  // device views on the host executor: a kernel pointer must never be dereferenced here
    grpo::loss_and_grad(grpo::exec::host{}, grpo::loss_inputs<float, grpo::device_space>{},
                        grpo::loss_outputs<float, grpo::device_space>{}, cfg);
#elif GRPO_FAIL_CASE == 4  // host views on a device executor
    grpo::emulated_workspace ews;
    grpo::loss_and_grad(grpo::exec::cuda_emulated{}, in, outs, cfg, ews);
#elif GRPO_FAIL_CASE == 5  // inputs and outputs of different element types
    std::vector<double> g(4);
    grpo::loss_outputs<double> other;
    other.grad_logp = {g.data(), 2, 2};
    grpo::loss_and_grad(grpo::exec::host{}, in, other, cfg);
#elif GRPO_FAIL_CASE == 6  // an output view over read-only memory
    const std::vector<float> frozen(4);
    outs.grad_logp = grpo::matrix_view<const float>(frozen.data(), 2, 2);
#elif GRPO_FAIL_CASE == 7  // rewards and advantages of different types
    std::vector<float> fout(4);
    grpo::compute_advantages(grpo::exec::host{}, grpo::vector_view<const double>(rewards.data(), 4),
                             grpo::groups::contiguous(2), grpo::vector_view<float>(fout.data(), 4),
                             grpo::advantage_config{});
#elif GRPO_FAIL_CASE == 8  // writing through an input view
    in.logp(0, 0) = 0.0f;
#elif GRPO_FAIL_CASE == 9  // a uint8 mask for float inputs
    std::vector<std::uint8_t> mask(4, 1);
    in.mask = grpo::matrix_view<const std::uint8_t>(mask.data(), 2, 2);
#elif GRPO_FAIL_CASE == 10 // a host view in device inputs
    grpo::loss_inputs<float, grpo::device_space> din;
    din.logp = in.logp;
#endif
    return 0;
}
