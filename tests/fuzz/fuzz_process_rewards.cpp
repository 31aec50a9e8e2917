// SPDX-License-Identifier: MIT
// libFuzzer harness of grpo::process_advantages (view overload and process_steps overload), float and double:
// malformed offsets (not starting at 0, decreasing, not ending at the step count, wrong size, broadcast), ends
// out of range or decreasing, non-finite rewards, contiguous and by_id groups, token_advantages strides,
// the optional `normalized` output, outputs aliasing the step rewards or each other, hostile extents.
//
// Oracles: success or grpo::error only; on error every buffer unchanged; on success inputs unchanged, nothing
// written outside the output views, token advantages 0 after each row's last step end (and everywhere in rows
// without steps), no NaN ("-extreme" tag unless the rewards were tame), the normalized rewards of each row sum
// to its first token's advantage... (suffix sum: A(i, 0) = sum of r~ of the row's steps), bit-identical on a
// rerun and with a thread pool, and an accepted aliasing layout gives the non-aliased results.
#include "fuzz_input.hpp"

namespace {

using namespace fuzz;
using grpo::index_t;

/// All T-typed views (step rewards, token advantages, normalized) live in one arena so that aliasing is just
/// overlapping regions.
template <class T>
struct problem {
    std::int64_t rows = 0, cols = 0, steps = 0;
    std::vector<std::int64_t> offsets, ends, ids;
    std::int64_t off_size = 0, off_stride = 1, end_size = 0, ids_size = 0;
    bool contiguous = true;
    std::int64_t G = 1, num_groups = 0;
    grpo::process_reward_config cfg;
    // arena regions
    std::int64_t rew_base = 0, rew_size = 0, rew_stride = 1;
    layout adv; ///< offset = base in the arena
    bool has_norm = false;
    std::int64_t norm_base = 0, norm_size = 0;
    std::vector<T> arena;
    bool tame = true, aliased = false, use_builder = false;
};

template <class T>
void build(fuzz_input& in, problem<T>& pb) {
    const bool h = hostile_enabled() && in.chance(8);
    pb.rows = h && in.flag() ? in.hostile_size() : in.range(0, 8);
    pb.cols = h && in.flag() ? in.hostile_size() : in.range(0, 12);
    pb.cfg.std = in.enum_value<grpo::std_estimator>(2);
    pb.cfg.epsilon = in.config_double({1e-4, 0.0, 1e-6, 1.0});
    pb.tame = in.chance(160);
    const std::int64_t rows = std::max<std::int64_t>(0, std::min<std::int64_t>(pb.rows, 64));
    const std::int64_t cols = std::max<std::int64_t>(0, std::min<std::int64_t>(pb.cols, 64));
    // Well-formed steps first.
    pb.offsets.push_back(0);
    for (std::int64_t i = 0; i < rows; ++i) {
        const std::int64_t n = cols > 0 ? in.range(0, 4) : 0;
        std::int64_t e = 0;
        for (std::int64_t s = 0; s < n; ++s) {
            e = std::min<std::int64_t>(cols - 1, e + in.range(0, 4));
            pb.ends.push_back(e);
        }
        pb.offsets.push_back(static_cast<std::int64_t>(pb.ends.size()));
    }
    pb.steps = static_cast<std::int64_t>(pb.ends.size());
    // Then damage.
    if (in.chance(20)) pb.offsets[in.u8() % pb.offsets.size()] += in.flag() ? 1 : -1;
    if (in.chance(6)) pb.offsets[in.u8() % pb.offsets.size()] = in.hostile_size();
    if (!pb.ends.empty() && in.chance(20)) {
        const std::uint8_t c = in.u8() % 4;
        auto& e = pb.ends[in.u8() % pb.ends.size()];
        e = c == 0 ? -1 : c == 1 ? cols : c == 2 ? in.hostile_size() : e + 2;
    }
    // rows may be hostile (up to INT64_MAX): the harness's own arithmetic must not overflow.
    const std::int64_t want = pb.rows < INT64_MAX - 2 ? pb.rows + 1 : INT64_MAX;
    pb.off_size = in.chance(8) && want < INT64_MAX ? want + (in.flag() ? 1 : -1) : want;
    if (pb.off_size < 0 || pb.off_size > 66) pb.off_size = static_cast<std::int64_t>(pb.offsets.size());
    pb.off_stride = in.chance(10) ? 0 : 1;
    if (pb.off_size > static_cast<std::int64_t>(pb.offsets.size()))
        pb.offsets.resize(static_cast<std::size_t>(pb.off_size), 0);
    pb.end_size = in.chance(8) ? pb.steps + (in.flag() ? 1 : -1) : pb.steps;
    if (pb.end_size < 0) pb.end_size = 0;
    pb.ends.resize(static_cast<std::size_t>(std::max<std::int64_t>(pb.end_size, 1)), 0);
    // Groups.
    pb.contiguous = in.chance(170);
    if (pb.contiguous) {
        pb.G = in.chance(240) ? in.range(1, 4) : (in.flag() ? 0 : in.hostile_size());
        if (rows > 0 && pb.G > 0 && rows % pb.G != 0 && in.chance(200)) pb.G = 1;
    } else {
        pb.num_groups = in.chance(245) ? in.range(0, 4) : in.hostile_size();
        pb.ids_size = in.chance(8) ? rows + 1 : rows;
        pb.ids.resize(static_cast<std::size_t>(pb.ids_size + 1));
        for (auto& x : pb.ids)
            x = in.chance(245) ? (pb.num_groups > 0 ? in.range(0, std::min<std::int64_t>(pb.num_groups, 64) - 1) : 0)
                               : -1;
    }
    // Arena layout.
    pb.rew_size = in.chance(8) ? pb.steps + 1 : pb.steps;
    pb.rew_stride = in.chance(20) ? 2 : 1;
    const std::int64_t rew_span = pb.rew_size > 0 ? (pb.rew_size - 1) * pb.rew_stride + 1 : 0;
    pb.adv = draw_layout(in, pb.rows, pb.cols, false, in.chance(30));
    if (!pb.adv.backed) {
        const __int128 lim = std::numeric_limits<std::int64_t>::max();
        if (pb.adv.span >= 0 && pb.adv.span <= lim && pb.adv.span * __int128(sizeof(T)) <= lim) {
            pb.rows = rows; // cannot back it: fall back to a small, well-formed output
            pb.cols = cols;
            pb.adv = draw_layout(in, rows, cols, false, false);
        }
    }
    const std::int64_t adv_span = pb.adv.backed ? std::int64_t(pb.adv.span) : 1;
    pb.has_norm = in.chance(110);
    pb.norm_size = in.chance(8) ? pb.steps + 1 : pb.steps;
    pb.aliased = in.chance(30);
    const std::uint8_t alias_kind = in.u8() % 3;
    pb.rew_base = 0;
    std::int64_t adv_base = rew_span + 2, norm_base = adv_base + adv_span + 2;
    if (pb.aliased) {
        if (alias_kind == 0) adv_base = in.range(0, std::max<std::int64_t>(rew_span, 1) - 1);       // adv over rewards
        else if (alias_kind == 1) norm_base = in.range(0, std::max<std::int64_t>(rew_span, 1) - 1); // norm over rewards
        else norm_base = adv_base + in.range(0, std::max<std::int64_t>(adv_span, 1) - 1);           // norm over adv
    }
    pb.adv.offset += adv_base;
    pb.norm_base = norm_base;
    const std::int64_t total = std::max({rew_span, pb.adv.offset + adv_span, norm_base + pb.norm_size}) + 2;
    pb.arena.assign(static_cast<std::size_t>(total), T(0));
    fill_sentinel(pb.arena.data(), pb.arena.size() * sizeof(T));
    const bool nonfinite = in.chance(12);
    for (std::int64_t j = 0; j < pb.rew_size; ++j) {
        const std::uint8_t c = in.u8();
        pb.arena[static_cast<std::size_t>(j * pb.rew_stride)] =
            c < 50 ? T(c % 3) : T(in.value(pb.tame, nonfinite, 2.0));
    }
    pb.use_builder = in.chance(40);
}

template <class T>
outcome call(problem<T>& pb, std::vector<T>& arena, const grpo::exec::host& ex, grpo::advantage_stats& st) {
    return call_checked("process_advantages", [&] {
        const grpo::groups g =
            pb.contiguous
                ? grpo::groups::contiguous(pb.G)
                : grpo::groups::by_id(grpo::vector_view<const std::int64_t>(pb.ids.data(), pb.ids_size), pb.num_groups);
        const grpo::matrix_view<T> adv(arena.data() + pb.adv.offset, pb.adv.rows, pb.adv.cols, pb.adv.rs, pb.adv.cs);
        const grpo::vector_view<T> norm =
            pb.has_norm ? grpo::vector_view<T>(arena.data() + pb.norm_base, pb.norm_size) : grpo::vector_view<T>();
        if (pb.use_builder && !pb.aliased) {
            grpo::process_steps s; // rebuilt from the (possibly damaged) arrays through the builder's fields
            s.rewards.clear();
            for (std::int64_t j = 0; j < pb.rew_size; ++j)
                s.rewards.push_back(double(arena[static_cast<std::size_t>(j * pb.rew_stride)]));
            s.ends.assign(pb.ends.begin(), pb.ends.begin() + pb.end_size);
            s.offsets.clear();
            for (std::int64_t i = 0; i < pb.off_size; ++i)
                s.offsets.push_back(pb.offsets[static_cast<std::size_t>(i * pb.off_stride)]);
            if (s.offsets.empty()) s.offsets.push_back(0);
            st = grpo::process_advantages(ex, s, g, adv, pb.cfg, norm);
        } else {
            const grpo::vector_view<const T> rew(arena.data() + pb.rew_base, pb.rew_size, pb.rew_stride);
            st = grpo::process_advantages(
                ex, rew, grpo::vector_view<const std::int64_t>(pb.offsets.data(), pb.off_size, pb.off_stride),
                grpo::vector_view<const std::int64_t>(pb.ends.data(), pb.end_size), g, adv, pb.cfg, norm);
        }
    });
}

template <class T>
const char* tname() {
    return sizeof(T) == 4 ? "float" : "double";
}

double stat_field(const grpo::advantage_stats& s, int k) {
    const double f[] = {double(s.num_groups),
                        double(s.zero_variance_groups),
                        s.zero_variance_fraction,
                        double(s.scored),
                        s.reward_mean,
                        s.reward_std,
                        s.advantage_mean,
                        s.advantage_std,
                        s.advantage_min,
                        s.advantage_max};
    return f[k];
}

template <class T>
void run(fuzz_input& in) {
    problem<T> pb;
    build(in, pb);
    if (verbose())
        std::fprintf(
            stderr,
            "process<%s> rows %lld cols %lld steps %lld groups %s G %lld k %lld aliased %d builder %d tame %d\n",
            tname<T>(), (long long)pb.rows, (long long)pb.cols, (long long)pb.steps,
            pb.contiguous ? "contiguous" : "by_id", (long long)pb.G, (long long)pb.num_groups, pb.aliased,
            pb.use_builder, pb.tame);
    const std::vector<T> before = pb.arena;
    const auto offsets0 = pb.offsets, ends0 = pb.ends, ids0 = pb.ids;
    grpo::advantage_stats st;
    const outcome res = call(pb, pb.arena, grpo::exec::host{}, st);
    if (pb.offsets != offsets0 || pb.ends != ends0 || pb.ids != ids0)
        finding("input-modified", "offsets/ends/ids changed by process_advantages");
    if (!res.ok) {
        if (std::memcmp(before.data(), pb.arena.data(), before.size() * sizeof(T)) != 0)
            finding("error-wrote-output", "%s: process_advantages threw (%s) but wrote to its buffers", tname<T>(),
                    res.message.c_str());
        return;
    }
    if (int(pb.cfg.std) < 0 || int(pb.cfg.std) > 1)
        finding("enum-out-of-range-accepted", "process_reward_config std %d accepted", int(pb.cfg.std));
    const std::int64_t rows = pb.adv.rows, cols = pb.adv.cols;
    if (__int128(rows) * std::max<std::int64_t>(cols, 1) > (1 << 22)) return;
    if (pb.aliased) {
        problem<T> ref = pb;
        ref.aliased = false;
        ref.use_builder = false; // the aliased call used the view overload
        // Disjoint placement of the same layouts.
        const std::int64_t rew_span = pb.rew_size > 0 ? (pb.rew_size - 1) * pb.rew_stride + 1 : 0;
        const std::int64_t adv_span = std::int64_t(pb.adv.span) - (pb.adv.offset);
        ref.adv.offset = rew_span + 2 + (pb.adv.offset - 0) % 1;
        ref.adv.offset = rew_span + 2;
        ref.norm_base = ref.adv.offset + std::max<std::int64_t>(std::int64_t(pb.adv.span), 1) + 2;
        (void)adv_span;
        ref.arena.assign(static_cast<std::size_t>(ref.norm_base + pb.norm_size + 2), T(0));
        for (std::int64_t j = 0; j < pb.rew_size; ++j)
            ref.arena[static_cast<std::size_t>(j * pb.rew_stride)] =
                before[static_cast<std::size_t>(j * pb.rew_stride)];
        grpo::advantage_stats rst;
        const outcome r = call(ref, ref.arena, grpo::exec::host{}, rst);
        if (!r.ok) finding("alias-accepted", "aliased call succeeded, non-aliased threw: %s", r.message.c_str());
        for (std::int64_t i = 0; i < rows; ++i)
            for (std::int64_t t = 0; t < cols; ++t) {
                const T a = pb.arena[static_cast<std::size_t>(pb.adv.offset + i * pb.adv.rs + t * pb.adv.cs)];
                const T b = ref.arena[static_cast<std::size_t>(ref.adv.offset + i * pb.adv.rs + t * pb.adv.cs)];
                if (!bits_equal(a, b))
                    finding("alias-accepted-wrong-result",
                            "%s: aliased token_advantages(%lld, %lld) = %.9g, non-aliased %.9g", tname<T>(),
                            (long long)i, (long long)t, double(a), double(b));
            }
        if (pb.has_norm)
            for (std::int64_t j = 0; j < pb.norm_size; ++j)
                if (!bits_equal(pb.arena[static_cast<std::size_t>(pb.norm_base + j)],
                                ref.arena[static_cast<std::size_t>(ref.norm_base + j)]))
                    finding("alias-accepted-wrong-result", "%s: aliased normalized[%lld] differs", tname<T>(),
                            (long long)j);
        return;
    }
    // Inputs unchanged and nothing outside the output views.
    std::vector<char> out(pb.arena.size(), 0);
    for (std::int64_t i = 0; i < rows; ++i)
        for (std::int64_t t = 0; t < cols; ++t)
            out[static_cast<std::size_t>(pb.adv.offset + i * pb.adv.rs + t * pb.adv.cs)] = 1;
    if (pb.has_norm)
        for (std::int64_t j = 0; j < pb.norm_size; ++j) out[static_cast<std::size_t>(pb.norm_base + j)] = 1;
    for (std::size_t o = 0; o < out.size(); ++o)
        if (!out[o] && !bits_equal(pb.arena[o], before[o]))
            finding("write-outside-view", "%s: arena element %zu (rewards or padding) changed", tname<T>(), o);
    // Zero after each row's last step; no NaN.
    const char* nan_tag = pb.tame ? "nan-from-finite" : "nan-from-finite-extreme";
    for (std::int64_t i = 0; i < rows; ++i) {
        const std::int64_t first = pb.offsets[static_cast<std::size_t>(i * pb.off_stride)];
        const std::int64_t last = pb.offsets[static_cast<std::size_t>((i + 1) * pb.off_stride)];
        const std::int64_t end = last > first ? pb.ends[static_cast<std::size_t>(last - 1)] : -1;
        for (std::int64_t t = 0; t < cols; ++t) {
            const T a = pb.arena[static_cast<std::size_t>(pb.adv.offset + i * pb.adv.rs + t * pb.adv.cs)];
            if (t > end && a != T(0))
                finding("advantage-after-last-step",
                        "%s: token_advantages(%lld, %lld) = %.9g after the row's last step end %lld", tname<T>(),
                        (long long)i, (long long)t, double(a), (long long)end);
            if (std::isnan(double(a)))
                finding(nan_tag, "%s: token_advantages(%lld, %lld) is NaN (epsilon %g, std %d)", tname<T>(),
                        (long long)i, (long long)t, pb.cfg.epsilon, int(pb.cfg.std));
        }
    }
    for (int f = 0; f < 10; ++f)
        if (std::isnan(stat_field(st, f))) finding(nan_tag, "%s: stats field %d is NaN", tname<T>(), f);
    // Rerun and pool: bit-identical.
    for (int rep = 0; rep < 2; ++rep) {
        std::vector<T> arena = before;
        grpo::advantage_stats st2;
        const grpo::exec::host ex = rep == 0 ? grpo::exec::host{} : grpo::exec::host{&pool(2)};
        const outcome r = call(pb, arena, ex, st2);
        const char* tag = rep == 0 ? "nondeterministic" : "pool-vs-serial";
        if (!r.ok) finding(tag, "second call threw: %s", r.message.c_str());
        if (std::memcmp(arena.data(), pb.arena.data(), arena.size() * sizeof(T)) != 0) finding(tag, "outputs differ");
        for (int f = 0; f < 10; ++f)
            if (!bits_equal(stat_field(st, f), stat_field(st2, f))) finding(tag, "stats field %d differs", f);
    }
}

} // namespace

GRPO_FUZZ_ENTRY_FLOAT_AND_DOUBLE()
