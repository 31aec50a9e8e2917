// SPDX-License-Identifier: MIT
// A short run of the examples/ demo: the reward must rise, and a given seed must give the same run.
#include <numeric>
#include <sstream>
#include <vector>

#include "../examples/demo/demo.hpp"
#include "catch.hpp"

namespace {
double mean(const std::vector<double>& v, std::size_t first, std::size_t last) {
    return std::accumulate(v.begin() + static_cast<std::ptrdiff_t>(first),
                           v.begin() + static_cast<std::ptrdiff_t>(last), 0.0) /
           static_cast<double>(last - first);
}
} // namespace

TEST_CASE("demo: a short outcome-reward run raises the reward and is deterministic", "[demo]") {
    grpo_demo::options o;
    o.steps = 30;
    o.prompts_per_step = 16;
    o.eval_every = 0;
    o.quiet = true;
    std::ostringstream log;
    const grpo_demo::result r = grpo_demo::run(o, log);
    REQUIRE(r.reward_curve.size() == 30);
    CHECK(mean(r.reward_curve, 25, 30) > mean(r.reward_curve, 0, 5) + 0.2);
    CHECK(r.before < 0.05);
    const grpo_demo::result again = grpo_demo::run(o, log);
    CHECK(again.reward_curve == r.reward_curve);
    CHECK(again.after == r.after);
}

TEST_CASE("demo: a short process-reward run raises the reward", "[demo]") {
    grpo_demo::options o;
    o.steps = 30;
    o.prompts_per_step = 16;
    o.eval_every = 0;
    o.quiet = false;
    o.process_rewards = true;
    std::ostringstream log;
    const grpo_demo::result r = grpo_demo::run(o, log);
    CHECK(mean(r.reward_curve, 25, 30) > mean(r.reward_curve, 0, 5) + 0.2);
    CHECK(log.str().find("step   30") != std::string::npos);
}
