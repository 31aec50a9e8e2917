// SPDX-License-Identifier: MIT
// Group-relative advantages from per-completion rewards (outcome supervision).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>

#include "detail/check.hpp"
#include "exec.hpp"
#include "math/advantage.hpp"
#include "view.hpp"
#include "workspace.hpp"

GRPO_NAMESPACE_BEGIN

/// What to do with NaN rewards (TRL: a reward function returned None).
enum class nan_rewards {
    reject, ///< NaN is an error (default)
    ignore, ///< NaN rewards are left out of every statistic and get advantage 0 (TRL nanmean/nanstd)
};

/// Knobs of compute_advantages. Defaults are TRL's (z-score, unbiased std, eps = 1e-4 added to the std,
/// singleton groups get 0).
struct advantage_config {
    static constexpr double trl_epsilon = 1e-4;      ///< TRL GRPOTrainer (hard-coded)
    static constexpr double verl_epsilon = 1e-6;     ///< verl compute_grpo_outcome_advantage default
    static constexpr double openrlhf_epsilon = 1e-9; ///< OpenRLHF group_norm

    advantage_estimator estimator = advantage_estimator::group_zscore;
    std_estimator std = std_estimator::unbiased;
    /// Added to the std (never to the variance, never max(std, eps)), as every peer does.
    double epsilon = trl_epsilon;
    singleton_group singleton = singleton_group::zero;
    nan_rewards nan = nan_rewards::reject;
    /// group_centered_batch_whitened: (x - mu) * rsqrt(var + whiten_epsilon) (verl masked_whiten: 1e-8).
    double whiten_epsilon = 1e-8;

    /// TRL GRPOTrainer: z-score, unbiased std + 1e-4, singleton -> 0, NaN rewards ignored.
    static advantage_config trl() {
        advantage_config c;
        c.nan = nan_rewards::ignore;
        return c;
    }
    /// verl compute_grpo_outcome_advantage: z-score, unbiased std + 1e-6, singleton -> raw reward.
    static advantage_config verl() {
        advantage_config c;
        c.epsilon = verl_epsilon;
        c.singleton = singleton_group::raw_reward;
        return c;
    }
};

/// How completions are grouped: contiguous blocks of `size` rows (TRL/verl layout: prompt-major groups),
/// or an id per row in [0, num_groups) (verl's `index`/uid, any order, any group sizes). `groups` holds host
/// ids; the CUDA backend's `device_groups` holds device ids and converts implicitly from contiguous `groups`.
template <class Space>
class basic_groups {
public:
    basic_groups() = default;
    static basic_groups contiguous(index_t size) {
        basic_groups g;
        g.size_ = size;
        return g;
    }
    static basic_groups by_id(vector_view<const std::int64_t, Space> ids, index_t num_groups) {
        basic_groups g;
        g.ids_ = ids;
        g.num_groups_ = num_groups;
        g.by_id_ = true; // not ids.present(): an empty batch's ids may well have no storage
        return g;
    }
    /// device_groups from host groups: contiguous only (host ids cannot reach a kernel; grpo::error).
    template <class S = Space, class = std::enable_if_t<std::is_same<S, device_space>::value>>
    basic_groups(const basic_groups<host_space>& g) : size_(g.size()) { // NOLINT: implicit on purpose
        if (!g.is_contiguous())
            detail::raise_argument(errc::invalid_value, "compute_advantages(cuda)", "groups",
                                   "groups::contiguous(G) or device_groups::by_id(device ids, num_groups)",
                                   "groups::by_id with host-memory ids");
    }
    bool is_contiguous() const noexcept { return !by_id_; }
    index_t size() const noexcept { return size_; }
    vector_view<const std::int64_t, Space> ids() const noexcept { return ids_; }
    index_t num_groups(index_t rows) const noexcept {
        return is_contiguous() ? (size_ > 0 ? rows / size_ : 0) : num_groups_;
    }

private:
    index_t size_ = 0;
    vector_view<const std::int64_t, Space> ids_;
    index_t num_groups_ = 0;
    bool by_id_ = false;
};
using groups = basic_groups<host_space>;
using device_groups = basic_groups<device_space>;

/// Optional per-group outputs (each absent or of size num_groups).
struct group_outputs {
    vector_view<double> mean;                ///< mean of the scored rewards (0 for a group with none)
    vector_view<double> std;                 ///< std with config.std (0 below two scored rewards)
    vector_view<std::uint8_t> zero_variance; ///< 1 when every scored reward is equal (no learning signal)
    vector_view<std::int64_t> count;         ///< scored rewards in the group
};

/// Batch-level figures peers log (TRL reward/reward_std/frac_reward_zero_std, verl critic/advantages/*).
struct advantage_stats {
    index_t num_groups = 0;
    index_t zero_variance_groups = 0;
    double zero_variance_fraction = 0; ///< TRL frac_reward_zero_std; DAPO dynamic sampling drops these groups
    index_t scored = 0;                ///< rewards that are not NaN
    double reward_mean = 0, reward_std = 0; ///< over scored rewards, std with config.std
    double advantage_mean = 0, advantage_std = 0, advantage_min = 0, advantage_max = 0;
};

namespace detail {

/// The shape and configuration checks of a compute_advantages call, for host views (groups, group_outputs) and
/// device views (device_groups, device_group_outputs in cuda.cuh) alike: nothing here reads an element.
template <class T, class Space, class Groups, class GroupOutputs>
void check_advantage_shapes(const char* where, vector_view<const T, Space> rewards, const Groups& g,
                            vector_view<T, Space> advantages, const advantage_config& cfg, const GroupOutputs& go,
                            vector_view<const double, Space> token_weights) {
    const index_t n = rewards.size();
    check_range(where, "config.epsilon", cfg.epsilon, 0, std::numeric_limits<double>::infinity(), "a value >= 0");
    check_range(where, "config.whiten_epsilon", cfg.whiten_epsilon, 0, std::numeric_limits<double>::infinity(),
                "a value >= 0");
    check_size(where, "advantages", advantages, n);
    check_no_alias(where, "advantages", advantages, "rewards", rewards);
    if (g.is_contiguous()) {
        if (g.size() < 1)
            raise_argument(errc::invalid_value, where, "groups", "a group size >= 1", to_str(g.size()));
        if (n % g.size() != 0)
            raise_argument(errc::shape_mismatch, where, "groups",
                           "a group size that divides the " + to_str(n) + " rewards", to_str(g.size()));
    } else {
        check_size(where, "groups.ids", g.ids(), n);
        const index_t k = g.num_groups(n);
        if (k < 1 && n > 0) raise_argument(errc::invalid_value, where, "num_groups", "a value >= 1", to_str(k));
    }
    const index_t k = g.num_groups(n);
    if (go.mean.present()) check_size(where, "group_outputs.mean", go.mean, k);
    if (go.std.present()) check_size(where, "group_outputs.std", go.std, k);
    if (go.zero_variance.present()) check_size(where, "group_outputs.zero_variance", go.zero_variance, k);
    if (go.count.present()) check_size(where, "group_outputs.count", go.count, k);
    if (cfg.estimator == advantage_estimator::group_centered_batch_whitened && token_weights.present())
        check_size(where, "token_weights", token_weights, n);
}

/// Every check of a host compute_advantages call: the shapes, then the values (ids in range, rewards finite or
/// NaN as cfg.nan allows, token weights >= 0).
template <class T>
void check_advantage_call(const char* where, vector_view<const T> rewards, const groups& g,
                          vector_view<T> advantages, const advantage_config& cfg, const group_outputs& go,
                          vector_view<const double> token_weights) {
    check_advantage_shapes(where, rewards, g, advantages, cfg, go, token_weights);
    const index_t n = rewards.size();
    if (!g.is_contiguous()) {
        const index_t k = g.num_groups(n);
        for (index_t i = 0; i < n; ++i)
            if (g.ids()[i] < 0 || g.ids()[i] >= k)
                raise_argument(errc::invalid_value, where, "groups.ids", "ids in [0, " + to_str(k) + ")",
                               std::to_string(static_cast<long long>(g.ids()[i])) + " at index " + to_str(i));
    }
    for (index_t i = 0; i < n; ++i) {
        const double r = static_cast<double>(rewards[i]);
        if (std::isinf(r) || (std::isnan(r) && cfg.nan == nan_rewards::reject))
            raise_argument(errc::non_finite, where, "rewards",
                           cfg.nan == nan_rewards::reject ? "finite values (set config.nan = ignore for NaN)"
                                                          : "finite values or NaN",
                           num_str(r) + " at index " + to_str(i));
    }
    if (cfg.estimator == advantage_estimator::group_centered_batch_whitened && token_weights.present())
        for (index_t i = 0; i < n; ++i)
            check_range(where, "token_weights", token_weights[i], 0, std::numeric_limits<double>::infinity(),
                        "finite weights >= 0");
}

} // namespace detail

/// Group-relative advantages A_i from per-completion rewards r_i (DeepSeekMath §4.1.2, outcome supervision).
///
/// group_zscore: A_i = (r_i - mean_g) / (std_g + epsilon); see advantage_estimator for the others.
/// TRL: GRPOTrainer._generate_and_score_completions; verl: compute_grpo_outcome_advantage (and rloo,
/// reinforce_plus_plus_baseline); OpenRLHF: group_norm / dr_grpo / rloo / reinforce_baseline.
///
/// @param[in]  rewards     one reward per completion (NaN = unscored when config.nan == ignore)
/// @param[in]  g           groups::contiguous(G) or groups::by_id(ids, num_groups)
/// @param[out] advantages  one advantage per completion; feed broadcast_to_tokens(advantages, T) to the loss
/// @param[out] per_group   optional per-group mean / std / zero-variance flag / scored count
/// @param[in]  token_weights optional per-completion weights (token counts) for the batch whitening of
///                           group_centered_batch_whitened (verl masked_whiten is token-weighted)
/// A constant group has std exactly 0 and advantage exactly 0 (two-pass, pivot-shifted statistics).
/// Throws grpo::error, outputs untouched, on size mismatches, a group size < 1 or not dividing the batch,
/// ids out of range, Inf rewards, NaN rewards unless config.nan == ignore, or whitening with < 2 weights.
/// Deterministic: the same inputs always give bit-identical outputs.
template <class R, class T>
advantage_stats compute_advantages(const exec::host&, vector_view<R> rewards_in, const groups& g,
                                   vector_view<T> advantages, const advantage_config& cfg, workspace& ws,
                                   const group_outputs& per_group = {},
                                   vector_view<const double> token_weights = {}) {
    static_assert(std::is_same<std::remove_const_t<R>, T>::value && std::is_floating_point<T>::value,
                  "grpo::compute_advantages: rewards and advantages must have the same float/double type");
    const vector_view<const T> rewards = rewards_in;
    const char* where = "compute_advantages";
    detail::check_advantage_call(where, rewards, g, advantages, cfg, per_group, token_weights);
    const index_t n = rewards.size();
    const index_t k = g.num_groups(n);
    using moments = math::group_moments<double>;
    static_assert(sizeof(moments) == 4 * sizeof(double), "group_moments layout");
    auto* groups_m = reinterpret_cast<moments*>(ws.doubles(static_cast<std::size_t>(k) * 4));
    std::fill(groups_m, groups_m + k, moments{});
    auto group_of = [&](index_t i) -> index_t {
        return g.is_contiguous() ? i / g.size() : static_cast<index_t>(g.ids()[i]);
    };
    auto scored = [&](index_t i) { return !std::isnan(static_cast<double>(rewards[i])); };

    // Group and batch statistics, two passes each, in row order.
    moments batch;
    for (index_t i = 0; i < n; ++i)
        if (scored(i)) {
            groups_m[group_of(i)].add_first_pass(rewards[i]);
            batch.add_first_pass(rewards[i]);
        }
    const double batch_mean = batch.mean();
    for (index_t i = 0; i < n; ++i)
        if (scored(i)) {
            moments& m = groups_m[group_of(i)];
            m.add_second_pass(rewards[i], m.mean());
            batch.add_second_pass(rewards[i], batch_mean);
        }

    // Whitening statistics (group_centered_batch_whitened) over the centered values, weighted.
    double white_mean = 0, white_scale = 1;
    const bool whiten = cfg.estimator == advantage_estimator::group_centered_batch_whitened;
    if (whiten) {
        auto centered = [&](index_t i) {
            const moments& m = groups_m[group_of(i)];
            return math::group_advantage<double>(cfg.estimator, rewards[i], m.count, m.mean(), 0, cfg.epsilon,
                                                 cfg.singleton);
        };
        auto weight = [&](index_t i) { return token_weights.present() ? token_weights[i] : 1.0; };
        double wsum = 0, wx = 0;
        for (index_t i = 0; i < n; ++i)
            if (scored(i)) {
                wsum += weight(i);
                wx += weight(i) * centered(i);
            }
        if (!(wsum > 1))
            detail::raise_argument(errc::invalid_value, where, "rewards",
                                   "a total whitening weight > 1 (verl masked_whiten needs at least 2 tokens)",
                                   detail::num_str(wsum));
        white_mean = wx / wsum;
        double m2 = 0;
        for (index_t i = 0; i < n; ++i)
            if (scored(i)) {
                m2 += math::weighted_sq_deviation(weight(i), centered(i), white_mean);
            }
        white_scale = math::whitening_scale(m2, wsum, cfg.whiten_epsilon);
    }

    const double batch_std = batch.std(cfg.std);
    advantage_stats st;
    st.num_groups = k;
    moments adv;
    double amin = std::numeric_limits<double>::infinity(), amax = -amin;
    for (index_t i = 0; i < n; ++i) {
        double a = 0;
        if (scored(i)) {
            a = math::completion_advantage<double>(cfg.estimator, rewards[i], groups_m[group_of(i)], cfg.std,
                                                   batch_std, cfg.epsilon, cfg.singleton, white_mean, white_scale);
            adv.add_first_pass(a);
            amin = std::min(amin, a);
            amax = std::max(amax, a);
        }
        advantages[i] = static_cast<T>(a);
    }
    const double adv_mean = adv.mean();
    for (index_t i = 0; i < n; ++i)
        if (scored(i)) adv.add_second_pass(advantages[i], adv_mean);

    for (index_t j = 0; j < k; ++j) {
        const moments& m = groups_m[j];
        const bool zero_var = m.zero_variance(); // every scored reward equal (or fewer than two)
        st.zero_variance_groups += zero_var;
        if (per_group.mean.present()) per_group.mean[j] = m.mean();
        if (per_group.std.present()) per_group.std[j] = m.std(cfg.std);
        if (per_group.zero_variance.present()) per_group.zero_variance[j] = zero_var;
        if (per_group.count.present()) per_group.count[j] = static_cast<std::int64_t>(m.count);
    }
    st.zero_variance_fraction = k > 0 ? static_cast<double>(st.zero_variance_groups) / k : 0;
    st.scored = static_cast<index_t>(batch.count);
    st.reward_mean = batch_mean;
    st.reward_std = batch_std;
    if (adv.count > 0) {
        st.advantage_mean = adv_mean;
        st.advantage_std = adv.std(cfg.std);
        st.advantage_min = amin;
        st.advantage_max = amax;
    }
    return st;
}

/// Convenience overload with a temporary workspace.
template <class R, class T>
advantage_stats compute_advantages(const exec::host& ex, vector_view<R> rewards, const groups& g,
                                   vector_view<T> advantages, const advantage_config& cfg = {},
                                   const group_outputs& per_group = {},
                                   vector_view<const double> token_weights = {}) {
    workspace ws;
    return compute_advantages(ex, rewards, g, advantages, cfg, ws, per_group, token_weights);
}

GRPO_NAMESPACE_END
