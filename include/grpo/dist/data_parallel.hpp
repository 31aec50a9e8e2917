// SPDX-License-Identifier: MIT
// Data-parallel entry points: each rank holds some rows of one batch (rows concatenated in rank order form the
// batch), and the results equal, bit for bit, what the one-process entry point gives on the whole batch.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <optional>
#include <vector>

#include "../api/advantages.hpp"
#include "../api/loss.hpp"
#include "communicator.hpp"

GRPO_NAMESPACE_BEGIN
namespace dist {
namespace detail {

using grpo::detail::check_outputs_disjoint;
using grpo::detail::check_shape;
using grpo::detail::check_size;
using grpo::detail::range_of;

/// A vector view's elements, contiguous (absent: empty).
template <class T, class U = std::remove_const_t<T>>
std::vector<U> elements_of(const char* where, const vector_view<T>& v) {
    std::vector<U> out = grpo::detail::make_scratch<U>(where, "a copy of the local rows", v.present() ? v.size() : 0);
    for (index_t i = 0; i < static_cast<index_t>(out.size()); ++i) out[static_cast<std::size_t>(i)] = v[i];
    return out;
}

/// A matrix view's elements, row-major (absent: empty).
template <class T, class U = std::remove_const_t<T>>
std::vector<U> elements_of(const char* where, const matrix_view<T>& m) {
    const index_t n =
        m.present() ? grpo::detail::checked_mul(where, "a copy of the local rows", m.rows(), m.cols()) : 0;
    std::vector<U> out = grpo::detail::make_scratch<U>(where, "a copy of the local rows", n);
    std::size_t k = 0;
    for (index_t i = 0; n > 0 && i < m.rows(); ++i)
        for (index_t t = 0; t < m.cols(); ++t) out[k++] = m(i, t);
    return out;
}

/// Every rank's header (the same count of int64 on every rank), in rank order; all[r * width + k].
template <class Comm>
std::vector<std::int64_t> gather_headers(const char* where, const Comm& comm, const std::vector<std::int64_t>& mine) {
    return all_gather_fixed(where, comm, mine.data(), mine.size());
}

/// The value of header field k that every rank holding rows agrees on (field 0 is each rank's rows; a rank
/// without rows may pass absent views, so its flags do not count). grpo::error on every rank when two ranks with
/// rows differ. Without rows anywhere: rank 0's value.
inline std::int64_t agreed(const char* where, const std::vector<std::int64_t>& all, std::size_t width, std::size_t k,
                           const char* what) {
    std::size_t first = 0;
    bool found = false;
    for (std::size_t r = 0; r * width < all.size(); ++r) {
        if (all[r * width] == 0) continue;
        if (!found) {
            first = r;
            found = true;
        } else if (all[r * width + k] != all[first * width + k]) {
            detail::raise_argument(errc::invalid_value, where, what,
                                   "the same on every rank with rows (rank " + detail::to_str(first) + ": " +
                                       detail::to_str(all[first * width + k]) + ")",
                                   detail::to_str(all[r * width + k]) + " on rank " + detail::to_str(r));
        }
    }
    return all[first * width + k];
}

/// v.data(), or a valid pointer when v is empty: a view of a gathered input stays present when the whole batch is
/// empty (an empty batch whose optional inputs were given is not one whose inputs were left out: opo's
/// token_weights, for one).
template <class U>
const U* present_data(const std::vector<U>& v) {
    static const U none{};
    return v.empty() ? &none : v.data();
}
/// The same for a gathered output (an empty view: nothing is ever written through the stand-in).
template <class U>
U* present_data(std::vector<U>& v) {
    static U none{};
    return v.empty() ? &none : v.data();
}

/// The value of header field k, which every rank must share, rows or not (the element type's size: a rank
/// without rows still sends that type's bytes in the gathers).
inline std::int64_t agreed_by_all(const char* where, const std::vector<std::int64_t>& all, std::size_t width,
                                  std::size_t k, const char* what) {
    for (std::size_t r = 1; r * width < all.size(); ++r)
        if (all[r * width + k] != all[k])
            detail::raise_argument(errc::invalid_value, where, what,
                                   "the same on every rank (rank 0: " + detail::to_str(all[k]) + ")",
                                   detail::to_str(all[r * width + k]) + " on rank " + detail::to_str(r));
    return all[k];
}

/// This rank's first row and the rows of every rank, from field k (this rank's rows) of the headers.
inline row_span span_of(const char* where, const std::vector<std::int64_t>& all, std::size_t width, std::size_t k,
                        int rank) {
    row_span s;
    for (std::size_t r = 0; r * width < all.size(); ++r) {
        if (static_cast<int>(r) == rank) s.offset = s.total;
        s.total = grpo::detail::checked_add(where, "rows", s.total, all[r * width + k]);
    }
    return s;
}

/// The presence flag and size of an optional vector (-1 = absent).
template <class V>
std::int64_t size_or_absent(const V& v) {
    return v.present() ? static_cast<std::int64_t>(v.size()) : -1;
}

} // namespace detail

/// Group-relative advantages of a batch whose rows are spread over the ranks of `comm` (rank r holds rows
/// [offset_r, offset_r + n_r) of the batch, in rank order), equal bit for bit on every rank to
/// grpo::compute_advantages on the whole batch: groups may straddle ranks, and the batch-level statistics
/// (group_centered_batch_std's std, group_centered_batch_whitened's whitening, gpg's scale, the returned
/// advantage_stats) are those of the whole batch. TRL gathers every process's rewards, normalizes and keeps its
/// slice (GRPOTrainer._generate_and_score_completions); verl computes on the whole batch in its driver.
///
/// @param[in]  comm        the ranks (a communicator: dist::self_communicator, mpi_communicator, ...)
/// @param[in]  rewards     this rank's rewards
/// @param[in]  g           the whole batch's layout: groups::contiguous(G) over the concatenated rows (the same G
///                         on every rank; G need not divide this rank's rows), or groups::by_id(this rank's ids,
///                         num_groups) with global ids and the same num_groups on every rank
/// @param[out] advantages  this rank's advantages
/// @param[out] per_group   optional, every group of the batch (the same values on every rank)
/// @param[in]  token_weights this rank's weights (present on every rank that has rows, or on none)
/// A collective: every rank calls it. Cost: one gather of every rank's rewards (and ids, weights), then the
/// whole batch's advantages on every rank (O(batch) work, small next to sampling). A bad argument on any rank
/// throws grpo::error on every rank (prefixed "rank k: " where another rank's input was at fault), with every
/// rank's outputs untouched; index values in messages are whole-batch indices.
template <class Comm, class R, class T>
advantage_stats compute_advantages(const Comm& comm, const exec::host& ex, vector_view<R> rewards_in, const groups& g,
                                   vector_view<T> advantages, const advantage_config& cfg, workspace& ws,
                                   const group_outputs& per_group = {}, vector_view<const double> token_weights = {}) {
    static_assert(std::is_same<std::remove_const_t<R>, T>::value && std::is_floating_point<T>::value,
                  "grpo::dist::compute_advantages: rewards and advantages must have the same float/double type");
    const char* where = "dist::compute_advantages";
    detail::check_communicator(where, comm);
    const vector_view<const T> rewards = rewards_in;
    std::vector<std::int64_t> header;
    detail::collectively(where, comm, [&] {
        const index_t n = rewards.size();
        detail::check_size(where, "advantages", advantages, n);
        if (g.is_contiguous() && g.size() < 1)
            detail::raise_argument(errc::invalid_value, where, "groups", "a group size >= 1", detail::to_str(g.size()));
        if (!g.is_contiguous()) detail::check_size(where, "groups.ids", g.ids(), n);
        if (token_weights.present()) detail::check_size(where, "token_weights", token_weights, n);
        detail::check_outputs_disjoint(where,
                                       {{"advantages", detail::range_of(advantages)},
                                        {"group_outputs.mean", detail::range_of(per_group.mean)},
                                        {"group_outputs.std", detail::range_of(per_group.std)},
                                        {"group_outputs.zero_variance", detail::range_of(per_group.zero_variance)},
                                        {"group_outputs.count", detail::range_of(per_group.count)}},
                                       {{"rewards", detail::range_of(rewards)},
                                        {"groups.ids", detail::range_of(g.ids())},
                                        {"token_weights", detail::range_of(token_weights)}});
        header = {n,
                  g.is_contiguous() ? 0 : 1,
                  g.is_contiguous() ? g.size() : g.num_groups(n),
                  token_weights.present() ? 1 : 0,
                  static_cast<std::int64_t>(sizeof(T)),
                  detail::size_or_absent(per_group.mean),
                  detail::size_or_absent(per_group.std),
                  detail::size_or_absent(per_group.zero_variance),
                  detail::size_or_absent(per_group.count)};
    });
    constexpr std::size_t width = 9;
    const std::vector<std::int64_t> all = detail::gather_headers(where, comm, header);
    const bool by_id = detail::agreed(where, all, width, 1, "groups (contiguous or by id)") != 0;
    const index_t group_size = detail::agreed(where, all, width, 2, by_id ? "groups.num_groups" : "groups.size");
    const bool with_weights = detail::agreed(where, all, width, 3, "token_weights (present)") != 0;
    (void)detail::agreed_by_all(where, all, width, 4, "the element type's size");
    const row_span span = detail::span_of(where, all, width, 0, comm.rank());

    // This rank's rows, copied in one collective step: a copy that this rank alone cannot allocate throws on every
    // rank instead of leaving the others waiting in the gathers below.
    std::vector<T> r_local;
    std::vector<std::int64_t> ids_local;
    std::vector<double> w_local;
    detail::collectively(where, comm, [&] {
        r_local = detail::elements_of(where, rewards);
        if (by_id) ids_local = detail::elements_of(where, g.ids());
        if (with_weights) w_local = detail::elements_of(where, token_weights);
    });
    // The whole batch on every rank: the same data, so the same checks fail (or pass) everywhere.
    std::vector<index_t> counts;
    const std::vector<T> r_all = detail::all_gather_varying(where, comm, r_local.data(), rewards.size(), counts);
    std::vector<std::int64_t> ids_all;
    if (by_id) ids_all = detail::all_gather_varying(where, comm, ids_local.data(), rewards.size(), counts);
    std::vector<double> w_all;
    if (with_weights) w_all = detail::all_gather_varying(where, comm, w_local.data(), rewards.size(), counts);
    const groups whole =
        by_id ? groups::by_id(vector_view<const std::int64_t>(detail::present_data(ids_all), span.total), group_size)
              : groups::contiguous(group_size);
    const index_t k = whole.num_groups(span.total);
    // Every rank's per-group outputs must hold every group (checked on every rank, so every rank throws).
    const char* const group_names[] = {"group_outputs.mean", "group_outputs.std", "group_outputs.zero_variance",
                                       "group_outputs.count"};
    for (std::size_t r = 0; r * width < all.size(); ++r)
        for (std::size_t f = 0; f < 4; ++f)
            if (all[r * width + 5 + f] >= 0 && all[r * width + 5 + f] != k)
                detail::raise_argument(
                    errc::shape_mismatch, where, group_names[f], "size " + detail::to_str(k),
                    "size " + detail::to_str(all[r * width + 5 + f]) + " on rank " + detail::to_str(r));
    std::vector<T> adv_all = grpo::detail::make_scratch<T>(where, "the batch's advantages", span.total);
    const index_t kg = k;
    const auto scratch = [&](const auto& view) {
        using V = typename std::decay_t<decltype(view)>::value_type;
        return grpo::detail::make_scratch<V>(where, "the per-group outputs", view.present() ? kg : 0);
    };
    std::vector<double> mean = scratch(per_group.mean), sd = scratch(per_group.std);
    std::vector<std::uint8_t> zv = scratch(per_group.zero_variance);
    std::vector<std::int64_t> cnt = scratch(per_group.count);
    group_outputs go;
    if (per_group.mean.present()) go.mean = vector_view<double>(detail::present_data(mean), kg);
    if (per_group.std.present()) go.std = vector_view<double>(detail::present_data(sd), kg);
    if (per_group.zero_variance.present()) go.zero_variance = vector_view<std::uint8_t>(detail::present_data(zv), kg);
    if (per_group.count.present()) go.count = vector_view<std::int64_t>(detail::present_data(cnt), kg);
    const advantage_stats stats =
        grpo::compute_advantages(ex, vector_view<const T>(detail::present_data(r_all), span.total), whole,
                                 vector_view<T>(detail::present_data(adv_all), span.total), cfg, ws, go,
                                 with_weights ? vector_view<const double>(detail::present_data(w_all), span.total)
                                              : vector_view<const double>{});

    for (index_t i = 0; i < rewards.size(); ++i) advantages[i] = adv_all[static_cast<std::size_t>(span.offset + i)];
    for (index_t j = 0; j < kg; ++j) {
        const auto u = static_cast<std::size_t>(j);
        if (go.mean.present()) per_group.mean[j] = mean[u];
        if (go.std.present()) per_group.std[j] = sd[u];
        if (go.zero_variance.present()) per_group.zero_variance[j] = zv[u];
        if (go.count.present()) per_group.count[j] = cnt[u];
    }
    return stats;
}

/// Convenience overload with a temporary workspace.
template <class Comm, class R, class T>
advantage_stats compute_advantages(const Comm& comm, const exec::host& ex, vector_view<R> rewards, const groups& g,
                                   vector_view<T> advantages, const advantage_config& cfg = {},
                                   const group_outputs& per_group = {}, vector_view<const double> token_weights = {}) {
    workspace ws;
    return compute_advantages(comm, ex, rewards, g, advantages, cfg, ws, per_group, token_weights);
}

/// Token-level advantages (grpo::token_advantages) of a batch whose rows are spread over the ranks, equal bit
/// for bit on every rank to the one-process call on the whole batch: REINFORCE++ whitens over every rank's
/// tokens, and the optimal token baseline's prompt groups may straddle ranks (in.prompts describes the whole
/// batch as in dist::compute_advantages). Every rank passes the same number of token columns and the same
/// optional inputs. verl computes these in its driver on the whole batch.
/// A collective. Cost: one gather of every rank's token inputs (rewards, mask and the baseline's inputs, so
/// O(batch tokens) bytes per rank) and the whole batch's pass on every rank. Errors as in
/// dist::compute_advantages.
template <class Comm, class T>
token_advantage_stats token_advantages(const Comm& comm, const exec::host& ex, const token_advantage_inputs<T>& in,
                                       const token_advantage_outputs<T>& out, const token_advantage_config& cfg,
                                       workspace& ws) {
    static_assert(std::is_floating_point<T>::value,
                  "grpo::dist::token_advantages: element type must be float or double");
    const char* where = "dist::token_advantages";
    detail::check_communicator(where, comm);
    std::vector<std::int64_t> header;
    const auto flag = [](bool present) { return std::int64_t(present ? 1 : 0); };
    // A rank without rows may pass absent views; its flags do not count (detail::agreed).
    const index_t rows = in.rewards.present() ? in.rewards.rows() : 0;
    detail::collectively(where, comm, [&] {
        const index_t cols = in.rewards.cols();
        if (rows == 0) { // a rank without rows takes part in the collectives only: no other view may have rows
            const std::pair<const char*, index_t> others[] = {
                {"mask", in.mask.rows()},
                {"baselines", in.baselines.size()},
                {"prompts.ids", in.prompts.is_contiguous() ? 0 : in.prompts.ids().size()},
                {"old_logp", in.old_logp.rows()},
                {"sum_pi_squared", in.sum_pi_squared.rows()},
                {"is_weights", in.is_weights.rows()},
                {"advantages", out.advantages.rows()},
                {"returns", out.returns.rows()}};
            for (const auto& o : others)
                if (o.second > 0)
                    detail::raise_argument(errc::shape_mismatch, where, "rewards",
                                           std::string("rows matching ") + o.first + "'s " + detail::to_str(o.second),
                                           in.rewards.present() ? "a view without rows" : "an absent view");
        }
        if (rows > 0) {
            if (!in.mask.present())
                detail::raise_argument(errc::invalid_value, where, "mask", "a [rows, tokens] mask", "an absent view");
            detail::check_shape(where, "mask", in.mask, rows, cols);
            if (!out.advantages.present())
                detail::raise_argument(errc::invalid_value, where, "advantages", "a [rows, tokens] output",
                                       "an absent view");
            detail::check_shape(where, "advantages", out.advantages, rows, cols);
            if (out.returns.present()) detail::check_shape(where, "returns", out.returns, rows, cols);
            if (in.baselines.present()) detail::check_size(where, "baselines", in.baselines, rows);
            if (!in.prompts.is_contiguous()) detail::check_size(where, "prompts.ids", in.prompts.ids(), rows);
            if (in.old_logp.present()) detail::check_shape(where, "old_logp", in.old_logp, rows, cols);
            if (in.sum_pi_squared.present())
                detail::check_shape(where, "sum_pi_squared", in.sum_pi_squared, rows, cols);
            if (in.is_weights.present()) detail::check_shape(where, "is_weights", in.is_weights, rows, cols);
            detail::check_outputs_disjoint(
                where, {{"advantages", detail::range_of(out.advantages)}, {"returns", detail::range_of(out.returns)}},
                {{"rewards", detail::range_of(in.rewards)},
                 {"mask", detail::range_of(in.mask)},
                 {"baselines", detail::range_of(in.baselines)},
                 {"prompts.ids", detail::range_of(in.prompts.ids())},
                 {"old_logp", detail::range_of(in.old_logp)},
                 {"sum_pi_squared", detail::range_of(in.sum_pi_squared)},
                 {"is_weights", detail::range_of(in.is_weights)}});
        }
        header = {rows,
                  cols,
                  flag(!in.prompts.is_contiguous()),
                  in.prompts.is_contiguous() ? in.prompts.size() : in.prompts.num_groups(rows),
                  flag(in.baselines.present()),
                  flag(in.old_logp.present()),
                  flag(in.sum_pi_squared.present()),
                  flag(in.is_weights.present()),
                  static_cast<std::int64_t>(sizeof(T))};
    });
    constexpr std::size_t width = 9;
    const std::vector<std::int64_t> all = detail::gather_headers(where, comm, header);
    const index_t cols = detail::agreed(where, all, width, 1, "tokens (columns)");
    const bool prompts_by_id = detail::agreed(where, all, width, 2, "prompts (contiguous or by id)") != 0;
    const index_t prompts_size =
        detail::agreed(where, all, width, 3, prompts_by_id ? "prompts.num_groups" : "prompts.size");
    const bool with_baselines = detail::agreed(where, all, width, 4, "baselines (present)") != 0;
    const bool with_old = detail::agreed(where, all, width, 5, "old_logp (present)") != 0;
    const bool with_spi = detail::agreed(where, all, width, 6, "sum_pi_squared (present)") != 0;
    const bool with_isw = detail::agreed(where, all, width, 7, "is_weights (present)") != 0;
    (void)detail::agreed_by_all(where, all, width, 8, "the element type's size");
    const row_span span = detail::span_of(where, all, width, 0, comm.rank());
    const index_t total_cells = grpo::detail::checked_mul(where, "rows", span.total, cols);

    // This rank's rows of every gathered input, copied in one collective step: a copy that this rank alone cannot
    // allocate throws on every rank instead of leaving the others waiting in the gathers below.
    std::vector<T> l_rewards, l_mask, l_old, l_spi, l_isw, l_baselines;
    std::vector<std::int64_t> l_ids;
    detail::collectively(where, comm, [&] {
        if (rows == 0) return;
        l_rewards = detail::elements_of(where, in.rewards);
        l_mask = detail::elements_of(where, in.mask);
        if (with_old) l_old = detail::elements_of(where, in.old_logp);
        if (with_spi) l_spi = detail::elements_of(where, in.sum_pi_squared);
        if (with_isw) l_isw = detail::elements_of(where, in.is_weights);
        if (with_baselines) l_baselines = detail::elements_of(where, in.baselines);
        if (prompts_by_id) l_ids = detail::elements_of(where, in.prompts.ids());
    });
    std::vector<index_t> counts;
    const auto gather = [&](bool wanted, const auto& local) {
        using U = typename std::decay_t<decltype(local)>::value_type;
        if (!wanted) return std::vector<U>{};
        return detail::all_gather_varying(where, comm, local.data(), static_cast<index_t>(local.size()), counts);
    };
    const std::vector<T> rewards = gather(true, l_rewards), mask = gather(true, l_mask);
    const std::vector<T> old_logp = gather(with_old, l_old);
    const std::vector<T> spi = gather(with_spi, l_spi);
    const std::vector<T> isw = gather(with_isw, l_isw);
    const std::vector<T> baselines = gather(with_baselines, l_baselines);
    const std::vector<std::int64_t> ids = gather(prompts_by_id, l_ids);

    const auto whole_view = [&](const std::vector<T>& v) {
        return matrix_view<const T>(detail::present_data(v), span.total, cols);
    };
    token_advantage_inputs<T> whole;
    whole.rewards = whole_view(rewards);
    whole.mask = whole_view(mask);
    if (with_old) whole.old_logp = whole_view(old_logp);
    if (with_spi) whole.sum_pi_squared = whole_view(spi);
    if (with_isw) whole.is_weights = whole_view(isw);
    if (with_baselines) whole.baselines = vector_view<const T>(detail::present_data(baselines), span.total);
    whole.prompts =
        prompts_by_id
            ? groups::by_id(vector_view<const std::int64_t>(detail::present_data(ids), span.total), prompts_size)
            : groups::contiguous(prompts_size);
    std::vector<T> adv = grpo::detail::make_scratch<T>(where, "the batch's advantages", total_cells);
    std::vector<T> ret =
        grpo::detail::make_scratch<T>(where, "the batch's returns", out.returns.present() ? total_cells : 0);
    token_advantage_outputs<T> whole_out;
    whole_out.advantages = matrix_view<T>(detail::present_data(adv), span.total, cols);
    if (out.returns.present()) whole_out.returns = matrix_view<T>(detail::present_data(ret), span.total, cols);
    const token_advantage_stats stats = grpo::token_advantages(ex, whole, whole_out, cfg, ws);

    for (index_t i = 0; i < rows; ++i)
        for (index_t t = 0; t < cols; ++t) {
            const auto at = static_cast<std::size_t>((span.offset + i) * cols + t);
            out.advantages(i, t) = adv[at];
            if (out.returns.present()) out.returns(i, t) = ret[at];
        }
    return stats;
}

/// Convenience overload with a temporary workspace.
template <class Comm, class T>
token_advantage_stats token_advantages(const Comm& comm, const exec::host& ex, const token_advantage_inputs<T>& in,
                                       const token_advantage_outputs<T>& out, const token_advantage_config& cfg = {}) {
    workspace ws;
    return token_advantages(comm, ex, in, out, cfg, ws);
}

/// What one rank (or one micro-batch) contributes to the loss's normalizers.
struct batch_counts {
    double tokens = 0;             ///< unmasked tokens
    double sequences = 0;          ///< rows
    double nonempty_sequences = 0; ///< rows with at least one unmasked token
};

namespace detail {
/// The rows, unmasked tokens and rows with tokens of checked views.
template <class T>
batch_counts counts_of(const grpo::detail::cpu::loss_views<T>& v) {
    const index_t rows = v.logp.rows(), cols = v.logp.cols();
    batch_counts c;
    c.sequences = static_cast<double>(rows);
    for (index_t i = 0; i < rows && cols > 0; ++i) {
        const double n = grpo::detail::cpu::check_row(v, i, false, false, false, false).tokens;
        c.tokens += n;
        c.nonempty_sequences += n > 0 ? 1 : 0;
    }
    return c;
}
} // namespace detail

/// The counts of a loss call's inputs (host views): the token count loss_and_grad's token_mean uses, rows, and
/// rows with tokens. Reads the mask and lengths; throws grpo::error on shapes loss_and_grad would reject.
template <class T>
batch_counts count_tokens(const loss_inputs<T>& in) {
    const char* where = "dist::count_tokens";
    if (!in.logp.present())
        detail::raise_argument(errc::invalid_value, where, "logp", "a [rows, tokens] view", "an absent view");
    const index_t rows = in.logp.rows(), cols = in.logp.cols();
    if (in.mask.present()) detail::check_shape(where, "mask", in.mask, rows, cols);
    if (in.lengths.present()) detail::check_size(where, "lengths", in.lengths, rows);
    grpo::detail::check_lengths_on_host(where, in.lengths, rows, cols);
    return detail::counts_of(grpo::detail::cpu::views_of(in, loss_outputs<T>{}));
}

namespace detail {

/// Every rank's counts summed in rank order (the same on every rank), after checking that every rank passes the
/// same config.global_token_count and global_sequence_count. A collective.
template <class Comm>
batch_counts step_counts(const char* where, const Comm& comm, const loss_config& cfg, const batch_counts& local) {
    const double mine[5] = {local.tokens, local.sequences, local.nonempty_sequences, cfg.global_token_count,
                            cfg.global_sequence_count};
    const std::vector<double> all = all_gather_fixed(where, comm, mine, 5);
    batch_counts total;
    for (std::size_t r = 0; r * 5 < all.size(); ++r) {
        total.tokens += all[r * 5];
        total.sequences += all[r * 5 + 1];
        total.nonempty_sequences += all[r * 5 + 2];
        // (NaN, which the loss's config check rejects, counts as equal to NaN here)
        const auto same = [](double a, double b) { return a == b || (a != a && b != b); };
        if (!same(all[r * 5 + 3], all[3]) || !same(all[r * 5 + 4], all[4]))
            raise_argument(errc::invalid_value, where, "config.global_token_count/global_sequence_count",
                           "the same on every rank (rank 0: " + grpo::detail::num_str(all[3]) + "/" +
                               grpo::detail::num_str(all[4]) + ")",
                           grpo::detail::num_str(all[r * 5 + 3]) + "/" + grpo::detail::num_str(all[r * 5 + 4]) +
                               " on rank " + to_str(r));
    }
    return total;
}

/// `cfg` with the step's counts filled in where it leaves them to grpo (0).
inline loss_config with_counts(loss_config cfg, const batch_counts& total) {
    if (cfg.global_token_count <= 0) cfg.global_token_count = total.tokens;
    if (cfg.global_sequence_count <= 0)
        cfg.global_sequence_count = cfg.count_empty_sequences ? total.sequences : total.nonempty_sequences;
    return cfg;
}

} // namespace detail

/// `cfg` with the normalizers of the whole step: global_token_count = the tokens of every rank (unless cfg sets
/// it) and global_sequence_count = the rows of every rank (rows with tokens when count_empty_sequences is false;
/// unless cfg sets it), summed in rank order. For hosts that run grpo::loss_and_grad themselves (per
/// micro-batch: pass the sum of count_tokens over the rank's micro-batches). TRL: num_items_in_batch (the
/// tokens gathered over processes and gradient accumulation steps); verl: batch_num_tokens, global_batch_size.
/// A collective.
template <class Comm>
loss_config with_global_counts(const Comm& comm, const loss_config& cfg, const batch_counts& local) {
    const char* where = "dist::with_global_counts";
    detail::check_communicator(where, comm);
    return detail::with_counts(cfg, detail::step_counts(where, comm, cfg, local));
}

/// Every rank's loss_stats combined for logging, for hosts that run grpo::loss_and_grad themselves (with the
/// normalizers of dist::with_global_counts, so each rank's losses are its share of the step's): the losses and
/// token counts summed, the token means (clip fractions, ratio_mean, kl_mean, approx_kl, the weight, mask and
/// entropy means) weighted by each rank's tokens, ratio_min / ratio_max the extremes over ranks with tokens. In
/// rank order: the same on every rank. (dist::loss_and_grad's own statistics are exact sums over the rows; these
/// combine rounded means, so they agree with them to rounding.) A collective.
template <class Comm>
loss_stats reduce_stats(const Comm& comm, const loss_stats& local) {
    const char* where = "dist::reduce_stats";
    detail::check_communicator(where, comm);
    const std::vector<loss_stats> all = detail::all_gather_fixed(where, comm, &local, 1);
    loss_stats r;
    double* const means[] = {&r.clip_fraction_low,
                             &r.clip_fraction_high,
                             &r.clip_fraction_region,
                             &r.dual_clip_fraction,
                             &r.ratio_mean,
                             &r.kl_mean,
                             &r.approx_kl,
                             &r.sampling_weight_mean,
                             &r.off_policy_mask_fraction,
                             &r.entropy_mean,
                             &r.entropy_mask_fraction,
                             &r.cov_selection_fraction};
    bool any = false;
    for (const loss_stats& s : all) {
        r.loss += s.loss;
        r.policy_loss += s.policy_loss;
        r.kl_loss += s.kl_loss;
        r.entropy_loss += s.entropy_loss;
        r.token_count += s.token_count;
        if (s.token_count <= 0) continue;
        const double* const theirs[] = {&s.clip_fraction_low,
                                        &s.clip_fraction_high,
                                        &s.clip_fraction_region,
                                        &s.dual_clip_fraction,
                                        &s.ratio_mean,
                                        &s.kl_mean,
                                        &s.approx_kl,
                                        &s.sampling_weight_mean,
                                        &s.off_policy_mask_fraction,
                                        &s.entropy_mean,
                                        &s.entropy_mask_fraction,
                                        &s.cov_selection_fraction};
        for (std::size_t k = 0; k < sizeof(means) / sizeof(means[0]); ++k) *means[k] += *theirs[k] * s.token_count;
        r.ratio_min = any ? std::min(r.ratio_min, s.ratio_min) : s.ratio_min;
        r.ratio_max = any ? std::max(r.ratio_max, s.ratio_max) : s.ratio_max;
        any = true;
    }
    if (r.token_count > 0)
        for (double* m : means) *m /= r.token_count;
    return r;
}

namespace detail {

/// A host-set global_token_count against the whole step's tokens, where the one-process call on the whole batch
/// checks it against its own (`call`: the parameters of the rank's call with the host's config; after the value
/// checks, as there). Every rank has the same totals, so every rank throws the same error.
inline void check_step_tokens(const char* where, const loss_config& cfg, const grpo::detail::loss_params& call,
                              const batch_counts& total) {
    if (call.checks_global_tokens(cfg.checks == validation::full))
        grpo::detail::check_global_tokens(where, cfg.global_token_count, total.tokens);
}

/// A rank whose logp is absent or has no rows takes part in the collectives only: none of its other views may
/// have rows (the one-process call would reject them against logp's shape).
template <class T, class S>
void check_idle_views(const char* where, const loss_inputs<T, S>& in, const loss_outputs<T, S>& out) {
    const std::pair<const char*, index_t> rows[] = {{"old_logp", in.old_logp.rows()},
                                                    {"ref_logp", in.ref_logp.rows()},
                                                    {"advantages", in.advantages.rows()},
                                                    {"mask", in.mask.rows()},
                                                    {"sampling_logp", in.sampling_logp.rows()},
                                                    {"entropy", in.entropy.rows()},
                                                    {"lengths", in.lengths.size()},
                                                    {"grad_logp", out.grad_logp.rows()},
                                                    {"per_token_loss", out.per_token_loss.rows()},
                                                    {"ratio", out.ratio.rows()},
                                                    {"grad_entropy", out.grad_entropy.rows()}};
    for (const auto& r : rows)
        if (r.second > 0)
            grpo::detail::raise_argument(errc::shape_mismatch, where, "logp",
                                         std::string("rows matching ") + r.first + "'s " + detail::to_str(r.second),
                                         in.logp.present() ? "a view without rows" : "an absent view");
}

/// The step's loss_stats: every rank's per-row partials in batch row order, combined as the one-process pass
/// combines its rows. A collective.
template <class Comm>
loss_stats step_stats(const char* where, const Comm& comm, const std::vector<grpo::detail::loss_partials>& partials,
                      const loss_config& cfg) {
    std::vector<index_t> counts;
    const std::vector<grpo::detail::loss_partials> every =
        all_gather_varying(where, comm, partials.data(), static_cast<index_t>(partials.size()), counts);
    grpo::detail::loss_partials total = grpo::detail::loss_partials::identity();
    for (const grpo::detail::loss_partials& row : every) total.merge(row);
    return total.finalize(cfg.beta, cfg.entropy_coef);
}

} // namespace detail

/// grpo::loss_and_grad on a batch whose rows are spread over the ranks: every rank's dLoss/dlogp (and the other
/// per-token outputs) equal, bit for bit, the one-process call on the whole batch, and the returned loss_stats
/// (the same on every rank) are the whole batch's: token_mean divides by every rank's tokens, the seq_mean_*
/// modes by every rank's rows, top_entropy_quantile takes the quantile of every rank's entropies (TRL gathers
/// them), and the loss and diagnostics combine every rank's per-row partial sums in batch row order.
/// config.global_token_count / global_sequence_count, when set, are used as given (the same on every rank;
/// e.g. a step over several micro-batches) and checked against the whole batch's tokens and rows where the
/// one-process call checks them against its own. clip_cov and kl_cov select tokens among each rank's own tokens,
/// as verl does per micro-batch, so their results depend on the split.
/// A collective. Cost: the local pass, plus one read of the mask (and entropies for the quantile) and gathers
/// of a few numbers per rank, of the entropies (top_entropy_quantile only) and of 17 doubles per row.
/// Errors: a bad argument or value on any rank throws grpo::error on every rank before any rank writes.
template <class Comm, class T>
loss_stats loss_and_grad(const Comm& comm, const exec::host& ex, const loss_inputs<T>& in, const loss_outputs<T>& out,
                         const loss_config& cfg, workspace& ws) {
    static_assert(std::is_floating_point<T>::value, "grpo::dist::loss_and_grad: element type must be float or double");
    const char* where = "dist::loss_and_grad";
    detail::check_communicator(where, comm);
    using grpo::detail::loss_partials;
    const grpo::detail::cpu::loss_views<T> v = grpo::detail::cpu::views_of(in, out);
    batch_counts local;
    std::vector<double> entropies;
    const bool quantile = cfg.top_entropy_quantile < 1 && cfg.entropy_threshold != cfg.entropy_threshold;
    // A rank without rows may pass absent views: it only takes part in the collectives.
    const bool idle = !in.logp.present() || in.logp.rows() == 0;
    // The one-process call's order of checks: configuration and shapes (global_sequence_count against the
    // rows), then values (validation::full), then global_token_count against the tokens.
    // Round one: local checks of the configuration and shapes, counts, and the entropies for the quantile.
    grpo::detail::loss_params call{};
    detail::collectively(where, comm, [&] {
        if (idle) { // the configuration is still checked (a batch without rows on any rank must reject it too),
            // and a rank whose logp has no rows must not pass other views that do
            call = grpo::detail::check_loss_call(where, loss_inputs<T>{}, loss_outputs<T>{}, cfg);
            detail::check_idle_views(where, in, out);
            return;
        }
        call = grpo::detail::check_loss_call(where, in, out, cfg);
        const index_t rows = in.logp.rows(), cols = in.logp.cols();
        grpo::detail::check_lengths_on_host(where, in.lengths, rows, cols);
        local = detail::counts_of(v);
        if (quantile && rows > 0 && cols > 0) {
            entropies = grpo::detail::make_scratch<double>(where, "entropies",
                                                           grpo::detail::checked_mul(where, "rows", rows, cols));
            entropies.resize(static_cast<std::size_t>(grpo::detail::cpu::unmasked_entropies(v, entropies.data())));
        }
    });
    const batch_counts total = detail::step_counts(where, comm, cfg, local);
    grpo::detail::check_global_sequences(where, cfg, total.sequences);
    const loss_config whole = detail::with_counts(cfg, total);
    double threshold = -std::numeric_limits<double>::infinity(); // (no token anywhere: no mask to apply)
    if (quantile) {
        std::vector<index_t> counts;
        std::vector<double> h =
            detail::all_gather_varying(where, comm, entropies.data(), static_cast<index_t>(entropies.size()), counts);
        if (!h.empty())
            threshold =
                grpo::detail::cpu::quantile_of(h.data(), static_cast<index_t>(h.size()), 1 - cfg.top_entropy_quantile);
    }

    // Round two: the values, then everything the pass needs (the workspace, its scratch, the per-row partials),
    // so that a failure on one rank (a bad value, the workspace in use, memory) throws on every rank before any
    // rank writes.
    std::vector<loss_partials> partials;
    grpo::detail::loss_params pass{};
    std::optional<workspace_lease> lease;
    detail::collectively(where, comm, [&] {
        if (idle) return;
        const index_t rows = in.logp.rows(), cols = in.logp.cols();
        const bool need_samp = call.token.correction.mode != sampling_correction::none;
        for (index_t i = 0; i < rows && cols > 0 && cfg.checks == validation::full; ++i) {
            const grpo::detail::cpu::row_check c =
                grpo::detail::cpu::check_row(v, i, true, call.with_kl(), need_samp, call.entropy_given);
            if (c.code != loss_error::none)
                grpo::detail::raise_loss_value_error(where, grpo::detail::cpu::bad_value_at(v, i, c), cols);
        }
        pass = grpo::detail::check_loss_call(where, in, out, whole);
        if (quantile) { // the step's quantile, not this rank's (even when it is NaN: NaN entropies, shapes_only)
            pass.entropy_threshold = threshold;
            pass.entropy_quantile_pending = false;
        }
        partials = grpo::detail::make_scratch(where, "rows", rows, loss_partials::identity());
        lease.emplace(ws, where);
        (void)ws.doubles(static_cast<std::size_t>(grpo::detail::cpu::pass_scratch_of(where, v, pass).total), where);
    });
    detail::check_step_tokens(where, cfg, call, total);
    // Round three: the pass. It has nothing left to fail on; a collective step still, so that an unforeseen
    // failure on one rank cannot leave the others waiting.
    detail::collectively(where, comm, [&] {
        if (idle) return;
        (void)grpo::detail::cpu::loss_and_grad(ex, v, pass, false, whole.global_token_count, ws, partials.data());
    });
    lease.reset();
    return detail::step_stats(where, comm, partials, cfg);
}

/// Convenience overload with a temporary workspace.
template <class Comm, class T>
loss_stats loss_and_grad(const Comm& comm, const exec::host& ex, const loss_inputs<T>& in, const loss_outputs<T>& out,
                         const loss_config& cfg) {
    workspace ws;
    return loss_and_grad(comm, ex, in, out, cfg, ws);
}

} // namespace dist
GRPO_NAMESPACE_END
