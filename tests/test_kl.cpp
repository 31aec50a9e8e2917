// SPDX-License-Identifier: MIT
// The standalone per-token KL (per_token_kl): every estimator against the peers' formulas and finite
// differences, agreement with the KL term of loss_and_grad, masking, validation and determinism.
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "catch.hpp"
#include "loss_catalogue.hpp"
#include "test_helpers.hpp"

namespace {

/// The KL settings the tests sweep: every estimator, the clamps, low_var_kl, straight-through.
std::vector<grpo::loss_config> kl_settings() {
    std::vector<grpo::loss_config> v;
    for (auto kl : {grpo::kl_estimator::k1, grpo::kl_estimator::k2, grpo::kl_estimator::k3, grpo::kl_estimator::abs,
                    grpo::kl_estimator::low_var_kl}) {
        grpo::loss_config c;
        c.kl = kl;
        v.push_back(c);
    }
    grpo::loss_config c;
    c.kl_log_ratio_clamp = 0.3;
    c.kl_value_clamp = 0.02;
    v.push_back(c);
    c = grpo::loss_config{};
    c.kl = grpo::kl_estimator::abs;
    c.kl_straight_through = true;
    v.push_back(c);
    for (auto& s : v) s.beta = 1; // peer_token_loss computes the KL only with beta != 0
    return v;
}

template <class T>
grpo::kl_inputs<T> kl_inputs_of(const grpo_test::batch<T>& b, bool with_lengths) {
    grpo::kl_inputs<T> in;
    in.logp = {b.logp.data(), b.rows, b.cols};
    in.ref_logp = {b.ref_logp.data(), b.rows, b.cols};
    in.mask = {b.mask.data(), b.rows, b.cols};
    if (with_lengths) in.lengths = {b.lengths.data(), b.rows};
    return in;
}

} // namespace

TEST_CASE("per_token_kl: every estimator matches the peers' formula and its finite difference", "[kl]") {
    for (const grpo::loss_config& cfg : kl_settings()) {
        grpo_test::batch<double> b(6, 41, 17);
        std::vector<double> kl(b.logp.size(), 9), grad(b.logp.size(), 9);
        const grpo::kl_stats st =
            grpo::per_token_kl(grpo::exec::host{}, kl_inputs_of(b, false),
                               grpo::kl_outputs<double>{{kl.data(), b.rows, b.cols}, {grad.data(), b.rows, b.cols}},
                               grpo::kl_config::of(cfg));
        double sum = 0, n = 0;
        for (std::size_t k = 0; k < kl.size(); ++k) {
            INFO("estimator " << static_cast<int>(cfg.kl) << " token " << k);
            if (b.mask[k] == 0) {
                CHECK(kl[k] == 0.0);
                CHECK(grad[k] == 0.0);
                continue;
            }
            const auto peer = [&](double lp) { return grpo_test::peer_token_loss(cfg, lp, lp, b.ref_logp[k], 0).kl; };
            CHECK(kl[k] == Approx(peer(b.logp[k])).epsilon(1e-13).margin(1e-15));
            if (cfg.kl_straight_through) {
                CHECK(grad[k] == Approx(b.logp[k] - b.ref_logp[k]).epsilon(1e-15)); // k2's gradient
            } else {
                const double h = 1e-6, fd = (peer(b.logp[k] + h) - peer(b.logp[k] - h)) / (2 * h);
                CHECK(grad[k] == Approx(fd).epsilon(1e-6).margin(1e-8));
            }
            sum += peer(b.logp[k]);
            n += 1;
        }
        CHECK(st.token_count == n);
        CHECK(st.kl_sum == Approx(sum).epsilon(1e-13));
        CHECK(st.kl_mean == Approx(sum / n).epsilon(1e-13));
    }
}

TEMPLATE_TEST_CASE("per_token_kl is the KL term loss_and_grad adds", "[kl]", float, double) {
    // per_token_kl has no FMA version: the loss pass's baseline (the same roundings) is the one to compare with.
    const grpo_test::cpu_version_scope baseline(grpo::detail::cpu::cpu_version::baseline);
    for (grpo::loss_config cfg : kl_settings()) {
        grpo_test::batch<TestType> b(5, 77, 23);
        cfg.beta = 0.04;
        cfg.agg = grpo::aggregation::token_sum;
        const grpo::loss_stats ls =
            grpo::loss_and_grad(grpo::exec::host{}, b.inputs(true, true, true, true), b.outputs(), cfg);
        std::vector<TestType> kl(b.logp.size(), TestType(9));
        const grpo::kl_stats st =
            grpo::per_token_kl(grpo::exec::host{}, kl_inputs_of(b, true),
                               grpo::kl_outputs<TestType>{{kl.data(), b.rows, b.cols}, {}}, grpo::kl_config::of(cfg));
        CHECK(st.token_count == ls.token_count);
        CHECK(st.kl_sum == Approx(ls.kl_loss).epsilon(1e-12)); // token_sum: the loss's KL term is the plain sum
        CHECK(st.kl_mean == Approx(ls.kl_mean).epsilon(1e-12));
        for (grpo::index_t i = 0; i < b.rows; ++i)
            for (grpo::index_t t = b.lengths[static_cast<std::size_t>(i)]; t < b.cols; ++t)
                CHECK(kl[static_cast<std::size_t>(i * b.cols + t)] == TestType(0)); // past the length: masked
    }
}

TEST_CASE("per_token_kl: bit-identical for any thread count", "[kl][determinism]") {
    grpo_test::batch<float> b(67, 301, 3);
    grpo::kl_config cfg;
    std::vector<float> kl0(b.logp.size()), g0(b.logp.size());
    const auto base =
        grpo::per_token_kl(grpo::exec::host{}, kl_inputs_of(b, true),
                           grpo::kl_outputs<float>{{kl0.data(), b.rows, b.cols}, {g0.data(), b.rows, b.cols}}, cfg);
    for (unsigned threads : {2u, 3u, 7u}) {
        grpo::thread_pool pool(threads);
        std::vector<float> kl(b.logp.size()), g(b.logp.size());
        const auto st =
            grpo::per_token_kl(grpo::exec::host{&pool}, kl_inputs_of(b, true),
                               grpo::kl_outputs<float>{{kl.data(), b.rows, b.cols}, {g.data(), b.rows, b.cols}}, cfg);
        CHECK(std::memcmp(&st.kl_sum, &base.kl_sum, sizeof(double)) == 0);
        CHECK(std::memcmp(kl.data(), kl0.data(), kl.size() * sizeof(float)) == 0);
        CHECK(std::memcmp(g.data(), g0.data(), g.size() * sizeof(float)) == 0);
    }
}

TEST_CASE("per_token_kl: bad input throws grpo::error naming the argument, outputs untouched", "[kl][errors]") {
    grpo_test::batch<double> b(3, 8, 5);
    std::vector<double> kl(b.logp.size(), 9);
    const grpo::kl_outputs<double> out{{kl.data(), b.rows, b.cols}, {}};
    const auto message = [&](const grpo::kl_inputs<double>& in, const grpo::kl_config& cfg) -> std::string {
        try {
            grpo::per_token_kl(grpo::exec::host{}, in, out, cfg);
        } catch (const grpo::error& e) {
            return e.what();
        }
        return {};
    };
    auto in = kl_inputs_of(b, false);
    in.ref_logp = {};
    CHECK(message(in, {}).find("ref_logp") != std::string::npos);
    in = kl_inputs_of(b, false);
    in.ref_logp = {b.ref_logp.data(), b.rows, b.cols - 1};
    CHECK(message(in, {}).find("ref_logp") != std::string::npos);
    in = kl_inputs_of(b, false);
    grpo::kl_config cfg;
    cfg.kl_value_clamp = -1;
    CHECK(message(in, cfg).find("config.kl_value_clamp") != std::string::npos);
    cfg = {};
    cfg.kl = static_cast<grpo::kl_estimator>(grpo::kl_estimator_count);
    CHECK(message(in, cfg).find("config.kl") != std::string::npos);
    // A NaN reference log-prob at an unmasked token, and one at a masked token (never read as a number).
    std::size_t unmasked = 0, masked = 0;
    while (b.mask[unmasked] == 0) ++unmasked;
    while (b.mask[masked] != 0) ++masked;
    const double saved = b.ref_logp[unmasked];
    b.ref_logp[unmasked] = std::nan("");
    CHECK(message(kl_inputs_of(b, false), {}).find("ref_logp") != std::string::npos);
    for (double x : kl) CHECK(x == 9.0);
    b.ref_logp[unmasked] = saved;
    b.ref_logp[masked] = std::nan("");
    CHECK(message(kl_inputs_of(b, false), {}).empty());
    // Lengths out of range, and an output overlapping an input.
    std::vector<std::int64_t> bad_lengths(static_cast<std::size_t>(b.rows), 2);
    bad_lengths[1] = b.cols + 1;
    in = kl_inputs_of(b, false);
    in.lengths = {bad_lengths.data(), b.rows};
    CHECK(message(in, {}).find("lengths") != std::string::npos);
    std::vector<double> shared(b.logp);
    in = kl_inputs_of(b, false);
    in.logp = {shared.data(), b.rows, b.cols};
    try {
        grpo::per_token_kl(grpo::exec::host{}, in, grpo::kl_outputs<double>{{shared.data(), b.rows, b.cols}, {}},
                           grpo::kl_config{});
        FAIL("aliasing accepted");
    } catch (const grpo::error& e) {
        CHECK(e.code() == grpo::errc::aliasing);
    }
    // An empty call is valid and gives zeros.
    const auto st = grpo::per_token_kl(grpo::exec::host{}, grpo::kl_inputs<double>{}, grpo::kl_outputs<double>{},
                                       grpo::kl_config{});
    CHECK(st.token_count == 0);
    CHECK(st.kl_mean == 0);
}
