// SPDX-License-Identifier: MIT
// The LibTorch adapter through an installed package: grpo_loss in a torch graph, backward() gives grpo's gradient.
#include <cmath>
#include <cstdio>

#include <grpo/adapters/torch.hpp>

int main() {
    // snippet-begin torch-adapter
    const torch::Tensor logp = torch::tensor({{-0.5, -1.0, -1.5}, {-0.7, -0.2, -2.0}}).requires_grad_(true);
    const torch::Tensor advantages = torch::tensor({1.0, 0.5});
    const torch::Tensor loss = grpo::libtorch::grpo_loss(logp, logp.detach(), torch::Tensor(), advantages,
                                                         torch::ones({2, 3}), grpo::loss_config{});
    loss.backward();
    // snippet-end torch-adapter
    // On-policy, token-mean over 6 tokens: loss = -mean(A) = -0.75, dL/dlogp_it = -A_i / 6.
    const double g12 = logp.grad()[1][2].item<double>();
    std::printf("grpo + libtorch: loss %.4f, grad[1][2] %.5f\n", loss.item<double>(), g12);
    return std::fabs(loss.item<double>() + 0.75) < 1e-6 && std::fabs(g12 + 0.5 / 6) < 1e-6 ? 0 : 1;
}
