// SPDX-License-Identifier: MIT
// Training metrics: what one trainer step reports (step_metrics), its names under TRL's or verl's conventions
// (add_step_metrics), and a logger that gathers each step's scalars and hands them to pluggable sinks
// (rl/metric_sinks.hpp writes JSONL, CSV and TensorBoard event files). docs/metrics.md lists every metric.
#pragma once

#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "../core/check.hpp"
#include "../core/error.hpp"
#include "../core/view.hpp"
#include "../types/advantage_types.hpp"
#include "../types/loss_types.hpp"
#include "sampler.hpp"

GRPO_NAMESPACE_BEGIN

/// What one trainer step did: the figures TRL and verl log (their names: add_step_metrics, docs/metrics.md).
struct step_metrics {
    index_t step = 0;       ///< steps done, this one included
    double reward_mean = 0; ///< TRL reward: combined reward (outcome) or sum of step rewards (process)
    double reward_std = 0;  ///< TRL reward_std (over the batch)
    std::vector<std::string> reward_function_names; ///< outcome mode: the reward functions, in order
    std::vector<double> reward_function_means;      ///< TRL rewards/<name>/mean (NaN-aware), outcome mode
    std::vector<double> reward_function_stds;       ///< TRL rewards/<name>/std (NaN-aware, unbiased)
    double advantage_mean = 0, advantage_std = 0, advantage_min = 0, advantage_max = 0;
    double zero_variance_fraction = 0; ///< TRL frac_reward_zero_std
    index_t dropped_groups = 0;        ///< groups left out by drop_zero_variance_groups (refill this many)
    index_t masked_truncated = 0;      ///< completions masked by mask_truncated_completions
    double loss = 0, policy_loss = 0;  ///< means over the inner updates
    double kl_mean = 0;                ///< TRL kl: token mean of the KL estimate (mean over the inner updates)
    double kl_loss = 0;                ///< verl actor/kl_loss: the KL term aggregated like the loss, before beta
    double clip_fraction_low = 0, clip_fraction_high = 0, clip_fraction_region = 0; ///< TRL clip_ratio/*
    double dual_clip_fraction = 0;                                                  ///< verl actor/pg_clipfrac_lower
    double ratio_mean = 0;
    double approx_kl = 0;              ///< verl actor/ppo_kl: token mean of old_logp - logp
    double completion_length_mean = 0; ///< TRL completions/mean_length
    double completion_length_min = 0;  ///< TRL completions/min_length
    double completion_length_max = 0;  ///< TRL completions/max_length
    double truncated_fraction = 0;     ///< TRL completions/clipped_ratio
    double tokens = 0;                 ///< unmasked tokens in the loss
    int updates = 0;                   ///< inner updates run (0 when every token was masked)
    bool reference_refreshed = false;
};

/// The advantage figures of step_metrics (advantage mean, std, min, max; zero-variance fraction) from an advantage
/// call's statistics. (The reward mean and std are the host's: the trainer takes them over scored completions.)
inline void set_advantage_metrics(step_metrics& m, const advantage_stats& st) noexcept {
    m.advantage_mean = st.advantage_mean;
    m.advantage_std = st.advantage_std;
    m.advantage_min = st.advantage_min;
    m.advantage_max = st.advantage_max;
    m.zero_variance_fraction = st.zero_variance_fraction;
}

/// The completion figures of step_metrics from a rollout: length mean, min and max (generated tokens) and the
/// truncated fraction (TRL completions/*, verl response_length/*). An empty rollout gives zeros.
template <class T>
void set_length_metrics(step_metrics& m, const rollout_batch<T>& b) {
    const index_t n = b.rows();
    double sum = 0, lo = 0, hi = 0, truncated = 0;
    for (index_t i = 0; i < n; ++i) {
        const auto len = static_cast<double>(b.lengths[i]);
        sum += len;
        lo = i == 0 || len < lo ? len : lo;
        hi = i == 0 || len > hi ? len : hi;
        truncated += b.is_truncated(i) ? 1 : 0;
    }
    m.completion_length_mean = n > 0 ? sum / static_cast<double>(n) : 0.0;
    m.completion_length_min = lo;
    m.completion_length_max = hi;
    m.truncated_fraction = n > 0 ? truncated / static_cast<double>(n) : 0.0;
}

/// Adds one inner update's loss statistics to step_metrics and counts the update; after the last update,
/// finish_loss_metrics turns the sums into the means over the updates (what the trainer reports).
inline void add_loss_metrics(step_metrics& m, const loss_stats& ls) noexcept {
    m.loss += ls.loss;
    m.policy_loss += ls.policy_loss;
    m.kl_mean += ls.kl_mean;
    m.kl_loss += ls.kl_loss;
    m.clip_fraction_low += ls.clip_fraction_low;
    m.clip_fraction_high += ls.clip_fraction_high;
    m.clip_fraction_region += ls.clip_fraction_region;
    m.dual_clip_fraction += ls.dual_clip_fraction;
    m.ratio_mean += ls.ratio_mean;
    m.approx_kl += ls.approx_kl;
    m.updates += 1;
}
inline void finish_loss_metrics(step_metrics& m) noexcept {
    if (m.updates <= 0) return;
    const double u = m.updates;
    for (double* f : {&m.loss, &m.policy_loss, &m.kl_mean, &m.kl_loss, &m.clip_fraction_low, &m.clip_fraction_high,
                      &m.clip_fraction_region, &m.dual_clip_fraction, &m.ratio_mean, &m.approx_kl})
        *f /= u;
}

/// Whose metric names add_step_metrics uses. A metric that only one of the two logs keeps that peer's name under
/// both; one that neither logs has grpo's name under both (docs/metrics.md has the table).
enum class metric_names {
    trl,  ///< TRL GRPOTrainer's keys: reward, reward_std, kl, clip_ratio/region_mean, completions/mean_length, ...
    verl, ///< verl's keys: critic/score/mean, actor/pg_loss, actor/pg_clipfrac, response_length/mean, ...
};

namespace detail {

/// Throws grpo::error (errc::invalid_value) unless `name` can name a metric in every sink: 1 to 1024 bytes of
/// valid UTF-8 (TensorBoard's tags are protobuf strings), no control characters (CSV rows are lines), and not
/// "step" or "wall_time" (the JSONL and CSV columns of the record itself).
inline void check_metric_name(const char* where, const std::string& name) {
    const auto bad = [&](const std::string& why) {
        raise_argument(errc::invalid_value, where, "name",
                       "a metric name (1 to 1024 bytes of UTF-8, no control characters, not step or wall_time)", why);
    };
    if (name.empty()) bad("an empty name");
    if (name.size() > 1024) bad("a name of " + std::to_string(name.size()) + " bytes");
    if (name == "step" || name == "wall_time") bad("'" + name + "' (a reserved column)");
    const auto* s = reinterpret_cast<const unsigned char*>(name.data());
    const std::size_t n = name.size();
    for (std::size_t i = 0; i < n;) {
        const unsigned c = s[i];
        if (c < 0x20 || c == 0x7f) bad("a control character at byte " + std::to_string(i));
        std::size_t len = 1;
        std::uint32_t cp = c;
        if (c >= 0x80) {
            // The shortest-form, non-surrogate UTF-8 sequences (RFC 3629), as protobuf's UTF-8 check accepts.
            if (c >= 0xc2 && c <= 0xdf) len = 2, cp = c & 0x1f;
            else if (c >= 0xe0 && c <= 0xef) len = 3, cp = c & 0x0f;
            else if (c >= 0xf0 && c <= 0xf4) len = 4, cp = c & 0x07;
            else bad("invalid UTF-8 at byte " + std::to_string(i));
            if (n - i < len) bad("truncated UTF-8 at byte " + std::to_string(i));
            for (std::size_t k = 1; k < len; ++k) {
                if ((s[i + k] & 0xc0) != 0x80) bad("invalid UTF-8 at byte " + std::to_string(i + k));
                cp = (cp << 6) | (s[i + k] & 0x3f);
            }
            if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
                (cp >= 0xd800 && cp <= 0xdfff))
                bad("invalid UTF-8 at byte " + std::to_string(i));
        }
        i += len;
    }
}

} // namespace detail

/// One step's scalars, in the order their names were first set.
struct metric_record {
    index_t step = 0;
    double wall_time = 0; ///< seconds since the Unix epoch
    std::vector<std::pair<std::string, double>> values;

    /// values[name] = value: a name set twice keeps its first position and its last value. Throws grpo::error
    /// (errc::invalid_value, record untouched) on a name detail::check_metric_name rejects.
    void set(const std::string& name, double value) {
        detail::check_metric_name("metric_record::set", name);
        for (auto& nv : values)
            if (nv.first == name) {
                nv.second = value;
                return;
            }
        values.emplace_back(name, value);
    }
    /// The value of `name`, or nullptr.
    const double* find(const std::string& name) const noexcept {
        for (const auto& nv : values)
            if (nv.first == name) return &nv.second;
        return nullptr;
    }
};

/// Sets the metrics of one trainer step in `record` under TRL's or verl's names (docs/metrics.md, "Names"):
/// reward (critic/score/mean), reward_std, rewards/<function>/mean and /std, frac_reward_zero_std, advantages,
/// loss, policy_loss (actor/pg_loss), kl (actor/kl_loss), clip fractions (clip_ratio/* or actor/pg_clipfrac*),
/// ratio and approx_kl (actor/ppo_kl), completion lengths (completions/* or response_length/*) and the step's
/// counts. A reward-function name that makes an invalid metric name throws grpo::error (record untouched).
inline void add_step_metrics(metric_record& record, const step_metrics& m, metric_names names = metric_names::trl) {
    const bool trl = names == metric_names::trl;
    metric_record r = record; // all or nothing
    const auto put = [&](const char* trl_name, const char* verl_name, double v) {
        r.set(trl ? trl_name : verl_name, v);
    };
    put("reward", "critic/score/mean", m.reward_mean);
    put("reward_std", "critic/score/std", m.reward_std);
    for (std::size_t k = 0; k < m.reward_function_names.size(); ++k) {
        const std::string base = "rewards/" + m.reward_function_names[k];
        if (k < m.reward_function_means.size()) r.set(base + "/mean", m.reward_function_means[k]);
        if (k < m.reward_function_stds.size()) r.set(base + "/std", m.reward_function_stds[k]);
    }
    put("frac_reward_zero_std", "frac_reward_zero_std", m.zero_variance_fraction);
    put("advantages/mean", "critic/advantages/mean", m.advantage_mean);
    put("advantages/std", "critic/advantages/std", m.advantage_std);
    put("advantages/min", "critic/advantages/min", m.advantage_min);
    put("advantages/max", "critic/advantages/max", m.advantage_max);
    put("loss", "actor/loss", m.loss);
    put("policy_loss", "actor/pg_loss", m.policy_loss);
    put("kl", "actor/kl_loss", trl ? m.kl_mean : m.kl_loss);
    put("clip_ratio/low_mean", "actor/pg_clipfrac_low", m.clip_fraction_low);
    put("clip_ratio/high_mean", "actor/pg_clipfrac_high", m.clip_fraction_high);
    put("clip_ratio/region_mean", "actor/pg_clipfrac", m.clip_fraction_region);
    put("clip_ratio/dual_mean", "actor/pg_clipfrac_lower", m.dual_clip_fraction);
    put("ratio/mean", "actor/ratio_mean", m.ratio_mean);
    put("approx_kl", "actor/ppo_kl", m.approx_kl);
    put("completions/mean_length", "response_length/mean", m.completion_length_mean);
    put("completions/min_length", "response_length/min", m.completion_length_min);
    put("completions/max_length", "response_length/max", m.completion_length_max);
    put("completions/clipped_ratio", "response_length/clip_ratio", m.truncated_fraction);
    put("num_loss_tokens", "num_loss_tokens", m.tokens);
    put("dropped_groups", "dropped_groups", static_cast<double>(m.dropped_groups));
    put("masked_truncated_completions", "masked_truncated_completions", static_cast<double>(m.masked_truncated));
    put("updates", "updates", m.updates);
    put("reference_refreshed", "reference_refreshed", m.reference_refreshed ? 1.0 : 0.0);
    record = std::move(r);
}

/// Where a metrics_logger writes each step (rl/metric_sinks.hpp: jsonl_sink, csv_sink, tensorboard_sink). A
/// sink may be handed records from several threads one at a time (the logger serializes its calls).
class metrics_sink {
public:
    virtual ~metrics_sink() = default;
    /// Writes one step's record and flushes it to the operating system, so that a crash of the process loses
    /// nothing written. Throws grpo::error (errc::io) when the write fails.
    virtual void write(const metric_record& record) = 0;
};

/// Gathers each step's scalars and writes a step's record to every sink once a later step begins, at flush(),
/// or at destruction: the trainer and the host may both add values to a step (the trainer its step_metrics,
/// the host a held-out evaluation), and a crash loses at most the step in progress. Safe to call from several
/// threads; steps must not go back.
class metrics_logger {
public:
    explicit metrics_logger(metric_names names = metric_names::trl) : names_(names) {}
    metrics_logger(const metrics_logger&) = delete;
    metrics_logger& operator=(const metrics_logger&) = delete;
    /// Writes the pending step; a sink's error is dropped here (call flush() first to see it).
    ~metrics_logger() {
#if GRPO_HAS_EXCEPTIONS
        try {
            flush();
        } catch (...) { // NOLINT(bugprone-empty-catch): a destructor must not throw
        }
#else
        flush();
#endif
    }

    /// Adds a sink; returns it. Throws grpo::error (errc::invalid_value) on a null sink.
    metrics_sink& add_sink(std::unique_ptr<metrics_sink> sink) {
        if (!sink) detail::raise_argument(errc::invalid_value, "metrics_logger::add_sink", "sink", "a sink", "nullptr");
        const std::lock_guard<std::mutex> lock(m_);
        sinks_.push_back(std::move(sink));
        return *sinks_.back();
    }
    metric_names names() const noexcept { return names_; }

    /// Sets `name` to `value` at `step`. A step after the pending one writes the pending one first (a sink's
    /// error then propagates after every sink was tried; the new value is kept). Throws grpo::error
    /// (errc::invalid_value, nothing logged) on a negative step, a step before the pending or last written one,
    /// or an invalid name (detail::check_metric_name).
    void log(index_t step, const std::string& name, double value) {
        detail::check_metric_name("metrics_logger::log", name);
        const std::lock_guard<std::mutex> lock(m_);
        check_step_locked(step);
        metric_record done;
        const bool write = begin_step_locked(step, &done);
        pending_.set(name, value);
        if (write) write_locked(done);
    }
    /// The metrics of one trainer step under names() (add_step_metrics), at m.step.
    void log(const step_metrics& m) {
        metric_record r;
        add_step_metrics(r, m, names_); // the names are checked before anything changes
        const std::lock_guard<std::mutex> lock(m_);
        check_step_locked(m.step);
        metric_record done;
        const bool write = begin_step_locked(m.step, &done);
        for (auto& nv : r.values) pending_.set(nv.first, nv.second);
        if (write) write_locked(done);
    }
    /// Writes the pending step (if any) to every sink now. A sink's error propagates after every sink was tried.
    void flush() {
        const std::lock_guard<std::mutex> lock(m_);
        if (!has_pending_) return;
        metric_record done = std::move(pending_);
        pending_ = metric_record{};
        has_pending_ = false;
        write_locked(done);
    }

private:
    static double now() {
        return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
    }
    void check_step_locked(index_t step) const {
        const index_t floor = has_pending_ ? pending_.step : last_written_;
        if (step < 0 || step < floor)
            detail::raise_argument(
                errc::invalid_value, "metrics_logger::log", "step",
                "a step >= " + detail::to_str(floor < 0 ? 0 : floor) + " (steps are logged in order)",
                detail::to_str(step));
    }
    /// Opens `step` as the pending record; the one it replaces goes to *done (returns whether there was one).
    bool begin_step_locked(index_t step, metric_record* done) {
        if (has_pending_ && pending_.step == step) return false;
        const bool had = has_pending_;
        if (had) *done = std::move(pending_);
        pending_ = metric_record{};
        pending_.step = step;
        pending_.wall_time = now();
        has_pending_ = true;
        return had;
    }
    void write_locked(const metric_record& r) {
        last_written_ = r.step;
#if GRPO_HAS_EXCEPTIONS
        std::exception_ptr first;
        for (auto& s : sinks_) {
            try {
                s->write(r);
            } catch (...) {
                if (!first) first = std::current_exception();
            }
        }
        if (first) std::rethrow_exception(first);
#else
        for (auto& s : sinks_) s->write(r);
#endif
    }

    std::mutex m_;
    metric_names names_;
    std::vector<std::unique_ptr<metrics_sink>> sinks_;
    metric_record pending_;
    bool has_pending_ = false;
    index_t last_written_ = -1;
};

GRPO_NAMESPACE_END
