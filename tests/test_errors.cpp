// SPDX-License-Identifier: MIT
// Every bad input throws grpo::error naming the argument, and leaves the outputs untouched.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "catch.hpp"
#include "test_helpers.hpp"

namespace {

/// Runs f, expects a grpo::error with `code` whose message contains every fragment.
template <class F>
void expect_error(F&& f, grpo::errc code, std::initializer_list<const char*> fragments) {
    try {
        f();
        FAIL("no grpo::error thrown");
    } catch (const grpo::error& e) {
        INFO(e.what());
        CHECK(e.code() == code);
        for (const char* frag : fragments) CHECK(std::string(e.what()).find(frag) != std::string::npos);
    }
}

struct fixture {
    grpo_test::batch<double> b{3, 4, 5};
    std::vector<double> grad_before;
    fixture() { grad_before = b.grad; }
    void untouched() const {
        for (std::size_t k = 0; k < b.grad.size(); ++k) REQUIRE(b.grad[k] == grad_before[k]);
        for (double x : b.per_token) REQUIRE(x == -7.0);
    }
    grpo::loss_stats run(const grpo::loss_inputs<double>& in, const grpo::loss_config& cfg = {}) {
        return grpo::loss_and_grad(grpo::exec::host{}, in, b.outputs(), cfg);
    }
};

} // namespace

TEST_CASE("loss: shape mismatches name the argument, expected and actual shape", "[errors][loss]") {
    fixture f;
    auto in = f.b.inputs();
    in.old_logp = grpo::matrix_view<const double>(f.b.old_logp.data(), 3, 3);
    expect_error([&] { f.run(in); }, grpo::errc::shape_mismatch, {"loss_and_grad", "'old_logp'", "[3, 4]", "[3, 3]"});
    in = f.b.inputs();
    in.advantages = grpo::matrix_view<const double>(f.b.adv_tok.data(), 2, 4);
    expect_error([&] { f.run(in); }, grpo::errc::shape_mismatch, {"'advantages'"});
    in = f.b.inputs();
    in.mask = grpo::matrix_view<const double>(f.b.mask.data(), 3, 2);
    expect_error([&] { f.run(in); }, grpo::errc::shape_mismatch, {"'mask'"});
    in = f.b.inputs();
    in.lengths = grpo::vector_view<const std::int64_t>(f.b.lengths.data(), 2);
    expect_error([&] { f.run(in); }, grpo::errc::shape_mismatch, {"'lengths'", "size 3", "size 2"});
    in = f.b.inputs();
    grpo::loss_config cfg;
    cfg.beta = 0.1;
    in.ref_logp = {};
    expect_error([&] { f.run(in, cfg); }, grpo::errc::invalid_value, {"'ref_logp'", "beta"});
    in = f.b.inputs();
    in.advantages = {};
    expect_error([&] { f.run(in); }, grpo::errc::invalid_value, {"'advantages'"});
    auto small = f.b.inputs();
    grpo::loss_outputs<double> out;
    out.grad_logp = grpo::matrix_view<double>(f.b.grad.data(), 3, 3);
    expect_error([&] { grpo::loss_and_grad(grpo::exec::host{}, small, out, grpo::loss_config{}); },
                 grpo::errc::shape_mismatch, {"'grad_logp'"});
    f.untouched();
}

TEST_CASE("loss: non-finite unmasked inputs, bad mask values and bad lengths", "[errors][loss]") {
    const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
    for (int which = 0; which < 4; ++which) {
        fixture f;
        std::fill(f.b.mask.begin(), f.b.mask.end(), 1.0);
        std::vector<double>* target[] = {&f.b.logp, &f.b.old_logp, &f.b.ref_logp, &f.b.adv_tok};
        const char* names[] = {"'logp'", "'old_logp'", "'ref_logp'", "'advantages'"};
        (*target[which])[6] = which % 2 ? inf : nan;
        grpo::loss_config cfg;
        cfg.beta = 0.1;
        expect_error([&] { f.run(f.b.inputs(), cfg); }, grpo::errc::non_finite, {names[which], "(1, 2)"});
        f.untouched();
        // Masked, the same value is fine.
        f.b.mask[6] = 0;
        CHECK_NOTHROW(f.run(f.b.inputs(), cfg));
    }
    fixture f;
    f.b.mask[5] = 0.5;
    expect_error([&] { f.run(f.b.inputs()); }, grpo::errc::invalid_value, {"'mask'", "0 or 1", "0.5"});
    f.untouched();
    f.b.mask[5] = 1;
    f.b.lengths[1] = 5;
    expect_error([&] { f.run(f.b.inputs(true, true, true, true)); }, grpo::errc::invalid_value,
                 {"'lengths'", "[0, 4]", "5"});
    f.b.lengths[1] = -1;
    expect_error([&] { f.run(f.b.inputs(true, true, true, true)); }, grpo::errc::invalid_value, {"'lengths'", "-1"});
    f.untouched();
}

TEMPLATE_TEST_CASE("loss: validation finds a bad value anywhere in a row, in every array and layout", "[errors][loss]",
                   float, double) {
    // The vectorized scan of a row and the scalar search for its first problem must agree: a bad value at the
    // first, a vector-boundary and the last column of a middle row, in each array the call reads, in contiguous,
    // padded (row stride > cols) and strided (column stride 2) layouts.
    using T = TestType;
    const T nan = std::numeric_limits<T>::quiet_NaN(), inf = std::numeric_limits<T>::infinity();
    const grpo::index_t rows = 3, cols = 37;
    grpo::loss_config cfg;
    cfg.beta = 0.1;
    cfg.sampling = grpo::sampling_correction::token_truncate; // reads sampling_logp
    cfg.entropy_coef = 0.01;                                  // reads entropy
    const char* names[] = {"'logp'",          "'old_logp'", "'ref_logp'", "'advantages'",
                           "'sampling_logp'", "'entropy'",  "'mask'",     "'advantages'"};
    // Both versions of the scan: the baseline and (where the CPU has AVX2) its AVX2 copy.
    for (int run = 0; run < 2 * 3; ++run) {
        const int layout = run % 3;
        const grpo_test::cpu_version_scope scope(run < 3 ? grpo::detail::cpu::cpu_version::baseline
                                                         : grpo::detail::cpu::cpu_best_version());
        const grpo::index_t col_stride = layout == 2 ? 2 : 1, row_stride = layout == 0 ? cols : 2 * cols + 5;
        for (int which = 0; which < 8; ++which) {
            for (grpo::index_t column : {0, 7, 8, 15, 16, 36}) {
                for (const T bad : {nan, inf, -inf, T(0.5)}) {
                    const bool mask_case = which == 6;
                    if (mask_case != (bad == T(0.5)) && !(mask_case && bad != bad)) continue;
                    grpo_test::batch<T> b(rows, row_stride, 11);
                    std::fill(b.mask.begin(), b.mask.end(), T(1));
                    std::vector<T>* arrays[] = {&b.logp,          &b.old_logp, &b.ref_logp, &b.adv_tok,
                                                &b.sampling_logp, &b.entropy,  &b.mask};
                    const std::size_t at = static_cast<std::size_t>(row_stride + column * col_stride);
                    if (which < 7) (*arrays[which])[at] = bad;
                    else b.adv_seq[1] = bad; // a broadcast advantage: reported at the row's first token
                    const auto view = [&](const std::vector<T>& x) {
                        return grpo::matrix_view<const T>(x.data(), rows, cols, row_stride, col_stride);
                    };
                    grpo::loss_inputs<T> in;
                    in.logp = view(b.logp);
                    in.old_logp = view(b.old_logp);
                    in.ref_logp = view(b.ref_logp);
                    in.advantages =
                        which == 7 ? grpo::broadcast_to_tokens(grpo::vector_view<const T>(b.adv_seq.data(), rows), cols)
                                   : view(b.adv_tok);
                    in.sampling_logp = view(b.sampling_logp);
                    in.entropy = view(b.entropy);
                    in.mask = view(b.mask);
                    std::vector<T> grad(static_cast<std::size_t>(rows * cols), T(-7));
                    grpo::loss_outputs<T> out;
                    out.grad_logp = {grad.data(), rows, cols};
                    const std::string where = "(1, " + std::to_string(which == 7 ? grpo::index_t(0) : column) + ")";
                    INFO("run " << run << ", layout " << layout << ", array " << names[which] << ", column " << column
                                << ", value " << bad);
                    expect_error([&] { grpo::loss_and_grad(grpo::exec::host{}, in, out, cfg); },
                                 mask_case ? grpo::errc::invalid_value : grpo::errc::non_finite,
                                 {names[which], where.c_str()});
                    CHECK(std::all_of(grad.begin(), grad.end(), [](T g) { return g == T(-7); }));
                }
            }
        }
    }
}

TEST_CASE("loss: configuration values outside their domain", "[errors][loss]") {
    fixture f;
    auto bad = [&](auto edit, const char* name) {
        grpo::loss_config cfg;
        edit(cfg);
        expect_error([&] { f.run(f.b.inputs(), cfg); }, grpo::errc::invalid_value, {name});
    };
    bad([](grpo::loss_config& c) { c.epsilon_low = 1.0; }, "config.epsilon_low");
    bad([](grpo::loss_config& c) { c.epsilon_high = -0.1; }, "config.epsilon_high");
    bad([](grpo::loss_config& c) { c.delta = 0.9; }, "config.delta");
    bad([](grpo::loss_config& c) { c.dual_clip_c = 1.0; }, "config.dual_clip_c");
    bad([](grpo::loss_config& c) { c.beta = -1; }, "config.beta");
    bad([](grpo::loss_config& c) { c.global_sequence_count = 2; }, "config.global_sequence_count");
    bad([](grpo::loss_config& c) { c.global_token_count = 1; }, "config.global_token_count");
    grpo::loss_config cfg;
    cfg.loss_scale = std::numeric_limits<double>::quiet_NaN();
    expect_error([&] { f.run(f.b.inputs(), cfg); }, grpo::errc::non_finite, {"config.loss_scale"});
    f.untouched();
}

TEST_CASE("loss: outputs that alias inputs or each other", "[errors][loss]") {
    fixture f;
    auto in = f.b.inputs();
    grpo::loss_outputs<double> out;
    out.grad_logp = grpo::matrix_view<double>(const_cast<double*>(f.b.logp.data()), 3, 4);
    expect_error([&] { grpo::loss_and_grad(grpo::exec::host{}, in, out, grpo::loss_config{}); }, grpo::errc::aliasing,
                 {"'grad_logp'", "'logp'"});
    out.grad_logp = grpo::matrix_view<double>(f.b.grad.data(), 3, 4);
    out.per_token_loss = grpo::matrix_view<double>(f.b.grad.data(), 3, 4); // the same memory as grad_logp
    in.mask = {};
    expect_error([&] { grpo::loss_and_grad(grpo::exec::host{}, in, out, grpo::loss_config{}); }, grpo::errc::aliasing,
                 {"'per_token_loss'"});
    f.untouched();
}

TEST_CASE("advantages: bad groups, sizes, non-finite rewards, aliasing", "[errors][advantages]") {
    std::vector<double> r{1, 0, 0, 1, 0, 1}, adv(6, 5.0);
    std::vector<std::int64_t> ids{0, 0, 1, 1, 2, 2};
    const auto R = grpo::vector_view<const double>(r.data(), 6);
    const auto A = grpo::vector_view<double>(adv.data(), 6);
    auto run = [&](grpo::vector_view<const double> rr, const grpo::groups& g, grpo::vector_view<double> aa,
                   grpo::advantage_config cfg = {}) { grpo::compute_advantages(grpo::exec::host{}, rr, g, aa, cfg); };
    expect_error([&] { run(R, grpo::groups::contiguous(4), A); }, grpo::errc::shape_mismatch,
                 {"'groups'", "divides", "4"});
    expect_error([&] { run(R, grpo::groups::contiguous(0), A); }, grpo::errc::invalid_value, {"'groups'", ">= 1"});
    expect_error([&] { run(R, grpo::groups::contiguous(3), grpo::vector_view<double>(adv.data(), 5)); },
                 grpo::errc::shape_mismatch, {"'advantages'"});
    ids[3] = 3;
    expect_error([&] { run(R, grpo::groups::by_id(grpo::vector_view<const std::int64_t>(ids.data(), 6), 3), A); },
                 grpo::errc::invalid_value, {"'groups.ids'", "[0, 3)", "3 at index 3"});
    ids[3] = -1;
    expect_error([&] { run(R, grpo::groups::by_id(grpo::vector_view<const std::int64_t>(ids.data(), 6), 3), A); },
                 grpo::errc::invalid_value, {"'groups.ids'"});
    r[2] = std::numeric_limits<double>::quiet_NaN();
    expect_error([&] { run(R, grpo::groups::contiguous(3), A); }, grpo::errc::non_finite,
                 {"'rewards'", "nan", "index 2"});
    r[2] = std::numeric_limits<double>::infinity();
    grpo::advantage_config ignore;
    ignore.nan = grpo::nan_rewards::ignore;
    expect_error([&] { run(R, grpo::groups::contiguous(3), A, ignore); }, grpo::errc::non_finite, {"'rewards'", "inf"});
    r[2] = 0;
    expect_error([&] { run(R, grpo::groups::contiguous(3), grpo::vector_view<double>(r.data(), 6)); },
                 grpo::errc::aliasing, {"'advantages'", "'rewards'"});
    grpo::advantage_config whiten;
    whiten.estimator = grpo::advantage_estimator::group_centered_batch_whitened;
    expect_error(
        [&] {
            run(grpo::vector_view<const double>(r.data(), 1), grpo::groups::contiguous(1),
                grpo::vector_view<double>(adv.data(), 1), whiten);
        },
        grpo::errc::invalid_value, {"whitening"});
    for (double a : adv) CHECK(a == 5.0);
}
