// SPDX-License-Identifier: MIT
// libFuzzer harness of grpo::loss_and_grad (exec::host, with and without a thread pool, and exec::cuda_emulated),
// float and double: random configuration (every enum, out-of-range ones too), every optional view present or
// absent, strides, broadcast, lengths, validation modes, hostile extents, outputs aliasing inputs or each other.
//
// Oracles:
//  * the call succeeds or throws grpo::error (anything else: finding);
//  * on grpo::error every buffer is byte-identical to before (outputs untouched, inputs never written);
//  * on success: inputs unchanged, nothing written outside the output views, grad/per_token exactly 0 at masked
//    positions, token_count = unmasked tokens, no NaN in outputs or stats when every unmasked input is finite;
//  * masked cells never matter: garbage (NaN, Inf, 3e38) in every masked/padding cell of every input gives
//    bit-identical outputs and stats;
//  * thread_pool(2/3) gives bit-identical outputs and stats (and the same error);
//  * an accepted aliasing layout gives the same outputs as the non-aliased call;
//  * exec::cuda_emulated agrees with the CPU's baseline version (no FMA, like the emulator): same success/errc,
//    outputs untouched on error, results within docs/cuda.md's tolerance (1e-12 relative for double, 1e-6 for
//    float, scale max(1, |a|, |b|)) for tame inputs.
#include <grpo/cuda_emulated.hpp>

#include "fuzz_input.hpp"

namespace {

using namespace fuzz;
using grpo::index_t;

enum arr_id { A_LOGP, A_OLD, A_REF, A_ADV, A_MASK, A_GRAD, A_PER, A_COUNT };
const char* const arr_name[A_COUNT] = {"logp", "old_logp",  "ref_logp",      "advantages",
                                       "mask", "grad_logp", "per_token_loss"};

struct spec {
    bool present = false;
    int buffer = 0; ///< index into the buffer set (own index unless aliased)
    layout L;
};

template <class T>
struct problem {
    spec a[A_COUNT];
    std::vector<std::vector<T>> bufs = std::vector<std::vector<T>>(A_COUNT);
    bool has_lengths = false;
    std::vector<std::int64_t> lengths;
    std::int64_t len_size = 0, len_stride = 1;
    grpo::loss_config cfg;
    std::int64_t rows = 0, cols = 0;
    bool tame = false;
    bool aliased = false; ///< an output shares a buffer with another view
};

/// Views of a problem over a given buffer set (the problem's own, a pristine copy, a garbage copy...).
template <class T, class Space>
struct views {
    grpo::loss_inputs<T, Space> in;
    grpo::loss_outputs<T, Space> out;
};

template <class T, class Space>
views<T, Space> make_views(const problem<T>& pb, std::vector<std::vector<T>>& bufs,
                           std::vector<std::int64_t>& lengths) {
    views<T, Space> v;
    auto cview = [&](int k) {
        const spec& s = pb.a[k];
        if (!s.present) return grpo::matrix_view<const T, Space>();
        return grpo::matrix_view<const T, Space>(bufs[s.buffer].data() + s.L.offset, s.L.rows, s.L.cols, s.L.rs,
                                                 s.L.cs);
    };
    auto wview = [&](int k) {
        const spec& s = pb.a[k];
        if (!s.present) return grpo::matrix_view<T, Space>();
        return grpo::matrix_view<T, Space>(bufs[s.buffer].data() + s.L.offset, s.L.rows, s.L.cols, s.L.rs, s.L.cs);
    };
    v.in.logp = cview(A_LOGP);
    v.in.old_logp = cview(A_OLD);
    v.in.ref_logp = cview(A_REF);
    v.in.advantages = cview(A_ADV);
    v.in.mask = cview(A_MASK);
    if (pb.has_lengths)
        v.in.lengths = grpo::vector_view<const std::int64_t, Space>(lengths.data(), pb.len_size, pb.len_stride);
    v.out.grad_logp = wview(A_GRAD);
    v.out.per_token_loss = wview(A_PER);
    return v;
}

grpo::loss_config draw_config(fuzz_input& in) {
    grpo::loss_config c;
    switch (in.u8() % 8) { // start from a preset sometimes
    case 1: c = grpo::loss_config::verl(); break;
    case 2: c = grpo::loss_config::deepseekmath(); break;
    case 3: c = grpo::loss_config::dapo(); break;
    case 4: c = grpo::loss_config::dr_grpo(double(in.u8() % 64)); break;
    case 5: c = grpo::loss_config::gspo(); break;
    default: break;
    }
    if (in.flag()) {
        c.epsilon_low = in.config_double({0.2, 0.0, 0.1, 0.5, 0.999, 3e-4});
        c.epsilon_high = in.config_double({0.2, 0.28, 0.0, 1.0, 10.0, 4e-4});
        c.delta = in.config_double({0.0, 0.0, 1.5, 2.0, 1.0000001});
        c.dual_clip_c = in.config_double({0.0, 0.0, 3.0, 1.5});
        c.log_ratio_clamp = in.config_double({0.0, 0.0, 20.0, 10.0, 0.5});
        c.ratio = in.enum_value<grpo::ratio_level>(3);
        c.beta = in.config_double({0.0, 0.0, 0.04, 0.001, 1.0});
        c.kl = in.enum_value<grpo::kl_estimator>(grpo::kl_estimator_count);
        c.kl_log_ratio_clamp = in.config_double({0.0, 0.0, 20.0, 1.0});
        c.kl_value_clamp = in.config_double({0.0, 0.0, 10.0, 0.5});
        c.kl_straight_through = in.flag();
        c.agg = in.enum_value<grpo::aggregation>(5);
        c.global_token_count = in.config_double({0.0, 0.0, 1.0, 100.0, 1e6});
        c.global_sequence_count = in.config_double({0.0, 0.0, 1.0, 8.0, 1000.0});
        c.max_completion_length = in.config_double({0.0, 0.0, 1.0, 16.0, 1024.0});
        c.loss_scale = in.config_double({1.0, 1.0, 0.5, 8.0, -1.0, 0.0});
    }
    if (in.flag()) { // the objective axis and its options (invalid combinations must be rejected cleanly)
        c.objective = in.enum_value<grpo::policy_objective>(grpo::policy_objective_count);
        if (c.objective == grpo::policy_objective::geo_mean && in.flag()) c.ratio = grpo::ratio_level::sequence;
        if (c.objective != grpo::policy_objective::ppo_clip && in.flag()) c.delta = c.dual_clip_c = 0;
        c.cispo_ratio_cap = in.config_double({5.0, 1.3, 0.0, 1e30});
        c.sapo_temperature_neg = in.config_double({1.05, 0.5, 0.0, 1e-30});
        c.vespo_k_pos = in.config_double({2.0, 0.0, -3.0, 1e6});
        c.vespo_lambda_neg = in.config_double({2.0, 0.0, -1.0, 1e6});
        c.cov_ratio = in.config_double({2e-4, 0.5, 1.0, 0.0});
        c.clip_cov_lb = in.config_double({1.0, -1e30, 0.0});
        c.clip_cov_ub = in.config_double({5.0, 1e30, 0.5});
        c.kl_cov_coef = in.config_double({0.1, 0.0, -2.0, 1e30});
        c.dro_beta = in.config_double({0.1, 1.0, 0.0, 1e30});
        c.selection_seed = in.u8();
    }
    c.checks = in.enum_value<grpo::validation>(2);
    return c;
}

template <class T>
bool build(fuzz_input& in, problem<T>& pb) {
    pb.tame = in.chance(96);
    pb.cfg = draw_config(in);
    // Sizes: small mostly; sometimes more than one 256-token block and enough rows for several pool chunks.
    const std::uint8_t mode = in.u8();
    if (mode < 200) {
        pb.rows = in.range(0, 6);
        pb.cols = in.range(0, 20);
    } else if (mode < 230) {
        pb.cols = in.range(257, 700);
        pb.rows = in.range(16384 / pb.cols + 1, 3 * (16384 / pb.cols) + 3); // 2..4 chunks of rows
    } else {
        const bool h = hostile_enabled();
        const std::uint8_t which = in.u8() % 4;
        pb.rows = h && which == 0 ? in.hostile_size() : in.range(0, 4);
        pb.cols = h && which == 1 ? in.hostile_size() : in.range(0, 4);
        if (h && which == 2) pb.rows = pb.cols = in.hostile_pair();
    }
    const bool with_old = in.chance(180), with_mask = in.chance(150), with_grad = in.chance(220),
               with_per = in.chance(110);
    const bool with_ref = pb.cfg.beta != 0 ? in.chance(245) : in.chance(60);
    const bool with_adv = in.chance(250), with_logp = in.chance(252);
    const bool present[A_COUNT] = {with_logp, with_old, with_ref, with_adv, with_mask, with_grad, with_per};
    for (int k = 0; k < A_COUNT; ++k) {
        spec& s = pb.a[k];
        s.present = present[k];
        s.buffer = k;
        std::int64_t r = pb.rows, c = pb.cols;
        if (in.chance(6) && r > -100 && r < 100) r += in.flag() ? 1 : -1; // shape mismatch (possibly -1)
        if (in.chance(6) && c > -100 && c < 100) c += in.flag() ? 1 : -1;
        if (!hostile_enabled()) r = std::max<std::int64_t>(r, 0), c = std::max<std::int64_t>(c, 0);
        const bool read_only = k < A_GRAD;
        s.L = draw_layout(in, r, c, read_only, in.chance(30));
        if (!read_only && !s.L.backed) {
            // A writable view too big to back: only pass it when its byte span is not representable (no memory
            // can hold it, so the library must reject it); otherwise leave the output out.
            const __int128 lim = std::numeric_limits<std::int64_t>::max();
            if (s.L.span >= 0 && s.L.span <= lim && s.L.span * __int128(sizeof(T)) <= lim) s.present = false;
        }
    }
    // Aliasing: an output over an input's buffer or over the other output (same layout family, small shift).
    if (in.chance(30)) {
        const int out_k = in.flag() ? A_GRAD : A_PER;
        const int target = in.u8() % A_COUNT;
        if (target != out_k && pb.a[out_k].present && pb.a[out_k].L.backed) {
            pb.a[out_k].buffer = pb.a[target].buffer == out_k ? target : pb.a[target].buffer;
            if (in.flag()) pb.a[out_k].L.offset = std::int64_t(in.u8() % 3);
            pb.a[out_k].L.span = span_of(pb.a[out_k].L.rows, pb.a[out_k].L.cols, pb.a[out_k].L.rs, pb.a[out_k].L.cs,
                                         pb.a[out_k].L.offset);
            pb.aliased = true;
        }
    }
    // Buffers: large enough for every view on them (+2 guard elements), filled.
    std::int64_t need[A_COUNT] = {};
    for (int k = 0; k < A_COUNT; ++k)
        if (pb.a[k].present)
            need[pb.a[k].buffer] =
                std::max<std::int64_t>(need[pb.a[k].buffer], pb.a[k].L.backed ? std::int64_t(pb.a[k].L.span) : 1);
    for (int b = 0; b < A_COUNT; ++b) {
        pb.bufs[b].assign(static_cast<std::size_t>(need[b] + 2), T(0));
        if (b >= A_GRAD) {
            fill_sentinel(pb.bufs[b].data(), pb.bufs[b].size() * sizeof(T));
        } else if (b == A_MASK) {
            for (T& x : pb.bufs[b]) {
                const std::uint8_t m = in.u8();
                x = m < 90 ? T(0) : m < 250 ? T(1) : T(in.value(false, true));
            }
        } else {
            // A few distinct values repeated keeps the input short while covering the whole buffer.
            const bool nonfinite = in.chance(25);
            T pal[8];
            for (T& p : pal) p = T(in.value(pb.tame, nonfinite, b == A_ADV ? 2.0 : 4.0));
            for (T& x : pb.bufs[b]) x = pal[in.u8() % 8];
        }
    }
    // Lengths.
    pb.has_lengths = in.chance(120);
    if (pb.has_lengths) {
        pb.len_size = in.chance(8) && pb.rows > -100 && pb.rows < 100 ? pb.rows + (in.flag() ? 1 : -1) : pb.rows;
        pb.len_stride = in.chance(20) ? (in.flag() ? 0 : 2) : 1;
        if (pb.len_size < 0 || pb.len_size > 4096) pb.len_size = in.chance(128) ? -1 : 0;
        const std::int64_t n = pb.len_size <= 0 ? 1 : (pb.len_size - 1) * pb.len_stride + 1;
        pb.lengths.resize(static_cast<std::size_t>(n));
        for (auto& l : pb.lengths) {
            const std::uint8_t k = in.u8();
            l = k < 240   ? (pb.cols > 0 ? in.range(0, std::min<std::int64_t>(pb.cols, 1 << 20)) : 0)
                : k < 248 ? (pb.cols < std::numeric_limits<std::int64_t>::max() ? pb.cols + 1 : pb.cols) // past the end
                          : in.hostile_size();
        }
    }
    return true;
}

/// (i, t) is an unmasked token of the (well-formed) call: t < lengths[i] and mask(i, t) != 0.
template <class T>
bool valid_cell(const problem<T>& pb, std::int64_t i, std::int64_t t) {
    if (pb.has_lengths && t >= pb.lengths[static_cast<std::size_t>(i * pb.len_stride)]) return false;
    if (pb.a[A_MASK].present) {
        const layout& L = pb.a[A_MASK].L;
        return pb.bufs[pb.a[A_MASK].buffer][static_cast<std::size_t>(L.offset + i * L.rs + t * L.cs)] != T(0);
    }
    return true;
}

double stat_field(const grpo::loss_stats& s, int k) {
    const double f[] = {s.loss,
                        s.policy_loss,
                        s.kl_loss,
                        s.token_count,
                        s.clip_fraction_low,
                        s.clip_fraction_high,
                        s.clip_fraction_region,
                        s.dual_clip_fraction,
                        s.ratio_mean,
                        s.ratio_min,
                        s.ratio_max,
                        s.kl_mean,
                        s.approx_kl};
    return f[k];
}
constexpr int kStatFields = 13;
const char* const stat_name[kStatFields] = {"loss",
                                            "policy_loss",
                                            "kl_loss",
                                            "token_count",
                                            "clip_fraction_low",
                                            "clip_fraction_high",
                                            "clip_fraction_region",
                                            "dual_clip_fraction",
                                            "ratio_mean",
                                            "ratio_min",
                                            "ratio_max",
                                            "kl_mean",
                                            "approx_kl"};

bool stats_bits_equal(const grpo::loss_stats& a, const grpo::loss_stats& b, int* which) {
    for (int k = 0; k < kStatFields; ++k)
        if (!bits_equal(stat_field(a, k), stat_field(b, k))) {
            *which = k;
            return false;
        }
    return true;
}

template <class T>
std::vector<std::vector<T>> fresh_outputs(const problem<T>& pb) {
    std::vector<std::vector<T>> b = pb.bufs;
    for (int k = A_GRAD; k < A_COUNT; ++k) fill_sentinel(b[k].data(), b[k].size() * sizeof(T));
    return b;
}

template <class T>
const char* tname() {
    return sizeof(T) == 4 ? "float" : "double";
}

/// Runs the host call over `bufs`; returns the outcome and the stats.
template <class T>
outcome host_call(const problem<T>& pb, std::vector<std::vector<T>>& bufs, std::vector<std::int64_t>& lengths,
                  const grpo::exec::host& ex, grpo::loss_stats& st) {
    grpo::workspace ws;
    return call_checked("loss_and_grad", [&] {
        const views<T, grpo::host_space> v = make_views<T, grpo::host_space>(pb, bufs, lengths);
        st = grpo::loss_and_grad(ex, v.in, v.out, pb.cfg, ws);
    });
}

template <class T>
void check_emulated(fuzz_input& in, const problem<T>& pb, const std::vector<std::vector<T>>& pristine,
                    const std::vector<std::int64_t>& lengths0, const outcome& cpu, const grpo::loss_stats& cpu_st,
                    const std::vector<std::vector<T>>& cpu_bufs) {
    auto bufs = pristine;
    for (int k = A_GRAD; k < A_COUNT; ++k)
        if (!pb.aliased) fill_sentinel(bufs[k].data(), bufs[k].size() * sizeof(T));
    auto lengths = lengths0;
    std::vector<snapshot> snaps;
    for (auto& b : bufs) snaps.emplace_back(b.data(), b.size() * sizeof(T));
    grpo::emulated_workspace ws;
    grpo::loss_stats st;
    const int threads = 1 + in.u8() % 6;
    const outcome emu = call_checked("loss_and_grad(cuda_emulated)", [&] {
        const views<T, grpo::device_space> v = make_views<T, grpo::device_space>(pb, bufs, lengths);
        st = grpo::loss_and_grad(grpo::exec::cuda_emulated{threads}, v.in, v.out, pb.cfg, ws);
    });
    if (emu.ok != cpu.ok)
        finding("emulated-vs-cpu-outcome", "%s: cpu %s, cuda_emulated %s (cpu: %s | emu: %s)", tname<T>(),
                cpu.ok ? "succeeded" : "threw", emu.ok ? "succeeded" : "threw", cpu.message.c_str(),
                emu.message.c_str());
    if (!emu.ok) {
        if (emu.code != cpu.code)
            finding("emulated-vs-cpu-errc", "cpu errc %d (%s), emulated errc %d (%s)", int(cpu.code),
                    cpu.message.c_str(), int(emu.code), emu.message.c_str());
        for (std::size_t b = 0; b < snaps.size(); ++b)
            if (snaps[b].first_change() >= 0)
                finding("emulated-error-wrote", "cuda_emulated threw (%s) but buffer %s changed at byte %td",
                        emu.message.c_str(), arr_name[b], snaps[b].first_change());
        return;
    }
    if (!pb.tame || pb.aliased) return;
    const double rel = sizeof(T) == 8 ? 1e-12 : 1e-6;
    for (int k = 0; k < kStatFields; ++k)
        if (!close(stat_field(st, k), stat_field(cpu_st, k), rel))
            finding("emulated-vs-cpu-stats", "%s %s: cpu %.17g, cuda_emulated %.17g (rows %lld cols %lld)", tname<T>(),
                    stat_name[k], stat_field(cpu_st, k), stat_field(st, k), (long long)pb.rows, (long long)pb.cols);
    for (int k = A_GRAD; k < A_COUNT; ++k) {
        const spec& s = pb.a[k];
        if (!s.present || !s.L.backed) continue;
        for (std::int64_t i = 0; i < s.L.rows; ++i)
            for (std::int64_t j = 0; j < s.L.cols; ++j) {
                const std::size_t o = static_cast<std::size_t>(s.L.offset + i * s.L.rs + j * s.L.cs);
                if (!close(double(bufs[k][o]), double(cpu_bufs[k][o]), rel))
                    finding("emulated-vs-cpu-output", "%s %s(%lld, %lld): cpu %.9g, cuda_emulated %.9g", tname<T>(),
                            arr_name[k], (long long)i, (long long)j, double(cpu_bufs[k][o]), double(bufs[k][o]));
            }
    }
}

template <class T>
void describe(const problem<T>& pb);

template <class T>
void run(fuzz_input& in) {
    problem<T> pb;
    build(in, pb);
    if (verbose()) describe(pb);
    // Rows of more than 2^24 representable columns of stride-0 data are valid and cost their length in time:
    // not something a fuzzer can wait for. (Sizes that overflow are kept: the library must reject them.)
    if (pb.cols > (std::int64_t(1) << 24) && __int128(pb.rows) * pb.cols <= __int128(INT64_MAX)) return;
    const auto pristine = pb.bufs;
    const auto lengths0 = pb.lengths;
    std::vector<snapshot> snaps;
    for (auto& b : pb.bufs) snaps.emplace_back(b.data(), b.size() * sizeof(T));
    snapshot len_snap(pb.lengths.data(), pb.lengths.size() * sizeof(std::int64_t));

    grpo::loss_stats st;
    const outcome res = host_call(pb, pb.bufs, pb.lengths, grpo::exec::host{}, st);
    if (len_snap.first_change() >= 0) finding("input-modified", "lengths changed by loss_and_grad");

    // docs/cuda.md: with validation::shapes_only the CUDA backend clamps out-of-range lengths (the CPU throws).
    // The range is the call's: logp's columns, which may differ from the nominal pb.cols (every view's extents
    // are perturbed independently, and all of them can move together).
    const std::int64_t call_cols = pb.a[A_LOGP].present ? pb.a[A_LOGP].L.cols : pb.cols;
    bool lengths_out_of_range = false;
    if (pb.has_lengths && pb.len_size > 0)
        for (std::int64_t i = 0; i < pb.len_size; ++i) {
            const std::int64_t l = pb.lengths[static_cast<std::size_t>(i * pb.len_stride)];
            if (l < 0 || l > call_cols) lengths_out_of_range = true;
        }
    const bool do_emulated = in.chance(24) && !(lengths_out_of_range && pb.cfg.checks != grpo::validation::full) &&
                             pb.rows >= 0 && pb.cols >= 0 && pb.rows <= 12 &&
                             __int128(pb.rows) * std::max<std::int64_t>(pb.cols, 1) <= 256;
    const unsigned threads = 2 + in.u8() % 2;

    if (!res.ok) {
        for (std::size_t b = 0; b < snaps.size(); ++b)
            if (snaps[b].first_change() >= 0)
                finding("error-wrote-output", "%s: loss_and_grad threw (%s) but buffer %s changed at byte %td",
                        tname<T>(), res.message.c_str(), arr_name[b], snaps[b].first_change());
        if (pb.rows >= 0 && pb.rows <= 4096) {
            auto bufs = pristine;
            auto lengths = lengths0;
            grpo::loss_stats st2;
            const outcome r2 = host_call(pb, bufs, lengths, grpo::exec::host{&pool(threads)}, st2);
            if (r2.ok || r2.code != res.code)
                finding("pool-vs-serial-error", "serial threw errc %d (%s); pool(%u): %s errc %d", int(res.code),
                        res.message.c_str(), threads, r2.ok ? "succeeded" : "threw", int(r2.code));
            for (std::size_t b = 0; b < bufs.size(); ++b)
                if (std::memcmp(bufs[b].data(), pristine[b].data(), bufs[b].size() * sizeof(T)) != 0)
                    finding("error-wrote-output", "pool(%u) call threw but buffer %s changed", threads, arr_name[b]);
        }
        if (do_emulated) check_emulated(in, pb, pristine, lengths0, res, st, pb.bufs);
        return;
    }

    // ---- success ----
    {
        const grpo::loss_config& c = pb.cfg;
        const int bad = int(c.ratio) > 2 || int(c.ratio) < 0                     ? 1
                        : int(c.kl) >= grpo::kl_estimator_count || int(c.kl) < 0 ? 2
                        : int(c.agg) > 4 || int(c.agg) < 0                       ? 3
                        : int(c.checks) > 1 || int(c.checks) < 0                 ? 4
                                                                                 : 0;
        if (bad)
            finding("enum-out-of-range-accepted", "%s: loss_config with ratio %d kl %d agg %d checks %d accepted",
                    tname<T>(), int(c.ratio), int(c.kl), int(c.agg), int(c.checks));
    }
    // Writable views that overlap themselves must have been rejected by the view constructor.
    for (int k = A_GRAD; k < A_COUNT; ++k)
        if (pb.a[k].present && pb.a[k].L.backed && __int128(pb.a[k].L.rows) * pb.a[k].L.cols <= 4096 &&
            self_overlapping(pb.a[k].L))
            finding("writable-view-self-overlap", "%s [%lld x %lld] strides (%lld, %lld) accepted", arr_name[k],
                    (long long)pb.a[k].L.rows, (long long)pb.a[k].L.cols, (long long)pb.a[k].L.rs,
                    (long long)pb.a[k].L.cs);
    // From here on the problem is well-formed: rows, cols >= 0 (logp's extents) and every present view backed.
    const std::int64_t rows = pb.a[A_LOGP].present ? pb.a[A_LOGP].L.rows : 0;
    const std::int64_t cols = pb.a[A_LOGP].present ? pb.a[A_LOGP].L.cols : 0;
    for (int k = 0; k < A_COUNT; ++k)
        if (pb.a[k].present && !pb.a[k].L.backed)
            finding("unbacked-view-accepted", "%s: %s view [%lld x %lld] strides (%lld, %lld) cannot exist, accepted",
                    tname<T>(), arr_name[k], (long long)pb.a[k].L.rows, (long long)pb.a[k].L.cols,
                    (long long)pb.a[k].L.rs, (long long)pb.a[k].L.cs);
    if (__int128(rows) * std::max<std::int64_t>(cols, 1) > (std::int64_t(1) << 22)) return; // huge empty problem

    if (pb.aliased) {
        // The accepted aliased call must give what the non-aliased call gives.
        problem<T> ref = pb;
        ref.aliased = false;
        for (int k = 0; k < A_COUNT; ++k) ref.a[k].buffer = k;
        ref.bufs = pristine;
        for (int k = A_GRAD; k < A_COUNT; ++k) {
            const spec& s = pb.a[k];
            ref.bufs[k].assign(s.present ? static_cast<std::size_t>(s.L.span + 2) : 2, T(0));
            fill_sentinel(ref.bufs[k].data(), ref.bufs[k].size() * sizeof(T));
        }
        auto lengths = lengths0;
        grpo::loss_stats rst;
        const outcome r2 = host_call(ref, ref.bufs, lengths, grpo::exec::host{}, rst);
        if (!r2.ok)
            finding("alias-accepted", "aliased call succeeded but the non-aliased one threw: %s", r2.message.c_str());
        for (int k = A_GRAD; k < A_COUNT; ++k) {
            const spec& s = pb.a[k];
            if (!s.present) continue;
            for (std::int64_t i = 0; i < rows; ++i)
                for (std::int64_t j = 0; j < cols; ++j) {
                    const std::size_t o = static_cast<std::size_t>(s.L.offset + i * s.L.rs + j * s.L.cs);
                    if (!bits_equal(pb.bufs[s.buffer][o], ref.bufs[k][o]))
                        finding("alias-accepted-wrong-result",
                                "%s: %s placed over %s's buffer was accepted and (%lld, %lld) = %.9g, non-aliased %.9g",
                                tname<T>(), arr_name[k], arr_name[s.buffer], (long long)i, (long long)j,
                                double(pb.bufs[s.buffer][o]), double(ref.bufs[k][o]));
                }
        }
        return;
    }

    for (int b = 0; b < A_GRAD; ++b)
        if (snaps[b].first_change() >= 0)
            finding("input-modified", "%s changed at byte %td by a successful call", arr_name[b],
                    snaps[b].first_change());

    // Outputs: nothing outside the views, exactly 0 at masked cells, no NaN from finite inputs.
    bool finite_inputs = true;
    double tokens = 0;
    for (std::int64_t i = 0; i < rows; ++i)
        for (std::int64_t t = 0; t < cols; ++t) {
            if (!valid_cell(pb, i, t)) continue;
            tokens += 1;
            for (int k = 0; k < A_MASK; ++k) {
                const spec& s = pb.a[k];
                if (!s.present || (k == A_REF && pb.cfg.beta == 0) || s.L.rows != rows || s.L.cols != cols) continue;
                const T x = pb.bufs[k][static_cast<std::size_t>(s.L.offset + i * s.L.rs + t * s.L.cs)];
                if (!std::isfinite(double(x))) finite_inputs = false;
            }
        }
    // Where an exact result exceeds the type's range, IEEE arithmetic overflows (docs/numerics.md,
    // "Boundaries"): a token's gradient is NaN only if both its policy term and its KL term overflowed (in
    // opposite directions), and a statistic only if some term of its sum overflowed or an input is so large
    // (beyond 1e300) that a sum of per-token terms can overflow. Those are the only NaNs from finite inputs allowed.
    const double log_max = std::log(double(std::numeric_limits<T>::max()));
    auto at = [&](int k, std::int64_t i, std::int64_t t) -> double {
        const spec& s = pb.a[k];
        return double(pb.bufs[k][static_cast<std::size_t>(s.L.offset + i * s.L.rs + t * s.L.cs)]);
    };
    auto huge_input = [&](std::int64_t i, std::int64_t t) {
        for (int k = A_LOGP; k <= A_ADV; ++k)
            if (pb.a[k].present && pb.a[k].L.rows == rows && pb.a[k].L.cols == cols && std::fabs(at(k, i, t)) > 1e300)
                return true;
        return false;
    };
    // Objectives whose loss multiplies two inputs, or an input by a configuration value (A logp, dro's
    // beta d^2, kl_cov's coef |d|, cispo's cap), overflow the element type where that product exceeds it: the
    // token's terms may then be infinite in opposite directions, and their sums NaN (IEEE, docs/numerics.md).
    const double t_max = double(std::numeric_limits<T>::max());
    auto product_overflows = [&](std::int64_t i, std::int64_t t) {
        const grpo::loss_config& c = pb.cfg;
        const bool with_old = pb.a[A_OLD].present && pb.a[A_OLD].L.rows == rows && pb.a[A_OLD].L.cols == cols;
        if (c.objective == grpo::policy_objective::geo_mean) {
            // -A_it rho_i unclipped: a row whose geometric-mean ratio overflows has +-inf terms of both signs
            // when its advantages have both signs (verl multiplies the row's mean advantage once instead).
            if (!with_old) return false;
            for (std::int64_t u = 0; u < cols; ++u)
                if (valid_cell(pb, i, u) && std::fabs(at(A_LOGP, i, u) - at(A_OLD, i, u)) > log_max - 1) return true;
            return false;
        }
        if (c.objective == grpo::policy_objective::ppo_clip || c.objective == grpo::policy_objective::clip_cov)
            return false;
        if (!pb.a[A_ADV].present || pb.a[A_ADV].L.rows != rows || pb.a[A_ADV].L.cols != cols) return false;
        const double a = std::fabs(at(A_ADV, i, t)), lp = std::fabs(at(A_LOGP, i, t));
        const double d = with_old ? std::fabs(at(A_LOGP, i, t) - at(A_OLD, i, t)) : 0.0;
        const double w = std::max({1.0, c.cispo_ratio_cap, 1 + c.epsilon_high});
        const double gate = 4 / std::min(c.sapo_temperature_pos, c.sapo_temperature_neg); // sapo's 4/tau
        return a * lp * w > t_max / 4 || a * gate > t_max / 4 || c.dro_beta * d * d > t_max / 4 ||
               std::fabs(c.kl_cov_coef) * d > t_max / 4 || d > t_max / 4;
    };
    auto both_terms_overflow = [&](std::int64_t i, std::int64_t t) {
        if (huge_input(i, t)) return true; // a difference of two inputs beyond 1e300 can itself overflow
        if (product_overflows(i, t)) return true;
        if (pb.cfg.ratio != grpo::ratio_level::token) // sequence ratios sum over the row's unmasked tokens
            for (std::int64_t u = 0; u < cols; ++u)
                if (valid_cell(pb, i, u) && huge_input(i, u)) return true;
        if (pb.cfg.beta == 0 || !pb.a[A_REF].present || !pb.a[A_OLD].present) return false;
        const double x = at(A_LOGP, i, t);
        return std::fabs(x - at(A_OLD, i, t)) > log_max - 1 && std::fabs(at(A_REF, i, t) - x) > log_max - 1;
    };
    bool sums_may_overflow = false;
    for (std::int64_t i = 0; i < rows; ++i)
        for (std::int64_t t = 0; t < cols; ++t)
            if (valid_cell(pb, i, t))
                for (int k = A_LOGP; k <= A_ADV; ++k)
                    if (pb.a[k].present && pb.a[k].L.rows == rows && pb.a[k].L.cols == cols &&
                        std::fabs(at(k, i, t)) > 1e300)
                        sums_may_overflow = true;
    for (int k = A_GRAD; k < A_COUNT; ++k)
        if (pb.a[k].present)
            for (std::int64_t i = 0; i < rows; ++i)
                for (std::int64_t t = 0; t < cols; ++t)
                    if (std::isinf(at(k, i, t))) sums_may_overflow = true;
    for (std::int64_t i = 0; i < rows; ++i)
        for (std::int64_t t = 0; t < cols; ++t)
            if (valid_cell(pb, i, t) && pb.a[A_LOGP].present && pb.a[A_LOGP].L.rows == rows &&
                pb.a[A_LOGP].L.cols == cols && product_overflows(i, t))
                sums_may_overflow = true;
    if (pb.cfg.checks == grpo::validation::full && !finite_inputs)
        finding("nonfinite-accepted", "%s: validation::full accepted a non-finite unmasked input", tname<T>());
    if (!bits_equal(st.token_count, tokens) && !(tokens == 0 && st.token_count == 0))
        finding("token-count", "%s: token_count %.17g, expected %.17g", tname<T>(), st.token_count, tokens);
    for (int k = A_GRAD; k < A_COUNT; ++k) {
        const spec& s = pb.a[k];
        if (!s.present) continue;
        std::vector<char> in_view(pb.bufs[k].size(), 0);
        for (std::int64_t i = 0; i < rows; ++i)
            for (std::int64_t t = 0; t < cols; ++t) {
                const std::size_t o = static_cast<std::size_t>(s.L.offset + i * s.L.rs + t * s.L.cs);
                in_view[o] = 1;
                const T x = pb.bufs[k][o];
                if (!valid_cell(pb, i, t) && x != T(0))
                    finding("masked-output-nonzero", "%s: %s(%lld, %lld) = %.9g at a masked position", tname<T>(),
                            arr_name[k], (long long)i, (long long)t, double(x));
                if (finite_inputs && std::isnan(double(x)) && !both_terms_overflow(i, t))
                    finding(pb.tame ? "nan-from-finite" : "nan-from-finite-extreme",
                            "%s: %s(%lld, %lld) is NaN with finite inputs (beta %g, kl %d, ratio %d, agg %d)",
                            tname<T>(), arr_name[k], (long long)i, (long long)t, pb.cfg.beta, int(pb.cfg.kl),
                            int(pb.cfg.ratio), int(pb.cfg.agg));
            }
        for (std::size_t o = 0; o < in_view.size(); ++o)
            if (!in_view[o] && std::memcmp(&pb.bufs[k][o], &pristine[k][o], sizeof(T)) != 0)
                finding("write-outside-view", "%s: %s buffer element %zu outside the view was written", tname<T>(),
                        arr_name[k], o);
    }
    if (finite_inputs)
        for (int k = 0; k < kStatFields; ++k)
            if (std::isnan(stat_field(st, k)) && !sums_may_overflow)
                finding(pb.tame ? "nan-from-finite" : "nan-from-finite-extreme",
                        "%s: stats.%s is NaN with finite inputs (beta %g, kl %d, ratio %d, agg %d)", tname<T>(),
                        stat_name[k], pb.cfg.beta, int(pb.cfg.kl), int(pb.cfg.ratio), int(pb.cfg.agg));

    // Masked cells never matter: garbage everywhere no unmasked token reads.
    {
        auto bufs = fresh_outputs(pb);
        static const double garbage[] = {std::numeric_limits<double>::quiet_NaN(),
                                         std::numeric_limits<double>::infinity(),
                                         -std::numeric_limits<double>::infinity(),
                                         3e38,
                                         -1e38,
                                         1e300,
                                         0.5};
        for (int k = 0; k <= A_MASK; ++k) {
            const spec& s = pb.a[k];
            if (!s.present) continue;
            if (s.L.rows != rows || s.L.cols != cols) { // an unused view (ref_logp with beta 0): all garbage
                for (auto& x : bufs[k]) x = T(garbage[in.u8() % 7]);
                continue;
            }
            std::vector<char> used(bufs[k].size(), 0);
            for (std::int64_t i = 0; i < rows; ++i)
                for (std::int64_t t = 0; t < cols; ++t) {
                    // The mask's own cells decide validity up to the row's length.
                    const bool read =
                        k == A_MASK ? !(pb.has_lengths && t >= pb.lengths[static_cast<std::size_t>(i * pb.len_stride)])
                                    : valid_cell(pb, i, t);
                    if (read) used[static_cast<std::size_t>(s.L.offset + i * s.L.rs + t * s.L.cs)] = 1;
                }
            for (std::size_t o = 0; o < used.size(); ++o)
                if (!used[o]) bufs[k][o] = T(garbage[in.u8() % 7]);
        }
        auto lengths = lengths0;
        grpo::loss_stats st2;
        const outcome r2 = host_call(pb, bufs, lengths, grpo::exec::host{}, st2);
        if (!r2.ok)
            finding("masked-garbage-matters", "%s: garbage in masked cells made the call throw: %s", tname<T>(),
                    r2.message.c_str());
        int which = 0;
        if (!stats_bits_equal(st, st2, &which))
            finding("masked-garbage-matters", "%s: stats.%s %.17g -> %.17g with garbage in masked cells", tname<T>(),
                    stat_name[which], stat_field(st, which), stat_field(st2, which));
        for (int k = A_GRAD; k < A_COUNT; ++k)
            if (std::memcmp(bufs[k].data(), pb.bufs[k].data(), bufs[k].size() * sizeof(T)) != 0)
                finding("masked-garbage-matters", "%s: %s differs with garbage in masked cells", tname<T>(),
                        arr_name[k]);
    }

    // Thread count: bit-identical.
    {
        auto bufs = fresh_outputs(pb);
        auto lengths = lengths0;
        grpo::loss_stats st2;
        const outcome r2 = host_call(pb, bufs, lengths, grpo::exec::host{&pool(threads)}, st2);
        if (!r2.ok) finding("pool-vs-serial", "pool(%u) threw: %s", threads, r2.message.c_str());
        int which = 0;
        if (!stats_bits_equal(st, st2, &which))
            finding("pool-vs-serial", "%s: stats.%s %.17g serial, %.17g with pool(%u)", tname<T>(), stat_name[which],
                    stat_field(st, which), stat_field(st2, which), threads);
        for (int k = A_GRAD; k < A_COUNT; ++k)
            if (std::memcmp(bufs[k].data(), pb.bufs[k].data(), bufs[k].size() * sizeof(T)) != 0)
                finding("pool-vs-serial", "%s: %s differs with pool(%u)", tname<T>(), arr_name[k], threads);
    }

    if (do_emulated) {
        // The emulator's kernels do the baseline's arithmetic (no FMA); the CPU's FMA versions may round a ratio at a
        // clip bound to the other side (docs/numerics.md), so the CPU's baseline version is the one to compare with.
        using grpo::detail::cpu::cpu_version;
        if (grpo::detail::cpu::active_cpu_version() == cpu_version::baseline) {
            check_emulated(in, pb, pristine, lengths0, res, st, pb.bufs);
        } else {
            auto bufs = pristine;
            auto lengths = lengths0;
            grpo::loss_stats st_base;
            grpo::detail::cpu::cpu_version_limit() = cpu_version::baseline;
            const outcome base = host_call(pb, bufs, lengths, grpo::exec::host{}, st_base);
            grpo::detail::cpu::cpu_version_limit() = cpu_version::avx512;
            if (base.ok != res.ok || base.code != res.code)
                finding("cpu-version-outcome", "%s: the FMA version %s, the baseline %s", tname<T>(),
                        res.ok ? "succeeded" : "threw", base.ok ? "succeeded" : "threw");
            check_emulated(in, pb, pristine, lengths0, base, st_base, bufs);
        }
    }
}

template <class T>
void describe(const problem<T>& pb) {
    const grpo::loss_config& c = pb.cfg;
    std::fprintf(stderr,
                 "loss<%s> rows %lld cols %lld tame %d aliased %d | eps %g/%g delta %g dual %g lrclamp %g ratio %d "
                 "beta %g kl %d klclamp %g/%g st %d agg %d gtc %g gsc %g L %g scale %g checks %d | objective %d "
                 "cap %g tau- %g vespo k+ %g l- %g cov %g (%g, %g) klcov %g dro %g seed %llu\n",
                 tname<T>(), (long long)pb.rows, (long long)pb.cols, pb.tame, pb.aliased, c.epsilon_low, c.epsilon_high,
                 c.delta, c.dual_clip_c, c.log_ratio_clamp, int(c.ratio), c.beta, int(c.kl), c.kl_log_ratio_clamp,
                 c.kl_value_clamp, int(c.kl_straight_through), int(c.agg), c.global_token_count,
                 c.global_sequence_count, c.max_completion_length, c.loss_scale, int(c.checks), int(c.objective),
                 c.cispo_ratio_cap, c.sapo_temperature_neg, c.vespo_k_pos, c.vespo_lambda_neg, c.cov_ratio,
                 c.clip_cov_lb, c.clip_cov_ub, c.kl_cov_coef, c.dro_beta, (unsigned long long)c.selection_seed);
    for (int k = 0; k < A_COUNT; ++k) {
        const spec& s = pb.a[k];
        if (!s.present) continue;
        std::fprintf(stderr, "  %s: buf %s [%lld x %lld] strides (%lld, %lld) offset %lld backed %d:", arr_name[k],
                     arr_name[s.buffer], (long long)s.L.rows, (long long)s.L.cols, (long long)s.L.rs, (long long)s.L.cs,
                     (long long)s.L.offset, s.L.backed);
        const auto& b = pb.bufs[s.buffer];
        for (std::size_t o = 0; o < b.size() && o < 64; ++o) std::fprintf(stderr, " %.17g", double(b[o]));
        std::fprintf(stderr, "\n");
    }
    if (pb.has_lengths) {
        std::fprintf(stderr, "  lengths size %lld stride %lld:", (long long)pb.len_size, (long long)pb.len_stride);
        for (std::size_t o = 0; o < pb.lengths.size() && o < 24; ++o)
            std::fprintf(stderr, " %lld", (long long)pb.lengths[o]);
        std::fprintf(stderr, "\n");
    }
}

} // namespace

GRPO_FUZZ_ENTRY_FLOAT_AND_DOUBLE()
