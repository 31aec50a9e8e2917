// SPDX-License-Identifier: MIT
// The data-parallel contract, for any communicator: for every split of one batch over the ranks (even, uneven,
// ranks with no rows), every rank's outputs of the dist:: entry points equal, bit for bit, the one-process
// entry point on the whole batch, and so do the returned statistics. Shared by the in-process test (threads as
// ranks), the MPI test (mpirun -np 1..4) and the c10d test (processes over a FileStore).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <grpo/distributed.hpp>

#include "../loss_catalogue.hpp"

namespace dist_cases {

/// A failed comparison, described; empty when every case matched.
struct report {
    std::vector<std::string> failures;
    int cases = 0;
    void fail(const std::string& what) {
        if (failures.size() < 20) failures.push_back(what);
    }
};

template <class T>
bool same_bits(const T& a, const T& b) {
    return std::memcmp(&a, &b, sizeof(T)) == 0;
}

/// The rows each rank holds, for split pattern `pattern` of `rows` rows over `size` ranks.
inline std::vector<grpo::index_t> split_rows(grpo::index_t rows, int size, int pattern) {
    std::vector<grpo::index_t> n(static_cast<std::size_t>(size), 0);
    if (pattern == 0) { // as even as it gets
        for (int r = 0; r < size; ++r) n[r] = rows * (r + 1) / size - rows * r / size;
    } else if (pattern == 1) { // everything on the last rank, the others empty
        n[size - 1] = rows;
    } else { // uneven, seeded: some ranks may be empty
        std::mt19937 gen(static_cast<unsigned>(pattern * 7919 + size));
        grpo::index_t left = rows;
        for (int r = 0; r + 1 < size; ++r) {
            n[r] = std::uniform_int_distribution<grpo::index_t>(0, left)(gen);
            left -= n[r];
        }
        n[size - 1] = left;
    }
    return n;
}

inline grpo::dist::row_span span_of(const std::vector<grpo::index_t>& n, int rank) {
    grpo::dist::row_span s;
    for (int r = 0; r < static_cast<int>(n.size()); ++r) {
        if (r == rank) s.offset = s.total;
        s.total += n[r];
    }
    return s;
}

template <class T>
std::vector<T> uniform(std::mt19937& gen, std::size_t n, double lo, double hi) {
    std::uniform_real_distribution<double> d(lo, hi);
    std::vector<T> v(n);
    for (auto& x : v) x = static_cast<T>(d(gen));
    return v;
}

// Every field of loss_stats.
// clang-format off
#define DIST_CASES_FIELDS(X)                                                                                    \
    X(loss) X(policy_loss) X(kl_loss) X(token_count) X(clip_fraction_low) X(clip_fraction_high)                 \
    X(clip_fraction_region) X(dual_clip_fraction) X(ratio_mean) X(ratio_min) X(ratio_max) X(kl_mean)            \
    X(approx_kl) X(sampling_weight_mean) X(off_policy_mask_fraction) X(entropy_loss) X(entropy_mean)            \
    X(entropy_mask_fraction) X(cov_selection_fraction)
// clang-format on

inline void compare_stats(report& rep, const std::string& name, const grpo::loss_stats& a, const grpo::loss_stats& b) {
#define DIST_CASES_CMP(f)     \
    if (!same_bits(a.f, b.f)) \
        rep.fail(name + ": loss_stats." #f " " + std::to_string(a.f) + " vs one process " + std::to_string(b.f));
    DIST_CASES_FIELDS(DIST_CASES_CMP)
#undef DIST_CASES_CMP
}

inline void compare_stats(report& rep, const std::string& name, const grpo::advantage_stats& a,
                          const grpo::advantage_stats& b) {
    if (!same_bits(a.num_groups, b.num_groups) || !same_bits(a.zero_variance_groups, b.zero_variance_groups) ||
        !same_bits(a.zero_variance_fraction, b.zero_variance_fraction) || !same_bits(a.scored, b.scored) ||
        !same_bits(a.reward_mean, b.reward_mean) || !same_bits(a.reward_std, b.reward_std) ||
        !same_bits(a.advantage_mean, b.advantage_mean) || !same_bits(a.advantage_std, b.advantage_std) ||
        !same_bits(a.advantage_min, b.advantage_min) || !same_bits(a.advantage_max, b.advantage_max))
        rep.fail(name + ": advantage_stats differ from one process");
}

/// Sequence-level advantages: every estimator, contiguous groups straddling ranks and shuffled ids, NaN
/// rewards, token weights, per-group outputs.
template <class T, class Comm>
void advantage_cases(const Comm& comm, report& rep, int pattern) {
    using grpo::advantage_estimator;
    const grpo::index_t G = 4, groups_n = 7, rows = G * groups_n;
    std::mt19937 gen(1234);
    std::vector<T> rewards = uniform<T>(gen, rows, -1, 2);
    for (grpo::index_t i = 0; i < rows; i += 5) rewards[i] = std::round(rewards[i]); // ties, zero-variance groups
    for (grpo::index_t i = 8; i < 12; ++i) rewards[i] = T(0.5);
    std::vector<double> weights = uniform<double>(gen, rows, 1, 30);
    std::vector<std::int64_t> ids(rows);
    for (grpo::index_t i = 0; i < rows; ++i) ids[i] = (i * 5 + 3) % groups_n;
    const std::vector<grpo::index_t> n = split_rows(rows, comm.size(), pattern);
    const grpo::dist::row_span s = span_of(n, comm.rank());
    const grpo::index_t mine = n[comm.rank()];

    for (int e = 0; e < grpo::advantage_estimator_count; ++e)
        for (int layout = 0; layout < 2; ++layout)
            for (int nan = 0; nan < 2; ++nan) {
                grpo::advantage_config cfg;
                cfg.estimator = static_cast<advantage_estimator>(e);
                std::vector<T> r = rewards;
                if (nan) {
                    cfg.nan = grpo::nan_rewards::ignore;
                    r[3] = r[17] = std::numeric_limits<T>::quiet_NaN();
                }
                const bool with_weights = grpo::detail::uses_token_weights(cfg.estimator);
                const grpo::groups g =
                    layout == 0 ? grpo::groups::contiguous(G) : grpo::groups::by_id({ids.data(), rows}, groups_n);
                std::vector<T> ref(rows);
                std::vector<double> mean(groups_n), sd(groups_n);
                std::vector<std::uint8_t> zv(groups_n);
                std::vector<std::int64_t> cnt(groups_n);
                const grpo::group_outputs go{mean, sd, zv, cnt};
                const grpo::vector_view<const double> w = with_weights
                                                              ? grpo::vector_view<const double>(weights.data(), rows)
                                                              : grpo::vector_view<const double>{};
                const grpo::advantage_stats st =
                    grpo::compute_advantages(grpo::exec::host{}, grpo::vector_view<const T>(r.data(), rows), g,
                                             grpo::vector_view<T>(ref), cfg, go, w);

                std::vector<T> adv(static_cast<std::size_t>(mine), T(-7));
                std::vector<double> dmean(groups_n), dsd(groups_n);
                std::vector<std::uint8_t> dzv(groups_n);
                std::vector<std::int64_t> dcnt(groups_n);
                const grpo::groups dg = layout == 0 ? grpo::groups::contiguous(G)
                                                    : grpo::groups::by_id({ids.data() + s.offset, mine}, groups_n);
                const grpo::advantage_stats dst = grpo::dist::compute_advantages(
                    comm, grpo::exec::host{}, grpo::vector_view<const T>(r.data() + s.offset, mine), dg,
                    grpo::vector_view<T>(adv.data(), mine), cfg, grpo::group_outputs{dmean, dsd, dzv, dcnt},
                    with_weights ? grpo::vector_view<const double>(weights.data() + s.offset, mine)
                                 : grpo::vector_view<const double>{});
                const std::string name = "advantages estimator " + std::to_string(e) + " layout " +
                                         std::to_string(layout) + " nan " + std::to_string(nan);
                ++rep.cases;
                for (grpo::index_t i = 0; i < mine; ++i)
                    if (!same_bits(adv[i], ref[s.offset + i])) rep.fail(name + ": row " + std::to_string(s.offset + i));
                for (grpo::index_t j = 0; j < groups_n; ++j)
                    if (!same_bits(dmean[j], mean[j]) || !same_bits(dsd[j], sd[j]) || dzv[j] != zv[j] ||
                        dcnt[j] != cnt[j])
                        rep.fail(name + ": group " + std::to_string(j));
                compare_stats(rep, name, dst, st);
            }
}

/// Token-level advantages: REINFORCE++ (batch whitening), ReMax, the optimal token baseline with prompt
/// groups straddling ranks.
template <class T, class Comm>
void token_advantage_cases(const Comm& comm, report& rep, int pattern) {
    const grpo::index_t G = 3, prompts = 5, rows = G * prompts, cols = 9;
    std::mt19937 gen(99);
    const std::size_t cells = static_cast<std::size_t>(rows * cols);
    std::vector<T> rewards = uniform<T>(gen, cells, -1, 1), mask(cells), old = uniform<T>(gen, cells, -3, -0.01);
    std::vector<T> spi = uniform<T>(gen, cells, 0.05, 0.9), isw = uniform<T>(gen, cells, 0.5, 1.5);
    std::vector<T> baselines = uniform<T>(gen, rows, -0.5, 0.5);
    for (grpo::index_t i = 0; i < rows; ++i)
        for (grpo::index_t t = 0; t < cols; ++t) mask[i * cols + t] = t < 2 + (i * 3) % (cols - 1) ? T(1) : T(0);
    const std::vector<grpo::index_t> n = split_rows(rows, comm.size(), pattern);
    const grpo::dist::row_span s = span_of(n, comm.rank());
    const grpo::index_t mine = n[comm.rank()];
    const auto local = [&](const std::vector<T>& v) { // a rank without rows passes absent views
        return mine == 0 ? grpo::matrix_view<const T>{}
                         : grpo::matrix_view<const T>(v.data() + s.offset * cols, mine, cols);
    };
    for (int e = 0; e < grpo::token_estimator_count; ++e) {
        grpo::token_advantage_config cfg;
        cfg.estimator = static_cast<grpo::token_estimator>(e);
        cfg.gamma = 0.97;
        grpo::token_advantage_inputs<T> in;
        in.rewards = {rewards.data(), rows, cols};
        in.mask = {mask.data(), rows, cols};
        in.baselines = {baselines.data(), rows};
        in.prompts = grpo::groups::contiguous(G);
        in.old_logp = {old.data(), rows, cols};
        in.sum_pi_squared = {spi.data(), rows, cols};
        in.is_weights = {isw.data(), rows, cols};
        std::vector<T> ref(cells), ref_ret(cells);
        const grpo::token_advantage_stats st = grpo::token_advantages(
            grpo::exec::host{}, in,
            grpo::token_advantage_outputs<T>{{ref.data(), rows, cols}, {ref_ret.data(), rows, cols}}, cfg);
        grpo::token_advantage_inputs<T> din = in;
        din.rewards = local(rewards);
        din.mask = local(mask);
        din.baselines = {baselines.data() + s.offset, mine};
        din.old_logp = local(old);
        din.sum_pi_squared = local(spi);
        din.is_weights = local(isw);
        std::vector<T> adv(static_cast<std::size_t>(mine * cols)), ret(static_cast<std::size_t>(mine * cols));
        const grpo::token_advantage_stats dst = grpo::dist::token_advantages(
            comm, grpo::exec::host{}, din,
            grpo::token_advantage_outputs<T>{{adv.data(), mine, cols}, {ret.data(), mine, cols}}, cfg);
        const std::string name = "token_advantages estimator " + std::to_string(e);
        ++rep.cases;
        for (grpo::index_t k = 0; k < mine * cols; ++k)
            if (!same_bits(adv[k], ref[s.offset * cols + k]) || !same_bits(ret[k], ref_ret[s.offset * cols + k]))
                rep.fail(name + ": cell " + std::to_string(s.offset * cols + k));
        if (!same_bits(dst.tokens, st.tokens) || !same_bits(dst.return_mean, st.return_mean) ||
            !same_bits(dst.return_std, st.return_std) || !same_bits(dst.advantage_mean, st.advantage_mean) ||
            !same_bits(dst.advantage_std, st.advantage_std) || !same_bits(dst.advantage_min, st.advantage_min) ||
            !same_bits(dst.advantage_max, st.advantage_max))
            rep.fail(name + ": stats differ from one process");
    }
}

/// The loss: every catalogue variant (but the covariance selections, per rank by design), each aggregation in
/// turn, empty rows counted and not, with every per-token output.
template <class T, class Comm>
void loss_cases(const Comm& comm, report& rep, int pattern) {
    const grpo::index_t rows = 13, cols = 11;
    const std::size_t cells = static_cast<std::size_t>(rows * cols);
    std::mt19937 gen(2024);
    const std::vector<T> logp = uniform<T>(gen, cells, -3, -0.05), noise = uniform<T>(gen, cells, -0.4, 0.4),
                         refn = uniform<T>(gen, cells, -0.3, 0.3), sampn = uniform<T>(gen, cells, -0.2, 0.2),
                         entropy = uniform<T>(gen, cells, 0.1, 3), adv_rows = uniform<T>(gen, rows, -1.5, 1.5);
    std::vector<T> old(cells), ref(cells), samp(cells), mask(cells);
    for (std::size_t k = 0; k < cells; ++k) {
        old[k] = logp[k] + noise[k];
        ref[k] = logp[k] + refn[k];
        samp[k] = old[k] + sampn[k];
    }
    for (grpo::index_t i = 0; i < rows; ++i)
        for (grpo::index_t t = 0; t < cols; ++t)
            mask[i * cols + t] = (i == 4 || i == 9) ? T(0) : (t < 1 + (i * 5) % cols ? T(1) : T(0)); // 2 empty rows
    const std::vector<grpo::index_t> n = split_rows(rows, comm.size(), pattern);
    const grpo::dist::row_span s = span_of(n, comm.rank());
    const grpo::index_t mine = n[comm.rank()];
    const grpo::aggregation aggs[] = {grpo::aggregation::token_mean, grpo::aggregation::seq_mean_token_mean,
                                      grpo::aggregation::seq_mean_token_sum, grpo::aggregation::token_sum_over_constant,
                                      grpo::aggregation::token_sum};
    int k = 0;
    for (const grpo_test::loss_variant& variant : grpo_test::loss_catalogue()) {
        if (grpo::math::selects_by_covariance(variant.cfg.objective)) continue;
        for (int level = 0; level < 2; ++level) {
            const grpo::ratio_level rl = level == 0 ? grpo::ratio_level::token : grpo::ratio_level::sequence;
            if (!variant.allows(rl)) continue;
            grpo::loss_config cfg = variant.cfg;
            cfg.ratio = rl;
            cfg.agg = aggs[k % 5];
            cfg.count_empty_sequences = (k / 5) % 2 == 0;
            cfg.checks = k % 3 == 0 ? grpo::validation::shapes_only : grpo::validation::full;
            ++k;
            const auto whole = [&](const std::vector<T>& v) {
                return grpo::matrix_view<const T>(v.data(), rows, cols);
            };
            const auto local = [&](const std::vector<T>& v) { // a rank without rows passes absent views
                return mine == 0 ? grpo::matrix_view<const T>{}
                                 : grpo::matrix_view<const T>(v.data() + s.offset * cols, mine, cols);
            };
            grpo::loss_inputs<T> in;
            in.logp = whole(logp);
            in.old_logp = whole(old);
            in.ref_logp = whole(ref);
            in.advantages = grpo::broadcast_to_tokens(grpo::vector_view<const T>(adv_rows.data(), rows), cols);
            in.mask = whole(mask);
            in.sampling_logp = whole(samp);
            in.entropy = whole(entropy);
            std::vector<T> g(cells), ptl(cells), ratio(cells), ge(cells);
            const grpo::loss_stats st = grpo::loss_and_grad(grpo::exec::host{}, in,
                                                            grpo::loss_outputs<T>{{g.data(), rows, cols},
                                                                                  {ptl.data(), rows, cols},
                                                                                  {ratio.data(), rows, cols},
                                                                                  {ge.data(), rows, cols}},
                                                            cfg);
            grpo::loss_inputs<T> din;
            din.logp = local(logp);
            din.old_logp = local(old);
            din.ref_logp = local(ref);
            din.advantages =
                grpo::broadcast_to_tokens(grpo::vector_view<const T>(adv_rows.data() + s.offset, mine), cols);
            din.mask = local(mask);
            din.sampling_logp = local(samp);
            din.entropy = local(entropy);
            const std::size_t mc = static_cast<std::size_t>(mine * cols);
            std::vector<T> dg(mc), dptl(mc), dratio(mc), dge(mc);
            const grpo::loss_stats dst = grpo::dist::loss_and_grad(comm, grpo::exec::host{}, din,
                                                                   grpo::loss_outputs<T>{{dg.data(), mine, cols},
                                                                                         {dptl.data(), mine, cols},
                                                                                         {dratio.data(), mine, cols},
                                                                                         {dge.data(), mine, cols}},
                                                                   cfg);
            const std::string name = "loss '" + variant.name + "' level " + std::to_string(level) + " agg " +
                                     std::to_string(static_cast<int>(cfg.agg));
            ++rep.cases;
            for (std::size_t c = 0; c < mc; ++c) {
                const std::size_t at = static_cast<std::size_t>(s.offset * cols) + c;
                if (!same_bits(dg[c], g[at]) || !same_bits(dptl[c], ptl[at]) || !same_bits(dratio[c], ratio[at]) ||
                    !same_bits(dge[c], ge[at])) {
                    rep.fail(name + ": token " + std::to_string(at));
                    break;
                }
            }
            compare_stats(rep, name, dst, st);
        }
    }
}

/// The host-set normalizers (global_token_count, global_sequence_count) around the batch's own counts: the
/// data-parallel call accepts exactly what the one-process call on the whole batch accepts (the same argument
/// named in the error), with the same bits when both accept, and leaves every rank's outputs untouched when it
/// throws.
template <class T, class Comm>
void global_count_cases(const Comm& comm, report& rep, int pattern) {
    const grpo::index_t rows = 6, cols = 5;
    const std::size_t cells = static_cast<std::size_t>(rows * cols);
    std::mt19937 gen(77);
    const std::vector<T> logp = uniform<T>(gen, cells, -3, -0.05), old = uniform<T>(gen, cells, -3, -0.05),
                         adv = uniform<T>(gen, cells, -1, 1);
    std::vector<T> mask(cells);
    double tokens = 0;
    for (grpo::index_t i = 0; i < rows; ++i)
        for (grpo::index_t t = 0; t < cols; ++t) {
            mask[i * cols + t] = i != 2 && t <= i ? T(1) : T(0); // row 2 empty
            tokens += static_cast<double>(mask[i * cols + t]);
        }
    const std::vector<grpo::index_t> n = split_rows(rows, comm.size(), pattern);
    const grpo::dist::row_span s = span_of(n, comm.rank());
    const grpo::index_t mine = n[comm.rank()];
    const auto argument = [](const grpo::error& e) { // the argument named (the counts quoted may be a rank's)
        const std::string m = e.what();
        const std::size_t at = std::min(m.size(), m.find("argument '"));
        return m.substr(at, m.find('\'', std::min(m.size(), at + 10)) - at) + " " + grpo::to_string(e.code());
    };
    const double token_counts[] = {0, 1, tokens - 1, tokens, tokens + 3};
    const double sequence_counts[] = {0, 1, rows - 1.0, double(rows), rows + 2.0};
    // Variants 8-11 put an infinite logp in the last row, under validation::full: the one-process order of the
    // checks (global_sequence_count, then the values, then global_token_count) decides which error is named.
    std::vector<T> bad_logp = logp;
    bad_logp[static_cast<std::size_t>((rows - 1) * cols)] = std::numeric_limits<T>::infinity();
    for (int variant = 0; variant < 12; ++variant)
        for (double gtc : token_counts)
            for (double gsc : sequence_counts) {
                const std::vector<T>& lp = variant >= 8 ? bad_logp : logp;
                grpo::loss_config cfg;
                cfg.checks = variant % 2 == 0 && variant < 8 ? grpo::validation::shapes_only : grpo::validation::full;
                cfg.agg =
                    (variant / 2) % 2 == 0 ? grpo::aggregation::token_mean : grpo::aggregation::seq_mean_token_mean;
                cfg.count_empty_sequences = (variant / 4) % 2 == 0;
                cfg.global_token_count = gtc;
                cfg.global_sequence_count = gsc;
                grpo::loss_inputs<T> in;
                in.logp = {lp.data(), rows, cols};
                in.old_logp = {old.data(), rows, cols};
                in.advantages = {adv.data(), rows, cols};
                in.mask = {mask.data(), rows, cols};
                std::vector<T> g(cells, T(42));
                std::string want = "accepted";
                grpo::loss_stats st;
                try {
                    st = grpo::loss_and_grad(grpo::exec::host{}, in, grpo::loss_outputs<T>{{g.data(), rows, cols}, {}},
                                             cfg);
                } catch (const grpo::error& e) {
                    want = argument(e);
                }
                const auto local = [&](const std::vector<T>& v) {
                    return mine == 0 ? grpo::matrix_view<const T>{}
                                     : grpo::matrix_view<const T>(v.data() + s.offset * cols, mine, cols);
                };
                grpo::loss_inputs<T> din;
                din.logp = local(lp);
                din.old_logp = local(old);
                din.advantages = local(adv);
                din.mask = local(mask);
                std::vector<T> dg(static_cast<std::size_t>(mine * cols), T(42));
                std::string got = "accepted";
                grpo::loss_stats dst;
                try {
                    dst = grpo::dist::loss_and_grad(comm, grpo::exec::host{}, din,
                                                    grpo::loss_outputs<T>{{dg.data(), mine, cols}, {}}, cfg);
                } catch (const grpo::error& e) {
                    got = argument(e);
                }
                const std::string name = "global counts " + std::to_string(gtc) + "/" + std::to_string(gsc) +
                                         " variant " + std::to_string(variant);
                ++rep.cases;
                if (got != want) {
                    rep.fail(name + ": dist " + got + "; one process " + want);
                    continue;
                }
                for (std::size_t c = 0; c < dg.size(); ++c)
                    if (!same_bits(dg[c],
                                   want == "accepted" ? g[static_cast<std::size_t>(s.offset * cols) + c] : T(42))) {
                        rep.fail(name + (want == "accepted" ? ": token " : ": wrote after an error, token ") +
                                 std::to_string(c));
                        break;
                    }
                if (want == "accepted") compare_stats(rep, name, dst, st);
            }
}

/// Every case for every split pattern; the report of this rank.
template <class Comm>
report run_all(const Comm& comm) {
    report rep;
    for (int pattern = 0; pattern < 4; ++pattern) {
        advantage_cases<float>(comm, rep, pattern);
        advantage_cases<double>(comm, rep, pattern);
        token_advantage_cases<float>(comm, rep, pattern);
        token_advantage_cases<double>(comm, rep, pattern);
        loss_cases<float>(comm, rep, pattern);
        loss_cases<double>(comm, rep, pattern);
        global_count_cases<float>(comm, rep, pattern);
        global_count_cases<double>(comm, rep, pattern);
    }
    return rep;
}

} // namespace dist_cases
