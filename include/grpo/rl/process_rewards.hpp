// SPDX-License-Identifier: MIT
// Process supervision (DeepSeekMath §4.1.3): a reward per reasoning step, placed on the token where the step
// ends, normalized over all steps of the group, and turned into per-token advantages by a suffix sum.
// No peer trainer implements it (TRL declined it in trl#3090; verl sums token rewards into one scalar).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "../api/advantages.hpp"
#include "../backend/cpu/group_stats.hpp"
#include "../core/check.hpp"
#include "../core/exec.hpp"
#include "../math/advantage.hpp"
#include "../core/view.hpp"

GRPO_NAMESPACE_BEGIN

/// Knobs of process_advantages. The paper divides by std(R) with no epsilon; epsilon guards groups whose step
/// rewards are all equal (their advantages are then exactly 0). Default: unbiased std + 1e-4 (TRL's choice for
/// outcome rewards); set epsilon = 0 for the paper's formula.
struct process_reward_config {
    std_estimator std = std_estimator::unbiased;
    /// Added to the std. 0 is the paper's formula (DeepSeekMath §4.1.3: (r - mean(R)) / std(R)); no peer trainer
    /// ships process supervision to follow instead. A constant group gives 0, not 0/0, whatever epsilon is;
    /// advantage_config::trl_epsilon (1e-4) bounds the normalized rewards of nearly constant groups.
    double epsilon = 0;
};

/// Step rewards of a batch in compressed-row form: the steps of row i are [offsets[i], offsets[i+1]), step j
/// has reward rewards[j] and ends at token ends[j] (inclusive). A host-side builder: call begin_row() once
/// per completion in row order, add() once per step.
struct process_steps {
    std::vector<double> rewards;
    std::vector<std::int64_t> ends;
    std::vector<std::int64_t> offsets{0};

    void clear() {
        rewards.clear();
        ends.clear();
        offsets.assign(1, 0);
    }
    /// Starts the next row (completion). Rows with no add() have no steps (advantage 0 everywhere).
    void begin_row() { offsets.push_back(static_cast<std::int64_t>(rewards.size())); }
    /// Adds a step of the current row: its reward and the index of its last token.
    void add(double reward, std::int64_t end_token) {
        rewards.push_back(reward);
        ends.push_back(end_token);
        offsets.back() = static_cast<std::int64_t>(rewards.size());
    }
    index_t rows() const noexcept { return static_cast<index_t>(offsets.size()) - 1; }
    vector_view<const double> reward_view() const {
        return vector_view<const double>(rewards.data(), static_cast<index_t>(rewards.size()));
    }
    vector_view<const std::int64_t> end_view() const {
        return vector_view<const std::int64_t>(ends.data(), static_cast<index_t>(ends.size()));
    }
    vector_view<const std::int64_t> offset_view() const {
        return vector_view<const std::int64_t>(offsets.data(), static_cast<index_t>(offsets.size()));
    }
};

namespace detail {

/// The steps of `rows` completions of `cols` tokens in compressed-row form: offsets[0] == 0, non-decreasing,
/// offsets[rows] == the number of steps; each row's ends in [0, cols) and non-decreasing; finite rewards.
/// Sizes first (before the callers' aliasing checks), then values.
template <class R>
void check_step_sizes(const char* where, vector_view<const R> step_rewards,
                      vector_view<const std::int64_t> step_offsets, vector_view<const std::int64_t> step_ends,
                      index_t rows) {
    check_size(where, "step_offsets", step_offsets, checked_add(where, "rows", rows, 1));
    check_size(where, "step_ends", step_ends, step_rewards.size());
}
template <class R>
void check_step_values(const char* where, vector_view<const R> step_rewards,
                       vector_view<const std::int64_t> step_offsets, vector_view<const std::int64_t> step_ends,
                       index_t rows, index_t cols) {
    const index_t steps = step_rewards.size();
    if (step_offsets[0] != 0)
        raise_argument(errc::invalid_value, where, "step_offsets", "offsets[0] == 0",
                       std::to_string(static_cast<long long>(step_offsets[0])));
    for (index_t i = 0; i < rows; ++i)
        if (step_offsets[i + 1] < step_offsets[i])
            raise_argument(errc::invalid_value, where, "step_offsets", "non-decreasing offsets",
                           "a decrease at index " + to_str(i + 1));
    if (step_offsets[rows] != steps)
        raise_argument(errc::shape_mismatch, where, "step_offsets",
                       "offsets[rows] == " + to_str(steps) + " (the number of step rewards)",
                       std::to_string(static_cast<long long>(step_offsets[rows])));
    for (index_t i = 0; i < rows; ++i)
        for (index_t j = step_offsets[i]; j < step_offsets[i + 1]; ++j) {
            if (step_ends[j] < 0 || step_ends[j] >= cols)
                raise_argument(errc::invalid_value, where, "step_ends", "token indices in [0, " + to_str(cols) + ")",
                               std::to_string(static_cast<long long>(step_ends[j])) + " at step " + to_str(j) +
                                   " (row " + to_str(i) + ")");
            if (j > step_offsets[i] && step_ends[j] < step_ends[j - 1])
                raise_argument(errc::invalid_value, where, "step_ends", "non-decreasing ends within a row",
                               "a decrease at step " + to_str(j) + " (row " + to_str(i) + ")");
            if (!std::isfinite(static_cast<double>(step_rewards[j])))
                raise_argument(errc::non_finite, where, "step_rewards", "finite values",
                               num_str(step_rewards[j]) + " at step " + to_str(j));
        }
}

} // namespace detail

/// Per-token advantages from per-step rewards (DeepSeekMath §4.1.3, process supervision):
///   R = every step reward of every completion of the group
///   r~_j = (r_j - mean(R)) / (std(R) + epsilon)
///   A_{i,t} = sum of r~_j over the steps j of completion i with end(j) >= t
/// Tokens after the last step of a row get 0. A group with fewer than two steps, or all step rewards equal,
/// gets 0 everywhere. Worked example (epsilon 0): rewards [0.9, 0.2] and [0.5] -> r~ = [1.044074, -0.949158]
/// and [-0.094916]; output 1's step-1 tokens get 0.094916, its step-2 tokens -0.949158; output 2's tokens
/// get -0.094916. No TRL/verl equivalent.
///
/// @param step_rewards     all steps of all rows, row after row (finite)
/// @param step_offsets     [rows + 1]: the steps of row i are [offsets[i], offsets[i+1]); offsets[0] = 0,
///                         non-decreasing, offsets[rows] = step_rewards.size()
/// @param step_ends        [steps]: index of the last token of each step, in [0, cols), non-decreasing
///                         within a row
/// @param g                groups::contiguous(G) or groups::by_id over the rows
/// @param token_advantages [rows, cols] output, fed to loss_inputs::advantages as is
/// @param normalized       optional [steps] output: r~_j
/// @returns statistics: reward_* over the steps, advantage_* over the tokens up to each row's last step end,
///          zero_variance_* per group.
/// Throws grpo::error, outputs untouched, on malformed offsets/ends, non-finite rewards, bad groups.
template <class R, class T>
advantage_stats process_advantages(const exec::host&, vector_view<R> step_rewards_in,
                                   vector_view<const std::int64_t> step_offsets,
                                   vector_view<const std::int64_t> step_ends, const groups& g,
                                   matrix_view<T> token_advantages, const process_reward_config& cfg = {},
                                   vector_view<T> normalized = {}) {
    static_assert(std::is_floating_point<T>::value, "grpo::process_advantages: T must be float or double");
    const vector_view<const std::remove_const_t<R>> step_rewards = step_rewards_in;
    const char* where = "process_advantages";
    const index_t rows = token_advantages.rows(), cols = token_advantages.cols();
    const index_t steps = step_rewards.size();
    detail::check_enum(where, "config.std", cfg.std, 2);
    detail::check_range(where, "config.epsilon", cfg.epsilon, 0, std::numeric_limits<double>::infinity(),
                        "a value >= 0");
    detail::check_step_sizes(where, step_rewards, step_offsets, step_ends, rows);
    if (normalized.present()) detail::check_size(where, "normalized", normalized, steps);
    detail::check_group_layout(where, rows, g);
    detail::check_outputs_disjoint(
        where, {{"token_advantages", detail::range_of(token_advantages)}, {"normalized", detail::range_of(normalized)}},
        {{"step_rewards", detail::range_of(step_rewards)},
         {"step_offsets", detail::range_of(step_offsets)},
         {"step_ends", detail::range_of(step_ends)},
         {"groups.ids", detail::range_of(g.ids())}});
    detail::check_step_values(where, step_rewards, step_offsets, step_ends, rows, cols);
    detail::check_group_ids(where, rows, g);

    // Group statistics over all steps of the group's rows (two passes, pivot-shifted), in row then step order.
    const index_t k = g.num_groups(rows);
    using moments = detail::cpu::moments;
    std::vector<moments> m = detail::make_scratch<moments>(where, "num_groups", k);
    moments batch;
    detail::cpu::two_pass_moments(
        [&](auto&& emit) {
            for (index_t i = 0; i < rows; ++i)
                for (index_t j = step_offsets[i]; j < step_offsets[i + 1]; ++j)
                    emit(detail::group_of(g, i), static_cast<double>(step_rewards[j]));
        },
        m.data(), &batch);
    auto norm = [&](index_t i, index_t j) -> double {
        const moments& mm = m[detail::group_of(g, i)];
        if (mm.zero_variance()) return 0.0; // fewer than two steps, or all equal
        return math::group_advantage<double>(advantage_estimator::group_zscore, static_cast<double>(step_rewards[j]),
                                             mm.count, mm.mean(), mm.std(cfg.std), cfg.epsilon, singleton_group::zero);
    };

    // Every normalized reward must be finite and fit T before anything is written: rewards near the double range
    // overflow the group statistics (mean or std of +-1.7e308 is inf).
    for (index_t i = 0; i < rows; ++i)
        for (index_t j = step_offsets[i]; j < step_offsets[i + 1]; ++j) {
            const double r = norm(i, j);
            if (!(std::fabs(r) <= static_cast<double>(std::numeric_limits<T>::max())))
                detail::raise_argument(errc::invalid_value, where, "step_rewards",
                                       "step rewards whose group statistics and normalized values fit the types",
                                       "normalized value " + detail::num_str(r) + " at step " + detail::to_str(j));
        }

    // Suffix sums, row by row from the last token backwards.
    detail::cpu::advantage_figures adv;
    for (index_t i = 0; i < rows; ++i) {
        const index_t first = step_offsets[i], last = step_offsets[i + 1];
        double suffix = 0;
        index_t j = last - 1;
        for (index_t t = cols - 1; t >= 0; --t) {
            while (j >= first && step_ends[j] >= t) {
                const double r = norm(i, j);
                suffix += r;
                if (normalized.present()) normalized[j] = static_cast<T>(r);
                --j;
            }
            token_advantages(i, t) = static_cast<T>(suffix);
            if (last > first && t <= step_ends[last - 1]) adv.first(suffix);
        }
    }
    adv.end_first();
    for (index_t i = 0; i < rows; ++i) {
        const index_t first = step_offsets[i], last = step_offsets[i + 1];
        if (last > first)
            for (index_t t = 0; t <= step_ends[last - 1]; ++t) adv.second(token_advantages(i, t));
    }
    advantage_stats st;
    detail::cpu::set_reward_figures(st, k, detail::cpu::write_group_outputs(m.data(), k, cfg.std, {}), batch, cfg.std);
    adv.write(st, cfg.std);
    return st;
}

/// Convenience overload taking a process_steps builder.
template <class T>
advantage_stats process_advantages(const exec::host& ex, const process_steps& s, const groups& g,
                                   matrix_view<T> token_advantages, const process_reward_config& cfg = {},
                                   vector_view<T> normalized = {}) {
    if (s.rows() != token_advantages.rows())
        detail::raise_argument(errc::shape_mismatch, "process_advantages", "steps",
                               detail::to_str(token_advantages.rows()) + " rows (begin_row() per completion)",
                               detail::to_str(s.rows()) + " rows");
    return process_advantages(ex, s.reward_view(), s.offset_view(), s.end_view(), g, token_advantages, cfg, normalized);
}

/// Process rewards as token-level rewards for token_advantages (REINFORCE++ or ReMax on step rewards): each
/// step's raw reward at the token that ends it, 0 elsewhere (steps sharing an end token add up), mask
/// [rows, tokens] = 1 up to each row's last step end and 0 after it. `rewards` and `mask` are outputs of the
/// shape of every row's tokens; throws grpo::error (outputs untouched) on malformed steps.
template <class T>
void process_token_rewards(const process_steps& s, matrix_view<T> rewards, matrix_view<T> mask) {
    const char* where = "process_token_rewards";
    const index_t rows = rewards.rows(), cols = rewards.cols();
    if (s.rows() != rows)
        detail::raise_argument(errc::shape_mismatch, where, "rewards",
                               detail::to_str(s.rows()) + " rows (one per completion)", detail::to_str(rows));
    detail::check_shape(where, "mask", mask, rows, cols);
    const index_t steps = static_cast<index_t>(s.rewards.size());
    const vector_view<const double> step_rewards(s.rewards.data(), steps);
    const vector_view<const std::int64_t> offsets(s.offsets.data(), static_cast<index_t>(s.offsets.size()));
    const vector_view<const std::int64_t> ends(s.ends.data(), static_cast<index_t>(s.ends.size()));
    detail::check_step_sizes(where, step_rewards, offsets, ends, rows);
    detail::check_outputs_disjoint(where, {{"rewards", detail::range_of(rewards)}, {"mask", detail::range_of(mask)}},
                                   {});
    detail::check_step_values(where, step_rewards, offsets, ends, rows, cols);
    for (index_t i = 0; i < rows; ++i) {
        const std::int64_t first = s.offsets[static_cast<std::size_t>(i)],
                           last = s.offsets[static_cast<std::size_t>(i + 1)];
        const index_t end = last > first ? static_cast<index_t>(s.ends[static_cast<std::size_t>(last - 1)]) + 1 : 0;
        for (index_t t = 0; t < cols; ++t) {
            rewards(i, t) = T(0);
            mask(i, t) = t < end ? T(1) : T(0);
        }
        for (std::int64_t j = first; j < last; ++j) {
            const index_t t = static_cast<index_t>(s.ends[static_cast<std::size_t>(j)]);
            rewards(i, t) = static_cast<T>(static_cast<double>(rewards(i, t)) + s.rewards[static_cast<std::size_t>(j)]);
        }
    }
}

GRPO_NAMESPACE_END
