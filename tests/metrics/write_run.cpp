// SPDX-License-Identifier: MIT
// Writes a run through grpo's metrics logger into <dir> (metrics.jsonl, metrics.csv, a TensorBoard event file)
// for tests/metrics/read_run.py, which reads it back with TensorBoard's own reader. The values follow the formula
// that script checks them against (value_of below and value_of there).
//   grpo_metrics_write_run <dir>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>

#include <grpo/grpo.hpp>

namespace {

// The value of metric k at step s; NaN, infinities and values beyond float32 at some steps.
double value_of(int k, int s) {
    if (k == 0 && s == 3) return std::numeric_limits<double>::quiet_NaN();
    if (k == 1 && s == 4) return -std::numeric_limits<double>::infinity();
    if (k == 2 && s == 5) return 1e300;
    return (k + 1) * 0.25 * s - 1.0 / (k + 3);
}

} // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: grpo_metrics_write_run <dir>\n");
        return 2;
    }
    const char* names[] = {
        "reward",           "kl", "clip_ratio/region_mean", "rewards/exact match/mean", "unicode/\xc3\xbc\xe2\x82\xac",
        "quote\"comma,name"};
    try {
        grpo::metrics_logger log;
        grpo::log_to_directory(log, argv[1]);
        for (int s = 1; s <= 12; ++s) {
            for (int k = 0; k < 6; ++k) log.log(s, names[k], value_of(k, s));
            if (s % 4 == 0) log.log(s, "eval_accuracy", s / 16.0); // a column first seen at step 4
        }
        // A trainer step's metrics under TRL's names, at step 13.
        grpo::step_metrics m;
        m.step = 13;
        m.reward_mean = 0.75;
        m.kl_mean = 0.125;
        m.clip_fraction_region = 0.0625;
        log.log(m);
    } catch (const grpo::error& e) {
        std::fprintf(stderr, "grpo_metrics_write_run: %s\n", e.what());
        return 1;
    }
    return 0;
}
