// SPDX-License-Identifier: MIT
// grpo_demo_mpi: the demo's task (examples/demo) trained data-parallel over MPI.
//   mpirun -np N grpo_demo_mpi [--seed N] [--steps N] [--logdir DIR] [--quiet] (see --help)
// Each rank samples its own prompts (the demo's prompts per step, divided among the ranks) and scores them;
// grpo::dist gives every rank the advantages, token normalization and statistics of the whole batch, and the
// parameter gradients are summed over the ranks in rank order, so every rank takes the same Adam step and the
// parameters stay identical (checked at the end). With one rank it reproduces grpo_demo step for step.
// Rank 0 ends with "held-out accuracy: <before> -> <after>" on prompts never trained on.
#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

#include <grpo/adapters/mpi.hpp>

#include "../demo/demo.hpp" // the task, the host model, its sampler, rewards and evaluation

namespace {

using grpo_demo::problem;
using communicator = grpo::dist::mpi_communicator;

/// Reads the flags (grpo_demo's --seed, --steps, --logdir, --quiet); -1 to go on, else the exit status (the same on every
/// rank). Prints if `print`.
int parse_flags(int argc, char** argv, grpo_demo::options& o, int ranks, bool print) {
    const auto flags = [&](std::FILE* out) {
        if (print)
            std::fprintf(out,
                         "usage: mpirun -np N grpo_demo_mpi [flags]\n"
                         "Trains grpo_demo's policy data-parallel on N ranks (%d prompts per step in all) and prints\n"
                         "held-out accuracy before -> after.\n"
                         "  --seed N   random seed of initialization (every rank) and sampling (rank r: its own "
                         "stream) (default %llu)\n"
                         "  --steps N  GRPO steps (default %d)\n"
                         "  --quiet    no per-step lines, only the final result (default off)\n"
                         "  --logdir DIR  rank 0 writes every step's metrics to DIR (metrics.jsonl, metrics.csv, a\n"
                         "             TensorBoard event file) (default none)\n"
                         "  --help     this list\n",
                         o.prompts_per_step, static_cast<unsigned long long>(o.seed), o.steps);
    };
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--help" || a == "-h") {
            flags(stdout);
            return 0;
        }
        if (a == "--quiet") {
            o.quiet = true;
            continue;
        }
        if (a == "--logdir" && i + 1 < argc) {
            o.logdir = argv[++i];
            continue;
        }
        char* end = nullptr;
        const long long v = (a == "--seed" || a == "--steps") && i + 1 < argc ? std::strtoll(argv[++i], &end, 10) : -1;
        if (v < 0 || end == argv[i] || *end != '\0') {
            if (print) std::fprintf(stderr, "grpo_demo_mpi: bad flag or value: %s\n", argv[i]);
            flags(stderr);
            return 2;
        }
        if (a == "--seed") o.seed = static_cast<std::uint64_t>(v);
        else o.steps = static_cast<int>(v);
    }
    if (o.prompts_per_step % ranks == 0) return -1;
    if (print)
        std::fprintf(stderr, "grpo_demo_mpi: %d prompts per step do not divide among %d ranks\n", o.prompts_per_step,
                     ranks);
    return 2;
}

/// The six arrays of an mlp (parameters) or mlp_grad (gradients).
template <class M>
auto arrays(M& m) {
    return std::array{&m.w1, &m.b1, &m.w2, &m.b2, &m.w3, &m.b3};
}

/// g = the sum of every rank's g, added in rank order.
void all_sum(const communicator& comm, grpo_demo::mlp_grad& g) {
    for (auto* v : arrays(g)) grpo::dist::all_sum(comm, v->data(), static_cast<grpo::index_t>(v->size()), v->data());
}

/// FNV-1a over the parameters' bits: equal on every rank while the ranks stay in step.
std::uint64_t checksum(const grpo_demo::mlp& m) {
    std::uint64_t h = 0xcbf29ce484222325ull;
    for (const auto* v : arrays(m))
        for (const float w : *v) {
            std::uint32_t bits;
            std::memcpy(&bits, &w, sizeof bits);
            h = (h ^ bits) * 0x100000001b3ull;
        }
    return h;
}

/// grpo_demo::run's loop with grpo::trainer's step spelled out on grpo::dist. Rank 0 evaluates and logs.
grpo_demo::result train(const communicator& comm, const grpo_demo::options& o, std::ostream& log) {
    const auto start = std::chrono::steady_clock::now();
    const bool root = comm.rank() == 0;
    std::vector<problem> train, eval;
    grpo_demo::split_prompts(train, eval);
    grpo_demo::rng g(o.seed);
    grpo_demo::host_model model(o, g); // the same initial parameters on every rank
    // Rank 0 goes on with grpo_demo's stream; the others sample prompts and completions from their own.
    if (!root) g = grpo_demo::rng(o.seed ^ (0xD1B54A32D192ED03ull * static_cast<std::uint64_t>(comm.rank())));
    grpo_demo::addition_sampler sampler(model, g);
    const grpo::outcome_rewards<problem> reward_fns = grpo_demo::outcome_reward_functions();

    const grpo::index_t P = o.prompts_per_step / comm.size(), G = o.group_size, n = P * G;
    const grpo::index_t cols = grpo_demo::max_tokens, nf = reward_fns.size();
    const double total_rows = double(n) * comm.size();
    std::vector<problem> prompts(static_cast<std::size_t>(P));
    grpo::rollout_buffer<float> rollout;
    const auto rows = static_cast<std::size_t>(n), row_cells = static_cast<std::size_t>(n * cols);
    std::vector<double> scores(rows * static_cast<std::size_t>(nf));
    std::vector<float> rewards(rows), adv(rows), mask(row_cells), ref(row_cells), logp(row_cells), grad(row_cells);
    const auto cells = [&](std::vector<float>& v) { return grpo::matrix_view<float>(v.data(), n, cols); };
    grpo::loss_config loss_cfg;
    loss_cfg.beta = o.beta;
    grpo::workspace ws;
    const grpo::exec::host ex;

    // Rank 0 logs every step's metrics (the statistics are the whole batch's on every rank) to o.logdir.
    grpo::metrics_logger metrics;
    if (root && !o.logdir.empty()) grpo::log_to_directory(metrics, o.logdir);

    grpo_demo::result res;
    if (root) res.before = grpo_demo::held_out_accuracy(model.current(), eval);
    if (root) metrics.log(0, "eval_accuracy", res.before);
    for (int s = 1; s <= o.steps; ++s) {
        for (auto& p : prompts) p = train[static_cast<std::size_t>(g.below(static_cast<int>(train.size())))];
        rollout.reset(P, G, cols);
        sampler.sample(prompts.data(), P, G, rollout);
        const grpo::rollout_batch<float> b = rollout.view();
        // Rewards of this rank's completions; advantages from the statistics of every rank's.
        reward_fns.score(prompts.data(), b, grpo::matrix_view<double>(scores.data(), n, nf));
        grpo::combine_rewards(grpo::matrix_view<const double>(scores.data(), n, nf), reward_fns.weights(),
                              grpo::vector_view<float>(rewards.data(), n));
        const grpo::advantage_stats st = grpo::dist::compute_advantages(
            comm, ex, grpo::vector_view<const float>(rewards.data(), n), grpo::groups::contiguous(G),
            grpo::vector_view<float>(adv.data(), n), grpo::advantage_config::trl(), ws);
        grpo::completion_mask(b, cells(mask), true);

        grpo::loss_inputs<float> in;
        in.logp = cells(logp);
        in.old_logp = b.old_logp;
        in.advantages = grpo::broadcast_to_tokens(grpo::vector_view<const float>(adv.data(), n), cols);
        in.mask = cells(mask);
        if (o.beta != 0) {
            model.log_probs(model.reference(), prompts, b, cells(ref), false);
            in.ref_logp = cells(ref);
        }
        grpo::loss_outputs<float> out;
        out.grad_logp = cells(grad);
        grpo::step_metrics m;
        for (int u = 0; u < o.inner_updates; ++u) {
            model.log_probs(model.current(), prompts, b, cells(logp), true);
            // Token mean over every rank's tokens, so the summed gradients are the whole batch's.
            const grpo::loss_stats ls = grpo::dist::loss_and_grad(comm, ex, in, out, loss_cfg, ws);
            if (ls.token_count == 0) break; // no token on any rank: no update (as grpo::trainer)
            double tokens = grpo_demo::host_model::active_tokens(b, cells(grad));
            grpo::dist::all_sum(comm, &tokens, 1, &tokens); // the entropy bonus's mean is over every rank's
            model.backward(b, cells(grad), tokens);
            all_sum(comm, model.gradient());
            model.step();
            grpo::add_loss_metrics(m, ls);
        }
        grpo::finish_loss_metrics(m);
        if (o.ref_refresh_every > 0 && s % o.ref_refresh_every == 0) {
            model.refresh_reference();
            m.reference_refreshed = true;
        }

        double local[2] = {double(grpo_demo::correct_count(prompts, b)), 0}; // right answers, completion tokens
        for (grpo::index_t i = 0; i < n; ++i) local[1] += double(b.lengths[i]);
        grpo::dist::all_sum(comm, local, 2, local);
        m.step = s;
        m.reward_mean = st.reward_mean;
        m.reward_std = st.reward_std;
        grpo::set_advantage_metrics(m, st);
        // Completion lengths over every rank's rows: this rank's figures, then the whole batch's.
        grpo::set_length_metrics(m, b);
        const double mine[3] = {m.completion_length_min, m.completion_length_max, m.truncated_fraction};
        std::vector<double> every(3 * static_cast<std::size_t>(comm.size()));
        comm.all_gather(mine, sizeof mine, every.data());
        m.completion_length_mean = local[1] / total_rows;
        m.truncated_fraction = 0;
        for (std::size_t r = 0; r < every.size(); r += 3) {
            m.completion_length_min = std::min(m.completion_length_min, every[r]);
            m.completion_length_max = std::max(m.completion_length_max, every[r + 1]);
            m.truncated_fraction += every[r + 2] / comm.size(); // every rank holds the same number of rows
        }
        if (root) {
            metrics.log(m);
            grpo_demo::record_step(o, s, m, local[0] / total_rows, model.current(), eval, res, metrics, log);
        }
    }
    if (root) res.after = grpo_demo::held_out_accuracy(model.current(), eval);
    metrics.flush();
    res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

    const std::uint64_t mine = checksum(model.current());
    std::vector<std::uint64_t> all(static_cast<std::size_t>(comm.size()));
    comm.all_gather(&mine, sizeof mine, all.data());
    for (const std::uint64_t h : all)
        if (h != mine) throw std::runtime_error("the ranks' parameters differ after training");
    if (root)
        std::printf("parameter checksum %016llx, the same on every rank (of %d)\n",
                    static_cast<unsigned long long>(mine), comm.size());
    return res;
}

} // namespace

int main(int argc, char** argv) {
    MPI_Init(&argc, &argv);
    int rc = 0;
    try {
        const communicator comm(MPI_COMM_WORLD);
        const bool root = comm.rank() == 0;
        grpo_demo::options o;
        const int flags = parse_flags(argc, argv, o, comm.size(), root);
        if (flags >= 0) rc = flags;
        else {
            if (root)
                std::printf(
                    "grpo demo (MPI): 2-digit addition, outcome rewards, G=%d, %d prompts/step = %d ranks x %d, "
                    "%d steps, seed %llu\n",
                    o.group_size, o.prompts_per_step, comm.size(), o.prompts_per_step / comm.size(), o.steps,
                    static_cast<unsigned long long>(o.seed));
            std::fflush(stdout);
            const grpo_demo::result r = train(comm, o, std::cout);
            if (root) grpo_demo::print_result(r);
        }
    } catch (const std::exception& e) {
        // One rank's failure would leave the others waiting in a collective: end the job.
        std::fprintf(stderr, "grpo_demo_mpi: %s\n", e.what());
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    MPI_Finalize();
    return rc;
}
