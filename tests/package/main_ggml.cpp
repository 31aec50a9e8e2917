// SPDX-License-Identifier: MIT
// The ggml adapter through an installed package: a ggml tensor in, the gradient written into a ggml tensor.
#include <cmath>
#include <cstdio>
#include <cstring>

#include <ggml.h>
#include <grpo/adapters/ggml.hpp>
#include <grpo/grpo.hpp>

int main() {
    // snippet-begin ggml-adapter
    ggml_init_params params{};
    params.mem_size = 1 << 20;
    ggml_context* ctx = ggml_init(params);
    ggml_tensor* logp = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, 3, 2); // ne = {tokens, completions}
    const float values[6] = {-0.5f, -1.0f, -1.5f, -0.7f, -0.2f, -2.0f};
    std::memcpy(logp->data, values, sizeof values);
    const float advantages[2] = {1.0f, 0.5f};
    const grpo::ggml::policy_gradient_loss pg = grpo::ggml::add_policy_gradient_loss(ctx, logp);

    grpo::loss_inputs<float> in;
    in.logp = grpo::ggml::matrix(static_cast<const ggml_tensor*>(logp));
    in.advantages = grpo::broadcast_to_tokens(grpo::vector_view<const float>(advantages, 2), 3);
    grpo::loss_outputs<float> out;
    out.grad_logp = grpo::ggml::matrix(pg.gradient);
    const grpo::loss_stats s = grpo::loss_and_grad(grpo::exec::host{}, in, out, grpo::loss_config{});
    // snippet-end ggml-adapter
    const float g12 = static_cast<const float*>(pg.gradient->data)[1 * 3 + 2];
    std::printf("grpo + ggml: loss %.4f\n", s.loss);
    ggml_free(ctx);
    return std::abs(s.loss + 0.75) < 1e-6 && std::abs(g12 + 0.5f / 6) < 1e-6f ? 0 : 1;
}
