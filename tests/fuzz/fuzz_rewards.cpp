// SPDX-License-Identifier: MIT
// libFuzzer harness of the rewards.hpp helpers: combine_rewards, outcome_advantages (both aggregations and
// out-of-range ones), overlong_penalty, apply_overlong_shaping, completion_mask (rollout_batch validation),
// filter_zero_variance_groups, extract_answer (every format, out-of-range too) and tags_in_order.
//
// Oracles: success or grpo::error only; on error every output untouched; on success: inputs unchanged,
// combine_rewards gives NaN exactly for rows no function scored, outcome_advantages gives 0 for unscored rows,
// no NaN from tame scores, overlong_penalty / factor in [-1, 0], completion_mask writes exactly
// (t < length and not a dropped truncated row) as 0/1, filter_zero_variance_groups' flags match a direct
// computation and kept + dropped = groups, determinism and pool bit-identity for outcome_advantages, aliasing
// outputs over inputs either rejected or harmless (same result as the non-aliased call).
#include <string_view>

#include "fuzz_input.hpp"

namespace {

using namespace fuzz;
using grpo::index_t;

/// A [rows, cols] double score matrix (NaN = declined) with a layout, and weights.
struct scores_in {
    layout L;
    std::vector<double> buf, weights;
    std::int64_t wsize = 0;
    bool has_weights = true;
    bool tame = true;
    grpo::matrix_view<const double> view() const {
        return grpo::matrix_view<const double>(buf.data() + L.offset, L.rows, L.cols, L.rs, L.cs);
    }
    grpo::vector_view<const double> wview() const {
        return has_weights ? grpo::vector_view<const double>(weights.data(), wsize) : grpo::vector_view<const double>();
    }
    double at(std::int64_t i, std::int64_t k) const {
        return buf[static_cast<std::size_t>(L.offset + i * L.rs + k * L.cs)];
    }
};

scores_in draw_scores(fuzz_input& in, std::int64_t rows, std::int64_t nf) {
    scores_in s;
    s.tame = in.chance(160);
    s.L = draw_layout(in, rows, nf, true, in.chance(20));
    s.buf.assign(static_cast<std::size_t>((s.L.backed ? std::int64_t(s.L.span) : 1) + 2), 0.0);
    const bool nan = in.chance(100), inf = in.chance(6);
    for (double& x : s.buf) {
        const std::uint8_t c = in.u8();
        x = nan && c < 40   ? std::numeric_limits<double>::quiet_NaN()
            : inf && c < 44 ? -std::numeric_limits<double>::infinity()
            : c < 120       ? double(c % 2)
                            : in.value(s.tame, false, 2.0);
    }
    s.has_weights = in.chance(245);
    s.wsize = in.chance(8) ? std::max<std::int64_t>(0, nf + (in.flag() ? 1 : -1)) : std::max<std::int64_t>(nf, 0);
    if (s.wsize > 64) s.wsize = 0;
    s.weights.resize(static_cast<std::size_t>(s.wsize + 1));
    for (double& w : s.weights) w = in.chance(230) ? double(in.u8() % 3) : in.value(false, true);
    for (double w : s.weights)
        if (std::fabs(w) > 1e6) s.tame = false;
    return s;
}

grpo::groups draw_groups(fuzz_input& in, std::int64_t n, std::vector<std::int64_t>& ids, std::int64_t* k) {
    if (in.chance(180)) {
        std::int64_t G = in.chance(240) ? in.range(1, 4) : (in.flag() ? 0 : in.hostile_size());
        if (n > 0 && G > 0 && n % G != 0 && in.chance(200)) G = 1;
        *k = G > 0 && n >= 0 ? n / G : 0;
        return grpo::groups::contiguous(G);
    }
    const std::int64_t num = in.chance(245) ? in.range(0, 5) : in.hostile_size();
    const std::int64_t size = in.chance(8) ? n + 1 : n;
    ids.assign(static_cast<std::size_t>(std::max<std::int64_t>(size, 0) + 1), 0);
    for (auto& x : ids) x = in.chance(248) ? (num > 0 ? in.range(0, std::min<std::int64_t>(num, 64) - 1) : 0) : num;
    *k = num;
    return grpo::groups::by_id(grpo::vector_view<const std::int64_t>(ids.data(), size), num);
}

void fuzz_combine(fuzz_input& in) {
    const std::int64_t rows = in.size(8, 0, false), nf = in.size(4, 0, false);
    scores_in s = draw_scores(in, rows, nf);
    const std::int64_t osize = in.chance(8) ? rows + 1 : rows;
    const bool alias = in.chance(30) && s.L.backed;
    std::vector<double> own(static_cast<std::size_t>(std::max<std::int64_t>(osize, 0) + 2));
    fill_sentinel(own.data(), own.size() * sizeof(double));
    const std::vector<double> scores0 = s.buf;
    if (alias && static_cast<std::int64_t>(s.buf.size()) < osize + 2)
        s.buf.resize(static_cast<std::size_t>(osize + 2), 0.0);
    double* out = alias ? s.buf.data() + in.u8() % 2 : own.data();
    const std::vector<double> own0 = own, buf0 = s.buf;
    const outcome r = call_checked(
        "combine_rewards", [&] { grpo::combine_rewards(s.view(), s.wview(), grpo::vector_view<double>(out, osize)); });
    if (!r.ok) {
        if (std::memcmp(own.data(), own0.data(), own.size() * sizeof(double)) != 0 ||
            std::memcmp(buf0.data(), s.buf.data(), buf0.size() * sizeof(double)) != 0)
            finding("error-wrote-output", "combine_rewards threw (%s) but wrote", r.message.c_str());
        return;
    }
    if (alias) {
        // Must equal the non-aliased result.
        scores_in ref = s;
        ref.buf = buf0;
        std::vector<double> o(static_cast<std::size_t>(osize + 2));
        grpo::combine_rewards(ref.view(), ref.wview(), grpo::vector_view<double>(o.data(), osize));
        for (std::int64_t i = 0; i < osize; ++i)
            if (!bits_equal(o[static_cast<std::size_t>(i)], out[i]))
                finding("alias-accepted-wrong-result",
                        "combine_rewards: rewards placed over scores accepted, [%lld] %.17g vs %.17g", (long long)i,
                        out[i], o[static_cast<std::size_t>(i)]);
        return;
    }
    if (std::memcmp(s.buf.data(), scores0.data(), scores0.size() * sizeof(double)) != 0)
        finding("input-modified", "combine_rewards changed the scores");
    for (std::int64_t i = 0; i < rows; ++i) {
        bool any = false;
        for (std::int64_t k = 0; k < nf; ++k) any |= !std::isnan(s.at(i, k));
        const double v = own[static_cast<std::size_t>(i)];
        if (!any && !std::isnan(v))
            finding("combine-unscored", "row %lld has no score but reward %.17g", (long long)i, v);
        if (any && std::isnan(v))
            finding(s.tame ? "nan-from-finite" : "nan-from-finite-extreme", "combine_rewards row %lld is NaN",
                    (long long)i);
    }
    for (std::size_t o = static_cast<std::size_t>(std::max<std::int64_t>(osize, 0)); o < own.size(); ++o)
        if (!bits_equal(own[o], own0[o])) finding("write-outside-view", "combine_rewards wrote past the output");
}

template <class T>
void fuzz_outcome(fuzz_input& in) {
    const std::int64_t rows = in.size(12, 0, false), nf = in.size(3, 0, false);
    scores_in s = draw_scores(in, rows, nf);
    std::vector<std::int64_t> ids;
    std::int64_t k = 0;
    const grpo::groups g = draw_groups(in, rows, ids, &k);
    grpo::advantage_config cfg = in.flag() ? grpo::advantage_config::trl() : grpo::advantage_config::verl();
    cfg.estimator = in.enum_value<grpo::advantage_estimator>(grpo::advantage_estimator_count);
    cfg.std = in.enum_value<grpo::std_estimator>(2);
    cfg.epsilon = in.config_double({1e-4, 1e-6, 0.0});
    cfg.singleton = in.enum_value<grpo::singleton_group>(2);
    const auto agg = in.enum_value<grpo::reward_aggregation>(2);
    const std::int64_t asize = in.chance(8) ? rows + 1 : rows;
    const bool with_rewards = in.flag();
    // Completion lengths (opo, optional whitening weights): mostly valid, sometimes negative, NaN or mis-sized.
    std::vector<double> lengths;
    const bool with_lengths = in.chance(180);
    if (with_lengths) {
        const std::int64_t lsize = in.chance(8) ? rows + 1 : rows;
        for (std::int64_t i = 0; i < lsize && i < 64; ++i)
            lengths.push_back(in.chance(6) ? in.value(false, true) : double(in.range(0, 9)));
    }
    const grpo::vector_view<const double> lview =
        with_lengths ? grpo::vector_view<const double>(lengths.data(), static_cast<grpo::index_t>(lengths.size()))
                     : grpo::vector_view<const double>();
    const std::size_t cap = static_cast<std::size_t>(std::max<std::int64_t>(asize, 0) + 2);
    std::vector<T> adv(cap), rew(cap);
    fill_sentinel(adv.data(), adv.size() * sizeof(T));
    fill_sentinel(rew.data(), rew.size() * sizeof(T));
    const auto adv0 = adv, rew0 = rew;
    const auto scores0 = s.buf;
    auto call = [&](const grpo::exec::host& ex, std::vector<T>& a, std::vector<T>& r, grpo::advantage_stats& st) {
        return call_checked("outcome_advantages", [&] {
            st = grpo::outcome_advantages(ex, s.view(), s.wview(), g, grpo::vector_view<T>(a.data(), asize), cfg, agg,
                                          with_rewards ? grpo::vector_view<T>(r.data(), asize) : grpo::vector_view<T>(),
                                          grpo::group_outputs{}, lview);
        });
    };
    grpo::advantage_stats st;
    const outcome res = call(grpo::exec::host{}, adv, rew, st);
    if (std::memcmp(s.buf.data(), scores0.data(), scores0.size() * sizeof(double)) != 0)
        finding("input-modified", "outcome_advantages changed the scores");
    if (!res.ok) {
        if (std::memcmp(adv.data(), adv0.data(), adv.size() * sizeof(T)) != 0 ||
            std::memcmp(rew.data(), rew0.data(), rew.size() * sizeof(T)) != 0)
            finding("error-wrote-output", "outcome_advantages threw (%s) but wrote", res.message.c_str());
        return;
    }
    if (int(agg) < 0 || int(agg) > 1 || int(cfg.estimator) < 0 ||
        int(cfg.estimator) >= grpo::advantage_estimator_count || int(cfg.std) < 0 || int(cfg.std) > 1 ||
        int(cfg.singleton) < 0 || int(cfg.singleton) > 1)
        finding("enum-out-of-range-accepted", "outcome_advantages: aggregation %d est %d std %d singleton %d accepted",
                int(agg), int(cfg.estimator), int(cfg.std), int(cfg.singleton));
    const char* nan_tag = s.tame ? "nan-from-finite" : "nan-from-finite-extreme";
    for (std::int64_t i = 0; i < rows; ++i) {
        bool any = false;
        for (std::int64_t f = 0; f < nf; ++f) any |= !std::isnan(s.at(i, f));
        const T a = adv[static_cast<std::size_t>(i)];
        if (std::isnan(double(a)))
            finding(nan_tag, "outcome_advantages[%lld] is NaN (agg %d, est %d)", (long long)i, int(agg),
                    int(cfg.estimator));
        if (!any && a != T(0))
            finding("unscored-advantage-nonzero", "row %lld unscored, advantage %.9g", (long long)i, double(a));
    }
    std::vector<T> adv2 = adv0, rew2 = rew0;
    grpo::advantage_stats st2;
    const outcome r2 = call(grpo::exec::host{&pool(2)}, adv2, rew2, st2);
    if (!r2.ok || std::memcmp(adv2.data(), adv.data(), adv.size() * sizeof(T)) != 0 ||
        std::memcmp(rew2.data(), rew.data(), rew.size() * sizeof(T)) != 0)
        finding("pool-vs-serial", "outcome_advantages differs with a pool (or threw: %s)", r2.message.c_str());
}

void fuzz_overlong(fuzz_input& in) {
    auto draw = [&]() -> std::int64_t { return in.chance(200) ? in.range(0, 40) : in.hostile_size(); };
    const std::int64_t len = draw(), max_len = draw(), cache = draw();
    const double factor = in.chance(200) ? in.moderate(2.0) : in.value(false, true);
    double v = 0;
    const outcome r =
        call_checked("overlong_penalty", [&] { v = grpo::overlong_penalty(len, max_len, cache, factor); });
    if (r.ok && std::isfinite(factor) && factor != 0) {
        const double q = v / factor;
        if (!(q >= -1.0000000001 && q <= 0))
            finding("overlong-range", "overlong_penalty(%lld, %lld, %lld, %g) = %.17g outside [-factor, 0]",
                    (long long)len, (long long)max_len, (long long)cache, factor, v);
    }
    // apply_overlong_shaping over a lengths vector.
    const std::int64_t n = in.size(6, 0, false);
    const std::int64_t rsize = in.chance(8) ? n + 1 : n;
    std::vector<std::int64_t> lengths(static_cast<std::size_t>(std::max<std::int64_t>(n, 0) + 1));
    for (auto& l : lengths) l = in.chance(240) ? in.range(0, 40) : in.hostile_size();
    std::vector<float> rew(static_cast<std::size_t>(std::max<std::int64_t>(rsize, 0) + 2));
    for (float& x : rew) x = float(in.value(true, false));
    const auto rew0 = rew;
    const outcome r2 = call_checked("apply_overlong_shaping", [&] {
        grpo::apply_overlong_shaping(grpo::vector_view<const std::int64_t>(lengths.data(), n),
                                     grpo::vector_view<float>(rew.data(), rsize), max_len, cache, factor);
    });
    if (!r2.ok && std::memcmp(rew.data(), rew0.data(), rew.size() * sizeof(float)) != 0)
        finding("error-wrote-output", "apply_overlong_shaping threw (%s) but wrote", r2.message.c_str());
}

void fuzz_completion_mask(fuzz_input& in) {
    const bool h = hostile_enabled() && in.chance(20);
    const std::int64_t P = h && in.flag() ? in.hostile_size() : in.range(0, 4);
    const std::int64_t G = h && in.flag() ? in.hostile_size() : in.range(0, 4);
    const std::int64_t cols = in.range(0, 10);
    const __int128 rows128 = __int128(P) * G;
    const std::int64_t rows = rows128 >= 0 && rows128 <= 64 ? std::int64_t(rows128) : in.range(0, 4);
    std::vector<grpo::token_id> tokens(static_cast<std::size_t>(rows * cols + 1), 7);
    std::vector<std::int64_t> lengths(static_cast<std::size_t>(rows + 1));
    for (auto& l : lengths) l = in.chance(240) ? in.range(0, cols) : (in.flag() ? cols + 1 : in.hostile_size());
    std::vector<std::uint8_t> trunc(static_cast<std::size_t>(rows + 1));
    for (auto& t : trunc) t = in.u8() % 3;
    grpo::rollout_batch<float> b;
    b.num_prompts = P;
    b.group_size = G;
    b.tokens = grpo::matrix_view<const grpo::token_id>(tokens.data(), in.chance(8) ? rows + 1 : rows, cols, cols, 1);
    b.lengths = grpo::vector_view<const std::int64_t>(lengths.data(), in.chance(8) ? rows + 1 : rows);
    if (in.flag()) b.truncated = grpo::vector_view<const std::uint8_t>(trunc.data(), rows);
    const bool drop = in.flag();
    const std::int64_t mrows = in.chance(8) ? rows + 1 : rows;
    std::vector<float> mask(static_cast<std::size_t>(mrows * cols + 2));
    fill_sentinel(mask.data(), mask.size() * sizeof(float));
    const auto mask0 = mask;
    index_t masked = 0;
    const outcome r = call_checked("completion_mask", [&] {
        masked = grpo::completion_mask(b, grpo::matrix_view<float>(mask.data(), mrows, cols), drop);
    });
    if (!r.ok) {
        if (std::memcmp(mask.data(), mask0.data(), mask.size() * sizeof(float)) != 0)
            finding("error-wrote-output", "completion_mask threw (%s) but wrote", r.message.c_str());
        return;
    }
    index_t expect_masked = 0;
    for (std::int64_t i = 0; i < rows; ++i) {
        const bool dropped = drop && b.truncated.present() && trunc[static_cast<std::size_t>(i)] != 0;
        expect_masked += dropped;
        for (std::int64_t t = 0; t < cols; ++t) {
            const float want = (!dropped && t < lengths[static_cast<std::size_t>(i)]) ? 1.f : 0.f;
            if (!bits_equal(mask[static_cast<std::size_t>(i * cols + t)], want))
                finding("completion-mask", "mask(%lld, %lld) = %g, expected %g", (long long)i, (long long)t,
                        double(mask[static_cast<std::size_t>(i * cols + t)]), double(want));
        }
    }
    if (masked != expect_masked)
        finding("completion-mask", "returned %lld masked rows, expected %lld", (long long)masked,
                (long long)expect_masked);
}

template <class T>
void fuzz_filter(fuzz_input& in) {
    const std::int64_t n = in.size(12, 0, false);
    std::vector<std::int64_t> ids;
    std::int64_t k = 0;
    const grpo::groups g = draw_groups(in, n, ids, &k);
    const bool tame = in.chance(160);
    std::vector<T> rew(static_cast<std::size_t>(std::max<std::int64_t>(n, 0) + 1));
    for (T& x : rew) {
        const std::uint8_t c = in.u8();
        x = c < 30    ? std::numeric_limits<T>::quiet_NaN()
            : c < 32  ? std::numeric_limits<T>::infinity()
            : c < 140 ? T(c % 2)
                      : T(in.value(tame, false, 2.0));
    }
    std::int64_t ksize = in.chance(8) && k < 4096 ? k + 1 : k;
    if (k > 4096) ksize = 1; // cannot back a keep vector that large: a size mismatch the call must reject
    std::vector<std::uint8_t> keep(
        static_cast<std::size_t>(std::max<std::int64_t>(std::min<std::int64_t>(ksize, 4096), 0) + 2), 0xA5);
    const auto keep0 = keep;
    grpo::dynamic_sampling_result res;
    const outcome r = call_checked("filter_zero_variance_groups", [&] {
        res = grpo::filter_zero_variance_groups(grpo::vector_view<const T>(rew.data(), n), g,
                                                grpo::vector_view<std::uint8_t>(keep.data(), ksize));
    });
    if (!r.ok) {
        if (keep != keep0)
            finding("error-wrote-output", "filter_zero_variance_groups threw (%s) but wrote", r.message.c_str());
        return;
    }
    if (k > 4096) return;
    if (res.kept_groups + res.dropped_groups != k)
        finding("filter-count", "kept %lld + dropped %lld != %lld groups", (long long)res.kept_groups,
                (long long)res.dropped_groups, (long long)k);
    std::vector<std::vector<double>> vals(static_cast<std::size_t>(k));
    for (std::int64_t i = 0; i < n; ++i)
        if (!std::isnan(double(rew[static_cast<std::size_t>(i)])))
            vals[static_cast<std::size_t>(g.is_contiguous() ? i / g.size() : ids[static_cast<std::size_t>(i)])]
                .push_back(double(rew[static_cast<std::size_t>(i)]));
    for (std::int64_t j = 0; j < k; ++j) {
        const auto& v = vals[static_cast<std::size_t>(j)];
        bool differ = false;
        for (double x : v) differ |= x != v[0];
        const std::uint8_t got = keep[static_cast<std::size_t>(j)];
        if (got > 1) finding("filter-flag", "keep[%lld] = %d", (long long)j, int(got));
        if (tame && got != (v.size() >= 2 && differ))
            finding("filter-flag", "keep[%lld] = %d, but the group has %zu scored rewards, %s", (long long)j, int(got),
                    v.size(), differ ? "not all equal" : "all equal");
    }
}

void fuzz_text(fuzz_input& in) {
    std::string text, marker;
    const std::size_t n = in.u8() % 64, m = in.u8() % 6;
    static const char alphabet[] = "0123456789-.,{}\\boxed####<think></think> \nabc";
    for (std::size_t i = 0; i < n; ++i) text += alphabet[in.u8() % (sizeof(alphabet) - 1)];
    for (std::size_t i = 0; i < m; ++i) marker += alphabet[in.u8() % (sizeof(alphabet) - 1)];
    const auto fmt = in.enum_value<grpo::answer_format>(4);
    std::optional<std::string> a;
    call_checked("extract_answer", [&] { a = grpo::extract_answer(text, fmt, marker); });
    if (a && a->size() > text.size()) finding("extract-answer", "answer longer than the text");
    call_checked("tags_in_order", [&] { (void)grpo::tags_in_order(text, {"<think>", "</think>"}); });
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    fuzz_input in(data, size);
    try {
        switch (in.u8() % 8) {
        case 0: fuzz_combine(in); break;
        case 1: fuzz_outcome<float>(in); break;
        case 2: fuzz_outcome<double>(in); break;
        case 3: fuzz_overlong(in); break;
        case 4: fuzz_completion_mask(in); break;
        case 5: fuzz_filter<float>(in); break;
        case 6: fuzz_filter<double>(in); break;
        default: fuzz_text(in); break;
        }
    } catch (const skip_input&) {}
    return 0;
}
