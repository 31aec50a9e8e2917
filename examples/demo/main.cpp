// SPDX-License-Identifier: MIT
// grpo_demo: trains a tiny policy on two-digit addition with GRPO, in pure C++ (see demo.hpp).
//   grpo_demo [--seed N] [--steps N] [--group-size G] [--prompts N] [--process-rewards] [--quiet] (see --help)
// Ends with "held-out accuracy: <before> -> <after>" on prompts never trained on.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>

#include "demo.hpp"

namespace {

[[noreturn]] void usage(const char* msg) {
    std::fprintf(stderr,
                 "grpo_demo: %s\n"
                 "usage: grpo_demo [--seed N] [--steps N] [--group-size G] [--prompts N] [--mu N] [--beta B]\n"
                 "                 [--ref-every K] [--lr LR] [--temperature T]\n"
                 "                 [--hidden H] [--entropy C] [--eval-every N] [--process-rewards] [--quiet]\n",
                 msg);
    std::exit(2);
}

long long int_arg(int argc, char** argv, int& i, long long lo) {
    if (i + 1 >= argc) usage((std::string(argv[i]) + " needs a value").c_str());
    char* end = nullptr;
    const long long v = std::strtoll(argv[++i], &end, 10);
    if (*end != '\0' || v < lo) usage((std::string("bad value for ") + argv[i - 1]).c_str());
    return v;
}
double real_arg(int argc, char** argv, int& i) {
    if (i + 1 >= argc) usage((std::string(argv[i]) + " needs a value").c_str());
    char* end = nullptr;
    const double v = std::strtod(argv[++i], &end);
    if (*end != '\0' || !(v >= 0)) usage((std::string("bad value for ") + argv[i - 1]).c_str());
    return v;
}

} // namespace

int main(int argc, char** argv) {
    grpo_demo::options o;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--seed") o.seed = static_cast<std::uint64_t>(int_arg(argc, argv, i, 0));
        else if (a == "--steps") o.steps = static_cast<int>(int_arg(argc, argv, i, 0));
        else if (a == "--group-size") o.group_size = static_cast<int>(int_arg(argc, argv, i, 2));
        else if (a == "--prompts") o.prompts_per_step = static_cast<int>(int_arg(argc, argv, i, 1));
        else if (a == "--mu") o.inner_updates = static_cast<int>(int_arg(argc, argv, i, 1));
        else if (a == "--ref-every") o.ref_refresh_every = static_cast<int>(int_arg(argc, argv, i, 0));
        else if (a == "--eval-every") o.eval_every = static_cast<int>(int_arg(argc, argv, i, 0));
        else if (a == "--beta") o.beta = real_arg(argc, argv, i);
        else if (a == "--lr") o.lr = real_arg(argc, argv, i);
        else if (a == "--entropy") o.entropy_coef = real_arg(argc, argv, i);
        else if (a == "--temperature") o.temperature = real_arg(argc, argv, i);
        else if (a == "--hidden") o.hidden = static_cast<int>(int_arg(argc, argv, i, 1));
        else if (a == "--process-rewards") o.process_rewards = true;
        else if (a == "--quiet") o.quiet = true;
        else if (a == "--help" || a == "-h") usage("help");
        else usage(("unknown option " + a).c_str());
    }
    std::printf("grpo demo: 2-digit addition, %s rewards, G=%d, %d prompts/step, %d steps, seed %llu\n",
                o.process_rewards ? "process (per-digit)" : "outcome", o.group_size, o.prompts_per_step, o.steps,
                static_cast<unsigned long long>(o.seed));
    std::fflush(stdout);
    try {
        const grpo_demo::result r = grpo_demo::run(o, std::cout);
        if (r.steps_to_90 > 0) std::printf("steps to 90%% held-out accuracy: %d\n", r.steps_to_90);
        else std::printf("steps to 90%% held-out accuracy: not reached\n");
        std::printf("wall time: %.1f s\n", r.seconds);
        std::printf("held-out accuracy: %.3f -> %.3f\n", r.before, r.after);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "grpo_demo: %s\n", e.what());
        return 1;
    }
    return 0;
}
