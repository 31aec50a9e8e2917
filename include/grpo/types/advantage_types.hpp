// SPDX-License-Identifier: MIT
// Configuration, group layouts, statistics and the shared checks of the advantage estimators (CPU and CUDA).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>

#include "../core/check.hpp"
#include "../math/advantage.hpp"
#include "../core/view.hpp"

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
            detail::raise_argument(errc::invalid_value, "device_groups", "groups",
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

GRPO_NAMESPACE_END
