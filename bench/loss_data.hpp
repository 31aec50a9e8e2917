// SPDX-License-Identifier: MIT
// The loss benchmarks' input: rows x cols fp32 tokens, log-probs in [-4, 0], old and reference log-probs within
// +-0.2 of them, the last 10% of each row padding, one advantage in [-1, 1) per row. A fixed LCG seed, so
// bench_loss.cpp and bench_loss_ab.cpp (compiled against any 0.x revision) time the same numbers.
#pragma once

#include <cstdint>
#include <vector>

#include <grpo/grpo.hpp>

namespace grpo_bench {

struct loss_data {
    grpo::index_t rows, cols;
    std::vector<float> logp, old_logp, ref_logp, mask, adv, grad;
    loss_data(grpo::index_t r, grpo::index_t c)
        : rows(r), cols(c), logp(r * c), old_logp(r * c), ref_logp(r * c), mask(r * c), adv(r), grad(r * c) {
        std::uint64_t s = 12345;
        auto u = [&] {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            return static_cast<float>((s >> 40) * 0x1.0p-24);
        };
        for (grpo::index_t k = 0; k < r * c; ++k) {
            logp[k] = -4 * u();
            old_logp[k] = logp[k] + 0.4f * (u() - 0.5f);
            ref_logp[k] = logp[k] + 0.4f * (u() - 0.5f);
            mask[k] = (k % c) < c * 9 / 10 ? 1.0f : 0.0f; // 10% padding
        }
        for (auto& a : adv) a = 2 * u() - 1;
    }
};

} // namespace grpo_bench
