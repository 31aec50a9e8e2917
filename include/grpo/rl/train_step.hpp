// SPDX-License-Identifier: MIT
// A GRPO training-step helper: sample G completions per prompt, score them, compute advantages, run mu
// clipped-surrogate updates on the rollout and refresh the reference policy every K steps (DeepSeekMath
// Algorithm 1, iterative GRPO). The host keeps its model: it supplies callables for "log-probs of these
// tokens under the current / reference policy" and "apply this gradient with respect to those log-probs".
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "../api/advantages.hpp"
#include "../core/check.hpp"
#include "../core/exec.hpp"
#include "../api/loss.hpp"
#include "../backend/cpu/group_stats.hpp"
#include "metrics.hpp"
#include "process_rewards.hpp"
#include "rewards.hpp"
#include "sampler.hpp"
#include "../core/view.hpp"
#include "../core/workspace.hpp"

GRPO_NAMESPACE_BEGIN

/// What the host's model provides to the step helper. Every view spans [rows, max_tokens] of the rollout;
/// positions at or after a row's length are masked (write any finite value there).
template <class T = float>
struct policy_callbacks {
    /// out(i, t) = log pi_theta(token(i, t) | prompt, tokens before t), temperature applied as in sampling.
    /// Called once per inner update; apply_gradient follows on the same batch, so the host may keep the
    /// forward activations of this call for its backward pass.
    std::function<void(const rollout_batch<T>&, matrix_view<T>)> current_logp;
    /// out(i, t) = log pi_ref(...). Required when loss.beta != 0; called once per step.
    std::function<void(const rollout_batch<T>&, matrix_view<T>)> reference_logp;
    /// Backpropagates grad(i, t) = dLoss/dlogp(i, t) through the last current_logp forward and takes one
    /// optimizer step (LibTorch: logp.backward(grad); optimizer.step()).
    std::function<void(const rollout_batch<T>&, matrix_view<const T>)> apply_gradient;
    /// pi_ref <- pi_theta. Required when reference_refresh_every > 0.
    std::function<void()> refresh_reference;
};

/// A process reward function: appends the steps of one completion with steps.add(reward, end_token)
/// (grpo has already called steps.begin_row()). See process_advantages.
template <class Prompt>
using process_reward_function = std::function<void(const Prompt&, const completion_view&, process_steps&)>;

/// Configuration of trainer. Defaults follow TRL GRPOConfig where it has the knob.
struct train_config {
    index_t group_size = 8;          ///< G (TRL num_generations, verl rollout.n)
    int inner_updates = 1;           ///< mu: updates per rollout (TRL num_iterations, verl ppo_epochs)
    int reference_refresh_every = 0; ///< K: pi_ref <- pi_theta after every K steps; 0 = never (DeepSeekMath
                                     ///< iterative RL; TRL sync_ref_model with alpha 1, ref_model_sync_steps)
    loss_config loss{};              ///< the loss (beta > 0 needs reference_logp)
    advantage_config advantages = advantage_config::trl(); ///< outcome advantages
    reward_aggregation aggregation = reward_aggregation::sum_then_normalize;
    process_reward_config process{};         ///< process advantages
    bool mask_truncated_completions = false; ///< TRL mask_truncated_completions (DAPO overlong filtering)
    bool drop_zero_variance_groups = false;  ///< DAPO dynamic sampling: leave groups without signal out of
                                             ///< the loss and report how many (the host refills next step)
};

/// The step helper. Owns its scratch (rollout buffer, advantages, masks, gradients); owns none of the host's
/// prompts, sampler or model. One step:
///   1. sampler.sample(prompts, G) -> rollout with the sampling policy's log-probs (pi_old, kept for all mu
///      updates, as TRL does with num_iterations > 1)
///   2. rewards: outcome_rewards -> outcome_advantages (one per completion, broadcast over tokens), or a
///      process_reward_function -> process_advantages (per token)
///   3. mask = tokens before each length (minus truncated rows / zero-variance groups if configured)
///   4. ref log-probs once (beta > 0); then mu times: current log-probs -> loss_and_grad -> apply_gradient
///   5. every K steps: refresh_reference()
template <class Prompt, class T = float>
class trainer {
public:
    /// Throws grpo::error on a bad configuration or missing callbacks.
    trainer(group_sampler<Prompt, T>& sampler, policy_callbacks<T> policy, train_config cfg)
        : sampler_(&sampler), policy_(std::move(policy)), cfg_(cfg) {
        const char* where = "trainer";
        if (cfg_.group_size < 1)
            detail::raise_argument(errc::invalid_value, where, "config.group_size", "a value >= 1",
                                   detail::to_str(cfg_.group_size));
        if (cfg_.inner_updates < 1)
            detail::raise_argument(errc::invalid_value, where, "config.inner_updates", "a value >= 1",
                                   std::to_string(cfg_.inner_updates));
        if (cfg_.reference_refresh_every < 0)
            detail::raise_argument(errc::invalid_value, where, "config.reference_refresh_every",
                                   "a value >= 0 (0 = never)", std::to_string(cfg_.reference_refresh_every));
        if (!policy_.current_logp)
            detail::raise_argument(errc::invalid_value, where, "policy.current_logp", "a callable", "empty");
        if (!policy_.apply_gradient)
            detail::raise_argument(errc::invalid_value, where, "policy.apply_gradient", "a callable", "empty");
        if (cfg_.loss.beta != 0 && !policy_.reference_logp)
            detail::raise_argument(errc::invalid_value, where, "policy.reference_logp",
                                   "a callable because loss.beta != 0", "empty");
        if (cfg_.reference_refresh_every > 0 && !policy_.refresh_reference)
            detail::raise_argument(errc::invalid_value, where, "policy.refresh_reference",
                                   "a callable because reference_refresh_every > 0", "empty");
    }

    /// Outcome supervision with these reward functions (replaces any process reward function).
    void set_outcome_rewards(outcome_rewards<Prompt> rewards) {
        outcome_ = std::move(rewards);
        process_ = nullptr;
    }
    /// Process supervision with this step-reward function (replaces the outcome rewards).
    void set_process_rewards(process_reward_function<Prompt> fn) { process_ = std::move(fn); }
    /// Logs every step's step_metrics to `logger` (under logger->names(); nullptr stops). The logger must outlive
    /// the trainer's steps. The host may add values to the same step (logger->log(steps_done(), name, value))
    /// before the next step writes it. A sink's error propagates from step() after the step has completed.
    void set_metrics_logger(metrics_logger* logger) noexcept { logger_ = logger; }

    const train_config& config() const noexcept { return cfg_; }
    index_t steps_done() const noexcept { return steps_; }
    /// The rollout of the last step (valid until the next step).
    rollout_batch<T> last_rollout() const { return buffer_.view(); }
    /// The last step's per-completion rewards (combined; NaN = unscored) and the loss mask.
    vector_view<const T> last_rewards() const { return vector_view<const T>(rewards_.data(), buffer_.rows()); }
    matrix_view<const T> last_mask() const {
        return matrix_view<const T>(mask_.data(), buffer_.rows(), buffer_.max_tokens());
    }

    /// One GRPO step on num_prompts prompts (G completions each). Throws grpo::error when no reward is set or
    /// the sampler's rollout is malformed; exceptions from the host's callables propagate.
    step_metrics step(const Prompt* prompts, index_t num_prompts) {
        const char* where = "trainer::step";
        if (!process_ && outcome_.size() == 0)
            detail::raise_argument(errc::invalid_value, where, "rewards",
                                   "set_outcome_rewards or set_process_rewards before step()", "no reward");
        if (num_prompts < 1 || prompts == nullptr)
            detail::raise_argument(errc::invalid_value, where, "prompts", "at least one prompt",
                                   detail::to_str(num_prompts) + (prompts ? "" : " (nullptr)"));
        const busy_guard busy(busy_, where);
        const index_t G = cfg_.group_size, cols = sampler_->max_tokens();
        if (cols < 0)
            detail::raise_argument(errc::invalid_value, where, "sampler", "max_tokens() >= 0", detail::to_str(cols));
        const index_t n = detail::checked_mul(where, "num_prompts * group_size", num_prompts, G);
        const index_t cells = detail::checked_mul(where, "rows * max_tokens", n, cols);
        buffer_.reset(num_prompts, G, cols);
        sampler_->sample(prompts, num_prompts, G, buffer_);
        // The sampler fills the buffer it was given; reshaping it (reset with other sizes) would make the reward
        // functions index past the caller's prompts.
        if (buffer_.num_prompts() != num_prompts || buffer_.group_size() != G || buffer_.max_tokens() != cols)
            detail::raise_argument(
                errc::shape_mismatch, where, "sampler",
                "a rollout of " + detail::to_str(num_prompts) + " prompts x " + detail::to_str(G) + " completions x " +
                    detail::to_str(cols) + " tokens (the buffer as given to sample(); do not reset() it)",
                detail::to_str(buffer_.num_prompts()) + " x " + detail::to_str(buffer_.group_size()) + " x " +
                    detail::to_str(buffer_.max_tokens()));
        const rollout_batch<T> batch = buffer_.view();
        batch.validate(where);

        step_metrics mt;
        detail::assign_scratch(where, "rows * max_tokens", mask_, cells, T(0));
        detail::assign_scratch(where, "rows * max_tokens", token_adv_, cells, T(0));
        rewards_.assign(static_cast<std::size_t>(n), T(0));
        const matrix_view<T> mask(mask_.data(), n, cols);
        const matrix_view<T> token_adv(token_adv_.data(), n, cols);
        const vector_view<T> rewards(rewards_.data(), n);
        mt.masked_truncated = completion_mask(batch, mask, cfg_.mask_truncated_completions);

        advantage_stats st;
        matrix_view<const T> adv_in;
        keep_.assign(static_cast<std::size_t>(num_prompts), 1);
        if (process_) {
            steps_buf_.clear();
            for (index_t i = 0; i < n; ++i) {
                steps_buf_.begin_row();
                const completion_view c = batch.completion(i);
                process_(prompts[c.prompt], c, steps_buf_);
            }
            st = process_advantages(exec::host{}, steps_buf_, groups::contiguous(G), token_adv, cfg_.process);
            for (index_t i = 0; i < n; ++i) {
                double s = 0;
                for (auto j = steps_buf_.offsets[i]; j < steps_buf_.offsets[i + 1]; ++j) s += steps_buf_.rewards[j];
                if (!(std::fabs(s) <= static_cast<double>(std::numeric_limits<T>::max())))
                    detail::raise_argument(errc::invalid_value, where, "process reward function",
                                           "step rewards whose sum per completion fits the reward type",
                                           detail::num_str(s) + " at row " + detail::to_str(i));
                rewards[i] = static_cast<T>(
                    steps_buf_.offsets[i + 1] > steps_buf_.offsets[i] ? s : std::numeric_limits<double>::quiet_NaN());
            }
            // Process mode: a group carries no signal when every advantage of its rows is exactly 0.
            for (index_t p = 0; p < num_prompts; ++p) {
                bool any = false;
                for (index_t i = p * G; i < (p + 1) * G && !any; ++i)
                    for (index_t t = 0; t < cols; ++t)
                        if (token_adv(i, t) != T(0)) {
                            any = true;
                            break;
                        }
                keep_[p] = any;
            }
            adv_in = token_adv;
        } else {
            const index_t nf = outcome_.size();
            detail::assign_scratch(where, "rows * reward functions", scores_,
                                   detail::checked_mul(where, "rows * reward functions", n, nf), 0.0);
            const matrix_view<double> scores(scores_.data(), n, nf);
            outcome_.score(prompts, batch, scores);
            seq_adv_.assign(static_cast<std::size_t>(n), T(0));
            // opo's baseline is weighted by completion lengths: the tokens the loss sees (mask row sums).
            vector_view<const double> lengths;
            if (cfg_.advantages.estimator == advantage_estimator::opo) {
                lengths_.assign(static_cast<std::size_t>(n), 0.0);
                for (index_t i = 0; i < n; ++i)
                    for (index_t t = 0; t < cols; ++t)
                        lengths_[static_cast<std::size_t>(i)] += static_cast<double>(mask(i, t));
                lengths = vector_view<const double>(lengths_.data(), n);
            }
            st = outcome_advantages(exec::host{}, matrix_view<const double>(scores), outcome_.weights(),
                                    groups::contiguous(G), vector_view<T>(seq_adv_.data(), n), cfg_.advantages,
                                    cfg_.aggregation, rewards, group_outputs{}, lengths);
            mt.reward_function_names.resize(static_cast<std::size_t>(nf));
            mt.reward_function_means.assign(static_cast<std::size_t>(nf), 0.0);
            mt.reward_function_stds.assign(static_cast<std::size_t>(nf), 0.0);
            for (index_t k = 0; k < nf; ++k) {
                // NaN-aware, as TRL's nanmean / nanstd (unbiased) of each function's column.
                detail::cpu::moments col;
                detail::cpu::two_pass_moments(
                    [&](auto&& emit) {
                        for (index_t i = 0; i < n; ++i)
                            if (!std::isnan(scores(i, k))) emit(0, scores(i, k));
                    },
                    &col);
                const auto kk = static_cast<std::size_t>(k);
                mt.reward_function_names[kk] = outcome_[k].name;
                mt.reward_function_means[kk] = col.count > 0 ? col.mean() : std::numeric_limits<double>::quiet_NaN();
                mt.reward_function_stds[kk] = col.std(std_estimator::unbiased);
            }
            filter_zero_variance_groups(vector_view<const T>(rewards), groups::contiguous(G),
                                        vector_view<std::uint8_t>(keep_.data(), num_prompts));
            adv_in = broadcast_to_tokens(vector_view<const T>(seq_adv_.data(), n), cols);
        }
        if (cfg_.drop_zero_variance_groups)
            for (index_t p = 0; p < num_prompts; ++p)
                if (!keep_[p]) {
                    mt.dropped_groups += 1;
                    for (index_t i = p * G; i < (p + 1) * G; ++i)
                        for (index_t t = 0; t < cols; ++t) mask(i, t) = T(0);
                }

        // Reward statistics over scored completions (unbiased std, as TRL logs reward_std).
        {
            detail::cpu::moments all;
            detail::cpu::two_pass_moments(
                [&](auto&& emit) {
                    for (index_t i = 0; i < n; ++i)
                        if (!std::isnan(static_cast<double>(rewards[i]))) emit(0, static_cast<double>(rewards[i]));
                },
                &all);
            mt.reward_mean = all.mean();
            mt.reward_std = all.std(std_estimator::unbiased);
        }
        set_advantage_metrics(mt, st);
        set_length_metrics(mt, batch);
        double tokens = 0;
        for (index_t i = 0; i < n; ++i)
            for (index_t t = 0; t < cols; ++t) tokens += mask(i, t);
        mt.tokens = tokens;

        // Reference log-probs once per step, then mu clipped-surrogate updates against the sampling log-probs.
        loss_inputs<T> in;
        in.old_logp = batch.old_logp;
        in.advantages = adv_in;
        in.mask = mask;
        if (cfg_.loss.beta != 0) {
            detail::assign_scratch(where, "rows * max_tokens", ref_, cells, T(0));
            policy_.reference_logp(batch, matrix_view<T>(ref_.data(), n, cols));
            in.ref_logp = matrix_view<const T>(ref_.data(), n, cols);
        }
        detail::assign_scratch(where, "rows * max_tokens", logp_, cells, T(0));
        detail::assign_scratch(where, "rows * max_tokens", grad_, cells, T(0));
        in.logp = matrix_view<const T>(logp_.data(), n, cols);
        loss_outputs<T> out;
        out.grad_logp = matrix_view<T>(grad_.data(), n, cols);
        if (tokens > 0) {
            for (int u = 0; u < cfg_.inner_updates; ++u) {
                policy_.current_logp(batch, matrix_view<T>(logp_.data(), n, cols));
                const loss_stats ls = loss_and_grad(exec::host{}, in, out, cfg_.loss, ws_);
                policy_.apply_gradient(batch, matrix_view<const T>(grad_.data(), n, cols));
                add_loss_metrics(mt, ls);
            }
            finish_loss_metrics(mt);
        }

        steps_ += 1;
        mt.step = steps_;
        if (cfg_.reference_refresh_every > 0 && steps_ % cfg_.reference_refresh_every == 0) {
            policy_.refresh_reference();
            mt.reference_refreshed = true;
        }
        if (logger_ != nullptr) logger_->log(mt);
        return mt;
    }

private:
    /// step() is not reentrant (it owns the rollout and scratch): a second concurrent step() on the same trainer
    /// throws grpo::error (errc::in_use) instead of racing on them.
    struct busy_guard {
        std::atomic<bool>& flag;
        busy_guard(std::atomic<bool>& f, const char* where) : flag(f) {
            if (flag.exchange(true, std::memory_order_acquire))
                detail::raise_argument(errc::in_use, where, "trainer",
                                       "a trainer no other thread is stepping (one step() at a time)",
                                       "a step() in progress on another thread");
        }
        ~busy_guard() { flag.store(false, std::memory_order_release); }
    };

    group_sampler<Prompt, T>* sampler_;
    policy_callbacks<T> policy_;
    train_config cfg_;
    outcome_rewards<Prompt> outcome_;
    process_reward_function<Prompt> process_;
    index_t steps_ = 0;
    metrics_logger* logger_ = nullptr;

    rollout_buffer<T> buffer_;
    process_steps steps_buf_;
    std::vector<double> scores_, lengths_;
    std::vector<T> rewards_, seq_adv_, token_adv_, mask_, ref_, logp_, grad_;
    std::vector<std::uint8_t> keep_;
    workspace ws_;
    std::atomic<bool> busy_{false};
};

GRPO_NAMESPACE_END
