// SPDX-License-Identifier: MIT
// grpo_libtorch_example: GRPO in a LibTorch training loop. The task, features, held-out split and reward
// functions are examples/demo's (two-digit addition answered digit by digit; held-out pairs are never trained
// on); the policy is a torch::nn module, sampling goes through grpo's GroupSampler interface, and the update is
//   loss = grpo::libtorch::grpo_loss(logp, old_logp, ref_logp, advantages, mask, cfg) + entropy bonus;
//   loss.backward(); optimizer.step();
// where grpo computes the GRPO loss and its gradient in one fused pass inside torch's autograd graph.
//   grpo_libtorch_example [--seed N] [--steps N] [--threads N] [--logdir DIR] [--quiet]
// Ends with "held-out accuracy: <before> -> <after>".
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <torch/version.h> // TORCH_VERSION

#include <grpo/adapters/torch.hpp>
#include <grpo/grpo.hpp>

#include "../demo/demo.hpp" // the task: problem, features, held-out split, reward functions, rng

namespace {

using grpo_demo::problem;
using grpo_demo::rng;
using grpo_demo::vocab;
constexpr int max_tokens = grpo_demo::max_tokens;
constexpr int slots = grpo_demo::max_active;                // features per position, padded to this many
constexpr int no_previous_token = grpo_demo::feature_count; // the padding feature
constexpr int table_rows = grpo_demo::feature_count + 1;

struct options {
    std::uint64_t seed = 1;
    int steps = 200;
    int group_size = 8;
    int prompts_per_step = 64;
    int hidden = 64;
    int threads = 2;
    int inner_updates = 2; // mu: updates per rollout (old_logp kept from sampling)
    int reference_refresh_every = 10;
    double lr = 2e-2;
    double entropy_coef = 0.2;
    bool quiet = false;
    std::string logdir; // --logdir: the run's metrics (empty: none)
};

/// The policy: an embedding of the active features summed per position, two dense layers, log-softmax over
/// the vocabulary. Initialized like examples/demo's MLP.
struct policy_netImpl : torch::nn::Module {
    explicit policy_netImpl(int hidden) {
        emb = register_module("emb", torch::nn::Embedding(table_rows, hidden));
        b1 = register_parameter("b1", torch::zeros({hidden}));
        fc2 = register_module("fc2", torch::nn::Linear(hidden, hidden));
        fc3 = register_module("fc3", torch::nn::Linear(hidden, vocab));
        torch::NoGradGuard no_grad;
        emb->weight.normal_(0, 0.5);
        fc2->weight.normal_(0, std::sqrt(2.0 / hidden));
        fc2->bias.zero_();
        fc3->weight.normal_(0, 0.1 / std::sqrt(double(hidden)));
        fc3->bias.zero_();
    }
    /// feats: int64 [cells, slots] -> log pi(. | cell): [cells, vocab].
    torch::Tensor forward(const torch::Tensor& feats) {
        const torch::Tensor h1 = torch::relu(emb(feats).sum(1) + b1);
        const torch::Tensor h2 = torch::relu(fc2(h1));
        return torch::log_softmax(fc3(h2), -1);
    }
    torch::nn::Embedding emb{nullptr};
    torch::Tensor b1;
    torch::nn::Linear fc2{nullptr}, fc3{nullptr};
};
TORCH_MODULE(policy_net);

void copy_parameters(policy_net& to, const policy_net& from) {
    torch::NoGradGuard no_grad;
    const auto src = from->parameters();
    auto dst = to->parameters();
    for (std::size_t k = 0; k < src.size(); ++k) dst[k].copy_(src[k]);
}

/// Features of position t of each cell: int64 [cells, slots].
torch::Tensor feature_tensor(const std::vector<const problem*>& probs,
                             const std::vector<const grpo::token_id*>& prefixes, const std::vector<int>& positions) {
    const auto cells = static_cast<std::int64_t>(positions.size());
    torch::Tensor feats = torch::empty({cells, slots}, torch::kLong);
    auto* f = feats.data_ptr<std::int64_t>();
    for (std::int64_t c = 0; c < cells; ++c) {
        int one[slots];
        const auto k = static_cast<std::size_t>(c);
        int n = grpo_demo::features(*probs[k], prefixes[k], positions[k], one);
        while (n < slots) one[n++] = no_previous_token;
        for (int s = 0; s < slots; ++s) f[c * slots + s] = one[s];
    }
    return feats;
}

/// The batched log-probabilities grpo_demo's decoding helpers ask for: one forward pass per call.
auto log_probs_of(policy_net& net) {
    return [&net, dist = torch::Tensor()](const std::vector<const problem*>& probs,
                                          const std::vector<const grpo::token_id*>& prefixes,
                                          const std::vector<int>& positions) mutable {
        dist = net->forward(feature_tensor(probs, prefixes, positions)).contiguous();
        return static_cast<const float*>(dist.data_ptr<float>());
    };
}

/// The GroupSampler: G completions per prompt, all unfinished rows advanced one token per forward pass.
class torch_sampler : public grpo::group_sampler<problem, float> {
public:
    torch_sampler(policy_net& net, rng& g) : net_(&net), rng_(&g) {}
    grpo::index_t max_tokens() const override { return ::max_tokens; }

    void sample(const problem* prompts, grpo::index_t num_prompts, grpo::index_t group_size,
                grpo::rollout_buffer<float>& out) override {
        torch::NoGradGuard no_grad;
        grpo_demo::sample_groups(prompts, num_prompts, group_size, out, *rng_, log_probs_of(*net_));
    }

private:
    policy_net* net_;
    rng* rng_;
};

/// Greedy exact-match accuracy on the held-out prompts.
double held_out_accuracy(policy_net& net, const std::vector<problem>& eval) {
    torch::NoGradGuard no_grad;
    return grpo_demo::greedy_accuracy(eval, log_probs_of(net));
}

/// A rollout as tensors: features of every (row, position) cell, the sampled tokens, and what grpo needs.
struct rollout_tensors {
    torch::Tensor feats;                // int64 [rows * cols, slots]
    torch::Tensor tokens;               // int64 [rows, cols], 0 at padding
    torch::Tensor old_logp, mask, live; // float [rows, cols]; live = 1 where a token was generated
};

rollout_tensors to_tensors(const std::vector<problem>& prompts, const grpo::rollout_batch<float>& b) {
    const grpo::index_t rows = b.rows(), cols = b.max_tokens();
    std::vector<const problem*> probs;
    std::vector<const grpo::token_id*> prefixes;
    std::vector<int> positions;
    rollout_tensors r;
    r.tokens = torch::zeros({rows, cols}, torch::kLong);
    r.old_logp = torch::zeros({rows, cols});
    r.live = torch::zeros({rows, cols});
    auto tok = r.tokens.accessor<std::int64_t, 2>();
    auto old = r.old_logp.accessor<float, 2>();
    auto live = r.live.accessor<float, 2>();
    for (grpo::index_t i = 0; i < rows; ++i)
        for (grpo::index_t t = 0; t < cols; ++t) {
            const bool in = t < b.lengths[i];
            probs.push_back(&prompts[static_cast<std::size_t>(b.prompt_of(i))]);
            prefixes.push_back(b.tokens.row_data(i));
            positions.push_back(in ? static_cast<int>(t) : 0); // padding cells: any valid context, masked anyway
            if (in) {
                tok[i][t] = static_cast<std::int64_t>(b.tokens(i, t));
                old[i][t] = b.old_logp(i, t);
                live[i][t] = 1.0f;
            }
        }
    r.feats = feature_tensor(probs, prefixes, positions);
    return r;
}

[[noreturn]] void usage(const std::string& msg) {
    std::fprintf(
        stderr,
        "grpo_libtorch_example: %s\nusage: grpo_libtorch_example [--seed N] [--steps N] [--threads N] [--logdir DIR] "
        "[--quiet]\n"
        "  --logdir DIR  write every step's metrics to DIR (metrics.jsonl, metrics.csv, TensorBoard)\n",
        msg.c_str());
    std::exit(2);
}

} // namespace

int main(int argc, char** argv) {
    options o;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto value = [&] {
            if (i + 1 >= argc) usage(a + " needs a value");
            char* end = nullptr;
            const long long v = std::strtoll(argv[++i], &end, 10);
            if (*end != '\0' || v < 0) usage("bad value for " + a);
            return v;
        };
        if (a == "--seed") o.seed = static_cast<std::uint64_t>(value());
        else if (a == "--steps") o.steps = static_cast<int>(value());
        else if (a == "--threads") o.threads = std::max(1, static_cast<int>(value()));
        else if (a == "--quiet") o.quiet = true;
        else if (a == "--logdir" && i + 1 < argc) o.logdir = argv[++i];
        else usage(a == "--help" || a == "-h" ? "help" : "unknown option " + a);
    }
    std::printf("grpo libtorch example: 2-digit addition, torch::nn policy (%d hidden), G=%d, %d prompts/step, "
                "%d steps, seed %llu (LibTorch %s)\n",
                o.hidden, o.group_size, o.prompts_per_step, o.steps, static_cast<unsigned long long>(o.seed),
                TORCH_VERSION);
    std::fflush(stdout);
    const auto start = std::chrono::steady_clock::now();
    torch::set_num_threads(o.threads);
    torch::manual_seed(o.seed);

    rng g(o.seed);
    std::vector<problem> train, eval;
    for (int a = 0; a < 100; ++a)
        for (int b = 0; b < 100; ++b) (grpo_demo::held_out(a, b) ? eval : train).push_back({a, b});
    policy_net policy(o.hidden), reference(o.hidden);
    copy_parameters(reference, policy);
    torch::optim::Adam optimizer(policy->parameters(), torch::optim::AdamOptions(o.lr));
    torch_sampler sampler(policy, g);
    const grpo::outcome_rewards<problem> rewards = grpo_demo::outcome_reward_functions();

    grpo::loss_config cfg; // TRL defaults (token-mean, clip 0.2) with a k3 KL penalty, as examples/demo
    cfg.beta = 0.02;
    const grpo::index_t G = o.group_size, P = o.prompts_per_step, n = P * G;
    std::vector<problem> batch(static_cast<std::size_t>(P));
    grpo::rollout_buffer<float> buffer;
    std::vector<double> scores(static_cast<std::size_t>(n * rewards.size()));

    // Each step's metrics under TRL's names (grpo::step_metrics filled from this loop's statistics) to --logdir.
    grpo::metrics_logger metrics;
    if (!grpo_demo::log_to_directory(metrics, o.logdir, "grpo_libtorch_example")) return 1;

    const double before = held_out_accuracy(policy, eval);
    metrics.log(0, "eval_accuracy", before);
    for (int s = 1; s <= o.steps; ++s) {
        for (auto& p : batch) p = train[static_cast<std::size_t>(g.below(static_cast<int>(train.size())))];
        // 1. G completions per prompt through the GroupSampler interface.
        buffer.reset(P, G, max_tokens);
        sampler.sample(batch.data(), P, G, buffer);
        const grpo::rollout_batch<float> rb = buffer.view();
        rb.validate("grpo_libtorch_example");

        // 2. Rewards -> group-relative advantages, written straight into a torch tensor through a view.
        rewards.score(batch.data(), rb, grpo::matrix_view<double>(scores.data(), n, rewards.size()));
        torch::Tensor advantages = torch::empty({n});
        torch::Tensor reward = torch::empty({n});
        const grpo::advantage_stats st = grpo::outcome_advantages(
            grpo::exec::host{}, grpo::matrix_view<const double>(scores.data(), n, rewards.size()), rewards.weights(),
            grpo::groups::contiguous(G), grpo::libtorch::vector<float>(advantages, "advantages"),
            grpo::advantage_config::trl(), grpo::reward_aggregation::sum_then_normalize,
            grpo::libtorch::vector<float>(reward, "reward"));

        // 3. Mask (truncated completions masked, DAPO), old and reference log-probs.
        const rollout_tensors r = to_tensors(batch, rb);
        torch::Tensor mask = torch::empty({n, max_tokens});
        grpo::completion_mask(rb, grpo::libtorch::matrix<float>(mask), /*mask_truncated=*/true);
        torch::Tensor ref_logp;
        {
            torch::NoGradGuard no_grad;
            ref_logp =
                reference->forward(r.feats).view({n, max_tokens, vocab}).gather(2, r.tokens.unsqueeze(2)).squeeze(2);
        }
        const double tokens = std::max(1.0, r.live.sum().item<double>());

        // 4. mu updates on this rollout: grpo's loss inside torch's graph, plus the host's own entropy bonus.
        grpo::loss_stats ls;
        grpo::step_metrics m;
        for (int k = 0; k < o.inner_updates; ++k) {
            const torch::Tensor all = policy->forward(r.feats).view({n, max_tokens, vocab});
            const torch::Tensor logp = all.gather(2, r.tokens.unsqueeze(2)).squeeze(2);
            grpo::libtorch::loss_extras extras;
            extras.stats = &ls;
            // snippet-begin libtorch-step
            torch::Tensor loss = grpo::libtorch::grpo_loss(logp, r.old_logp, ref_logp, advantages, mask, cfg, extras);
            loss = loss + o.entropy_coef * ((all.exp() * all).sum(2) * r.live).sum() / tokens; // entropy bonus
            optimizer.zero_grad();
            loss.backward(); // dLoss/dlogp from grpo's fused pass, then through log_softmax and the layers
            torch::nn::utils::clip_grad_norm_(policy->parameters(), 1.0);
            optimizer.step();
            // snippet-end libtorch-step
            grpo::add_loss_metrics(m, ls);
        }
        grpo::finish_loss_metrics(m);
        if (o.reference_refresh_every > 0 && s % o.reference_refresh_every == 0) {
            copy_parameters(reference, policy);
            m.reference_refreshed = true;
        }

        int correct = 0;
        for (grpo::index_t i = 0; i < n; ++i)
            correct += grpo_demo::is_correct(batch[static_cast<std::size_t>(rb.prompt_of(i))], rb.tokens.row_data(i),
                                             rb.lengths[i]);
        m.step = s;
        m.reward_mean = st.reward_mean;
        m.reward_std = st.reward_std;
        grpo::set_advantage_metrics(m, st);
        grpo::set_length_metrics(m, rb);
        m.tokens = mask.sum().item<double>();
        metrics.log(m);
        metrics.log(s, "sampled_accuracy", double(correct) / double(n));
        // (Greedy decoding draws no random numbers: evaluating does not change the run.)
        const double held = s % 25 == 0 && (!o.quiet || !o.logdir.empty()) ? held_out_accuracy(policy, eval) : -1;
        if (held >= 0) metrics.log(s, "eval_accuracy", held);
        if (!o.quiet) {
            std::printf("step %4d  reward %6.3f  accuracy %5.3f  kl %.5f  clip %.4f  zero-var %.2f", s,
                        reward.nanmean().item<double>(), double(correct) / double(n), m.kl_mean, m.clip_fraction_region,
                        st.zero_variance_fraction);
            if (held >= 0) std::printf("  held-out %5.3f", held);
            std::printf("\n");
            std::fflush(stdout);
        }
    }
    const double after = held_out_accuracy(policy, eval);
    metrics.log(o.steps, "eval_accuracy", after);
    metrics.flush();
    std::printf("wall time: %.1f s\n", std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    std::printf("held-out accuracy: %.3f -> %.3f\n", before, after);
    return 0;
}
