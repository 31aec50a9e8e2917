// SPDX-License-Identifier: MIT
// The training-step helper on a fake sampler and a one-parameter policy.
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <grpo/grpo.hpp>

#include "catch.hpp"

namespace {

// pi(token 1) = sigmoid(theta), pi(token 0) = 1 - sigmoid(theta); each completion is one or two tokens.
struct bandit {
    double theta = 0, ref_theta = 0, lr = 0.5;
    int current_calls = 0, reference_calls = 0, gradient_calls = 0, refreshes = 0;
    static double sigmoid(double x) { return 1 / (1 + std::exp(-x)); }
    double logp(double th, int y) const { return y == 1 ? std::log(sigmoid(th)) : std::log(1 - sigmoid(th)); }
    double dlogp(int y) const { return y == 1 ? 1 - sigmoid(theta) : -sigmoid(theta); }
};

// Prompt p's completions: row k of the group gets token (k + p) % 2 repeated `length` times, except that
// prompt values >= 100 make every completion of the group the same token 1 (a zero-variance group).
struct fake_sampler : grpo::group_sampler<int, double> {
    const bandit* policy;
    grpo::index_t length = 2;
    explicit fake_sampler(const bandit& b) : policy(&b) {}
    grpo::index_t max_tokens() const override { return 3; }
    void sample(const int* prompts, grpo::index_t n, grpo::index_t g, grpo::rollout_buffer<double>& out) override {
        for (grpo::index_t p = 0; p < n; ++p)
            for (grpo::index_t k = 0; k < g; ++k) {
                const grpo::index_t row = p * g + k;
                const int y = prompts[p] >= 100 ? 1 : static_cast<int>((k + prompts[p]) % 2);
                for (grpo::index_t t = 0; t < length; ++t) {
                    out.tokens()(row, t) = y;
                    out.old_logp()(row, t) = policy->logp(policy->theta, y);
                }
                out.lengths()[row] = length;
                out.truncated()[row] = 0;
            }
    }
};

grpo::policy_callbacks<double> callbacks(bandit& b) {
    grpo::policy_callbacks<double> cb;
    cb.current_logp = [&b](const grpo::rollout_batch<double>& r, grpo::matrix_view<double> out) {
        ++b.current_calls;
        for (grpo::index_t i = 0; i < r.rows(); ++i)
            for (grpo::index_t t = 0; t < r.lengths[i]; ++t) out(i, t) = b.logp(b.theta, r.tokens(i, t));
    };
    cb.reference_logp = [&b](const grpo::rollout_batch<double>& r, grpo::matrix_view<double> out) {
        ++b.reference_calls;
        for (grpo::index_t i = 0; i < r.rows(); ++i)
            for (grpo::index_t t = 0; t < r.lengths[i]; ++t) out(i, t) = b.logp(b.ref_theta, r.tokens(i, t));
    };
    cb.apply_gradient = [&b](const grpo::rollout_batch<double>& r, grpo::matrix_view<const double> g) {
        ++b.gradient_calls;
        double d = 0;
        for (grpo::index_t i = 0; i < r.rows(); ++i)
            for (grpo::index_t t = 0; t < r.max_tokens(); ++t) {
                if (t >= r.lengths[i]) REQUIRE(g(i, t) == 0.0); // masked positions get exactly 0
                else d += g(i, t) * b.dlogp(r.tokens(i, t));
            }
        b.theta -= b.lr * d;
    };
    cb.refresh_reference = [&b] {
        ++b.refreshes;
        b.ref_theta = b.theta;
    };
    return cb;
}

grpo::outcome_rewards<int> token_is_one() {
    grpo::outcome_rewards<int> r;
    r.add("one", [](const int&, const grpo::completion_view& c) { return c.tokens[0] == 1 ? 1.0 : 0.0; });
    return r;
}

} // namespace

TEST_CASE("trainer: outcome step moves the policy toward reward, mu updates, reference refresh", "[train_step]") {
    bandit b;
    fake_sampler s(b);
    grpo::train_config cfg;
    cfg.group_size = 4;
    cfg.inner_updates = 3;
    cfg.reference_refresh_every = 2;
    cfg.loss.beta = 0.04;
    grpo::trainer<int, double> tr(s, callbacks(b), cfg);
    tr.set_outcome_rewards(token_is_one());
    const std::vector<int> prompts = {0, 1};

    const grpo::step_metrics m1 = tr.step(prompts.data(), 2);
    CHECK(b.theta > 0); // reward 1 for token 1: its probability went up
    CHECK(m1.step == 1);
    CHECK(m1.updates == 3);
    CHECK(b.current_calls == 3);
    CHECK(b.gradient_calls == 3);
    CHECK(b.reference_calls == 1);
    CHECK(!m1.reference_refreshed);
    CHECK(m1.reward_mean == Approx(0.5));
    CHECK(m1.reward_std == Approx(std::sqrt(8.0 * 0.25 / 7.0)));
    REQUIRE(m1.reward_function_means.size() == 1);
    CHECK(m1.reward_function_means[0] == Approx(0.5));
    CHECK(m1.zero_variance_fraction == 0.0);
    CHECK(m1.completion_length_mean == 2.0);
    CHECK(m1.tokens == 16.0);
    // Group z-scores of [0,1,0,1] / [1,0,1,0]: +-(0.5 / (0.57735 + 1e-4)).
    CHECK(m1.advantage_max == Approx(0.5 / (std::sqrt(1.0 / 3.0) + 1e-4)));
    CHECK(m1.advantage_min == Approx(-m1.advantage_max));
    // The first update is on-policy (ratio 1, KL 0); later ones are not, and the reference is 1 step old.
    CHECK(m1.clip_fraction_region >= 0);
    CHECK(m1.kl_mean > 0);

    const double theta1 = b.theta;
    const grpo::step_metrics m2 = tr.step(prompts.data(), 2);
    CHECK(m2.step == 2);
    CHECK(m2.reference_refreshed);
    CHECK(b.refreshes == 1);
    CHECK(b.ref_theta == b.theta);
    CHECK(b.theta > theta1);
    CHECK(tr.steps_done() == 2);
    CHECK(tr.last_rollout().rows() == 8);
}

TEST_CASE("trainer: opo weights the group baseline by completion lengths", "[train_step][estimators]") {
    // Row k of a group has k % 3 + 1 tokens; the reward is 1 for token 1. Prompt 0: tokens [0, 1, 0, 1], lengths
    // [1, 2, 3, 1]: baseline (2 + 1) / 7 = 3/7, so the advantages are 1 - 3/7 and -3/7 (Dr. GRPO would give
    // +-1/2 around the plain mean).
    struct ragged_sampler : fake_sampler {
        using fake_sampler::fake_sampler;
        void sample(const int* prompts, grpo::index_t n, grpo::index_t g, grpo::rollout_buffer<double>& out) override {
            fake_sampler::sample(prompts, n, g, out);
            for (grpo::index_t row = 0; row < n * g; ++row) {
                out.lengths()[row] = row % g % 3 + 1;
                for (grpo::index_t t = 2; t < out.lengths()[row]; ++t) {
                    out.tokens()(row, t) = out.tokens()(row, 0);
                    out.old_logp()(row, t) = out.old_logp()(row, 0);
                }
            }
        }
    };
    bandit b;
    ragged_sampler s(b);
    grpo::train_config cfg;
    cfg.group_size = 4;
    cfg.inner_updates = 1;
    cfg.advantages.estimator = grpo::advantage_estimator::opo;
    grpo::trainer<int, double> tr(s, callbacks(b), cfg);
    tr.set_outcome_rewards(token_is_one());
    const std::vector<int> prompts = {0};
    const grpo::step_metrics m = tr.step(prompts.data(), 1);
    CHECK(m.advantage_max == Approx(1 - 3.0 / 7.0));
    CHECK(m.advantage_min == Approx(-3.0 / 7.0));
}

TEST_CASE("trainer: large updates are clipped", "[train_step]") {
    bandit b;
    b.lr = 40; // one update moves the ratio far outside [0.8, 1.2]
    fake_sampler s(b);
    grpo::train_config cfg;
    cfg.group_size = 4;
    cfg.inner_updates = 2;
    grpo::trainer<int, double> tr(s, callbacks(b), cfg);
    tr.set_outcome_rewards(token_is_one());
    const std::vector<int> prompts = {0};
    const auto m = tr.step(prompts.data(), 1);
    CHECK(m.clip_fraction_region > 0);
    CHECK(m.clip_fraction_high + m.clip_fraction_low > 0);
}

TEST_CASE("trainer: dynamic sampling drops zero-variance groups from the loss", "[train_step][dapo]") {
    bandit b;
    fake_sampler s(b);
    grpo::train_config cfg;
    cfg.group_size = 4;
    cfg.drop_zero_variance_groups = true;
    grpo::trainer<int, double> tr(s, callbacks(b), cfg);
    tr.set_outcome_rewards(token_is_one());
    const std::vector<int> prompts = {0, 100, 101};
    const auto m = tr.step(prompts.data(), 3);
    CHECK(m.dropped_groups == 2);
    CHECK(m.zero_variance_fraction == Approx(2.0 / 3.0));
    CHECK(m.tokens == 8.0); // only the first group's 4 rows x 2 tokens remain
    const auto mask = tr.last_mask();
    CHECK(mask(4, 0) == 0.0);
    CHECK(mask(0, 0) == 1.0);

    // Every group constant: nothing to learn, no update, the host is told to refill all of them.
    const std::vector<int> dead = {100, 100};
    const auto m2 = tr.step(dead.data(), 2);
    CHECK(m2.dropped_groups == 2);
    CHECK(m2.updates == 0);
}

TEST_CASE("trainer: truncated completions can be masked", "[train_step][dapo]") {
    bandit b;
    fake_sampler s(b);
    s.length = 3; // fills max_tokens; mark odd rows truncated through a wrapping sampler
    struct truncating : fake_sampler {
        using fake_sampler::fake_sampler;
        void sample(const int* p, grpo::index_t n, grpo::index_t g, grpo::rollout_buffer<double>& out) override {
            fake_sampler::sample(p, n, g, out);
            for (grpo::index_t i = 0; i < n * g; i += 2) out.truncated()[i] = 1;
        }
    } ts(b);
    ts.length = 3;
    grpo::train_config cfg;
    cfg.group_size = 4;
    cfg.mask_truncated_completions = true;
    grpo::trainer<int, double> tr(ts, callbacks(b), cfg);
    tr.set_outcome_rewards(token_is_one());
    const std::vector<int> prompts = {0};
    const auto m = tr.step(prompts.data(), 1);
    CHECK(m.masked_truncated == 2);
    CHECK(m.truncated_fraction == 0.5);
    CHECK(m.tokens == 6.0);
}

TEST_CASE("trainer: process rewards give per-token advantages", "[train_step][process]") {
    bandit b;
    fake_sampler s(b);
    grpo::train_config cfg;
    cfg.group_size = 2;
    grpo::trainer<int, double> tr(s, callbacks(b), cfg);
    // One step per token: reward 1 for token 1.
    tr.set_process_rewards([](const int&, const grpo::completion_view& c, grpo::process_steps& steps) {
        for (grpo::index_t t = 0; t < c.length(); ++t) steps.add(c.tokens[t] == 1 ? 1.0 : 0.0, t);
    });
    const std::vector<int> prompts = {0};
    const auto m = tr.step(prompts.data(), 1);
    CHECK(b.theta > 0);
    CHECK(m.reward_mean == Approx(1.0)); // sums of step rewards: [0, 2]
    CHECK(m.advantage_max > 0);
    CHECK(m.advantage_min < 0);
}

TEST_CASE("trainer: configuration errors", "[train_step][errors]") {
    bandit b;
    fake_sampler s(b);
    grpo::train_config cfg;
    cfg.inner_updates = 0;
    using trainer_t = grpo::trainer<int, double>;
    CHECK_THROWS_AS(trainer_t(s, callbacks(b), cfg), grpo::error);
    cfg = grpo::train_config{};
    cfg.loss.beta = 0.1;
    auto cb = callbacks(b);
    cb.reference_logp = nullptr;
    try {
        grpo::trainer<int, double> tr(s, cb, cfg);
        FAIL("no throw");
    } catch (const grpo::error& e) {
        CHECK(std::string(e.what()).find("policy.reference_logp") != std::string::npos);
    }
    cfg = grpo::train_config{};
    grpo::trainer<int, double> tr(s, callbacks(b), cfg);
    const std::vector<int> prompts = {0};
    CHECK_THROWS_AS(tr.step(prompts.data(), 1), grpo::error); // no reward set
}
