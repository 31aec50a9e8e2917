// SPDX-License-Identifier: MIT
// Regression tests for the robustness findings of issue 12 (a fuzzing campaign and a new user's host): each case
// failed on the code before the fix. Hostile sizes, aliasing, overflowing values, out-of-range enums, shared
// workspaces; the rule is always a grpo::error naming the argument with the outputs untouched, or an exact result.
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "catch.hpp"
#include "test_helpers.hpp"

namespace {

using grpo::index_t;
constexpr index_t huge = index_t(1) << 62;

template <class F>
std::string error_of(F&& f, grpo::errc expected) {
    try {
        f();
    } catch (const grpo::error& e) {
        INFO(e.what());
        CHECK(e.code() == expected);
        return e.what();
    }
    FAIL("no grpo::error thrown");
    return {};
}
bool contains(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }

template <class T>
grpo::vector_view<const T> cview(const std::vector<T>& v) {
    return grpo::vector_view<const T>(v.data(), static_cast<index_t>(v.size()));
}
template <class T>
grpo::vector_view<T> view(std::vector<T>& v) {
    return grpo::vector_view<T>(v.data(), static_cast<index_t>(v.size()));
}

} // namespace

// ---- Silent wrong results: zero-variance guards --------------------------------------------------------------

TEST_CASE("epsilon = 0: constant groups get advantage exactly 0, not NaN", "[robustness][advantages]") {
    const std::vector<double> r = {1, 1, 1, 1, 0, 0, 0, 0, 0.1, 0.1, 0.1, 0.3};
    for (auto est : {grpo::advantage_estimator::group_zscore, grpo::advantage_estimator::group_centered_batch_std}) {
        grpo::advantage_config cfg;
        cfg.estimator = est;
        cfg.epsilon = 0;
        std::vector<double> a(r.size(), -9);
        grpo::compute_advantages(grpo::exec::host{}, cview(r), grpo::groups::contiguous(4), view(a), cfg);
        for (int i = 0; i < 8; ++i) CHECK(a[i] == 0.0);
        for (double x : a) CHECK(std::isfinite(x));
    }
    // A constant batch under the batch std, epsilon 0.
    const std::vector<double> c(8, 0.7);
    grpo::advantage_config cfg;
    cfg.estimator = grpo::advantage_estimator::group_centered_batch_std;
    cfg.epsilon = 0;
    std::vector<double> a(8, -9);
    grpo::compute_advantages(grpo::exec::host{}, cview(c), grpo::groups::contiguous(4), view(a), cfg);
    for (double x : a) CHECK(x == 0.0);
}

TEST_CASE("whitening a constant batch gives exactly 0 for any whiten_epsilon >= 0", "[robustness][advantages]") {
    for (double eps : {0.0, 1e-300, 1e-8}) {
        for (auto singleton : {grpo::singleton_group::zero, grpo::singleton_group::raw_reward}) {
            // Singleton groups with raw_reward: the centered values are the (constant) rewards themselves, whose
            // naive mean 0.1+0.1+0.1 / 3 is not 0.1 (rounding noise that 1/sqrt(1e-300) used to blow up).
            const std::vector<double> r(6, 0.1);
            grpo::advantage_config cfg;
            cfg.estimator = grpo::advantage_estimator::group_centered_batch_whitened;
            cfg.whiten_epsilon = eps;
            cfg.singleton = singleton;
            std::vector<double> a(r.size(), -9);
            grpo::compute_advantages(grpo::exec::host{}, cview(r), grpo::groups::contiguous(1), view(a), cfg);
            for (double x : a) CHECK(x == 0.0);
            std::vector<double> b(r.size(), -9);
            grpo::compute_advantages(grpo::exec::host{}, cview(r), grpo::groups::contiguous(3), view(b), cfg);
            for (double x : b) CHECK(x == 0.0);
        }
    }
}

TEST_CASE("normalize_then_sum and process rewards with epsilon 0 on constant groups", "[robustness][rewards]") {
    // Two functions, both constant within group 0: their z-scores are 0 there, not NaN (NaN z-scores would make
    // rows 0 and 1 look unscored: combined reward NaN).
    const std::vector<double> scores = {1, 0.5, 1, 0.5, 0, 0.5, 1, 0.75};
    const std::vector<double> w = {1, 1};
    grpo::advantage_config cfg;
    cfg.epsilon = 0;
    std::vector<double> a(4, -9), R(4, -9);
    grpo::outcome_advantages(grpo::exec::host{}, grpo::matrix_view<const double>(scores.data(), 4, 2), cview(w),
                             grpo::groups::contiguous(2), view(a), cfg, grpo::reward_aggregation::normalize_then_sum,
                             view(R));
    for (double x : a) CHECK(std::isfinite(x));
    for (double x : R) CHECK(std::isfinite(x));

    grpo::process_steps s;
    for (int i = 0; i < 2; ++i) {
        s.begin_row();
        s.add(0.5, 1);
        s.add(0.5, 3);
    }
    std::vector<double> adv(2 * 4, -9);
    grpo::process_reward_config pc;
    pc.epsilon = 0;
    grpo::process_advantages(grpo::exec::host{}, s, grpo::groups::contiguous(2),
                             grpo::matrix_view<double>(adv.data(), 2, 4), pc);
    for (double x : adv) CHECK(x == 0.0);
}

// ---- Silent wrong results: finite inputs, finite gradient ----------------------------------------------------

TEMPLATE_TEST_CASE("an overflowing ratio on the clipped branch has gradient exactly 0, never NaN", "[robustness][loss]",
                   float, double) {
    using T = TestType;
    const T big = std::is_same<T, float>::value ? T(90) : T(710); // exp overflows the element type
    // Row 0: A > 0 (clipped above: gradient 0). Row 1: A = 0 (objective 0 whatever the ratio).
    // Row 2: A < 0 with dual clip (the bound -c*A is taken: gradient 0). Row 3: an ordinary token.
    const std::vector<T> logp = {T(-0.5), T(-0.5), T(-0.5), T(-0.5)};
    const std::vector<T> old = {T(-0.5) - big, T(-0.5) - big, T(-0.5) - big, T(-0.6)};
    const std::vector<T> adv = {T(1), T(0), T(-1), T(1)};
    for (double dual : {0.0, 3.0}) {
        grpo::loss_inputs<T> in;
        in.logp = grpo::matrix_view<const T>(logp.data(), 4, 1);
        in.old_logp = grpo::matrix_view<const T>(old.data(), 4, 1);
        in.advantages = grpo::matrix_view<const T>(adv.data(), 4, 1);
        std::vector<T> grad(4, T(-7)), per(4, T(-7));
        grpo::loss_outputs<T> out;
        out.grad_logp = grpo::matrix_view<T>(grad.data(), 4, 1);
        out.per_token_loss = grpo::matrix_view<T>(per.data(), 4, 1);
        grpo::loss_config cfg;
        cfg.dual_clip_c = dual;
        const grpo::loss_stats st = grpo::loss_and_grad(grpo::exec::host{}, in, out, cfg);
        CHECK(grad[0] == T(0));
        CHECK(grad[1] == T(0));
        CHECK(std::isfinite(per[0]));
        CHECK(per[1] == T(0));
        CHECK(std::isfinite(grad[3]));
        if (dual > 0) {
            CHECK(grad[2] == T(0));
            CHECK(std::isfinite(st.loss));
        }
        for (T g : grad) CHECK(!std::isnan(g));
        CHECK(!std::isnan(st.loss));
    }
}

TEST_CASE("sequence-level ratio that overflows: clipped rows get gradient 0", "[robustness][loss]") {
    const std::vector<double> logp = {-0.5, -0.5}, old = {-800.5, -800.5}, adv = {1, 1};
    for (auto level : {grpo::ratio_level::sequence, grpo::ratio_level::sequence_token}) {
        grpo::loss_inputs<double> in;
        in.logp = grpo::matrix_view<const double>(logp.data(), 1, 2);
        in.old_logp = grpo::matrix_view<const double>(old.data(), 1, 2);
        in.advantages = grpo::matrix_view<const double>(adv.data(), 1, 2);
        std::vector<double> grad(2, -7);
        grpo::loss_outputs<double> out;
        out.grad_logp = grpo::matrix_view<double>(grad.data(), 1, 2);
        grpo::loss_config cfg;
        cfg.ratio = level;
        const grpo::loss_stats st = grpo::loss_and_grad(grpo::exec::host{}, in, out, cfg);
        CHECK(grad[0] == 0.0);
        CHECK(grad[1] == 0.0);
        CHECK(std::isfinite(st.loss));
    }
}

TEST_CASE("k3 at a log-ratio that overflows is +inf, not inf - inf", "[robustness][math]") {
    const float inf = std::numeric_limits<float>::infinity();
    const grpo::math::kl_term<float> t =
        grpo::math::kl_penalty<float>(grpo::kl_estimator::k3, -3e38f, 3e38f, 0, 0, false);
    CHECK(t.value == inf);
    CHECK(!std::isnan(t.grad));
    CHECK(grpo::math::chain(0.0f, inf) == 0.0f);
    CHECK(grpo::math::chain(2.0f, 3.0f) == 6.0f);
}

TEST_CASE("config values that do not fit the element type's math are errors", "[robustness][loss]") {
    grpo_test::batch<float> b(2, 3, 7);
    auto in = b.inputs();
    const std::vector<float> grad_before = b.grad;
    grpo::loss_config cfg;
    cfg.beta = 1e39;
    CHECK(contains(
        error_of([&] { grpo::loss_and_grad(grpo::exec::host{}, in, b.outputs(), cfg); }, grpo::errc::invalid_value),
        "'config.beta'"));
    cfg = {};
    cfg.loss_scale = -1e39;
    CHECK(contains(
        error_of([&] { grpo::loss_and_grad(grpo::exec::host{}, in, b.outputs(), cfg); }, grpo::errc::invalid_value),
        "'config.loss_scale'"));
    cfg = grpo::loss_config::dr_grpo(1e-300);
    CHECK(contains(
        error_of([&] { grpo::loss_and_grad(grpo::exec::host{}, in, b.outputs(), cfg); }, grpo::errc::invalid_value),
        "'config.max_completion_length'"));
    cfg = {};
    cfg.global_token_count = 0.5;
    CHECK(contains(
        error_of([&] { grpo::loss_and_grad(grpo::exec::host{}, in, b.outputs(), cfg); }, grpo::errc::invalid_value),
        "'config.global_token_count'"));
    CHECK(b.grad == grad_before);
    // The same values are fine in double.
    grpo_test::batch<double> d(2, 3, 7);
    cfg = {};
    cfg.beta = 1e39;
    CHECK_NOTHROW(grpo::loss_and_grad(grpo::exec::host{}, d.inputs(), d.outputs(), cfg));
}

TEST_CASE("fp32 advantages that overflow are an error, outputs untouched", "[robustness][advantages]") {
    const std::vector<float> r = {3e38f, -3e38f, 3e38f, -3e38f};
    std::vector<float> a(4, -9.f);
    grpo::advantage_config cfg;
    cfg.estimator = grpo::advantage_estimator::rloo;
    CHECK(contains(
        error_of(
            [&] { grpo::compute_advantages(grpo::exec::host{}, cview(r), grpo::groups::contiguous(2), view(a), cfg); },
            grpo::errc::invalid_value),
        "fit the output type"));
    for (float x : a) CHECK(x == -9.f);
    std::vector<double> rd = {3e38, -3e38, 3e38, -3e38}, ad(4);
    CHECK_NOTHROW(grpo::compute_advantages(grpo::exec::host{}, cview(rd), grpo::groups::contiguous(2), view(ad), cfg));
}

// ---- Out-of-range enums and missing logp -------------------------------------------------------------------

TEST_CASE("out-of-range enum values are rejected, not reinterpreted", "[robustness][config]") {
    grpo_test::batch<double> b(2, 3, 9);
    auto run = [&](const grpo::loss_config& c) { grpo::loss_and_grad(grpo::exec::host{}, b.inputs(), b.outputs(), c); };
    grpo::loss_config cfg;
    cfg.ratio = static_cast<grpo::ratio_level>(7);
    CHECK(contains(error_of([&] { run(cfg); }, grpo::errc::invalid_value), "'config.ratio'"));
    cfg = {};
    cfg.agg = static_cast<grpo::aggregation>(9);
    CHECK(contains(error_of([&] { run(cfg); }, grpo::errc::invalid_value), "'config.agg'"));
    cfg = {};
    cfg.beta = 0.1;
    cfg.kl = static_cast<grpo::kl_estimator>(9);
    CHECK(contains(error_of([&] { run(cfg); }, grpo::errc::invalid_value), "'config.kl'"));
    cfg = {};
    cfg.checks = static_cast<grpo::validation>(5);
    CHECK(contains(error_of([&] { run(cfg); }, grpo::errc::invalid_value), "'config.checks'"));

    const std::vector<double> r = {1, 2, 3, 4};
    std::vector<double> a(4);
    grpo::advantage_config ac;
    ac.estimator = static_cast<grpo::advantage_estimator>(9);
    CHECK(contains(
        error_of(
            [&] { grpo::compute_advantages(grpo::exec::host{}, cview(r), grpo::groups::contiguous(2), view(a), ac); },
            grpo::errc::invalid_value),
        "'config.estimator'"));
    ac = {};
    ac.std = static_cast<grpo::std_estimator>(-1);
    CHECK(contains(
        error_of(
            [&] { grpo::compute_advantages(grpo::exec::host{}, cview(r), grpo::groups::contiguous(2), view(a), ac); },
            grpo::errc::invalid_value),
        "'config.std'"));
}

TEST_CASE("no logp view with a non-empty batch is an error, not loss 0", "[robustness][loss]") {
    grpo_test::batch<double> b(2, 3, 11);
    auto in = b.inputs();
    in.logp = {};
    in.old_logp = {};
    in.advantages = {};
    in.ref_logp = {};
    in.mask = {};
    CHECK(contains(error_of([&] { grpo::loss_and_grad(grpo::exec::host{}, in, b.outputs(), grpo::loss_config{}); },
                            grpo::errc::invalid_value),
                   "'logp'"));
    // Every view absent: an empty call, loss 0.
    CHECK(grpo::loss_and_grad(grpo::exec::host{}, grpo::loss_inputs<double>{}, grpo::loss_outputs<double>{},
                              grpo::loss_config{})
              .loss == 0);
}

// ---- Aliasing ----------------------------------------------------------------------------------------------

TEST_CASE("advantages: per-group outputs over the advantages, the ids or each other", "[robustness][aliasing]") {
    std::vector<double> r = {1, 2, 3, 4}, buf(8, -9.0);
    std::vector<std::int64_t> ids = {0, 1, 0, 1};
    const std::vector<double> buf_before = buf;
    // mean over the advantages
    grpo::group_outputs go;
    go.mean = grpo::vector_view<double>(buf.data(), 2);
    CHECK(contains(error_of(
                       [&] {
                           grpo::compute_advantages(grpo::exec::host{}, cview(r), grpo::groups::contiguous(2),
                                                    grpo::vector_view<double>(buf.data(), 4), grpo::advantage_config{},
                                                    go);
                       },
                       grpo::errc::aliasing),
                   "'group_outputs.mean'"));
    // count over the group ids
    grpo::group_outputs gc;
    gc.count = grpo::vector_view<std::int64_t>(ids.data() + 2, 2);
    CHECK(contains(error_of(
                       [&] {
                           grpo::compute_advantages(grpo::exec::host{}, cview(r), grpo::groups::by_id(cview(ids), 2),
                                                    grpo::vector_view<double>(buf.data() + 4, 4),
                                                    grpo::advantage_config{}, gc);
                       },
                       grpo::errc::aliasing),
                   "'groups.ids'"));
    // std over mean
    grpo::group_outputs gs;
    gs.mean = grpo::vector_view<double>(buf.data() + 4, 2);
    gs.std = grpo::vector_view<double>(buf.data() + 5, 2);
    CHECK(contains(error_of(
                       [&] {
                           grpo::compute_advantages(grpo::exec::host{}, cview(r), grpo::groups::contiguous(2),
                                                    grpo::vector_view<double>(buf.data(), 4), grpo::advantage_config{},
                                                    gs);
                       },
                       grpo::errc::aliasing),
                   "'group_outputs.std'"));
    CHECK(buf == buf_before);
    CHECK(ids == std::vector<std::int64_t>({0, 1, 0, 1}));
}

TEST_CASE("process_advantages: outputs over any input", "[robustness][aliasing]") {
    std::vector<double> rewards = {0.9, 0.2, 0.5};
    std::vector<std::int64_t> offsets = {0, 2, 3}, ends = {1, 3, 2};
    const std::vector<double> before = rewards;
    std::vector<double> tok(2 * 4, -9);
    // normalized over the step rewards
    CHECK(contains(error_of(
                       [&] {
                           grpo::process_advantages(grpo::exec::host{}, cview(rewards), cview(offsets), cview(ends),
                                                    grpo::groups::contiguous(2),
                                                    grpo::matrix_view<double>(tok.data(), 2, 4),
                                                    grpo::process_reward_config{}, view(rewards));
                       },
                       grpo::errc::aliasing),
                   "'normalized'"));
    // token advantages over the step rewards
    CHECK(contains(error_of(
                       [&] {
                           grpo::process_advantages(grpo::exec::host{}, cview(rewards), cview(offsets), cview(ends),
                                                    grpo::groups::contiguous(2),
                                                    grpo::matrix_view<double>(rewards.data() + 1, 2, 1));
                       },
                       grpo::errc::aliasing),
                   "'token_advantages'"));
    CHECK(rewards == before);
    CHECK(tok == std::vector<double>(8, -9));
}

TEST_CASE("loss: lengths under grad_logp or per_token_loss is aliasing (was a write at index -4.6e18)",
          "[robustness][aliasing]") {
    grpo_test::batch<double> b(2, 4, 13);
    std::vector<std::int64_t> lengths = {2, 4, 0, 0, 0, 0, 0, 0};
    auto in = b.inputs();
    in.lengths = grpo::vector_view<const std::int64_t>(lengths.data(), 2);
    grpo::loss_outputs<double> out;
    out.grad_logp = grpo::matrix_view<double>(reinterpret_cast<double*>(lengths.data()), 2, 4);
    CHECK(contains(
        error_of([&] { grpo::loss_and_grad(grpo::exec::host{}, in, out, grpo::loss_config{}); }, grpo::errc::aliasing),
        "'lengths'"));
    out = {};
    out.per_token_loss = grpo::matrix_view<double>(reinterpret_cast<double*>(lengths.data()), 2, 4);
    CHECK(contains(
        error_of([&] { grpo::loss_and_grad(grpo::exec::host{}, in, out, grpo::loss_config{}); }, grpo::errc::aliasing),
        "'lengths'"));
    CHECK(lengths[0] == 2);
    CHECK(lengths[1] == 4);
}

// ---- Sizes that overflow or cannot be allocated -------------------------------------------------------------

TEST_CASE("views whose sizes or spans overflow are errors (was signed-overflow UB)", "[robustness][views]") {
    double x[4] = {0, 0, 0, 0};
    error_of([&] { grpo::matrix_view<double>(x, huge, huge); }, grpo::errc::invalid_value);
    error_of([&] { grpo::matrix_view<double>(x, 2, huge, huge + 1, 1); }, grpo::errc::invalid_value);
    error_of([&] { grpo::matrix_view<double>(x, 3, 3, 1, huge); }, grpo::errc::invalid_value);
    error_of([&] { grpo::vector_view<const double>(x, huge, 4); }, grpo::errc::invalid_value);
    // Read-only broadcasts are fine as long as size() is representable.
    CHECK_NOTHROW(grpo::matrix_view<const double>(x, index_t(1) << 40, index_t(1) << 20, 0, 0));
    error_of([&] { grpo::matrix_view<const double>(x, huge, huge, 0, 0); }, grpo::errc::invalid_value);
}

TEST_CASE("empty-column views are allowed: [rows, 0]", "[robustness][views]") {
    std::vector<double> none;
    CHECK_NOTHROW(grpo::matrix_view<double>(none.data(), 5, 0));
    CHECK_NOTHROW(grpo::matrix_view<double>(none.data(), 0, 5));
    std::vector<double> adv(5, 0.5);
    grpo::loss_inputs<double> in;
    in.logp = grpo::matrix_view<const double>(none.data(), 5, 0);
    in.advantages = grpo::broadcast_to_tokens(cview(adv), 0);
    grpo::loss_outputs<double> out;
    out.grad_logp = grpo::matrix_view<double>(none.data(), 5, 0);
    const grpo::loss_stats st = grpo::loss_and_grad(grpo::exec::host{}, in, out, grpo::loss_config{});
    CHECK(st.loss == 0);
    CHECK(st.token_count == 0);
}

TEST_CASE("huge or negative group counts are grpo::errors (was a heap write, bad_alloc, length_error)",
          "[robustness][advantages]") {
    const std::vector<double> r = {1, 2, 3, 4};
    const std::vector<std::int64_t> ids = {0, 1, 0, 1};
    std::vector<double> a(4, -9);
    for (index_t k : {huge, index_t(1) << 60, index_t(1000000000000)}) {
        const std::string msg = error_of(
            [&] {
                grpo::compute_advantages(grpo::exec::host{}, cview(r), grpo::groups::by_id(cview(ids), k), view(a));
            },
            // (2^62 and 2^60 groups: the scratch's size overflows; 10^12: it does not fit in memory)
            k == index_t(1000000000000) ? grpo::errc::out_of_memory : grpo::errc::invalid_value);
        CHECK(contains(msg, "compute_advantages"));
    }
    const std::vector<double> none;
    const std::vector<std::int64_t> no_ids;
    std::vector<double> no_adv;
    error_of(
        [&] {
            grpo::compute_advantages(grpo::exec::host{}, cview(none), grpo::groups::by_id(cview(no_ids), -3),
                                     view(no_adv));
        },
        grpo::errc::invalid_value);
    for (double x : a) CHECK(x == -9);
    // normalize_then_sum: num_groups * functions overflows.
    const std::vector<double> scores = {1, 0, 1, 0, 0, 1, 0, 1};
    const std::vector<double> w = {1, 1};
    error_of(
        [&] {
            grpo::outcome_advantages(grpo::exec::host{}, grpo::matrix_view<const double>(scores.data(), 4, 2), cview(w),
                                     grpo::groups::by_id(cview(ids), huge), view(a), grpo::advantage_config{},
                                     grpo::reward_aggregation::normalize_then_sum);
        },
        grpo::errc::invalid_value);
    for (double x : a) CHECK(x == -9);
}

TEST_CASE("loss partials for stride-0 views of 10^18 rows: an error, not a wrapped allocation", "[robustness][loss]") {
    const double zero = 0;
    const index_t rows = index_t(1000000000000000000);
    grpo::loss_inputs<double> in;
    in.logp = grpo::matrix_view<const double>(&zero, rows, 1, 0, 0);
    in.advantages = grpo::matrix_view<const double>(&zero, rows, 1, 0, 0);
    error_of([&] { grpo::loss_and_grad(grpo::exec::host{}, in, grpo::loss_outputs<double>{}, grpo::loss_config{}); },
             grpo::errc::invalid_value);
    in.logp = grpo::matrix_view<const double>(&zero, index_t(1) << 40, 1, 0, 0);
    in.advantages = grpo::matrix_view<const double>(&zero, index_t(1) << 40, 1, 0, 0);
    error_of([&] { grpo::loss_and_grad(grpo::exec::host{}, in, grpo::loss_outputs<double>{}, grpo::loss_config{}); },
             grpo::errc::out_of_memory);
}

TEST_CASE("rollout_buffer::reset with sizes that overflow keeps the old buffer", "[robustness][sampler]") {
    grpo::rollout_buffer<float> buf;
    buf.reset(1, 2, 3);
    buf.tokens()(1, 2) = 42;
    error_of([&] { buf.reset(1, 4, huge); }, grpo::errc::invalid_value);
    error_of([&] { buf.reset(huge, 4, 1); }, grpo::errc::invalid_value);
    CHECK(buf.rows() == 2);
    CHECK(buf.max_tokens() == 3);
    CHECK(buf.tokens()(1, 2) == 42);
    grpo::rollout_batch<float> batch = buf.view();
    batch.num_prompts = huge;
    batch.group_size = 4;
    error_of([&] { batch.validate(); }, grpo::errc::invalid_value);
}

// ---- Shared state: workspace and trainer in use ---------------------------------------------------------------

TEST_CASE("a workspace held by another call is refused with errc::in_use", "[robustness][concurrency]") {
    grpo_test::batch<double> b(2, 3, 17);
    grpo::workspace ws;
    const std::vector<double> grad_before = b.grad;
    {
        const grpo::workspace_lease held(ws, "test");
        CHECK(ws.in_use());
        const std::string msg =
            error_of([&] { grpo::loss_and_grad(grpo::exec::host{}, b.inputs(), b.outputs(), grpo::loss_config{}, ws); },
                     grpo::errc::in_use);
        CHECK(contains(msg, "'ws'"));
        const std::vector<double> r = {1, 2, 3, 4};
        std::vector<double> a(4, -9);
        error_of(
            [&] {
                grpo::compute_advantages(grpo::exec::host{}, cview(r), grpo::groups::contiguous(2), view(a),
                                         grpo::advantage_config{}, ws);
            },
            grpo::errc::in_use);
        CHECK(a == std::vector<double>(4, -9));
    }
    CHECK(b.grad == grad_before);
    CHECK_FALSE(ws.in_use());
    CHECK_NOTHROW(grpo::loss_and_grad(grpo::exec::host{}, b.inputs(), b.outputs(), grpo::loss_config{}, ws));
    CHECK_FALSE(ws.in_use());
}

// ---- The trainer and a misbehaving sampler --------------------------------------------------------------------

namespace {

struct scripted_sampler : grpo::group_sampler<int, float> {
    index_t tokens = 3;
    int reshape = 0; // 1: reset with one prompt more; 2: reset with another group size; 3: another width
    index_t max_tokens() const override { return tokens; }
    void sample(const int*, index_t n, index_t g, grpo::rollout_buffer<float>& out) override {
        if (reshape == 1) out.reset(n + 1, g, tokens);
        if (reshape == 2) out.reset(n, g + 1, tokens);
        if (reshape == 3) out.reset(n, g, tokens + 1);
        for (index_t i = 0; i < out.rows(); ++i) {
            for (index_t t = 0; t < out.max_tokens(); ++t) {
                out.tokens()(i, t) = static_cast<grpo::token_id>((i + t) % 2);
                out.old_logp()(i, t) = -0.7f;
            }
            out.lengths()[i] = out.max_tokens();
        }
    }
};

grpo::policy_callbacks<float> fixed_policy() {
    grpo::policy_callbacks<float> cb;
    cb.current_logp = [](const grpo::rollout_batch<float>& r, grpo::matrix_view<float> out) {
        for (index_t i = 0; i < r.rows(); ++i)
            for (index_t t = 0; t < r.max_tokens(); ++t) out(i, t) = -0.7f;
    };
    cb.apply_gradient = [](const grpo::rollout_batch<float>&, grpo::matrix_view<const float>) {};
    return cb;
}

} // namespace

TEST_CASE("trainer: a sampler that reshapes the rollout buffer is named, prompts are not over-read",
          "[robustness][trainer]") {
    for (int reshape : {1, 2, 3}) {
        scripted_sampler s;
        s.reshape = reshape;
        grpo::train_config cfg;
        cfg.group_size = 2;
        grpo::trainer<int, float> tr(s, fixed_policy(), cfg);
        std::vector<int> prompts_read;
        grpo::outcome_rewards<int> rewards;
        rewards.add("read", [&](const int& p, const grpo::completion_view&) {
            prompts_read.push_back(p);
            return double(p);
        });
        tr.set_outcome_rewards(rewards);
        const int prompts[2] = {3, 4};
        const std::string msg = error_of([&] { tr.step(prompts, 2); }, grpo::errc::shape_mismatch);
        CHECK(contains(msg, "'sampler'"));
        CHECK(prompts_read.empty());
    }
}

TEST_CASE("trainer: a sampler with max_tokens() == 0 runs a step without updates", "[robustness][trainer]") {
    scripted_sampler s;
    s.tokens = 0;
    grpo::train_config cfg;
    cfg.group_size = 2;
    grpo::trainer<int, float> tr(s, fixed_policy(), cfg);
    grpo::outcome_rewards<int> rewards;
    rewards.add("one", [](const int&, const grpo::completion_view& c) { return double(c.index_in_group); });
    tr.set_outcome_rewards(rewards);
    const int prompts[1] = {0};
    const grpo::step_metrics m = tr.step(prompts, 1);
    CHECK(m.updates == 0);
    CHECK(m.tokens == 0);
}

TEST_CASE("loss: grad_entropy at entropy_coef 0 is +0 for contiguous and strided rows alike", "[robustness][loss]") {
    // fuzz_dist found the strided pass writing -(weight * 0) = -0 where the contiguous one wrote +0: the same call
    // gave other bits for another layout of the same values.
    const index_t rows = 2, cols = 3;
    std::vector<float> logp = {-1, -2, -0.5f, -0.25f, -3, -1}, adv = {1, -1};
    std::vector<float> wide(static_cast<std::size_t>(rows * cols * 2)); // logp with column stride 2
    for (index_t i = 0; i < rows * cols; ++i) wide[static_cast<std::size_t>(2 * i)] = logp[static_cast<std::size_t>(i)];
    for (const bool strided : {false, true}) {
        grpo::loss_inputs<float> in;
        in.logp = strided ? grpo::matrix_view<const float>(wide.data(), rows, cols, 2 * cols, 2)
                          : grpo::matrix_view<const float>(logp.data(), rows, cols);
        in.advantages = grpo::broadcast_to_tokens(grpo::vector_view<const float>(adv.data(), rows), cols);
        std::vector<float> grad(static_cast<std::size_t>(rows * cols)), gent(grad.size(), -7.0f);
        grpo::loss_outputs<float> out;
        out.grad_logp = {grad.data(), rows, cols};
        out.grad_entropy = {gent.data(), rows, cols};
        grpo::loss_and_grad(grpo::exec::host{}, in, out, grpo::loss_config{});
        for (const float g : gent) {
            CHECK(g == 0.0f);
            CHECK(!std::signbit(g));
        }
    }
}
