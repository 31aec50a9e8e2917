// SPDX-License-Identifier: MIT
// What a loss pass reports, shared by every backend: the partial sums a row (or a block of rows) contributes,
// the one finalize step that turns them into loss_stats, the record of a bad input value, and its message.
#pragma once

#include <cstdint>
#include <string>
#include <type_traits>

#include "loss_types.hpp"

GRPO_NAMESPACE_BEGIN

/// What validation::full found wrong with a loss call's values, in the order both backends check: lengths
/// first, then per row and token the mask, logp, old_logp, ref_logp, advantages, sampling_logp; then the token
/// count.
enum class loss_error : std::int64_t {
    none = 0,
    bad_length = 1, ///< lengths[row] outside [0, cols]
    bad_mask = 2,   ///< a mask value other than 0 or 1
    bad_logp = 3,   ///< non-finite values at unmasked tokens:
    bad_old_logp = 4,
    bad_ref_logp = 5,
    bad_advantages = 6,
    bad_global_count = 7,  ///< config.global_token_count below this call's unmasked tokens
    bad_sampling_logp = 8, ///< non-finite sampling_logp at an unmasked token (checked after advantages)
    bad_entropy = 9,       ///< non-finite entropy at an unmasked token (checked after sampling_logp)
};
/// Number of loss_error values.
constexpr int loss_error_count = 10;

/// The first bad value of a loss call (code none: the values were valid, or validation::shapes_only).
struct loss_value_error {
    loss_error code;
    std::int64_t row;    ///< bad_length and the bad values: the row; bad_global_count: this call's token count
    std::int64_t column; ///< the bad values: the column
    std::int64_t length; ///< bad_length: the length
    double value;        ///< the bad values: the value; bad_global_count: config.global_token_count
};

/// The result of a CUDA loss_and_grad call that does not wait for the stream: allocate sizeof(loss_record)
/// bytes of device memory, pass it, copy it back when the stream has reached it, and read it with
/// checked_stats(). With an error code nothing but `error` was written.
struct loss_record {
    loss_stats stats;
    loss_value_error error;
};
static_assert(std::is_trivially_copyable<loss_record>::value, "loss_record is copied as bytes");

namespace detail {

/// config.global_token_count below the tokens it normalizes (`tokens`: a double, as a data-parallel step's
/// total may exceed std::int64_t).
[[noreturn]] inline void raise_global_tokens_error(const char* where, double tokens, double global_tokens) {
    raise_argument(errc::invalid_value, where, "config.global_token_count",
                   "0 (local) or at least this call's unmasked tokens (" + num_str(tokens) + ")",
                   num_str(global_tokens));
}

/// Throws the grpo::error for a bad value, with the same message whichever backend found it.
/// `cols`: the call's logp.cols(), for the lengths message.
[[noreturn]] inline void raise_loss_value_error(const char* where, const loss_value_error& e, index_t cols) {
    const auto str = [](std::int64_t v) { return std::to_string(static_cast<long long>(v)); };
    switch (e.code) {
    case loss_error::bad_length:
        raise_argument(errc::invalid_value, where, "lengths", "values in [0, " + to_str(cols) + "]",
                       str(e.length) + " at index " + str(e.row));
    case loss_error::bad_global_count: raise_global_tokens_error(where, static_cast<double>(e.row), e.value);
    case loss_error::bad_mask:
        raise_argument(errc::invalid_value, where, "mask", "values 0 or 1",
                       num_str(e.value) + " at (" + str(e.row) + ", " + str(e.column) + ")");
    default: {
        const char* name = e.code == loss_error::bad_old_logp        ? "old_logp"
                           : e.code == loss_error::bad_ref_logp      ? "ref_logp"
                           : e.code == loss_error::bad_advantages    ? "advantages"
                           : e.code == loss_error::bad_sampling_logp ? "sampling_logp"
                           : e.code == loss_error::bad_entropy       ? "entropy"
                                                                     : "logp";
        raise_argument(errc::non_finite, where, name, "finite values at unmasked tokens",
                       num_str(e.value) + " at (" + str(e.row) + ", " + str(e.column) + ")");
    }
    }
}

/// Host-side lengths (the CPU backends): every lengths[i] must lie in [0, cols].
template <class S>
void check_lengths_on_host(const char* where, const vector_view<const std::int64_t, S>& lengths, index_t rows,
                           index_t cols) {
    if (!lengths.present()) return;
    for (index_t i = 0; i < rows; ++i)
        if (lengths[i] < 0 || lengths[i] > cols)
            raise_loss_value_error(where, {loss_error::bad_length, static_cast<std::int64_t>(i), 0, lengths[i], 0},
                                   cols);
}

/// A host-set config.global_token_count covers the tokens it normalizes: at least `tokens` (the call's, or the
/// data-parallel step's), checked when they are counted (loss_params::checks_global_tokens).
inline void check_global_tokens(const char* where, double global_tokens, double tokens) {
    if (global_tokens > 0 && global_tokens < tokens) raise_global_tokens_error(where, tokens, global_tokens);
}

} // namespace detail

/// The statistics of a loss record; throws the backend's grpo::error when it carries an error.
/// `where`: the entry point's name for the message; `cols`: the call's logp.cols().
inline loss_stats checked_stats(const loss_record& r, index_t cols, const char* where = "loss_and_grad(cuda)") {
    if (r.error.code != loss_error::none) detail::raise_loss_value_error(where, r.error, cols);
    return r.stats;
}

namespace detail {

// The fields of loss_partials and how each is combined: X(name, fold).
// clang-format off
#define GRPO_LOSS_PARTIAL_FIELDS(X)                                                                             \
    X(policy, sum) X(kl, sum) X(kl_sum, sum) X(tokens, sum) X(clip_low, sum) X(clip_high, sum) X(dual, sum)     \
    X(ratio_sum, sum) X(ratio_min, min) X(ratio_max, max) X(neg_log_ratio, sum) X(sampling_weight, sum)         \
    X(off_policy_masked, sum) X(entropy, sum) X(entropy_sum, sum) X(entropy_masked, sum) X(selected, sum)
// clang-format on

/// How a partial is combined with another.
enum class fold { sum, min, max };

/// The partial sums of a loss pass over some tokens, in double: both backends fill one per row, combine them
/// in a fixed order and call finalize(). Plain data (it lives in workspace memory).
struct loss_partials {
    double policy;                    ///< sum of the policy losses; times the row weight after weigh()
    double kl;                        ///< the weighted KL sum (set by weigh())
    double kl_sum;                    ///< sum of the KL estimates (for kl_mean)
    double tokens;                    ///< unmasked tokens
    double clip_low, clip_high, dual; ///< sums of the clip flags
    double ratio_sum, ratio_min, ratio_max;
    double neg_log_ratio;     ///< sum of -(clamped log-ratio)
    double sampling_weight;   ///< sum of the correction weights
    double off_policy_masked; ///< tokens the off-policy mask removed
    double entropy;           ///< the weighted entropy sum (set by weigh())
    double entropy_sum;       ///< sum of the entropies
    double entropy_masked;    ///< tokens the top-entropy mask removed
    double selected;          ///< tokens the covariance selection chose (clip_cov, kl_cov)

    /// Calls f(field, fold) for every field in declaration order (same order on every thread).
    template <class F>
    GRPO_HOST_DEVICE void for_each_field(F&& f) {
#define GRPO_LOSS_PARTIAL_VISIT(name, how) f(name, fold::how);
        GRPO_LOSS_PARTIAL_FIELDS(GRPO_LOSS_PARTIAL_VISIT)
#undef GRPO_LOSS_PARTIAL_VISIT
    }

    /// The partials of no token.
    GRPO_HOST_DEVICE static loss_partials identity() {
        const double inf = math::infinity<double>();
        return {0, 0, 0, 0, 0, 0, 0, 0, inf, -inf, 0, 0, 0, 0, 0, 0, 0};
    }

    /// Adds one unmasked token's results.
    template <class C>
    GRPO_HOST_DEVICE void add(const math::token_result<C>& t) {
        const double r = static_cast<double>(t.ratio);
        policy += static_cast<double>(t.policy_loss);
        kl_sum += static_cast<double>(t.kl);
        tokens += 1;
        clip_low += static_cast<double>(t.clipped_low);
        clip_high += static_cast<double>(t.clipped_high);
        dual += static_cast<double>(t.dual_clipped);
        ratio_sum += r;
        ratio_min = r < ratio_min ? r : ratio_min;
        ratio_max = r > ratio_max ? r : ratio_max;
        neg_log_ratio += static_cast<double>(t.neg_log_ratio);
        sampling_weight += static_cast<double>(t.sampling_weight);
        off_policy_masked += static_cast<double>(t.off_policy_masked);
        entropy_sum += static_cast<double>(t.entropy);
        entropy_masked += static_cast<double>(t.entropy_masked);
        selected += static_cast<double>(t.selected);
    }

    /// A finished row: its losses weighted once by the row weight, so the batch total is a plain ordered sum.
    /// A zero weight (an empty row, loss_scale 0) gives exactly 0, even for a sum that overflowed (math::chain).
    GRPO_HOST_DEVICE void weigh(double weight) {
        policy = math::chain(weight, policy);
        kl = math::chain(weight, kl_sum);
        entropy = math::chain(weight, entropy_sum);
    }

    /// this = this (+) o, field by field.
    GRPO_HOST_DEVICE void merge(const loss_partials& o) {
// NOLINTBEGIN(bugprone-macro-parentheses): `name` is a member name, `o.(name)` would not parse
#define GRPO_LOSS_PARTIAL_MERGE(name, how)                            \
    name = fold::how == fold::sum   ? name + o.name                   \
           : fold::how == fold::min ? (o.name < name ? o.name : name) \
                                    : (o.name > name ? o.name : name);
        // NOLINTEND(bugprone-macro-parentheses)
        GRPO_LOSS_PARTIAL_FIELDS(GRPO_LOSS_PARTIAL_MERGE)
#undef GRPO_LOSS_PARTIAL_MERGE
    }

    /// The loss and the diagnostics of the combined partials of every row of a call.
    GRPO_HOST_DEVICE loss_stats finalize(double beta, double entropy_coef) const {
        loss_stats st;
        st.policy_loss = policy;
        st.kl_loss = kl;
        st.entropy_loss = entropy;
        st.token_count = tokens;
        st.loss = policy + beta * kl - entropy_coef * entropy;
        if (tokens > 0) {
            st.clip_fraction_low = clip_low / tokens;
            st.clip_fraction_high = clip_high / tokens;
            st.clip_fraction_region = (clip_low + clip_high) / tokens;
            st.dual_clip_fraction = dual / tokens;
            st.ratio_mean = ratio_sum / tokens;
            st.ratio_min = ratio_min;
            st.ratio_max = ratio_max;
            st.approx_kl = neg_log_ratio / tokens;
            st.kl_mean = kl_sum / tokens;
            st.sampling_weight_mean = sampling_weight / tokens;
            st.off_policy_mask_fraction = off_policy_masked / tokens;
            st.entropy_mean = entropy_sum / tokens;
            st.entropy_mask_fraction = entropy_masked / tokens;
            st.cov_selection_fraction = selected / tokens;
        }
        return st;
    }
};
static_assert(std::is_trivial<loss_partials>::value, "loss_partials lives in raw workspace memory");

} // namespace detail
GRPO_NAMESPACE_END
