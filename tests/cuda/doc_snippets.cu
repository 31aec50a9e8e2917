// SPDX-License-Identifier: MIT
// docs/cuda.md's CUDA blocks marked "compiled", word for word (tests/docs/check_docs.py extracts them to
// <name>.inc): each function below declares what its block uses and includes it. nvcc compiling this file is
// the check; the functions are not run (the blocks keep device pointers the page leaves to the host).
#include <cstdint>

#include <grpo/cuda.cuh>

namespace {

[[maybe_unused]] void loss_on_device(const float* d_logp, const float* d_old, const float* d_adv, const float* d_mask,
                                     float* d_grad, grpo::index_t rows, grpo::index_t cols, cudaStream_t stream) {
#include "cuda-loss.inc"
    (void)st;
}

[[maybe_unused]] void advantages_on_device(const float* d_rewards, float* d_adv, grpo::index_t rows,
                                           grpo::index_t num_groups, grpo::index_t G, const grpo::advantage_config& cfg,
                                           grpo::vector_view<const std::int64_t, grpo::device_space> d_ids_view,
                                           grpo::index_t k, const grpo::device_group_outputs& groups_out,
                                           grpo::vector_view<const double, grpo::device_space> d_weights,
                                           const grpo::device_groups& g, double* d_stats, cudaStream_t stream) {
    const auto d_mean = groups_out.mean;
    const auto d_std = groups_out.std;
    const auto d_zero = groups_out.zero_variance;
    const auto d_count = groups_out.count;
#include "cuda-advantages.inc"
}

[[maybe_unused]] void token_advantages_on_device(const float* d_rewards, const float* d_mask, const float* d_old_logp,
                                                 const float* d_sum_pi_squared, float* d_adv, grpo::index_t rows,
                                                 grpo::index_t cols, grpo::index_t G, grpo::cuda_workspace& ws,
                                                 cudaStream_t stream) {
#include "cuda-token-advantages.inc"
    (void)st;
}

} // namespace

int main() { return 0; }
