// SPDX-License-Identifier: MIT
// Outcome rewards: several reward functions with weights, combined as TRL does, into group-relative
// advantages; ready-made verifiable rewards (exact match on an extracted answer, a format check); and the DAPO
// extras (overlong reward shaping, truncation masking, dynamic-sampling filter).
//
// A reward function is any callable `double(const Prompt&, const completion_view&)` (or one returning
// std::optional<double>). It may decline to score a completion by returning NaN or std::nullopt (TRL: None);
// declined scores are left out of every statistic, so they never poison their group.
#pragma once

#include <cctype>
#include <cmath>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "../api/advantages.hpp"
#include "../backend/cpu/group_stats.hpp"
#include "../core/check.hpp"
#include "../core/exec.hpp"
#include "../math/advantage.hpp"
#include "sampler.hpp"
#include "../core/view.hpp"

GRPO_NAMESPACE_BEGIN

/// How several reward functions become one advantage (TRL GRPOConfig.multi_objective_aggregation).
enum class reward_aggregation {
    /// R_i = nansum_k w_k r_ik, then the group z-score of R (TRL "sum_then_normalize", the default).
    sum_then_normalize,
    /// z_ik = (r_ik - mean_g,k) / (std_g,k + eps) per function, R_i = nansum_k w_k z_ik, then the batch
    /// z-score of R (TRL "normalize_then_sum", GDPO).
    normalize_then_sum,
};

namespace detail {

inline void check_scores(const char* where, matrix_view<const double> scores, vector_view<const double> weights) {
    if (!weights.present() && scores.cols() > 0)
        raise_argument(errc::invalid_value, where, "weights", "one weight per reward function", "an absent view");
    check_size(where, "weights", weights, scores.cols());
    for (index_t k = 0; k < weights.size(); ++k)
        if (!std::isfinite(weights[k]))
            raise_argument(errc::non_finite, where, "weights", "finite values",
                           num_str(weights[k]) + " at index " + to_str(k));
    for (index_t i = 0; i < scores.rows(); ++i)
        for (index_t k = 0; k < scores.cols(); ++k)
            if (std::isinf(scores(i, k)))
                raise_argument(errc::non_finite, where, "scores", "finite values or NaN (declined)",
                               num_str(scores(i, k)) + " at (" + to_str(i) + ", " + to_str(k) + ")");
}

/// nansum_k w_k x_k over row i; NaN when every x_ik is NaN (TRL: a row no function scored stays unscored).
inline double weighted_nansum(matrix_view<const double> x, vector_view<const double> w, index_t i);

/// Every row's combined reward (weighted_nansum) must fit T unless it is NaN because no function scored the
/// row: scores and weights near the double range overflow the sum (inf, or inf - inf = NaN).
template <class T>
void check_combined_fits(const char* where, matrix_view<const double> scores, vector_view<const double> weights) {
    for (index_t i = 0; i < scores.rows(); ++i) {
        bool scored = false;
        for (index_t k = 0; k < scores.cols(); ++k) scored = scored || !std::isnan(scores(i, k));
        const double r = weighted_nansum(scores, weights, i);
        if (scored && !(std::fabs(r) <= static_cast<double>(std::numeric_limits<T>::max())))
            raise_argument(errc::invalid_value, where, "scores", "scores whose weighted sum fits the reward type",
                           num_str(r) + " at row " + to_str(i));
    }
}

inline double weighted_nansum(matrix_view<const double> x, vector_view<const double> w, index_t i) {
    double s = 0;
    bool any = false;
    for (index_t k = 0; k < x.cols(); ++k) {
        const double v = x(i, k);
        if (std::isnan(v)) continue;
        s += w[k] * v;
        any = true;
    }
    return any ? s : std::numeric_limits<double>::quiet_NaN();
}

/// outcome_advantages' outputs against each other and against `inputs`.
template <class T>
void check_outcome_outputs(const char* where, vector_view<T> advantages, vector_view<T> rewards,
                           const group_outputs& per_group, std::initializer_list<named_range> inputs) {
    check_outputs_disjoint(where,
                           {{"advantages", range_of(advantages)},
                            {"rewards", range_of(rewards)},
                            {"per_group.mean", range_of(per_group.mean)},
                            {"per_group.std", range_of(per_group.std)},
                            {"per_group.zero_variance", range_of(per_group.zero_variance)},
                            {"per_group.count", range_of(per_group.count)}},
                           inputs);
}

} // namespace detail

/// Weighted sum of per-function scores (TRL: `(rewards_per_func * reward_weights).nansum(dim=1)`):
///   R_i = sum over k with r_ik not NaN of w_k * r_ik; R_i = NaN when no function scored row i.
/// @param scores   [completions, functions]; NaN = declined (TRL None)
/// @param weights  one finite weight per function (TRL reward_weights; all 1 by default there)
/// @param rewards  [completions] output
/// Throws grpo::error (outputs untouched) on size mismatches, non-finite weights or infinite scores.
template <class T>
void combine_rewards(matrix_view<const double> scores, vector_view<const double> weights, vector_view<T> rewards) {
    const char* where = "combine_rewards";
    detail::check_scores(where, scores, weights);
    detail::check_size(where, "rewards", rewards, scores.rows());
    detail::check_outputs_disjoint(where, {{"rewards", detail::range_of(rewards)}},
                                   {{"scores", detail::range_of(scores)}, {"weights", detail::range_of(weights)}});
    detail::check_combined_fits<T>(where, scores, weights);
    for (index_t i = 0; i < scores.rows(); ++i)
        rewards[i] = static_cast<T>(detail::weighted_nansum(scores, weights, i));
}

/// Advantages from several outcome rewards per completion, combined as TRL GRPOTrainer does.
///
/// sum_then_normalize: R_i = nansum_k w_k r_ik, A_i = (R_i - nanmean_g R) / (nanstd_g R + eps).
/// normalize_then_sum: z_ik = (r_ik - nanmean_g r_k) / (nanstd_g r_k + eps) (NaN below two scores),
///                     R_i = nansum_k w_k z_ik, A_i = (R_i - nanmean_batch R) / (nanstd_batch R + eps).
/// Rows that no function scored get A_i = 0 and stay out of every statistic (TRL nan_to_num; PR #5775).
/// eps, the std estimator and the estimator of the sum_then_normalize step come from `cfg` (its nan policy is
/// forced to ignore); normalize_then_sum always uses z-scores, as TRL does.
///
/// @param scores     [completions, functions] raw scores, NaN = declined
/// @param weights    one weight per function
/// @param g          groups::contiguous(G) (prompt-major rows) or groups::by_id
/// @param advantages [completions] output
/// @param rewards    optional [completions] output: the combined R_i (NaN for unscored rows)
/// @param per_group  optional per-group figures of the combined R over g (mean, std with cfg.std, zero-variance
///                   flag, scored count), whichever the aggregation
/// @param token_weights per-completion weights for the sum_then_normalize step's estimator, as in
///                   compute_advantages: the completion lengths for opo (required there), optional token
///                   counts for group_centered_batch_whitened
/// @returns the advantage statistics; zero_variance_* counts groups whose combined R is constant.
/// Throws grpo::error (outputs untouched) on shape mismatches, bad groups, non-finite weights, Inf scores.
/// Float scores are accepted too (an overload widens them to double first).
template <class T>
advantage_stats outcome_advantages(const exec::host& ex, matrix_view<const double> scores,
                                   vector_view<const double> weights, const groups& g, vector_view<T> advantages,
                                   const advantage_config& cfg = advantage_config::trl(),
                                   reward_aggregation aggregation = reward_aggregation::sum_then_normalize,
                                   vector_view<T> rewards = {}, const group_outputs& per_group = {},
                                   vector_view<const double> token_weights = {}) {
    static_assert(std::is_floating_point<T>::value, "grpo::outcome_advantages: T must be float or double");
    const char* where = "outcome_advantages";
    const index_t n = scores.rows(), nf = scores.cols();
    detail::check_scores(where, scores, weights);
    detail::check_size(where, "advantages", advantages, n);
    if (rewards.present()) detail::check_size(where, "rewards", rewards, n);
    detail::check_groups(where, n, g);
    detail::check_advantage_config(where, cfg);
    detail::check_enum(where, "aggregation", aggregation, 2);
    const bool weighted =
        aggregation == reward_aggregation::sum_then_normalize && detail::uses_token_weights(cfg.estimator);
    if (cfg.estimator == advantage_estimator::opo && aggregation == reward_aggregation::sum_then_normalize &&
        !token_weights.present())
        detail::raise_argument(errc::invalid_value, where, "token_weights",
                               "the completion lengths (opo's baseline is length-weighted)", "an absent view");
    if (weighted && token_weights.present()) {
        detail::check_size(where, "token_weights", token_weights, n);
        for (index_t i = 0; i < n; ++i)
            detail::check_range(where, "token_weights", token_weights[i], 0, std::numeric_limits<double>::infinity(),
                                "finite weights >= 0");
    }
    const index_t k = g.num_groups(n);
    if (per_group.mean.present()) detail::check_size(where, "per_group.mean", per_group.mean, k);
    if (per_group.std.present()) detail::check_size(where, "per_group.std", per_group.std, k);
    if (per_group.zero_variance.present())
        detail::check_size(where, "per_group.zero_variance", per_group.zero_variance, k);
    if (per_group.count.present()) detail::check_size(where, "per_group.count", per_group.count, k);
    detail::check_outcome_outputs(where, advantages, rewards, per_group,
                                  {{"scores", detail::range_of(scores)},
                                   {"weights", detail::range_of(weights)},
                                   {"groups.ids", detail::range_of(g.ids())},
                                   {"token_weights", detail::range_of(token_weights)}});
    const index_t cells = detail::checked_mul(where, "scores", n, nf);
    if (aggregation == reward_aggregation::sum_then_normalize) detail::check_combined_fits<T>(where, scores, weights);

    std::vector<T> combined = detail::make_scratch<T>(where, "rewards", n);
    advantage_config c = cfg;
    c.nan = nan_rewards::ignore;
    if (aggregation == reward_aggregation::sum_then_normalize) {
        for (index_t i = 0; i < n; ++i) combined[i] = static_cast<T>(detail::weighted_nansum(scores, weights, i));
    } else {
        // Per-function group statistics with NaN left out, then the weighted nansum of z-scores.
        using moments = detail::cpu::moments;
        std::vector<moments> m = detail::make_scratch<moments>(
            where, "num_groups * functions", detail::checked_mul(where, "num_groups * functions", k, nf));
        detail::cpu::two_pass_moments(
            [&](auto&& emit) {
                for (index_t i = 0; i < n; ++i)
                    for (index_t f = 0; f < nf; ++f)
                        if (!std::isnan(scores(i, f))) emit(detail::group_of(g, i) * nf + f, scores(i, f));
            },
            m.data());
        std::vector<double> z = detail::make_scratch<double>(where, "scores", cells);
        for (index_t i = 0; i < n; ++i)
            for (index_t f = 0; f < nf; ++f) {
                const moments& mm = m[detail::group_of(g, i) * nf + f];
                const double x = scores(i, f);
                z[i * nf + f] =
                    (std::isnan(x) || mm.count < 2)
                        ? std::numeric_limits<double>::quiet_NaN()
                        : math::group_advantage<double>(advantage_estimator::group_zscore, x, mm.count, mm.mean(),
                                                        mm.std(cfg.std), cfg.epsilon, singleton_group::zero);
                // Statistics of scores near 1.7e308 overflow. (Below two scores z is NaN on purpose: TRL's nanstd.)
                if (!std::isnan(x) && mm.count >= 2 && !std::isfinite(z[i * nf + f]))
                    detail::raise_argument(errc::invalid_value, where, "scores",
                                           "scores whose per-function group statistics fit in double",
                                           "z-score " + detail::num_str(z[i * nf + f]) + " at (" + detail::to_str(i) +
                                               ", " + detail::to_str(f) + ")");
            }
        const matrix_view<const double> zv(z.data(), n, nf);
        detail::check_combined_fits<T>(where, zv, weights);
        for (index_t i = 0; i < n; ++i) combined[i] = static_cast<T>(detail::weighted_nansum(zv, weights, i));
        c.estimator = advantage_estimator::group_zscore;
    }

    // The final normalization: per group, or over the whole batch for normalize_then_sum.
    std::vector<T> adv = detail::make_scratch<T>(where, "advantages", n);
    const vector_view<const T> cv(combined.data(), n);
    const groups final_groups =
        aggregation == reward_aggregation::sum_then_normalize ? g : groups::contiguous(n > 0 ? n : 1);
    advantage_stats st =
        n > 0 ? compute_advantages(ex, cv, final_groups, vector_view<T>(adv.data(), n), c, group_outputs{},
                                   weighted ? token_weights : vector_view<const double>())
              : advantage_stats{};
    // The groups' figures of the combined reward (normalize_then_sum normalizes over the batch, so its
    // compute_advantages call did not see the groups).
    std::vector<detail::cpu::moments> m = detail::make_scratch<detail::cpu::moments>(where, "num_groups", k);
    detail::cpu::group_moments_of(cv, g, m.data());
    const index_t zero_variance_groups = detail::cpu::write_group_outputs(m.data(), k, c.std, per_group);
    if (aggregation == reward_aggregation::normalize_then_sum && n > 0) {
        st.num_groups = k;
        st.zero_variance_groups = zero_variance_groups;
        st.zero_variance_fraction = k > 0 ? static_cast<double>(zero_variance_groups) / static_cast<double>(k) : 0;
    }
    for (index_t i = 0; i < n; ++i) advantages[i] = adv[i];
    if (rewards.present())
        for (index_t i = 0; i < n; ++i) rewards[i] = combined[i];
    return st;
}

/// outcome_advantages with float scores (widened to double, then as above).
template <class T>
advantage_stats outcome_advantages(const exec::host& ex, matrix_view<const float> scores,
                                   vector_view<const double> weights, const groups& g, vector_view<T> advantages,
                                   const advantage_config& cfg = advantage_config::trl(),
                                   reward_aggregation aggregation = reward_aggregation::sum_then_normalize,
                                   vector_view<T> rewards = {}, const group_outputs& per_group = {},
                                   vector_view<const double> token_weights = {}) {
    const char* where = "outcome_advantages";
    const index_t n = scores.rows(), nf = scores.cols();
    if (n < 0 || nf < 0)
        detail::raise_argument(errc::invalid_value, where, "scores", "extents >= 0",
                               detail::to_str(n) + " x " + detail::to_str(nf));
    std::vector<double> wide =
        detail::make_scratch<double>(where, "scores", detail::checked_mul(where, "scores", n, nf));
    for (index_t i = 0; i < n; ++i)
        for (index_t f = 0; f < nf; ++f) wide[static_cast<std::size_t>(i * nf + f)] = static_cast<double>(scores(i, f));
    // The copy is private, so the disjointness checks would not see the caller's float scores: check them here.
    detail::check_outcome_outputs(where, advantages, rewards, per_group, {{"scores", detail::range_of(scores)}});
    return outcome_advantages(ex, matrix_view<const double>(wide.data(), n, nf), weights, g, advantages, cfg,
                              aggregation, rewards, per_group, token_weights);
}

/// The outcome reward adapter: named reward functions with weights, scored over a rollout and combined into
/// advantages (TRL GRPOTrainer reward_funcs + reward_weights + multi_objective_aggregation).
template <class Prompt>
class outcome_rewards {
public:
    using function = std::function<double(const Prompt&, const completion_view&)>;
    struct entry {
        std::string name;
        function fn;
        double weight;
    };

    /// Adds a reward function: any callable (prompt, completion) -> double or std::optional<double>; NaN or
    /// nullopt = declined. Throws grpo::error on a non-finite weight.
    template <class F>
    outcome_rewards& add(std::string name, F fn, double weight = 1.0) {
        if (!std::isfinite(weight))
            detail::raise_argument(errc::non_finite, "outcome_rewards::add", "weight", "a finite value",
                                   detail::num_str(weight));
        using result = std::invoke_result_t<F&, const Prompt&, const completion_view&>;
        function f;
        if constexpr (std::is_convertible<result, double>::value) {
            f = std::move(fn);
        } else {
            static_assert(std::is_convertible<result, std::optional<double>>::value,
                          "grpo::outcome_rewards::add: a reward function returns double or std::optional<double>");
            f = [g = std::move(fn)](const Prompt& p, const completion_view& c) -> double {
                const std::optional<double> r = g(p, c);
                return r ? *r : std::numeric_limits<double>::quiet_NaN();
            };
        }
        entries_.push_back({std::move(name), std::move(f), weight});
        weights_.push_back(weight);
        return *this;
    }

    index_t size() const noexcept { return static_cast<index_t>(entries_.size()); }
    const entry& operator[](index_t k) const { return entries_[static_cast<std::size_t>(k)]; }
    /// The weights as a view (valid until the next add()).
    vector_view<const double> weights() const { return vector_view<const double>(weights_.data(), size()); }

    /// scores(i, k) = function k on (prompts[prompt_of(i)], completion i). prompts has rollout.num_prompts
    /// elements. Throws grpo::error (scores untouched) on shape mismatches; an exception thrown by a reward
    /// function propagates (scores partially written).
    template <class T>
    void score(const Prompt* prompts, const rollout_batch<T>& rollout, matrix_view<double> scores) const {
        const char* where = "outcome_rewards::score";
        rollout.validate(where);
        if (prompts == nullptr && rollout.num_prompts > 0)
            detail::raise_argument(errc::invalid_value, where, "prompts", "a non-null pointer", "nullptr");
        detail::check_shape(where, "scores", scores, rollout.rows(), size());
        for (index_t i = 0; i < rollout.rows(); ++i) {
            const completion_view c = rollout.completion(i);
            for (index_t k = 0; k < size(); ++k) scores(i, k) = entries_[k].fn(prompts[c.prompt], c);
        }
    }

private:
    std::vector<entry> entries_;
    std::vector<double> weights_;
};

// ------------------------------------------------------------------------------------------------------------
// Verifiable rewards

/// Where the answer sits in a completion's text.
enum class answer_format {
    whole,        ///< the whole text, surrounding whitespace trimmed
    last_number,  ///< the last run of digits (with an optional leading '-' and one '.'), commas removed
    after_marker, ///< the trimmed text after the last occurrence of a marker (GSM8K: "####")
    boxed,        ///< the contents of the last \boxed{...} (MATH), braces balanced
};

namespace detail {
inline std::string trim(std::string_view s) {
    std::size_t b = 0, e = s.size();
    while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
    while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
    return std::string(s.substr(b, e - b));
}
} // namespace detail

/// Extracts the answer from a completion's text; nullopt when the format has no answer in it.
/// TRL's accuracy_reward / math_verify and verl's gsm8k/math reward scorers extract the same way.
inline std::optional<std::string> extract_answer(std::string_view text, answer_format format,
                                                 std::string_view marker = "####") {
    switch (format) {
    case answer_format::whole: {
        std::string t = detail::trim(text);
        if (t.empty()) return std::nullopt;
        return t;
    }
    case answer_format::after_marker: {
        if (marker.empty()) return std::nullopt;
        const std::size_t p = text.rfind(marker);
        if (p == std::string_view::npos) return std::nullopt;
        std::string t = detail::trim(text.substr(p + marker.size()));
        if (t.empty()) return std::nullopt;
        return t;
    }
    case answer_format::last_number: {
        std::size_t e = text.size();
        while (e > 0 && !std::isdigit(static_cast<unsigned char>(text[e - 1]))) --e;
        if (e == 0) return std::nullopt;
        std::size_t b = e;
        bool dot = false;
        while (b > 0) {
            const char ch = text[b - 1];
            if (std::isdigit(static_cast<unsigned char>(ch)) || ch == ',') {
                --b;
            } else if (ch == '.' && !dot && b > 1 && std::isdigit(static_cast<unsigned char>(text[b - 2]))) {
                dot = true;
                --b;
            } else {
                break;
            }
        }
        if (b > 0 && text[b - 1] == '-') --b;
        std::string out;
        for (std::size_t i = b; i < e; ++i)
            if (text[i] != ',') out += text[i];
        return out;
    }
    case answer_format::boxed: {
        const std::string_view key = "\\boxed{";
        const std::size_t p = text.rfind(key);
        if (p == std::string_view::npos) return std::nullopt;
        int depth = 1;
        for (std::size_t i = p + key.size(); i < text.size(); ++i) {
            if (text[i] == '{') ++depth;
            if (text[i] == '}' && --depth == 0) return detail::trim(text.substr(p + key.size(), i - p - key.size()));
        }
        return std::nullopt;
    }
    }
    return std::nullopt;
}

/// Exact-match reward on an extracted answer: 1 if extract(decode(completion)) == reference(prompt), else 0
/// (no answer found is 0); declines (NaN) when reference returns nullopt (no gold answer for the prompt).
/// TRL accuracy_reward; verl default_compute_score for gsm8k. `decode` maps completion tokens to text,
/// `reference` gives the prompt's gold answer (std::string or std::optional<std::string>).
template <class Prompt, class Decode, class Reference>
auto exact_match_reward(Decode decode, Reference reference, answer_format format = answer_format::whole,
                        std::string marker = "####") {
    return [decode = std::move(decode), reference = std::move(reference), format, marker = std::move(marker)](
               const Prompt& p, const completion_view& c) -> double {
        const std::optional<std::string> gold = reference(p);
        if (!gold) return std::numeric_limits<double>::quiet_NaN();
        const std::string text = decode(c);
        const std::optional<std::string> got = extract_answer(text, format, marker);
        return got && *got == *gold ? 1.0 : 0.0;
    };
}

/// Checks that `tags` occur in the text in the given order, each once after the previous, with only
/// whitespace before the first and after the last (TRL's think_format_reward / format reward:
/// "<think>...</think><answer>...</answer>").
inline bool tags_in_order(std::string_view text, std::initializer_list<std::string_view> tags) {
    std::size_t pos = 0;
    bool first = true;
    for (std::string_view tag : tags) {
        const std::size_t p = text.find(tag, pos);
        if (p == std::string_view::npos) return false;
        if (first && !detail::trim(text.substr(0, p)).empty()) return false;
        first = false;
        pos = p + tag.size();
    }
    return detail::trim(text.substr(pos)).empty();
}

/// Format reward: `bonus` if check(decode(completion)) holds, else 0. `check` is any predicate on the text,
/// e.g. [](std::string_view t) { return grpo::tags_in_order(t, {"<think>", "</think>", "<answer>", "</answer>"}); }
/// (TRL think_format_reward), or one on the tokens: pass a decode that returns what the predicate needs.
template <class Prompt, class Decode, class Check>
auto format_reward(Decode decode, Check check, double bonus = 1.0) {
    return [decode = std::move(decode), check = std::move(check), bonus](
               const Prompt&, const completion_view& c) -> double { return check(decode(c)) ? bonus : 0.0; };
}

// ------------------------------------------------------------------------------------------------------------
// DAPO extras

/// DAPO overlong reward shaping (arXiv 2503.14476 Eq. 13), added to the task reward:
///   R_len(|y|) = 0                                   if |y| <= L_max - L_cache
///              = ((L_max - L_cache) - |y|) / L_cache  if L_max - L_cache < |y| <= L_max
///              = -1                                  if |y| > L_max
/// times `factor` (verl overlong_buffer.penalty_factor; OpenRLHF overlong_penalty_factor).
/// TRL trl.rewards.get_soft_overlong_punishment(max_completion_len=L_max, soft_punish_cache=L_cache).
/// L_max = 20480, L_cache = 4096: 16384 -> 0, 18432 -> -0.5, 20480 -> -1, 20481 -> -1.
/// Throws grpo::error unless 0 <= L_cache <= L_max and length >= 0.
inline double overlong_penalty(index_t length, index_t max_length, index_t cache_length, double factor = 1.0) {
    const char* where = "overlong_penalty";
    if (max_length < 0 || cache_length < 0 || cache_length > max_length)
        detail::raise_argument(errc::invalid_value, where, "max_length/cache_length", "0 <= cache_length <= max_length",
                               detail::to_str(max_length) + "/" + detail::to_str(cache_length));
    if (length < 0)
        detail::raise_argument(errc::invalid_value, where, "length", "a value >= 0", detail::to_str(length));
    detail::check_range(where, "factor", factor, -std::numeric_limits<double>::infinity(),
                        std::numeric_limits<double>::infinity(), "a finite value");
    const index_t start = max_length - cache_length;
    if (length <= start) return 0.0;
    if (length > max_length) return -factor;
    // The fraction of the cache used first (in [-1, 0)), then the factor: factor * (start - length) could
    // overflow for a factor near the double range.
    return factor * (static_cast<double>(start - length) / static_cast<double>(cache_length));
}

/// overlong_penalty as a reward function on the completion length, for outcome_rewards::add
/// (TRL get_soft_overlong_punishment). Validates its arguments now.
template <class Prompt>
auto soft_overlong_punishment(index_t max_length, index_t cache_length, double factor = 1.0) {
    (void)overlong_penalty(0, max_length, cache_length, factor);
    return [=](const Prompt&, const completion_view& c) -> double {
        return overlong_penalty(c.length(), max_length, cache_length, factor);
    };
}

/// rewards_i += overlong_penalty(lengths_i, L_max, L_cache, factor), for hosts that keep one reward per
/// completion (verl DAPO reward manager overlong_buffer; OpenRLHF --overlong_buffer_len). NaN stays NaN.
template <class T>
void apply_overlong_shaping(vector_view<const std::int64_t> lengths, vector_view<T> rewards, index_t max_length,
                            index_t cache_length, double factor = 1.0) {
    const char* where = "apply_overlong_shaping";
    detail::check_size(where, "rewards", rewards, lengths.size());
    detail::check_no_alias(where, "rewards", rewards, "lengths", lengths);
    (void)overlong_penalty(0, max_length, cache_length, factor);
    for (index_t i = 0; i < lengths.size(); ++i)
        if (lengths[i] < 0)
            detail::raise_argument(
                errc::invalid_value, where, "lengths", "values >= 0",
                std::to_string(static_cast<long long>(lengths[i])) + " at index " + detail::to_str(i));
    auto shaped = [&](index_t i) {
        return static_cast<double>(rewards[i]) +
               overlong_penalty(static_cast<index_t>(lengths[i]), max_length, cache_length, factor);
    };
    // Every shaped reward must fit T before any is written (a finite reward plus a finite penalty can overflow).
    for (index_t i = 0; i < lengths.size(); ++i) {
        const double r = shaped(i);
        if (std::isinf(r) || (std::isnan(r) && !std::isnan(static_cast<double>(rewards[i]))) ||
            std::fabs(r) > static_cast<double>(std::numeric_limits<T>::max()))
            detail::raise_argument(errc::invalid_value, where, "rewards", "shaped rewards that fit the reward type",
                                   detail::num_str(r) + " at index " + detail::to_str(i));
    }
    for (index_t i = 0; i < lengths.size(); ++i) rewards[i] = static_cast<T>(shaped(i));
}

/// Loss mask of a rollout: mask(i, t) = 1 for t < lengths[i], 0 after; with mask_truncated, rows that hit
/// max_tokens without EOS are 0 throughout (TRL mask_truncated_completions; DAPO overlong filtering).
/// @returns the number of truncated rows that were masked.
template <class T, class R>
index_t completion_mask(const rollout_batch<R>& rollout, matrix_view<T> mask, bool mask_truncated) {
    const char* where = "completion_mask";
    rollout.validate(where);
    detail::check_shape(where, "mask", mask, rollout.rows(), rollout.max_tokens());
    detail::check_outputs_disjoint(where, {{"mask", detail::range_of(mask)}},
                                   {{"rollout.tokens", detail::range_of(rollout.tokens)},
                                    {"rollout.lengths", detail::range_of(rollout.lengths)},
                                    {"rollout.old_logp", detail::range_of(rollout.old_logp)},
                                    {"rollout.truncated", detail::range_of(rollout.truncated)}});
    index_t masked = 0;
    for (index_t i = 0; i < rollout.rows(); ++i) {
        const bool drop = mask_truncated && rollout.is_truncated(i);
        masked += drop;
        for (index_t t = 0; t < mask.cols(); ++t) mask(i, t) = (!drop && t < rollout.lengths[i]) ? T(1) : T(0);
    }
    return masked;
}

/// Result of the dynamic-sampling filter.
struct dynamic_sampling_result {
    index_t kept_groups = 0;
    index_t dropped_groups = 0; ///< the host samples this many more prompts to refill the batch (DAPO)
};

/// DAPO dynamic sampling: keep[j] = 0 for every group j whose scored rewards have zero variance (all equal,
/// e.g. all correct or all wrong: 0 < #correct < G fails), or fewer than two scored rewards; 1 otherwise.
/// Such groups have advantage 0 and only add KL and token-count noise. verl algorithm.filter_groups (metric
/// constant), TRL frac_reward_zero_std. NaN rewards (declined) are ignored. Exactly equal, as in
/// compute_advantages' zero_variance flag (pivot-shifted, so a constant group is exact).
template <class T>
dynamic_sampling_result filter_zero_variance_groups(vector_view<const T> rewards, const groups& g,
                                                    vector_view<std::uint8_t> keep) {
    const char* where = "filter_zero_variance_groups";
    const index_t n = rewards.size();
    detail::check_groups(where, n, g);
    const index_t k = g.num_groups(n);
    detail::check_size(where, "keep", keep, k);
    detail::check_outputs_disjoint(where, {{"keep", detail::range_of(keep)}},
                                   {{"rewards", detail::range_of(rewards)}, {"groups.ids", detail::range_of(g.ids())}});
    for (index_t i = 0; i < n; ++i)
        if (std::isinf(static_cast<double>(rewards[i])))
            detail::raise_argument(errc::non_finite, where, "rewards", "finite values or NaN",
                                   detail::num_str(rewards[i]) + " at index " + detail::to_str(i));
    std::vector<detail::cpu::moments> m = detail::make_scratch<detail::cpu::moments>(where, "num_groups", k);
    detail::cpu::group_moments_of(rewards, g, m.data());
    dynamic_sampling_result r;
    for (index_t j = 0; j < k; ++j) {
        const bool ok = !m[j].zero_variance();
        keep[j] = ok;
        (ok ? r.kept_groups : r.dropped_groups) += 1;
    }
    return r;
}
template <class T, class = std::enable_if_t<!std::is_const<T>::value>>
dynamic_sampling_result filter_zero_variance_groups(vector_view<T> rewards, const groups& g,
                                                    vector_view<std::uint8_t> keep) {
    return filter_zero_variance_groups(vector_view<const T>(rewards), g, keep);
}

GRPO_NAMESPACE_END
