// SPDX-License-Identifier: MIT
#include <cmath>
#include <cstdio>

#include <grpo/grpo.hpp>

int main() {
    const double logp[4] = {-0.5, -1.0, -0.7, -0.2};
    const double advantages[2] = {1.0, -0.5};
    double grad[4] = {};
    grpo::loss_inputs<double> in;
    in.logp = grpo::matrix_view<const double>(logp, 2, 2);
    in.advantages = grpo::broadcast_to_tokens(grpo::vector_view<const double>(advantages, 2), 2);
    grpo::loss_outputs<double> out;
    out.grad_logp = grpo::matrix_view<double>(grad, 2, 2);
    const grpo::loss_stats s = grpo::loss_and_grad(grpo::exec::host{}, in, out, grpo::loss_config{});
    std::printf("grpo %d.%d.%d: loss %.4f\n", GRPO_VERSION_MAJOR, GRPO_VERSION_MINOR, GRPO_VERSION_PATCH, s.loss);
    // On-policy, token mean: loss = -(2 * 1.0 - 2 * 0.5) / 4 = -0.25.
    return std::abs(s.loss + 0.25) < 1e-12 && std::abs(grad[3] - 0.125) < 1e-12 ? 0 : 1;
}
