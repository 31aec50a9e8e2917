// SPDX-License-Identifier: MIT
// libFuzzer harness of grpo::compute_advantages (exec::host, with a pool, and exec::cuda_emulated), float and
// double: contiguous and by_id groups, per-group outputs, token weights, every estimator / std / singleton / NaN
// policy (and out-of-range enum values), strides (0 for inputs), hostile sizes, outputs aliasing inputs or
// each other.
//
// Oracles: success or grpo::error only; on error every buffer unchanged; on success inputs unchanged, nothing
// written outside the output views, unscored (NaN, ignored) rewards get advantage exactly 0, counts /
// zero-variance flags / stats.scored / num_groups match a direct count, no NaN anywhere (outputs and stats)
// ("-extreme" in the tag when some reward or weight was not tame), bit-identical on a rerun and with a pool,
// an accepted aliasing layout gives the non-aliased results, and exec::cuda_emulated agrees with the CPU
// (same success/errc, untouched outputs on error, 1e-12 / 1e-6 relative for tame inputs, docs/cuda.md).
#include <grpo/cuda_emulated.hpp>

#include "fuzz_input.hpp"

namespace {

using namespace fuzz;
using grpo::index_t;

struct vlayout {
    std::int64_t size = 0, stride = 1, offset = 0;
    __int128 span = 0;
    bool backed = true;
};

vlayout draw_vlayout(fuzz_input& in, std::int64_t size, bool read_only) {
    vlayout L;
    L.size = size;
    const std::uint8_t k = in.u8() % 12;
    L.stride = k < 8 ? 1 : k == 8 ? 2 : k == 9 ? (read_only ? 0 : 1) : k == 10 ? 3 : 1;
    if (k == 11 && hostile_enabled() && in.chance(64)) {
        const std::int64_t bad[] = {-1, std::int64_t(1) << 62, std::numeric_limits<std::int64_t>::max(), 0};
        L.stride = bad[in.u8() % 4];
    }
    L.offset = in.chance(30) ? in.u8() % 3 : 0;
    L.span = size > 0 ? __int128(L.offset) + (__int128(size) - 1) * L.stride + 1 : L.offset;
    if (L.span > kMaxElems || L.span < 0) {
        if (read_only) {
            L.stride = 0;
            L.offset = 0;
            L.span = size > 0 ? 1 : 0;
        } else {
            L.backed = false;
        }
    }
    return L;
}

template <class E>
struct vbuf {
    bool present = false;
    vlayout L;
    std::vector<E>* storage = nullptr; ///< the buffer it lies in (its own, or another one of the same type)
    std::vector<E> own;
    const char* name = "";
    bool must_drop_unbacked() const { // writable and too big to back but representable: leave it out
        const __int128 lim = std::numeric_limits<std::int64_t>::max();
        return !L.backed && L.span >= 0 && L.span <= lim && L.span * __int128(sizeof(E)) <= lim;
    }
    template <class V>
    V view() const {
        if (!present) return V();
        return V(storage->data() + L.offset, L.size, L.stride);
    }
    E& at(std::int64_t i) const { return (*storage)[static_cast<std::size_t>(L.offset + i * L.stride)]; }
};

template <class T>
struct problem {
    std::int64_t n = 0, k = 0;
    bool contiguous = true;
    std::int64_t G = 0, num_groups = 0;
    vbuf<T> rew, adv;
    vbuf<std::int64_t> ids, cnt;
    vbuf<double> tw, mean, sd;
    vbuf<std::uint8_t> zv;
    grpo::advantage_config cfg;
    bool tame = true, aliased = false;
};

template <class E>
void size_buffer(vbuf<E>& b) {
    if (b.storage == nullptr) b.storage = &b.own;
}

template <class T>
void build(fuzz_input& in, problem<T>& pb) {
    pb.cfg.estimator = in.enum_value<grpo::advantage_estimator>(grpo::advantage_estimator_count);
    pb.cfg.std = in.enum_value<grpo::std_estimator>(2);
    pb.cfg.epsilon = in.config_double({1e-4, 1e-6, 0.0, 1e-9, 1.0});
    pb.cfg.singleton = in.enum_value<grpo::singleton_group>(2);
    pb.cfg.nan = in.enum_value<grpo::nan_rewards>(2);
    pb.cfg.whiten_epsilon = in.config_double({1e-8, 0.0, 1.0});
    pb.cfg.variance_floor = in.config_double({0.0, 0.0, 1e-6, 1.0});
    pb.cfg.passk_scale_by_std = in.flag();

    const std::uint8_t mode = in.u8();
    pb.n = mode < 220 ? in.range(0, 24) : mode < 240 ? in.range(25, 3000) : (hostile_enabled() ? in.hostile_size() : 3);
    pb.contiguous = in.chance(150);
    if (pb.contiguous) {
        const std::uint8_t g = in.u8();
        if (g < 200) pb.G = std::max<std::int64_t>(1, in.range(1, 8));
        else if (g < 230) pb.G = in.range(-2, 30);
        else pb.G = hostile_enabled() ? in.hostile_size() : 1;
        if (g < 200 && pb.n > 0 && pb.n % pb.G != 0 && in.chance(200)) pb.G = 1; // mostly a divisor
        pb.k = pb.G > 0 ? (pb.n >= 0 ? pb.n / pb.G : 0) : 0;
    } else {
        const std::uint8_t g = in.u8();
        pb.num_groups = g < 220 ? in.range(0, 8) : (hostile_enabled() ? in.hostile_size() : 0);
        pb.k = pb.num_groups;
    }
    const std::int64_t n = pb.n, k = pb.k;
    auto sz = [&](std::int64_t want) {
        return in.chance(8) && want > -100 && want < (std::int64_t(1) << 40) ? want + (in.flag() ? 1 : -1) : want;
    };

    pb.rew.present = in.chance(252);
    pb.rew.name = "rewards";
    pb.rew.L = draw_vlayout(in, sz(n), true);
    pb.adv.present = true;
    pb.adv.name = "advantages";
    pb.adv.L = draw_vlayout(in, sz(n), false);
    pb.ids.present = !pb.contiguous;
    pb.ids.name = "ids";
    pb.ids.L = draw_vlayout(in, sz(n), true);
    const bool reads_weights = pb.cfg.estimator == grpo::advantage_estimator::group_centered_batch_whitened ||
                               pb.cfg.estimator == grpo::advantage_estimator::opo;
    pb.tw.present = in.chance(reads_weights ? 200 : 20);
    pb.tw.name = "token_weights";
    pb.tw.L = draw_vlayout(in, sz(n), true);
    pb.mean.present = in.chance(100);
    pb.mean.name = "group mean";
    pb.mean.L = draw_vlayout(in, sz(k), false);
    pb.sd.present = in.chance(100);
    pb.sd.name = "group std";
    pb.sd.L = draw_vlayout(in, sz(k), false);
    pb.zv.present = in.chance(100);
    pb.zv.name = "group zero_variance";
    pb.zv.L = draw_vlayout(in, sz(k), false);
    pb.cnt.present = in.chance(100);
    pb.cnt.name = "group count";
    pb.cnt.L = draw_vlayout(in, sz(k), false);
    if (pb.adv.must_drop_unbacked()) pb.adv.present = false; // absent advantages: a 0-size view
    if (pb.mean.must_drop_unbacked()) pb.mean.present = false;
    if (pb.sd.must_drop_unbacked()) pb.sd.present = false;
    if (pb.zv.must_drop_unbacked()) pb.zv.present = false;
    if (pb.cnt.must_drop_unbacked()) pb.cnt.present = false;

    // Aliasing (same element type only).
    if (in.chance(30)) {
        pb.aliased = true;
        switch (in.u8() % 4) {
        case 0: pb.adv.storage = &pb.rew.own; break;
        case 1: pb.mean.storage = &pb.sd.own; break;
        case 2: pb.mean.storage = &pb.tw.own; break;
        default: pb.cnt.storage = &pb.ids.own; break;
        }
    }
    // Buffer sizes: the largest span of any view on them, + 2 guard elements.
    auto need = [](const auto& b) -> std::int64_t { return b.present ? (b.L.backed ? std::int64_t(b.L.span) : 1) : 0; };
    auto alloc = [&](auto& b, std::int64_t extra) {
        if (b.storage == nullptr) b.storage = &b.own;
        b.own.assign(static_cast<std::size_t>(std::max(need(b), extra) + 2), {});
    };
    alloc(pb.rew, pb.adv.storage == &pb.rew.own ? need(pb.adv) : 0);
    alloc(pb.ids, pb.cnt.storage == &pb.ids.own ? need(pb.cnt) : 0);
    alloc(pb.tw, pb.mean.storage == &pb.tw.own ? need(pb.mean) : 0);
    alloc(pb.sd, pb.mean.storage == &pb.sd.own ? need(pb.mean) : 0);
    alloc(pb.adv, 0);
    alloc(pb.mean, 0);
    alloc(pb.zv, 0);
    alloc(pb.cnt, 0);
    for (auto* b : {&pb.adv}) fill_sentinel(b->own.data(), b->own.size() * sizeof(T));
    for (auto* b : {&pb.mean, &pb.sd}) fill_sentinel(b->own.data(), b->own.size() * sizeof(double));
    fill_sentinel(pb.zv.own.data(), pb.zv.own.size());
    fill_sentinel(pb.cnt.own.data(), pb.cnt.own.size() * sizeof(std::int64_t));

    // Values.
    pb.tame = in.chance(140);
    const bool nan_rewards = in.chance(60), inf_rewards = in.chance(8);
    T pal[8];
    for (T& p : pal) {
        const std::uint8_t c = in.u8();
        if (c < 40) p = T(int(c % 3)); // 0/1/2: constant groups are common in GRPO
        else p = T(in.value(pb.tame, false, 3.0));
    }
    for (T& x : pb.rew.own) {
        const std::uint8_t c = in.u8();
        x = nan_rewards && c < 30   ? std::numeric_limits<T>::quiet_NaN()
            : inf_rewards && c < 34 ? std::numeric_limits<T>::infinity()
                                    : pal[c % 8];
    }
    for (auto& x : pb.ids.own) {
        const std::uint8_t c = in.u8();
        x = c < 245   ? (k > 0 ? in.range(0, std::min<std::int64_t>(k, 1 << 20) - 1) : 0)
            : c < 250 ? k
                      : in.hostile_size();
    }
    for (double& x : pb.tw.own) {
        const std::uint8_t c = in.u8();
        x = c < 200 ? double(c % 9) : c < 240 ? in.moderate(4.0) : in.value(false, true);
        if (c >= 240) pb.tame = false;
    }
}

template <class T>
const char* tname() {
    return sizeof(T) == 4 ? "float" : "double";
}

template <class T>
grpo::groups host_groups(const problem<T>& pb) {
    return pb.contiguous
               ? grpo::groups::contiguous(pb.G)
               : grpo::groups::by_id(pb.ids.template view<grpo::vector_view<const std::int64_t>>(), pb.num_groups);
}

template <class T>
outcome host_call(const problem<T>& pb, const grpo::exec::host& ex, grpo::advantage_stats& st) {
    grpo::workspace ws;
    return call_checked("compute_advantages", [&] {
        grpo::group_outputs go;
        go.mean = pb.mean.template view<grpo::vector_view<double>>();
        go.std = pb.sd.template view<grpo::vector_view<double>>();
        go.zero_variance = pb.zv.template view<grpo::vector_view<std::uint8_t>>();
        go.count = pb.cnt.template view<grpo::vector_view<std::int64_t>>();
        st = grpo::compute_advantages(ex, pb.rew.template view<grpo::vector_view<const T>>(), host_groups(pb),
                                      pb.adv.template view<grpo::vector_view<T>>(), pb.cfg, ws, go,
                                      pb.tw.template view<grpo::vector_view<const double>>());
    });
}

template <class T>
outcome emulated_call(const problem<T>& pb, int threads, grpo::advantage_stats& st) {
    grpo::emulated_workspace ws;
    return call_checked("compute_advantages(cuda_emulated)", [&] {
        grpo::device_group_outputs go;
        go.mean = pb.mean.template view<grpo::vector_view<double, grpo::device_space>>();
        go.std = pb.sd.template view<grpo::vector_view<double, grpo::device_space>>();
        go.zero_variance = pb.zv.template view<grpo::vector_view<std::uint8_t, grpo::device_space>>();
        go.count = pb.cnt.template view<grpo::vector_view<std::int64_t, grpo::device_space>>();
        const grpo::device_groups g =
            pb.contiguous
                ? grpo::device_groups(grpo::groups::contiguous(pb.G))
                : grpo::device_groups::by_id(
                      pb.ids.template view<grpo::vector_view<const std::int64_t, grpo::device_space>>(), pb.num_groups);
        st = grpo::compute_advantages(grpo::exec::cuda_emulated{threads},
                                      pb.rew.template view<grpo::vector_view<const T, grpo::device_space>>(), g,
                                      pb.adv.template view<grpo::vector_view<T, grpo::device_space>>(), pb.cfg, ws, go,
                                      pb.tw.template view<grpo::vector_view<const double, grpo::device_space>>());
    });
}

/// Copies a problem with every buffer its own (no aliasing) and fresh sentinel outputs.
template <class T>
void copy_unaliased(const problem<T>& src, problem<T>& dst) {
    dst = src;
    dst.aliased = false;
    dst.rew.storage = &dst.rew.own;
    dst.ids.storage = &dst.ids.own;
    dst.tw.storage = &dst.tw.own;
    dst.sd.storage = &dst.sd.own;
    dst.adv.storage = &dst.adv.own;
    dst.mean.storage = &dst.mean.own;
    dst.zv.storage = &dst.zv.own;
    dst.cnt.storage = &dst.cnt.own;
    auto fresh = [](auto& b) {
        b.own.assign(static_cast<std::size_t>((b.present && b.L.backed ? std::int64_t(b.L.span) : 1) + 2), {});
        fill_sentinel(b.own.data(), b.own.size() * sizeof(b.own[0]));
    };
    fresh(dst.adv);
    fresh(dst.mean);
    fresh(dst.sd);
    fresh(dst.zv);
    fresh(dst.cnt);
}

struct all_snapshots {
    std::vector<std::pair<const char*, snapshot>> s;
    template <class E>
    void add(const vbuf<E>& b) {
        s.emplace_back(b.name, snapshot(b.own.data(), b.own.size() * sizeof(E)));
    }
    void check(const char* tag, const char* what) const {
        for (const auto& x : s)
            if (x.second.first_change() >= 0)
                finding(tag, "%s: buffer of %s changed at byte %td", what, x.first, x.second.first_change());
    }
};

template <class T>
all_snapshots snap(const problem<T>& pb) {
    all_snapshots a;
    a.add(pb.rew);
    a.add(pb.adv);
    a.add(pb.ids);
    a.add(pb.tw);
    a.add(pb.mean);
    a.add(pb.sd);
    a.add(pb.zv);
    a.add(pb.cnt);
    return a;
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
constexpr int kStatFields = 10;
const char* const stat_name[kStatFields] = {
    "num_groups", "zero_variance_groups", "zero_variance_fraction", "scored",        "reward_mean",
    "reward_std", "advantage_mean",       "advantage_std",          "advantage_min", "advantage_max"};

template <class E>
bool same_view_values(const vbuf<E>& a, const vbuf<E>& b, std::int64_t* where) {
    if (!a.present) return true;
    for (std::int64_t i = 0; i < a.L.size; ++i)
        if (std::memcmp(&a.at(i), &b.at(i), sizeof(E)) != 0) {
            *where = i;
            return false;
        }
    return true;
}

template <class T>
void compare_outputs(const char* tag, const char* what, const problem<T>& a, const problem<T>& b) {
    std::int64_t i = 0;
    if (!same_view_values(a.adv, b.adv, &i))
        finding(tag, "%s: advantages[%lld] %.17g vs %.17g", what, (long long)i, double(a.adv.at(i)),
                double(b.adv.at(i)));
    if (!same_view_values(a.mean, b.mean, &i))
        finding(tag, "%s: group mean[%lld] %.17g vs %.17g", what, (long long)i, a.mean.at(i), b.mean.at(i));
    if (!same_view_values(a.sd, b.sd, &i))
        finding(tag, "%s: group std[%lld] %.17g vs %.17g", what, (long long)i, a.sd.at(i), b.sd.at(i));
    if (!same_view_values(a.zv, b.zv, &i)) finding(tag, "%s: group zero_variance[%lld] differs", what, (long long)i);
    if (!same_view_values(a.cnt, b.cnt, &i)) finding(tag, "%s: group count[%lld] differs", what, (long long)i);
}

template <class T>
void describe(const problem<T>& pb) {
    std::fprintf(stderr,
                 "advantages<%s> n %lld %s G %lld num_groups %lld k %lld tame %d aliased %d | est %d std %d eps %g "
                 "singleton %d nan %d weps %g floor %g passk_std %d\n",
                 tname<T>(), (long long)pb.n, pb.contiguous ? "contiguous" : "by_id", (long long)pb.G,
                 (long long)pb.num_groups, (long long)pb.k, pb.tame, pb.aliased, int(pb.cfg.estimator), int(pb.cfg.std),
                 pb.cfg.epsilon, int(pb.cfg.singleton), int(pb.cfg.nan), pb.cfg.whiten_epsilon, pb.cfg.variance_floor,
                 int(pb.cfg.passk_scale_by_std));
    auto d = [](const auto& b) {
        if (!b.present) return;
        std::fprintf(stderr, "  %s: size %lld stride %lld offset %lld backed %d:", b.name, (long long)b.L.size,
                     (long long)b.L.stride, (long long)b.L.offset, b.L.backed);
        for (std::int64_t i = 0; i < b.L.size && i < 24 && b.L.backed; ++i)
            std::fprintf(stderr, " %.9g", double(b.at(i)));
        std::fprintf(stderr, "\n");
    };
    d(pb.rew);
    d(pb.ids);
    d(pb.tw);
}

template <class T>
void run(fuzz_input& in) {
    problem<T> pb;
    build(in, pb);
    if (verbose()) describe(pb);
    problem<T> pristine;
    copy_unaliased(pb, pristine);
    // pristine keeps the aliased buffers' input contents too (copy_unaliased copied them before refreshing outputs)
    const all_snapshots before = snap(pb);
    const bool do_emulated = in.chance(40) && pb.n >= 0 && pb.n <= 64 && pb.k >= 0 && pb.k <= 16;
    const int threads = 1 + in.u8() % 6;

    grpo::advantage_stats st;
    const outcome res = host_call(pb, grpo::exec::host{}, st);
    if (!res.ok) {
        before.check("error-wrote-output", "compute_advantages threw");
        if (do_emulated && !pb.aliased) {
            problem<T> e;
            copy_unaliased(pristine, e);
            const all_snapshots eb = snap(e);
            grpo::advantage_stats est;
            const outcome r = emulated_call(e, threads, est);
            if (r.ok || r.code != res.code)
                finding("emulated-vs-cpu-outcome", "%s: cpu threw errc %d (%s); cuda_emulated %s errc %d (%s)",
                        tname<T>(), int(res.code), res.message.c_str(), r.ok ? "succeeded" : "threw", int(r.code),
                        r.message.c_str());
            eb.check("emulated-error-wrote", "cuda_emulated threw");
        }
        return;
    }
    {
        const grpo::advantage_config& c = pb.cfg;
        if (int(c.estimator) < 0 || int(c.estimator) >= grpo::advantage_estimator_count || int(c.std) < 0 ||
            int(c.std) > 1 || int(c.singleton) < 0 || int(c.singleton) > 1 || int(c.nan) < 0 || int(c.nan) > 1)
            finding("enum-out-of-range-accepted", "advantage_config est %d std %d singleton %d nan %d accepted",
                    int(c.estimator), int(c.std), int(c.singleton), int(c.nan));
    }
    if (pb.aliased) {
        problem<T> ref;
        copy_unaliased(pristine, ref);
        grpo::advantage_stats rst;
        const outcome r = host_call(ref, grpo::exec::host{}, rst);
        if (!r.ok) finding("alias-accepted", "aliased call succeeded, non-aliased threw: %s", r.message.c_str());
        compare_outputs("alias-accepted-wrong-result", "aliased output accepted, differs from non-aliased call", pb,
                        ref);
        return;
    }
    if (pb.n > (std::int64_t(1) << 22) || pb.k > (std::int64_t(1) << 22)) return; // accepted a huge empty problem
    // Inputs unchanged; outputs written only inside their views.
    {
        all_snapshots in_only;
        in_only.add(pb.rew);
        in_only.add(pb.ids);
        in_only.add(pb.tw);
        in_only.check("input-modified", "successful compute_advantages");
        auto outside = [&](const auto& b, const auto& p) {
            if (!b.present) return;
            std::vector<char> inside(b.own.size(), 0);
            for (std::int64_t i = 0; i < b.L.size; ++i)
                inside[static_cast<std::size_t>(b.L.offset + i * b.L.stride)] = 1;
            for (std::size_t o = 0; o < inside.size(); ++o)
                if (!inside[o] && std::memcmp(&b.own[o], &p.own[o], sizeof(b.own[0])) != 0)
                    finding("write-outside-view", "%s buffer element %zu outside the view was written", b.name, o);
        };
        outside(pb.adv, pristine.adv);
        outside(pb.mean, pristine.mean);
        outside(pb.sd, pristine.sd);
        outside(pb.zv, pristine.zv);
        outside(pb.cnt, pristine.cnt);
    }
    // Direct counts (n and k of the call as made: the rewards view may differ from pb.n when advantages agree).
    const std::int64_t n = pb.rew.present ? pb.rew.L.size : 0;
    const std::int64_t k = pb.contiguous ? (pb.G > 0 ? n / pb.G : 0) : pb.num_groups;
    std::vector<std::int64_t> count(static_cast<std::size_t>(std::max<std::int64_t>(k, 0)), 0);
    std::int64_t scored = 0;
    for (std::int64_t i = 0; i < n; ++i) {
        const T r = pb.rew.at(i);
        if (std::isnan(double(r))) {
            if (pb.adv.at(i) != T(0))
                finding("unscored-advantage-nonzero", "advantages[%lld] = %.9g for a NaN (ignored) reward",
                        (long long)i, double(pb.adv.at(i)));
            continue;
        }
        ++scored;
        const std::int64_t g = pb.contiguous ? i / pb.G : pb.ids.at(i);
        count[static_cast<std::size_t>(g)] += 1;
    }
    if (st.scored != scored)
        finding("stats-scored", "stats.scored %lld, expected %lld", (long long)st.scored, (long long)scored);
    if (st.num_groups != k)
        finding("stats-num-groups", "stats.num_groups %lld, expected %lld", (long long)st.num_groups, (long long)k);
    for (std::int64_t j = 0; j < k; ++j) {
        if (pb.cnt.present && pb.cnt.at(j) != count[static_cast<std::size_t>(j)])
            finding("group-count", "count[%lld] = %lld, expected %lld", (long long)j, (long long)pb.cnt.at(j),
                    (long long)count[static_cast<std::size_t>(j)]);
        if (pb.zv.present && pb.zv.at(j) > 1)
            finding("group-zero-variance", "zero_variance[%lld] = %d", (long long)j, int(pb.zv.at(j)));
        if (pb.sd.present && !(pb.sd.at(j) >= 0) && !std::isnan(pb.sd.at(j)))
            finding("group-std-negative", "std[%lld] = %.17g", (long long)j, pb.sd.at(j));
    }
    // No NaN.
    const char* nan_tag = pb.tame ? "nan-from-finite" : "nan-from-finite-extreme";
    for (std::int64_t i = 0; i < n; ++i)
        if (std::isnan(double(pb.adv.at(i))))
            finding(nan_tag, "%s: advantages[%lld] is NaN (reward %.9g, est %d, eps %g)", tname<T>(), (long long)i,
                    double(pb.rew.at(i)), int(pb.cfg.estimator), pb.cfg.epsilon);
    for (std::int64_t j = 0; j < k; ++j) {
        if (pb.mean.present && std::isnan(pb.mean.at(j))) finding(nan_tag, "group mean[%lld] is NaN", (long long)j);
        if (pb.sd.present && std::isnan(pb.sd.at(j))) finding(nan_tag, "group std[%lld] is NaN", (long long)j);
    }
    for (int f = 0; f < kStatFields; ++f)
        if (std::isnan(stat_field(st, f)))
            finding(nan_tag, "%s: stats.%s is NaN (est %d)", tname<T>(), stat_name[f], int(pb.cfg.estimator));

    // Rerun and pool: bit-identical.
    for (int rep = 0; rep < 2; ++rep) {
        problem<T> again;
        copy_unaliased(pristine, again);
        grpo::advantage_stats st2;
        const grpo::exec::host ex = rep == 0 ? grpo::exec::host{} : grpo::exec::host{&pool(2 + (threads & 1))};
        const outcome r = host_call(again, ex, st2);
        const char* tag = rep == 0 ? "nondeterministic" : "pool-vs-serial";
        if (!r.ok) finding(tag, "second call threw: %s", r.message.c_str());
        compare_outputs(tag, rep == 0 ? "rerun" : "with a pool", pb, again);
        for (int f = 0; f < kStatFields; ++f)
            if (!bits_equal(stat_field(st, f), stat_field(st2, f)))
                finding(tag, "stats.%s %.17g vs %.17g", stat_name[f], stat_field(st, f), stat_field(st2, f));
    }

    if (do_emulated) {
        problem<T> e;
        copy_unaliased(pristine, e);
        grpo::advantage_stats est;
        const outcome r = emulated_call(e, threads, est);
        if (!r.ok)
            finding("emulated-vs-cpu-outcome", "%s: cpu succeeded, cuda_emulated threw: %s", tname<T>(),
                    r.message.c_str());
        if (pb.tame) {
            const double rel = sizeof(T) == 8 ? 1e-12 : 1e-6;
            for (int f = 0; f < kStatFields; ++f)
                if (!close(stat_field(st, f), stat_field(est, f), rel))
                    finding("emulated-vs-cpu-stats", "%s: stats.%s cpu %.17g, cuda_emulated %.17g (est %d)", tname<T>(),
                            stat_name[f], stat_field(st, f), stat_field(est, f), int(pb.cfg.estimator));
            for (std::int64_t i = 0; i < n; ++i)
                if (!close(double(pb.adv.at(i)), double(e.adv.at(i)), rel))
                    finding("emulated-vs-cpu-output", "%s: advantages[%lld] cpu %.17g, cuda_emulated %.17g (est %d)",
                            tname<T>(), (long long)i, double(pb.adv.at(i)), double(e.adv.at(i)), int(pb.cfg.estimator));
            for (std::int64_t j = 0; j < k; ++j) {
                if (pb.mean.present && !close(pb.mean.at(j), e.mean.at(j), rel))
                    finding("emulated-vs-cpu-output", "group mean[%lld] cpu %.17g emulated %.17g", (long long)j,
                            pb.mean.at(j), e.mean.at(j));
                if (pb.sd.present && !close(pb.sd.at(j), e.sd.at(j), rel))
                    finding("emulated-vs-cpu-output", "group std[%lld] cpu %.17g emulated %.17g", (long long)j,
                            pb.sd.at(j), e.sd.at(j));
                if (pb.zv.present && pb.zv.at(j) != e.zv.at(j))
                    finding("emulated-vs-cpu-output", "group zero_variance[%lld] cpu %d emulated %d", (long long)j,
                            int(pb.zv.at(j)), int(e.zv.at(j)));
                if (pb.cnt.present && pb.cnt.at(j) != e.cnt.at(j))
                    finding("emulated-vs-cpu-output", "group count[%lld] cpu %lld emulated %lld", (long long)j,
                            (long long)pb.cnt.at(j), (long long)e.cnt.at(j));
            }
        }
    }
}

} // namespace

GRPO_FUZZ_ENTRY_FLOAT_AND_DOUBLE()
