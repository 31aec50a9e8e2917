// SPDX-License-Identifier: MIT
// snippet-begin main.cpp
// One GRPO loss on two completions of three tokens: the program every packaging test builds and runs.
#include <cmath>
#include <cstdio>
#include <exception>

#include <grpo/grpo.hpp>

int main() try {
    const double logp[2 * 3] = {-0.5, -1.0, -1.5, -0.7, -0.2, -2.0}; // current policy, [completions, tokens]
    const double advantages[2] = {1.0, 0.5};                         // one per completion
    double grad[2 * 3] = {};                                         // dLoss/dlogp, for your backward pass

    grpo::loss_inputs<double> in;
    in.logp = grpo::matrix_view<const double>(logp, 2, 3);
    in.advantages = grpo::broadcast_to_tokens(grpo::vector_view<const double>(advantages, 2), 3);
    grpo::loss_outputs<double> out;
    out.grad_logp = grpo::matrix_view<double>(grad, 2, 3);
    const grpo::loss_stats s = grpo::loss_and_grad(grpo::exec::host{}, in, out, grpo::loss_config{});

    // On-policy (ratio 1), token mean over 6 tokens: loss = -(3 * 1.0 + 3 * 0.5) / 6, dL/dlogp = -A / 6.
    std::printf("grpo %d.%d.%d: loss %.4f\n", GRPO_VERSION_MAJOR, GRPO_VERSION_MINOR, GRPO_VERSION_PATCH, s.loss);
    return std::abs(s.loss + 0.75) < 1e-12 && std::abs(grad[0] + 1.0 / 6) < 1e-12 ? 0 : 1;
} catch (const std::exception& e) { // a grpo::error names the argument, what was expected and what was found
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
}
// snippet-end main.cpp
