// SPDX-License-Identifier: MIT
// The Eigen adapter through an installed package: Eigen inputs, the gradient written into an Eigen matrix.
#include <cmath>
#include <cstdio>
#include <exception>

#include <Eigen/Core>
#include <grpo/adapters/eigen.hpp>
#include <grpo/grpo.hpp>

int main() try {
    // snippet-begin eigen-adapter
    Eigen::MatrixXd logp(2, 3); // column-major, Eigen's default
    logp << -0.5, -1.0, -1.5, -0.7, -0.2, -2.0;
    Eigen::VectorXd advantages(2);
    advantages << 1.0, 0.5;
    Eigen::MatrixXd grad = Eigen::MatrixXd::Zero(2, 3);

    grpo::loss_inputs<double> in;
    in.logp = grpo::eigen::matrix(logp);
    in.advantages = grpo::broadcast_to_tokens(grpo::eigen::vector(advantages), 3);
    grpo::loss_outputs<double> out;
    out.grad_logp = grpo::eigen::matrix(grad);
    const grpo::loss_stats s = grpo::loss_and_grad(grpo::exec::host{}, in, out, grpo::loss_config{});
    // snippet-end eigen-adapter
    std::printf("grpo + Eigen: loss %.4f\n", s.loss);
    return std::abs(s.loss + 0.75) < 1e-12 && std::abs(grad(1, 2) + 0.5 / 6) < 1e-12 ? 0 : 1;
} catch (const std::exception& e) { // a grpo::error names the argument, what was expected and what was found
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
}
