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

/// The configuration checks every advantage entry point shares.
inline void check_advantage_config(const char* where, const advantage_config& cfg) {
    check_enum(where, "config.estimator", cfg.estimator, 5);
    check_enum(where, "config.std", cfg.std, 2);
    check_enum(where, "config.singleton", cfg.singleton, 2);
    check_enum(where, "config.nan", cfg.nan, 2);
    check_range(where, "config.epsilon", cfg.epsilon, 0, std::numeric_limits<double>::infinity(), "a value >= 0");
    check_range(where, "config.whiten_epsilon", cfg.whiten_epsilon, 0, std::numeric_limits<double>::infinity(),
                "a value >= 0");
}

/// The group layout over n rows, for every entry point that takes groups: a contiguous size >= 1 dividing n,
/// or ids of size n with num_groups >= 0 (>= 1 when n > 0). Ids themselves are checked by check_group_ids.
template <class Space>
void check_group_layout(const char* where, index_t n, const basic_groups<Space>& g) {
    if (g.is_contiguous()) {
        if (g.size() < 1)
            raise_argument(errc::invalid_value, where, "groups", "a group size >= 1", to_str(g.size()));
        if (n % g.size() != 0)
            raise_argument(errc::shape_mismatch, where, "groups",
                           "a group size that divides the " + to_str(n) + " rows", to_str(g.size()));
    } else {
        check_size(where, "groups.ids", g.ids(), n);
        const index_t k = g.num_groups(n);
        if (k < 0 || (k < 1 && n > 0))
            raise_argument(errc::invalid_value, where, "num_groups", n > 0 ? "a value >= 1" : "a value >= 0",
                           to_str(k));
    }
}
/// Host ids in [0, num_groups).
inline void check_group_ids(const char* where, index_t n, const groups& g) {
    if (g.is_contiguous()) return;
    const index_t k = g.num_groups(n);
    for (index_t i = 0; i < n; ++i)
        if (g.ids()[i] < 0 || g.ids()[i] >= k)
            raise_argument(errc::invalid_value, where, "groups.ids", "ids in [0, " + to_str(k) + ")",
                           std::to_string(static_cast<long long>(g.ids()[i])) + " at index " + to_str(i));
}
/// The group of row i (after check_group_layout and check_group_ids).
inline index_t group_of(const groups& g, index_t i) {
    return g.is_contiguous() ? i / g.size() : static_cast<index_t>(g.ids()[i]);
}

/// The shape and configuration checks of a compute_advantages call, for host views (groups, group_outputs) and
/// device views (device_groups, device_group_outputs in cuda.cuh) alike: nothing here reads an element.
template <class T, class Space, class Groups, class GroupOutputs>
void check_advantage_shapes(const char* where, vector_view<const T, Space> rewards, const Groups& g,
                            vector_view<T, Space> advantages, const advantage_config& cfg, const GroupOutputs& go,
                            vector_view<const double, Space> token_weights) {
    const index_t n = rewards.size();
    check_advantage_config(where, cfg);
    check_size(where, "advantages", advantages, n);
    check_group_layout(where, n, g);
    const index_t k = g.num_groups(n);
    if (go.mean.present()) check_size(where, "group_outputs.mean", go.mean, k);
    if (go.std.present()) check_size(where, "group_outputs.std", go.std, k);
    if (go.zero_variance.present()) check_size(where, "group_outputs.zero_variance", go.zero_variance, k);
    if (go.count.present()) check_size(where, "group_outputs.count", go.count, k);
    if (cfg.estimator == advantage_estimator::group_centered_batch_whitened && token_weights.present())
        check_size(where, "token_weights", token_weights, n);
    // Every output against every input and every other output.
    const auto ids = g.ids();
    check_outputs_disjoint(where, {{"advantages", range_of(advantages)},
                                   {"group_outputs.mean", range_of(go.mean)},
                                   {"group_outputs.std", range_of(go.std)},
                                   {"group_outputs.zero_variance", range_of(go.zero_variance)},
                                   {"group_outputs.count", range_of(go.count)}},
                           {{"rewards", range_of(rewards)},
                            {"groups.ids", range_of(ids)},
                            {"token_weights", range_of(token_weights)}});
}

/// Every check of a host compute_advantages call: the shapes, then the values (ids in range, rewards finite or
/// NaN as cfg.nan allows, token weights >= 0).
template <class T>
void check_advantage_call(const char* where, vector_view<const T> rewards, const groups& g,
                          vector_view<T> advantages, const advantage_config& cfg, const group_outputs& go,
                          vector_view<const double> token_weights) {
    check_advantage_shapes(where, rewards, g, advantages, cfg, go, token_weights);
    const index_t n = rewards.size();
    check_group_ids(where, n, g);
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
    const workspace_lease lease(ws, where);
    const index_t n = rewards.size();
    const index_t k = g.num_groups(n);
    using moments = math::group_moments<double>;
    static_assert(sizeof(moments) == 4 * sizeof(double), "group_moments layout");
    auto* groups_m = reinterpret_cast<moments*>(
        ws.doubles(static_cast<std::size_t>(detail::checked_mul(where, "num_groups", k, 4)), where));
    std::fill(groups_m, groups_m + k, moments{});
    auto group_of = [&](index_t i) { return detail::group_of(g, i); };
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

    // Whitening statistics (group_centered_batch_whitened) over the centered values: weighted, pivot-shifted
    // two-pass moments, so a constant batch has exactly zero deviation (and whitening_scale 0).
    double white_mean = 0, white_scale = 1;
    const bool whiten = cfg.estimator == advantage_estimator::group_centered_batch_whitened;
    if (whiten) {
        auto centered = [&](index_t i) {
            const moments& m = groups_m[group_of(i)];
            return math::group_advantage<double>(cfg.estimator, rewards[i], m.count, m.mean(), 0, cfg.epsilon,
                                                 cfg.singleton);
        };
        auto weight = [&](index_t i) { return token_weights.present() ? token_weights[i] : 1.0; };
        moments white;
        for (index_t i = 0; i < n; ++i)
            if (scored(i)) white.add_first_pass(centered(i), weight(i));
        if (!(white.count > 1))
            detail::raise_argument(errc::invalid_value, where, "rewards",
                                   "a total whitening weight > 1 (verl masked_whiten needs at least 2 tokens)",
                                   detail::num_str(white.count));
        white_mean = white.mean();
        for (index_t i = 0; i < n; ++i)
            if (scored(i)) white.add_second_pass(centered(i), white_mean, weight(i));
        white_scale = math::whitening_scale(white.m2, white.count, cfg.whiten_epsilon);
    }

    const double batch_std = batch.std(cfg.std);
    auto advantage_of = [&](index_t i) {
        return scored(i) ? math::completion_advantage<double>(cfg.estimator, rewards[i], groups_m[group_of(i)],
                                                              cfg.std, batch_std, cfg.epsilon, cfg.singleton,
                                                              white_mean, white_scale)
                         : 0.0;
    };
    // Every advantage must fit the output type before anything is written (fp32 RLOO of rewards near 3e38
    // would otherwise store +-inf).
    double amin = std::numeric_limits<double>::infinity(), amax = -amin;
    moments adv;
    for (index_t i = 0; i < n; ++i)
        if (scored(i)) {
            const double a = advantage_of(i);
            if (!(std::fabs(a) <= static_cast<double>(std::numeric_limits<T>::max())))
                detail::raise_argument(errc::invalid_value, where, "rewards",
                                       std::string("rewards whose advantages fit the output type (|A| <= ") +
                                           detail::num_str(static_cast<double>(std::numeric_limits<T>::max())) + ")",
                                       "advantage " + detail::num_str(a) + " at index " + detail::to_str(i) +
                                           (std::isfinite(a) ? "" : " (the statistics of these rewards overflow double)"));
            adv.add_first_pass(a);
            amin = std::min(amin, a);
            amax = std::max(amax, a);
        }

    advantage_stats st;
    st.num_groups = k;
    for (index_t i = 0; i < n; ++i) advantages[i] = static_cast<T>(advantage_of(i));
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
