// SPDX-License-Identifier: MIT
// dLoss/dlogp against central finite differences of the loss, in double, for every variant of the catalogue
// (loss_catalogue.hpp: objectives, clips, KL estimators), aggregation mode and ratio level, with masks, lengths
// and both advantage layouts.
#include <cmath>
#include <string>
#include <vector>

#include "catch.hpp"
#include "loss_catalogue.hpp"
#include "test_helpers.hpp"

namespace {

double loss_at(const grpo::loss_inputs<double>& in, const grpo::loss_config& cfg) {
    return grpo::loss_and_grad(grpo::exec::host{}, in, grpo::loss_outputs<double>{}, cfg).loss;
}

} // namespace

TEST_CASE("gradient equals finite differences for every variant, aggregation and ratio level", "[loss][gradcheck]") {
    const grpo::aggregation aggs[] = {grpo::aggregation::token_mean, grpo::aggregation::seq_mean_token_mean,
                                      grpo::aggregation::seq_mean_token_sum, grpo::aggregation::token_sum_over_constant,
                                      grpo::aggregation::token_sum};
    const grpo::ratio_level levels[] = {grpo::ratio_level::token, grpo::ratio_level::sequence,
                                        grpo::ratio_level::sequence_token};
    std::uint64_t seed = 100;
    for (const auto& var : grpo_test::loss_catalogue()) {
        if (!var.is_derivative) continue;
        for (auto agg : aggs) {
            for (auto level : levels) {
                if (!var.allows(level)) continue;
                for (int layout = 0; layout < 4; ++layout) {
                    const bool per_token_adv = layout & 1, on_policy = layout == 2, with_lengths = layout == 3;
                    grpo_test::batch<double> b(4, 6, ++seed);
                    auto cfg = var.cfg;
                    cfg.agg = agg;
                    cfg.ratio = level;
                    cfg.loss_scale = 1.5;
                    const auto in = b.inputs(per_token_adv, true, !on_policy, with_lengths);
                    grpo::loss_and_grad(grpo::exec::host{}, in, b.outputs(), cfg);

                    // The on-policy ratio exp(logp - sg(logp)) and GSPO-token's sg(s_i) * pi / sg(pi) are
                    // stop-gradient constructions: their gradient is that of the same loss with the stopped
                    // values frozen at the current point. Freeze them, then take finite differences.
                    std::vector<double> frozen_old(on_policy ? b.logp : b.old_logp);
                    auto in_fd = in;
                    auto cfg_fd = cfg;
                    in_fd.old_logp = grpo::matrix_view<const double>(frozen_old.data(), b.rows, b.cols);
                    // The sampling correction's rho = exp(old - sampling) is a constant of the loss: wherever the
                    // frozen old_logp moves, sampling_logp moves with it.
                    std::vector<double> frozen_samp(b.sampling_logp);
                    for (std::size_t q = 0; q < frozen_samp.size(); ++q)
                        frozen_samp[q] += frozen_old[q] - (on_policy ? b.logp[q] : b.old_logp[q]);
                    in_fd.sampling_logp = grpo::matrix_view<const double>(frozen_samp.data(), b.rows, b.cols);
                    if (level == grpo::ratio_level::sequence_token) {
                        // token ratio exp(logp - logp0 + mean log r) with old' = logp0 - mean log r
                        for (grpo::index_t i = 0; i < b.rows; ++i) {
                            double n = 0, sum = 0;
                            for (grpo::index_t t = 0; t < b.cols; ++t) {
                                const bool valid = b.mask[i * b.cols + t] != 0 && (!with_lengths || t < b.lengths[i]);
                                if (!valid) continue;
                                n += 1;
                                sum += b.logp[i * b.cols + t] - in_fd.old_logp(i, t);
                            }
                            const double mean_log_ratio = n > 0 ? sum / n : 0;
                            for (grpo::index_t t = 0; t < b.cols; ++t) {
                                const grpo::index_t q = i * b.cols + t;
                                frozen_samp[q] += b.logp[q] - mean_log_ratio - frozen_old[q];
                                frozen_old[q] = b.logp[q] - mean_log_ratio;
                            }
                        }
                        cfg_fd.ratio = grpo::ratio_level::token;
                    }
                    // A stop-gradient ratio (cispo) or none (policy_gradient): old_logp moves with logp, so the
                    // ratio stays frozen while logp's own factor moves.
                    const double old_step = var.ratio_stop_gradient ? 1.0 : 0.0;
                    const double h = 1e-6;
                    for (grpo::index_t k = 0; k < b.rows * b.cols; ++k) {
                        const double saved = b.logp[k], saved_old = frozen_old[k], saved_samp = frozen_samp[k];
                        b.logp[k] = saved + h;
                        frozen_old[k] = saved_old + old_step * h;
                        frozen_samp[k] = saved_samp + old_step * h;
                        const double up = loss_at(in_fd, cfg_fd);
                        b.logp[k] = saved - h;
                        frozen_old[k] = saved_old - old_step * h;
                        frozen_samp[k] = saved_samp - old_step * h;
                        const double down = loss_at(in_fd, cfg_fd);
                        b.logp[k] = saved;
                        frozen_old[k] = saved_old;
                        frozen_samp[k] = saved_samp;
                        const double fd = (up - down) / (2 * h);
                        INFO(var.name << ", agg " << static_cast<int>(agg) << ", level " << static_cast<int>(level)
                                      << ", layout " << layout << ", token " << k);
                        CHECK(b.grad[k] == Approx(fd).epsilon(1e-5).margin(1e-7));
                    }
                }
            }
        }
    }
}

TEST_CASE("masked positions get exactly zero gradient and a zero finite difference", "[loss][gradcheck]") {
    grpo_test::batch<double> b(3, 5, 77, 0.5);
    grpo::loss_config cfg = grpo::loss_config::deepseekmath();
    const auto in = b.inputs();
    grpo::loss_and_grad(grpo::exec::host{}, in, b.outputs(), cfg);
    const double base = loss_at(in, cfg);
    for (std::size_t k = 0; k < b.mask.size(); ++k) {
        if (b.mask[k] != 0) continue;
        CHECK(b.grad[k] == 0.0);
        b.logp[k] += 0.5;
        CHECK(loss_at(in, cfg) == base);
        b.logp[k] -= 0.5;
    }
}

TEST_CASE("straight-through KL: k3 value, gradient of k2", "[loss][kl]") {
    grpo_test::batch<double> b(2, 3, 5, 0.0);
    grpo::loss_config st = grpo::loss_config{};
    st.beta = 1;
    st.kl_straight_through = true;
    st.agg = grpo::aggregation::token_sum;
    grpo::loss_config k2 = st;
    k2.kl_straight_through = false;
    k2.kl = grpo::kl_estimator::k2;
    auto in = b.inputs(true, true, false);
    auto a = grpo::loss_and_grad(grpo::exec::host{}, in, b.outputs(), st);
    const auto grad_st = b.grad;
    grpo::loss_and_grad(grpo::exec::host{}, in, b.outputs(), k2);
    for (std::size_t k = 0; k < grad_st.size(); ++k) CHECK(grad_st[k] == Approx(b.grad[k]).epsilon(1e-14));
    grpo::loss_config k3 = st;
    k3.kl_straight_through = false;
    auto c = grpo::loss_and_grad(grpo::exec::host{}, in, b.outputs(), k3);
    CHECK(a.loss == c.loss);
}
