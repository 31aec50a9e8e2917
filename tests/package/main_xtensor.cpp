// SPDX-License-Identifier: MIT
// The xtensor adapter through an installed package: xtensor inputs, the gradient written into an xtensor.
#include <cmath>
#include <cstdio>
#include <exception>

#include <grpo/adapters/xtensor.hpp>
#include <grpo/grpo.hpp>
#include <xtensor/xtensor.hpp>

int main() try {
    // snippet-begin xtensor-adapter
    xt::xtensor<double, 2> logp = {{-0.5, -1.0, -1.5}, {-0.7, -0.2, -2.0}};
    xt::xtensor<double, 1> advantages = {1.0, 0.5};
    xt::xtensor<double, 2> grad({2, 3}, 0.0);

    grpo::loss_inputs<double> in;
    in.logp = grpo::xtensor::matrix(logp);
    in.advantages = grpo::broadcast_to_tokens(grpo::xtensor::vector(advantages), 3);
    grpo::loss_outputs<double> out;
    out.grad_logp = grpo::xtensor::matrix(grad);
    const grpo::loss_stats s = grpo::loss_and_grad(grpo::exec::host{}, in, out, grpo::loss_config{});
    // snippet-end xtensor-adapter
    std::printf("grpo + xtensor: loss %.4f\n", s.loss);
    return std::abs(s.loss + 0.75) < 1e-12 && std::abs(grad(1, 2) + 0.5 / 6) < 1e-12 ? 0 : 1;
} catch (const std::exception& e) { // a grpo::error names the argument, what was expected and what was found
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
}
