// SPDX-License-Identifier: MIT
// libFuzzer harness of grpo::token_advantages (REINFORCE++, ReMax and the optimal token baseline with its TIR
// variant on per-token rewards) and grpo::process_token_rewards, float and double: every view's strides
// (broadcast, padded, column-major, hostile), mismatched shapes, absent views, mask values other than 0/1,
// non-finite rewards at masked and unmasked tokens, baselines, old log-probs, sums of squared probabilities and
// IS weights in and out of range, contiguous and id-based prompt groups (bad sizes, ids out of range), gamma,
// whiten_epsilon and otb_epsilon (including NaN, Inf, negative), tail rules, invalid estimators, outputs over
// an input or over each other, hostile extents.
//
// Oracles: success or grpo::error only; on error every buffer unchanged; on success inputs unchanged, nothing
// written outside the output views, advantages and returns exactly 0 at masked tokens, ReMax's advantage equal
// to its return minus the row's baseline (up to rounding), no NaN from tame inputs, bit-identical on a rerun,
// and an accepted aliasing layout gives the non-aliased results. process_token_rewards: each row's mask is 1
// up to its last step end and the rewards add up to the row's step rewards.
#include "fuzz_input.hpp"

namespace {

using namespace fuzz;
using grpo::index_t;

enum buf_id { B_REW, B_MASK, B_BASE, B_LOGP, B_SQ, B_RHO, B_ADV, B_RET, B_COUNT };

template <class T>
struct problem {
    layout L[B_COUNT];
    bool present[B_COUNT] = {};
    int buffer[B_COUNT] = {B_REW, B_MASK, B_BASE, B_LOGP, B_SQ, B_RHO, B_ADV, B_RET};
    std::vector<std::vector<T>> bufs = std::vector<std::vector<T>>(B_COUNT);
    grpo::token_advantage_config cfg;
    bool tame = true, aliased = false;
    // Prompt groups: contiguous(group_size), or ids (num_groups) when by_id.
    bool by_id = false;
    std::int64_t group_size = 1, num_groups = 0;
    std::vector<std::int64_t> ids;
};

template <class T>
void build(fuzz_input& in, problem<T>& pb) {
    const bool h = hostile_enabled() && in.chance(8);
    const std::int64_t rows = h && in.flag() ? in.hostile_size() : in.range(0, 6);
    const std::int64_t cols = h && in.flag() ? in.hostile_size() : in.range(0, 10);
    pb.cfg.estimator = in.enum_value<grpo::token_estimator>(grpo::token_estimator_count);
    pb.cfg.gamma = in.config_double({1.0, 0.99, 0.9, 0.0});
    pb.cfg.whiten_epsilon = in.config_double({1e-8, 0.0, 1.0});
    pb.cfg.otb_epsilon = in.config_double({1e-8, 0.0, 1.0});
    pb.cfg.tail = in.enum_value<grpo::otb_tail>(3);
    pb.tame = in.chance(170);
    const bool with[B_COUNT] = {in.chance(250), in.chance(250), in.chance(200), in.chance(240),
                                in.chance(240), in.chance(100), in.chance(250), in.chance(120)};
    pb.by_id = in.flag();
    if (pb.by_id) {
        pb.num_groups = in.range(0, 4);
        const std::int64_t n = rows > 0 && rows < 64 && in.chance(8) ? rows + (in.flag() ? 1 : -1) : rows; // mismatch
        for (std::int64_t i = 0; i < n && i < 64; ++i)
            pb.ids.push_back(in.chance(6) ? in.range(-1, pb.num_groups + 1)
                                          : in.range(0, std::max<std::int64_t>(pb.num_groups - 1, 0)));
    } else {
        pb.group_size = in.chance(10) ? in.range(0, 7) : in.range(1, std::max<std::int64_t>(rows, 1));
    }
    for (int k = 0; k < B_COUNT; ++k) {
        pb.present[k] = with[k];
        std::int64_t r = k == B_BASE ? 1 : rows, c = k == B_BASE ? rows : cols;
        if (in.chance(6) && c > -100 && c < 100) c += in.flag() ? 1 : -1; // a shape mismatch
        pb.L[k] = draw_layout(in, r, c, k < B_ADV, in.chance(30));
        if (k >= B_ADV && !pb.L[k].backed) pb.present[k] = false; // unbacked outputs only as hostile sizes below
    }
    // Aliasing: an output over an input's buffer or over the other output.
    if (in.chance(24)) {
        const int out = in.flag() ? B_ADV : B_RET, target = in.u8() % B_COUNT;
        if (target != out && pb.present[out]) {
            pb.buffer[out] = pb.buffer[target];
            pb.aliased = true;
        }
    }
    std::int64_t need[B_COUNT] = {};
    for (int k = 0; k < B_COUNT; ++k)
        if (pb.present[k])
            need[pb.buffer[k]] =
                std::max<std::int64_t>(need[pb.buffer[k]], pb.L[k].backed ? std::int64_t(pb.L[k].span) : 1);
    for (int b = 0; b < B_COUNT; ++b) {
        pb.bufs[b].assign(static_cast<std::size_t>(need[b] + 2), T(0));
        if (b >= B_ADV) {
            fill_sentinel(pb.bufs[b].data(), pb.bufs[b].size() * sizeof(T));
        } else if (b == B_MASK) {
            for (T& x : pb.bufs[b]) {
                const std::uint8_t m = in.u8();
                x = m < 70 ? T(0) : m < 250 ? T(1) : T(in.value(false, true));
            }
        } else {
            const bool nonfinite = in.chance(20);
            // Mostly in range: old_logp <= 0, sum_pi_squared in [0, 1], is_weights >= 0.
            const bool in_range = in.chance(230);
            for (T& x : pb.bufs[b]) {
                double v = in.value(pb.tame, nonfinite, 2.0);
                if (in_range && b == B_LOGP) v = -std::fabs(v);
                if (in_range && b == B_SQ) v = std::isfinite(v) ? std::fabs(std::sin(v)) : v;
                if (in_range && b == B_RHO) v = std::fabs(v);
                x = T(v);
            }
        }
    }
}

/// Byte equality (NaN-safe) of two buffer sets.
template <class T>
bool same_bytes(const std::vector<T>& a, const std::vector<T>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}
template <class T>
bool same_bytes(const std::vector<std::vector<T>>& a, const std::vector<std::vector<T>>& b) {
    for (std::size_t k = 0; k < a.size(); ++k)
        if (!same_bytes(a[k], b[k])) return false;
    return a.size() == b.size();
}

template <class T>
grpo::matrix_view<T> mview(problem<T>& pb, std::vector<std::vector<T>>& bufs, int k) {
    if (!pb.present[k]) return {};
    const layout& L = pb.L[k];
    return grpo::matrix_view<T>(bufs[pb.buffer[k]].data() + L.offset, L.rows, L.cols, L.rs, L.cs);
}

template <class T>
outcome call(problem<T>& pb, std::vector<std::vector<T>>& bufs, grpo::token_advantage_stats& st) {
    return call_checked("token_advantages", [&] {
        grpo::token_advantage_inputs<T> in;
        in.rewards = mview(pb, bufs, B_REW);
        in.mask = mview(pb, bufs, B_MASK);
        if (pb.present[B_BASE]) {
            const layout& L = pb.L[B_BASE];
            in.baselines = grpo::vector_view<const T>(bufs[pb.buffer[B_BASE]].data() + L.offset, L.cols, L.cs);
        }
        in.old_logp = mview(pb, bufs, B_LOGP);
        in.sum_pi_squared = mview(pb, bufs, B_SQ);
        in.is_weights = mview(pb, bufs, B_RHO);
        in.prompts = pb.by_id ? grpo::groups::by_id(grpo::vector_view<const std::int64_t>(
                                                        pb.ids.data(), static_cast<index_t>(pb.ids.size())),
                                                    pb.num_groups)
                              : grpo::groups::contiguous(pb.group_size);
        grpo::token_advantage_outputs<T> out;
        out.advantages = mview(pb, bufs, B_ADV);
        out.returns = mview(pb, bufs, B_RET);
        st = grpo::token_advantages(grpo::exec::host{}, in, out, pb.cfg);
    });
}

template <class T>
const char* tname() {
    return sizeof(T) == 8 ? "double" : "float";
}

template <class T>
void check_process_token_rewards(fuzz_input& in) {
    // Steps drawn loosely (ends may fall outside the row); the call must reject what is malformed.
    grpo::process_steps s;
    const std::int64_t rows = in.range(0, 5), cols = in.range(0, 8);
    for (std::int64_t i = 0; i < rows; ++i) {
        s.begin_row();
        for (std::int64_t n = in.range(0, 3), e = 0; n > 0; --n) {
            e = in.chance(10) ? cols + in.range(0, 2) : std::min<std::int64_t>(e + in.range(0, 3), cols - 1);
            s.add(in.value(true, in.chance(10)), e);
        }
    }
    const std::int64_t r2 = in.chance(10) ? rows + 1 : rows;
    std::vector<T> rew(static_cast<std::size_t>(r2 * cols + 1), T(-7)), mask(rew.size(), T(-7));
    const auto rew0 = rew, mask0 = mask;
    const outcome o = call_checked("process_token_rewards", [&] {
        grpo::process_token_rewards(s, grpo::matrix_view<T>(rew.data(), r2, cols),
                                    grpo::matrix_view<T>(mask.data(), r2, cols));
    });
    if (!o.ok) {
        if (!same_bytes(rew, rew0) || !same_bytes(mask, mask0))
            finding("error-wrote-output", "process_token_rewards threw but wrote");
        return;
    }
    for (std::int64_t i = 0; i < rows; ++i) {
        const std::int64_t first = s.offsets[static_cast<std::size_t>(i)],
                           last = s.offsets[static_cast<std::size_t>(i + 1)];
        const std::int64_t end = last > first ? s.ends[static_cast<std::size_t>(last - 1)] : -1;
        double sum = 0, expect = 0;
        for (std::int64_t j = first; j < last; ++j) expect += s.rewards[static_cast<std::size_t>(j)];
        for (std::int64_t t = 0; t < cols; ++t) {
            sum += double(rew[static_cast<std::size_t>(i * cols + t)]);
            if (mask[static_cast<std::size_t>(i * cols + t)] != (t <= end ? T(1) : T(0)))
                finding("process-token-mask", "mask(%lld, %lld) wrong (last end %lld)", (long long)i, (long long)t,
                        (long long)end);
        }
        if (!close(sum, expect, sizeof(T) == 8 ? 1e-12 : 1e-5))
            finding("process-token-sum", "row %lld rewards sum %.17g, steps %.17g", (long long)i, sum, expect);
    }
}

template <class T>
void run(fuzz_input& in) {
    if (in.chance(40)) return check_process_token_rewards<T>(in);
    problem<T> pb;
    build(in, pb);
    if (verbose())
        std::fprintf(stderr, "token_advantages<%s> est %d gamma %g weps %g aliased %d tame %d rew %lldx%lld\n",
                     tname<T>(), int(pb.cfg.estimator), pb.cfg.gamma, pb.cfg.whiten_epsilon, pb.aliased, pb.tame,
                     (long long)pb.L[B_REW].rows, (long long)pb.L[B_REW].cols);
    // Views of more than 2^22 representable elements over stride-0 data are valid and cost their size in time:
    // not something a fuzzer can wait for. (Sizes that overflow are kept: the library must reject them.)
    for (const layout& L : pb.L)
        if (__int128(L.rows) * L.cols > (1 << 22) && __int128(L.rows) * L.cols <= __int128(INT64_MAX)) return;
    const auto before = pb.bufs;
    grpo::token_advantage_stats st;
    const outcome res = call(pb, pb.bufs, st);
    if (!res.ok) {
        if (!same_bytes(pb.bufs, before))
            finding("error-wrote-output", "%s: token_advantages threw (%s) but wrote", tname<T>(), res.message.c_str());
        return;
    }
    if (int(pb.cfg.estimator) < 0 || int(pb.cfg.estimator) >= grpo::token_estimator_count)
        finding("enum-out-of-range-accepted", "token estimator %d accepted", int(pb.cfg.estimator));
    if (int(pb.cfg.tail) < 0 || int(pb.cfg.tail) > 2)
        finding("enum-out-of-range-accepted", "otb tail %d accepted", int(pb.cfg.tail));
    if (pb.cfg.optimal_baseline() && pb.by_id)
        for (const std::int64_t id : pb.ids)
            if (id < 0 || id >= pb.num_groups) finding("bad-id-accepted", "prompt id %lld accepted", (long long)id);
    const layout& R = pb.L[B_REW];
    const std::int64_t rows = R.rows, cols = R.cols;
    if (__int128(rows) * std::max<std::int64_t>(cols, 1) > (1 << 20)) return;
    if (pb.aliased) {
        problem<T> ref = pb;
        ref.aliased = false;
        for (int k = 0; k < B_COUNT; ++k) ref.buffer[k] = k;
        ref.bufs = before;
        for (int k = B_ADV; k < B_COUNT; ++k)
            if (ref.present[k]) {
                ref.bufs[k].assign(static_cast<std::size_t>(std::int64_t(ref.L[k].span) + 2), T(0));
                fill_sentinel(ref.bufs[k].data(), ref.bufs[k].size() * sizeof(T));
            }
        grpo::token_advantage_stats rst;
        const outcome r = call(ref, ref.bufs, rst);
        if (!r.ok) finding("alias-accepted", "aliased call succeeded, non-aliased threw: %s", r.message.c_str());
        for (int k = B_ADV; k < B_COUNT; ++k)
            if (pb.present[k])
                for (std::int64_t i = 0; i < rows; ++i)
                    for (std::int64_t t = 0; t < cols; ++t) {
                        const layout& L = pb.L[k];
                        const std::size_t at = static_cast<std::size_t>(L.offset + i * L.rs + t * L.cs);
                        if (!bits_equal(pb.bufs[pb.buffer[k]][at], ref.bufs[k][at]))
                            finding("alias-accepted-wrong-result",
                                    "output %d (%lld, %lld) differs from the non-aliased call", k, (long long)i,
                                    (long long)t);
                    }
        return;
    }
    // Inputs unchanged, nothing outside the outputs written.
    for (int b = 0; b < B_ADV; ++b)
        if (!same_bytes(pb.bufs[b], before[b])) finding("input-modified", "input buffer %d changed", b);
    for (int k = B_ADV; k < B_COUNT; ++k) {
        if (!pb.present[k]) continue;
        std::vector<char> inside(pb.bufs[k].size(), 0);
        const layout& L = pb.L[k];
        for (std::int64_t i = 0; i < rows; ++i)
            for (std::int64_t t = 0; t < cols; ++t)
                inside[static_cast<std::size_t>(L.offset + i * L.rs + t * L.cs)] = 1;
        for (std::size_t o = 0; o < inside.size(); ++o)
            if (!inside[o] && !bits_equal(pb.bufs[k][o], before[k][o]))
                finding("write-outside-view", "output %d element %zu outside its view was written", k, o);
    }
    auto at = [&](int k, std::int64_t i, std::int64_t t) {
        const layout& L = pb.L[k];
        return double(pb.bufs[pb.buffer[k]][static_cast<std::size_t>(L.offset + i * L.rs + t * L.cs)]);
    };
    const char* nan_tag = pb.tame ? "nan-from-finite" : "nan-from-finite-extreme";
    for (std::int64_t i = 0; i < rows; ++i)
        for (std::int64_t t = 0; t < cols; ++t) {
            const bool valid = at(B_MASK, i, t) != 0;
            const double a = at(B_ADV, i, t);
            if (!valid && a != 0)
                finding("masked-nonzero", "advantages(%lld, %lld) = %.9g at a masked token", (long long)i, (long long)t,
                        a);
            if (std::isnan(a))
                finding(nan_tag, "%s: advantages(%lld, %lld) is NaN", tname<T>(), (long long)i, (long long)t);
            if (pb.present[B_RET]) {
                const double g = at(B_RET, i, t);
                if (!valid && g != 0)
                    finding("masked-nonzero", "returns(%lld, %lld) = %.9g at a masked token", (long long)i,
                            (long long)t, g);
                if (valid && pb.cfg.estimator == grpo::token_estimator::remax) {
                    const layout& B = pb.L[B_BASE];
                    const double b = double(pb.bufs[pb.buffer[B_BASE]][static_cast<std::size_t>(B.offset + i * B.cs)]);
                    // G and A are each rounded to T: compare at the scale of G and b.
                    const double scale = std::fmax(1.0, std::fmax(std::fabs(g), std::fabs(b)));
                    if (!(std::fabs(a - (g - b)) <= (sizeof(T) == 8 ? 1e-12 : 1e-6) * scale) && std::fabs(g) < 1e30)
                        finding("remax-advantage", "A %.17g, G %.17g, baseline %.17g at (%lld, %lld)", a, g, b,
                                (long long)i, (long long)t);
                }
            }
        }
    // Rerun: bit-identical.
    auto again = before;
    grpo::token_advantage_stats st2;
    const outcome r = call(pb, again, st2);
    if (!r.ok) finding("nondeterministic", "second call threw: %s", r.message.c_str());
    if (!same_bytes(again, pb.bufs)) finding("nondeterministic", "outputs differ on a rerun");
}

} // namespace

GRPO_FUZZ_ENTRY_FLOAT_AND_DOUBLE()
