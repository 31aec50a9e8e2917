// SPDX-License-Identifier: MIT
// The CPU backend of compute_advantages: group and batch statistics in row order (group_stats.hpp), then one
// math::completion_advantage per row. The call is checked by the entry point (api/advantages.hpp).
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "../../core/exec.hpp"
#include "../../core/workspace.hpp"
#include "group_stats.hpp"

GRPO_NAMESPACE_BEGIN
namespace detail {
namespace cpu {

/// Rows per task of the per-completion work: fixed, so the tasks (and every result) do not depend on the pool.
constexpr index_t advantage_grain = 16384;

/// compute_advantages on the CPU (the call is checked). A group's statistics are sums in row order (a contiguous
/// group's in one task of the pool, id groups' on the calling thread), the batch's sums in row_chunks; the
/// per-completion formulas (the costly part: divisions, square roots) run once per completion, spread over the
/// pool in fixed row ranges, into scratch that the sums then read. So the results are the same bits for any
/// pool size.
template <class T>
advantage_stats compute_advantages(const exec::host& ex, const char* where, vector_view<const T> rewards,
                                   const groups& g, vector_view<T> advantages, const advantage_config& cfg,
                                   workspace& ws, const group_outputs& per_group,
                                   vector_view<const double> token_weights) {
    const index_t n = rewards.size();
    const index_t k = g.num_groups(n);
    static_assert(sizeof(moments) == 4 * sizeof(double), "group_moments layout");
    // Scratch: k group moments, k group terms, then (passk, opo) k group extras, then one double per completion
    // (the group means while the moments are taken, then each completion's value).
    const bool with_extras = cfg.estimator == advantage_estimator::passk || cfg.estimator == advantage_estimator::opo;
    constexpr index_t extras_doubles = static_cast<index_t>(sizeof(math::group_extras) / sizeof(double));
    static_assert(sizeof(math::group_extras) % sizeof(double) == 0, "group_extras layout");
    static_assert(sizeof(math::group_terms) == 3 * sizeof(double), "group_terms layout");
    const index_t group_doubles = checked_mul(where, "num_groups", k, with_extras ? 7 + extras_doubles : 7);
    double* scratch =
        ws.doubles(static_cast<std::size_t>(checked_add(where, "rewards", group_doubles, std::max(n, k))), where);
    double* per_row = scratch + group_doubles;
    auto* groups_m = reinterpret_cast<moments*>(scratch);
    auto* terms = reinterpret_cast<math::group_terms*>(scratch + 4 * static_cast<std::size_t>(k));
    std::fill(groups_m, groups_m + k, moments{});
    auto scored = [&](index_t i) { return !std::isnan(static_cast<double>(rewards[i])); };
    constexpr double nan = std::numeric_limits<double>::quiet_NaN(); // (a row outside a sum)
    auto group_m = [&](index_t i) -> const moments& { return groups_m[group_of(g, i)]; };

    moments batch;
    group_moments_of(ex, rewards, g, groups_m, batch, per_row);
    const math::advantage_params ap = cfg.params();
    math::batch_figures bf;

    // The group extras of passk (best, runner-up, best row) and opo (length-weighted moments), in row order.
    static const math::group_extras no_extras{};
    math::group_extras* extras = nullptr;
    if (with_extras) {
        extras = reinterpret_cast<math::group_extras*>(scratch + 7 * static_cast<std::size_t>(k));
        std::fill(extras, extras + k, math::group_extras{});
        for (index_t i = 0; i < n; ++i)
            if (scored(i)) {
                math::group_extras& x = extras[group_of(g, i)];
                if (cfg.estimator == advantage_estimator::passk)
                    x.add_candidate(static_cast<double>(rewards[i]), static_cast<std::int64_t>(i));
                else x.weighted.add_first_pass(static_cast<double>(rewards[i]), token_weights[i]);
            }
    }
    if (cfg.estimator == advantage_estimator::gpg) {
        double nonzero = 0;
        for (index_t i = 0; i < n; ++i) nonzero += scored(i) && static_cast<double>(rewards[i]) != 0 ? 1.0 : 0.0;
        bf.gpg_scale = math::gpg_scale(batch.count, nonzero);
    }

    // Whitening statistics (group_centered_batch_whitened) over the centered values: weighted, pivot-shifted
    // two-pass moments, so a constant batch has exactly zero deviation (and whitening_scale 0).
    double white_mean = 0, white_scale = 1;
    if (cfg.estimator == advantage_estimator::group_centered_batch_whitened) {
        auto centered = [&](index_t i) {
            const moments& m = group_m(i);
            return math::group_advantage<double>(cfg.estimator, rewards[i], m.count, m.mean(), 0, cfg.epsilon,
                                                 cfg.singleton);
        };
        auto weight = [&](index_t i) { return token_weights.present() ? token_weights[i] : 1.0; };
        parallel_for(ex, n, advantage_grain, [&](index_t first, index_t last) {
            for (index_t i = first; i < last; ++i) per_row[i] = scored(i) ? centered(i) : nan;
        });
        const auto value = [&](index_t i) { return per_row[i]; };
        moments white = chunked_first_pass(ex, n, value, weight);
        if (!(white.count > 1))
            raise_argument(errc::invalid_value, where, "rewards",
                           "a total whitening weight > 1 (verl masked_whiten needs at least 2 tokens)",
                           num_str(white.count));
        white_mean = white.mean();
        white.m2 = chunked_second_pass(ex, n, value, weight, white_mean);
        white_scale = math::whitening_scale(white.m2, white.count, cfg.whiten_epsilon);
    }

    bf.std = batch.std(cfg.std);
    bf.white_mean = white_mean;
    bf.white_scale = white_scale;
    parallel_for(ex, k, advantage_grain, [&](index_t first, index_t last) {
        for (index_t j = first; j < last; ++j) terms[j] = math::terms_of(groups_m[j], ap);
    });
    auto advantage_of = [&](index_t i) {
        if (!scored(i)) return 0.0;
        const index_t j = group_of(g, i);
        return math::completion_advantage(ap, static_cast<double>(rewards[i]), static_cast<std::int64_t>(i), terms[j],
                                          extras ? extras[j] : no_extras, bf);
    };
    parallel_for(ex, n, advantage_grain, [&](index_t first, index_t last) {
        for (index_t i = first; i < last; ++i) per_row[i] = advantage_of(i);
    });
    // Every advantage must fit the output type before anything is written (fp32 RLOO of rewards near 3e38
    // would otherwise store +-inf): each chunk's first misfit, then the first chunk with one.
    const double limit = static_cast<double>(std::numeric_limits<T>::max());
    const row_chunks chunks(n);
    index_t misfit[row_chunks::max_chunks];
    chunks.for_each(ex, [&](index_t c, index_t begin, index_t end) {
        misfit[c] = -1;
        for (index_t i = begin; i < end && misfit[c] < 0; ++i)
            if (scored(i) && !(std::fabs(per_row[i]) <= limit)) misfit[c] = i;
    });
    for (index_t c = 0; c < chunks.count; ++c)
        if (misfit[c] >= 0) {
            const double a = per_row[misfit[c]];
            raise_argument(errc::invalid_value, where, "rewards",
                           std::string("rewards whose advantages fit the output type (|A| <= ") + num_str(limit) + ")",
                           "advantage " + num_str(a) + " at index " + to_str(misfit[c]) +
                               (std::isfinite(a) ? "" : " (the statistics of these rewards overflow double)"));
        }
    const auto one = [](index_t) { return 1.0; };
    // The advantage figures: the first pass over the values in double, the second over them as stored.
    advantage_figures adv;
    adv.m = chunked_first_pass(
        ex, n, [&](index_t i) { return scored(i) ? per_row[i] : nan; }, one, &adv.min, &adv.max);
    adv.end_first();
    parallel_for(ex, n, advantage_grain, [&](index_t first, index_t last) {
        for (index_t i = first; i < last; ++i) advantages[i] = static_cast<T>(scored(i) ? per_row[i] : 0.0);
    });
    adv.m.m2 = chunked_second_pass(
        ex, n, [&](index_t i) { return scored(i) ? static_cast<double>(advantages[i]) : nan; }, one, adv.mean);

    advantage_stats st;
    set_reward_figures(st, k, write_group_outputs(groups_m, k, cfg.std, per_group), batch, cfg.std);
    adv.write(st, cfg.std);
    return st;
}

/// token_advantages on the CPU (the call is checked): returns per row from the last token backwards, then for
/// reinforce_plus_plus the whitening over every unmasked token of the batch, for the optimal token baseline the
/// per-group, per-position baselines; all in double, in row order.
template <class T>
token_advantage_stats token_advantages(const char* where, const token_advantage_inputs<T>& in,
                                       const token_advantage_outputs<T>& out, const token_advantage_config& cfg,
                                       workspace& ws) {
    const index_t rows = in.rewards.rows(), cols = in.rewards.cols();
    const bool remax = cfg.estimator == token_estimator::remax, otb = cfg.optimal_baseline();
    const bool tir = cfg.estimator == token_estimator::tir_optimal_token_baseline;
    // Scratch: G [rows, cols]; with the optimal baseline also W [rows, cols], per group and position the sums
    // of G W and of W [k, cols] each, and per group its math::otb_group_tail.
    constexpr index_t tail_doubles = static_cast<index_t>(sizeof(math::otb_group_tail) / sizeof(double));
    static_assert(sizeof(math::otb_group_tail) % sizeof(double) == 0, "otb_group_tail layout");
    const index_t cells = checked_mul(where, "rewards", rows, cols);
    const index_t k = otb ? in.prompts.num_groups(rows) : 0;
    const index_t group_cells = checked_mul(where, "prompts", k, cols);
    const index_t total = checked_add(where, "rewards", checked_mul(where, "rewards", cells, otb ? 2 : 1),
                                      checked_add(where, "prompts", checked_mul(where, "prompts", group_cells, 2),
                                                  checked_mul(where, "prompts", k, tail_doubles)));
    double* g = ws.doubles(static_cast<std::size_t>(total), where);
    double* energy = g + cells;
    double* sum_gw = energy + (otb ? cells : 0);
    double* sum_w = sum_gw + group_cells;
    auto* tails = reinterpret_cast<math::otb_group_tail*>(sum_w + group_cells);
    auto valid = [&](index_t i, index_t t) { return in.mask(i, t) != T(0); };
    moments ret; // of G over the unmasked tokens
    for (index_t i = 0; i < rows; ++i) {
        double carry = 0;
        for (index_t t = cols - 1; t >= 0; --t) {
            const bool v = valid(i, t);
            // Masked rewards are never read: a masked token contributes 0 (remax, otb: r m) and resets the carry.
            const double r = v ? static_cast<double>(in.rewards(i, t)) : 0.0;
            const math::return_step step = math::discounted_return(r, remax || otb ? 1.0 : cfg.gamma, carry, v);
            carry = remax || otb ? step.value : step.carry; // a plain reverse cumsum of r m, no restart
            g[i * cols + t] = v ? step.value : 0.0;
        }
        if (!otb) continue;
        double w = 0; // W_t = sum_{s <= t} w_s m_s
        for (index_t t = 0; t < cols; ++t) {
            if (valid(i, t))
                w += math::otb_energy(static_cast<double>(in.old_logp(i, t)),
                                      static_cast<double>(in.sum_pi_squared(i, t)),
                                      in.is_weights.present() ? static_cast<double>(in.is_weights(i, t)) : 1.0);
            energy[i * cols + t] = w;
        }
    }
    two_pass_moments(
        [&](auto&& emit) {
            for (index_t i = 0; i < rows; ++i)
                for (index_t t = 0; t < cols; ++t)
                    if (valid(i, t)) emit(0, g[i * cols + t]);
        },
        &ret);
    math::token_advantage_params tp;
    tp.est = cfg.estimator;
    if (cfg.estimator == token_estimator::reinforce_plus_plus) {
        if (!(ret.count > 1))
            raise_argument(errc::invalid_value, where, "mask",
                           "at least 2 unmasked tokens (verl masked_whiten needs 2)", num_str(ret.count));
        tp.white_mean = ret.mean();
        tp.white_scale = math::whitening_scale(ret.m2, ret.count, cfg.whiten_epsilon);
    }
    // The optimal baseline's position of (i, t): the column, or (TIR) the count of unmasked tokens before it.
    // Group members: every row, or (TIR) rows with an unmasked token. Sums over members in row order.
    const bool zero_tail = cfg.zero_tail();
    if (otb) {
        std::fill(sum_gw, sum_gw + 2 * group_cells, 0.0);
        std::fill(tails, tails + k, math::otb_group_tail{});
        for (index_t i = 0; i < rows; ++i) {
            index_t len = 0;
            for (index_t t = 0; t < cols; ++t) len += valid(i, t) ? 1 : 0;
            if (tir && len == 0) continue;
            const index_t j = group_of(in.prompts, i);
            tails[j].add(static_cast<double>(len), static_cast<double>(i));
            index_t pos = 0;
            for (index_t t = 0; t < cols; ++t)
                if (valid(i, t)) {
                    const index_t at = j * cols + (tir ? pos++ : t);
                    sum_gw[at] += g[i * cols + t] * energy[i * cols + t];
                    sum_w[at] += energy[i * cols + t];
                }
        }
    }
    // Visits every unmasked (i, t) with its advantage, in row order.
    auto each_advantage = [&](auto&& visit) {
        for (index_t i = 0; i < rows; ++i) {
            const index_t j = otb ? group_of(in.prompts, i) : 0;
            index_t pos = 0;
            for (index_t t = 0; t < cols; ++t) {
                if (!valid(i, t)) continue;
                double baseline = 0;
                if (remax) baseline = static_cast<double>(in.baselines[i]);
                if (otb) {
                    const index_t at = tir ? pos++ : t;
                    if (!tails[j].no_baseline(static_cast<double>(i), static_cast<double>(at), zero_tail))
                        baseline = math::otb_baseline(sum_gw[j * cols + at], sum_w[j * cols + at], cfg.otb_epsilon);
                }
                visit(i, t, math::token_advantage(tp, g[i * cols + t], baseline));
            }
        }
    };
    // Every value must fit T before anything is written.
    const double limit = static_cast<double>(std::numeric_limits<T>::max());
    advantage_figures adv;
    each_advantage([&](index_t i, index_t t, double a) {
        const double x = g[i * cols + t];
        if (!(std::fabs(a) <= limit) || !(std::fabs(x) <= limit))
            raise_argument(
                errc::invalid_value, where, "rewards", "rewards whose returns and advantages fit the output type",
                "return " + num_str(x) + ", advantage " + num_str(a) + " at (" + to_str(i) + ", " + to_str(t) + ")");
        adv.first(a);
    });
    adv.end_first();
    for (index_t i = 0; i < rows; ++i)
        for (index_t t = 0; t < cols; ++t) {
            out.advantages(i, t) = T(0);
            if (out.returns.present()) out.returns(i, t) = static_cast<T>(g[i * cols + t]);
        }
    each_advantage([&](index_t i, index_t t, double a) {
        out.advantages(i, t) = static_cast<T>(a);
        adv.second(static_cast<double>(out.advantages(i, t)));
    });
    token_advantage_stats st;
    st.tokens = ret.count;
    st.return_mean = ret.mean();
    st.return_std = ret.std(std_estimator::unbiased);
    advantage_stats a;
    adv.write(a, std_estimator::unbiased);
    st.advantage_mean = a.advantage_mean;
    st.advantage_std = a.advantage_std;
    st.advantage_min = a.advantage_min;
    st.advantage_max = a.advantage_max;
    return st;
}

} // namespace cpu
} // namespace detail
GRPO_NAMESPACE_END
