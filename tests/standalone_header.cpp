// SPDX-License-Identifier: MIT
// grpo.hpp must be self-contained: this file includes nothing else.
#include <grpo/grpo.hpp>

int main() {
    double logp[2] = {-1.0, -2.0};
    double adv[1] = {1.0};
    double grad[2];
    grpo::loss_inputs<double> in;
    in.logp = grpo::matrix_view<const double>(logp, 1, 2);
    in.advantages = grpo::broadcast_to_tokens(grpo::vector_view<const double>(adv, 1), 2);
    grpo::loss_outputs<double> out;
    out.grad_logp = grpo::matrix_view<double>(grad, 1, 2);
    const auto stats = grpo::loss_and_grad(grpo::exec::host{}, in, out, grpo::loss_config{});
    // On-policy, A = 1, token mean over 2 tokens: loss -1, gradient -1/2 per token.
    return (stats.loss == -1.0 && grad[0] == -0.5 && grad[1] == -0.5) ? 0 : 1;
}
