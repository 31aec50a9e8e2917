// SPDX-License-Identifier: MIT
// Shared test fixtures: an owning batch of loss inputs and a deterministic RNG.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include <grpo/grpo.hpp>

namespace grpo_test {

/// splitmix64: the same stream on every platform and standard library.
struct rng {
    std::uint64_t state;
    explicit rng(std::uint64_t seed) : state(seed) {}
    std::uint64_t next() {
        std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
    }
    double uniform(double lo = 0, double hi = 1) { return lo + (hi - lo) * (next() >> 11) * 0x1.0p-53; }
};

/// The CPU passes limited to one version (backend/cpu/dispatch.hpp) for the scope's lifetime; the default (the
/// widest the CPU has) afterwards.
struct cpu_version_scope {
    explicit cpu_version_scope(grpo::detail::cpu::cpu_version v) { grpo::detail::cpu::cpu_version_limit() = v; }
    ~cpu_version_scope() { grpo::detail::cpu::cpu_version_limit() = grpo::detail::cpu::cpu_version::avx512; }
    cpu_version_scope(const cpu_version_scope&) = delete;
    cpu_version_scope& operator=(const cpu_version_scope&) = delete;
};

/// The loss pass's versions this CPU runs: the baseline, then AVX2 + FMA and AVX-512 + FMA where it has them.
inline std::vector<grpo::detail::cpu::cpu_version> loss_versions() {
    using grpo::detail::cpu::cpu_version;
    std::vector<cpu_version> v{cpu_version::baseline};
    const cpu_version best = grpo::detail::cpu::cpu_best_version();
    if (best == cpu_version::avx2_fma || best == cpu_version::avx512) v.push_back(cpu_version::avx2_fma);
    if (best == cpu_version::avx512) v.push_back(cpu_version::avx512);
    return v;
}

/// Owning [rows, cols] buffers for one loss call, filled with random but well-conditioned values.
template <class T>
struct batch {
    grpo::index_t rows, cols;
    std::vector<T> logp, old_logp, ref_logp, adv_tok, adv_seq, mask, grad, per_token, sampling_logp, entropy;
    std::vector<std::int64_t> lengths;

    batch(grpo::index_t r, grpo::index_t c, std::uint64_t seed, double masked_fraction = 0.2)
        : rows(r),
          cols(c),
          logp(r * c),
          old_logp(r * c),
          ref_logp(r * c),
          adv_tok(r * c),
          adv_seq(r),
          mask(r * c),
          grad(r * c, T(-7)),
          per_token(r * c, T(-7)),
          sampling_logp(r * c),
          entropy(r * c),
          lengths(r) {
        rng g(seed);
        for (grpo::index_t k = 0; k < r * c; ++k) {
            logp[k] = T(g.uniform(-3, -0.05));
            old_logp[k] = T(double(logp[k]) + g.uniform(-0.4, 0.4)); // ratios in ~[0.67, 1.5]: some clipped
            ref_logp[k] = T(double(logp[k]) + g.uniform(-0.6, 0.6));
            adv_tok[k] = T(g.uniform(-2, 2));
            mask[k] = g.uniform() < masked_fraction ? T(0) : T(1);
        }
        for (grpo::index_t i = 0; i < r; ++i) {
            adv_seq[i] = T(g.uniform(-2, 2));
            lengths[i] = static_cast<std::int64_t>(g.next() % static_cast<std::uint64_t>(c + 1));
        }
        // The sampling engine's log-probs: close to old_logp (rho = exp(old - sampling) in ~[0.74, 1.35]).
        for (grpo::index_t k = 0; k < r * c; ++k) sampling_logp[k] = T(double(old_logp[k]) + g.uniform(-0.3, 0.3));
        for (grpo::index_t k = 0; k < r * c; ++k) entropy[k] = T(g.uniform(0.05, 3.0)); // per-token entropies
    }

    grpo::loss_inputs<T> inputs(bool per_token_adv = true, bool with_mask = true, bool with_old = true,
                                bool with_lengths = false) const {
        grpo::loss_inputs<T> in;
        in.logp = grpo::matrix_view<const T>(logp.data(), rows, cols);
        if (with_old) in.old_logp = grpo::matrix_view<const T>(old_logp.data(), rows, cols);
        in.ref_logp = grpo::matrix_view<const T>(ref_logp.data(), rows, cols);
        in.advantages = per_token_adv
                            ? grpo::matrix_view<const T>(adv_tok.data(), rows, cols)
                            : grpo::broadcast_to_tokens(grpo::vector_view<const T>(adv_seq.data(), rows), cols);
        if (with_mask) in.mask = grpo::matrix_view<const T>(mask.data(), rows, cols);
        if (with_lengths) in.lengths = grpo::vector_view<const std::int64_t>(lengths.data(), rows);
        in.sampling_logp = grpo::matrix_view<const T>(sampling_logp.data(), rows, cols); // read if config.sampling
        in.entropy = grpo::matrix_view<const T>(entropy.data(), rows, cols); // read if an entropy term is on
        return in;
    }
    grpo::loss_outputs<T> outputs() {
        grpo::loss_outputs<T> out;
        out.grad_logp = grpo::matrix_view<T>(grad.data(), rows, cols);
        out.per_token_loss = grpo::matrix_view<T>(per_token.data(), rows, cols);
        return out;
    }
};

} // namespace grpo_test
