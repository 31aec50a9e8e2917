// SPDX-License-Identifier: MIT
// grpo_ggml_example: GRPO with a policy that lives in a ggml graph. Same task, rewards and trainer as
// examples/demo (two-digit addition answered digit by digit, held-out pairs never trained on), but the model,
// its forward pass and its backward pass are ggml's; grpo only sees log-probs and hands back dLoss/dlogp,
// which enters the graph through grpo::ggml::add_policy_gradient_loss (loss = sum(logp * G), G <- grpo).
//   grpo_ggml_example [--seed N] [--steps N] [--threads N] [--logdir DIR] [--quiet]
// Ends with "held-out accuracy: <before> -> <after>".
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include <ggml-cpu.h>
#include <ggml.h>

#include <grpo/adapters/ggml.hpp>
#include <grpo/grpo.hpp>

#include "../demo/demo.hpp" // the task: problem, features, held-out split, reward functions, rng

namespace {

using grpo_demo::problem;
using grpo_demo::rng;
using grpo_demo::vocab;
constexpr int max_tokens = grpo_demo::max_tokens;
constexpr int slots = grpo_demo::max_active;                // features per position, padded to this many
constexpr int no_previous_token = grpo_demo::feature_count; // the padding feature (position 0 has no last token)
constexpr int table_rows = grpo_demo::feature_count + 1;

struct options {
    std::uint64_t seed = 1;
    int steps = 200;
    int group_size = 8;
    int prompts_per_step = 64;
    int hidden = 64;
    int threads = 2;
    double lr = 2e-2;
    double entropy_coef = 0.2;
    bool quiet = false;
    std::string logdir; // --logdir: the run's metrics (empty: none)
};

/// The features of position t after prefix[0..t), always `slots` of them.
void cell_features(const problem& p, const grpo::token_id* prefix, int t, int32_t* out) {
    int f[slots];
    int n = grpo_demo::features(p, prefix, t, f);
    while (n < slots) f[n++] = no_previous_token;
    std::copy(f, f + slots, out);
}

/// The policy's parameters, in their own ggml context: an embedding table summed over the active features
/// (the first layer), two more dense layers. Initialized like examples/demo's MLP.
class ggml_policy {
public:
    ggml_policy(int hidden, rng& g) : hidden_(hidden) {
        ggml_init_params p{};
        p.mem_size = 64u << 20;
        ctx_ = ggml_init(p);
        emb_ = make(ggml_new_tensor_2d(ctx_, GGML_TYPE_F32, hidden, table_rows), "emb");
        b1_ = make(ggml_new_tensor_1d(ctx_, GGML_TYPE_F32, hidden), "b1");
        w2_ = make(ggml_new_tensor_2d(ctx_, GGML_TYPE_F32, hidden, hidden), "w2");
        b2_ = make(ggml_new_tensor_1d(ctx_, GGML_TYPE_F32, hidden), "b2");
        w3_ = make(ggml_new_tensor_2d(ctx_, GGML_TYPE_F32, hidden, vocab), "w3");
        b3_ = make(ggml_new_tensor_1d(ctx_, GGML_TYPE_F32, vocab), "b3");
        init(emb_, [&] { return g.normal() * 0.5; });
        init(w2_, [&] { return g.normal() * std::sqrt(2.0 / hidden); });
        init(w3_, [&] { return g.normal() * 0.1 / std::sqrt(double(hidden)); });
    }
    ggml_policy(const ggml_policy&) = delete;
    ggml_policy& operator=(const ggml_policy&) = delete;
    ~ggml_policy() { ggml_free(ctx_); }

    const std::vector<ggml_tensor*>& parameters() const { return params_; }
    void copy_from(const ggml_policy& o) {
        for (std::size_t k = 0; k < params_.size(); ++k)
            std::memcpy(params_[k]->data, o.params_[k]->data, ggml_nbytes(params_[k]));
    }

    /// log pi(. | context) for every cell: ne = {vocab, cells}. `feats` holds slot-major feature indices
    /// (feats[k * cells + c] is feature k of cell c), ne = {slots * cells}.
    ggml_tensor* log_probs(ggml_context* ctx, ggml_tensor* feats, int64_t cells) const {
        ggml_tensor* rows = ggml_get_rows(ctx, emb_, feats); // ne = {hidden, slots * cells}
        ggml_tensor* h1 = nullptr;
        for (int k = 0; k < slots; ++k) {
            ggml_tensor* part =
                ggml_view_2d(ctx, rows, hidden_, cells, rows->nb[1], static_cast<std::size_t>(k * cells) * rows->nb[1]);
            h1 = h1 ? ggml_add(ctx, h1, part) : part;
        }
        h1 = ggml_relu(ctx, ggml_add(ctx, h1, b1_));
        ggml_tensor* h2 = ggml_relu(ctx, ggml_add(ctx, ggml_mul_mat(ctx, w2_, h1), b2_));
        ggml_tensor* logits = ggml_add(ctx, ggml_mul_mat(ctx, w3_, h2), b3_); // ne = {vocab, cells}
        return ggml_log(ctx, ggml_soft_max(ctx, logits));
    }

private:
    ggml_tensor* make(ggml_tensor* t, const char* name) {
        ggml_set_name(t, name);
        ggml_set_param(t);
        std::memset(t->data, 0, ggml_nbytes(t));
        params_.push_back(t);
        return t;
    }
    template <class F>
    static void init(ggml_tensor* t, F draw) {
        float* d = static_cast<float*>(t->data);
        for (int64_t k = 0; k < ggml_nelements(t); ++k) d[k] = static_cast<float>(draw());
    }

    int hidden_;
    ggml_context* ctx_ = nullptr;
    ggml_tensor *emb_, *b1_, *w2_, *b2_, *w3_, *b3_;
    std::vector<ggml_tensor*> params_;
};

/// A scratch ggml context over one reused buffer: each graph is built, computed and dropped.
class scratch {
public:
    explicit scratch(std::size_t bytes) : buffer_(bytes) {}
    ggml_context* begin() {
        ggml_init_params p{};
        p.mem_size = buffer_.size();
        p.mem_buffer = buffer_.data();
        ctx_ = ggml_init(p);
        return ctx_;
    }
    void end() {
        ggml_free(ctx_);
        ctx_ = nullptr;
    }

private:
    std::vector<unsigned char> buffer_;
    ggml_context* ctx_ = nullptr;
};

/// Adam with global-norm clipping over the ggml parameters, reading their gradients from the backward graph.
class adam {
public:
    adam(const std::vector<ggml_tensor*>& params, double lr) : params_(params), lr_(lr) {
        for (auto* p : params) {
            m_.emplace_back(static_cast<std::size_t>(ggml_nelements(p)), 0.0f);
            v_.emplace_back(static_cast<std::size_t>(ggml_nelements(p)), 0.0f);
        }
    }
    void step(ggml_cgraph* gb) {
        std::vector<const float*> grads;
        double sq = 0;
        for (auto* p : params_) {
            const ggml_tensor* g = ggml_graph_get_grad(gb, p);
            grads.push_back(g ? static_cast<const float*>(g->data) : nullptr);
            if (g)
                for (int64_t k = 0; k < ggml_nelements(p); ++k) sq += double(grads.back()[k]) * grads.back()[k];
        }
        const double scale = std::sqrt(sq) > 1.0 ? 1.0 / std::sqrt(sq) : 1.0;
        ++t_;
        const double c1 = 1 - std::pow(0.9, double(t_)), c2 = 1 - std::pow(0.999, double(t_));
        for (std::size_t i = 0; i < params_.size(); ++i) {
            if (!grads[i]) continue;
            float* w = static_cast<float*>(params_[i]->data);
            for (int64_t k = 0; k < ggml_nelements(params_[i]); ++k) {
                const double g = grads[i][k] * scale;
                float& m = m_[i][static_cast<std::size_t>(k)];
                float& v = v_[i][static_cast<std::size_t>(k)];
                m = static_cast<float>(0.9 * m + 0.1 * g);
                v = static_cast<float>(0.999 * v + 0.001 * g * g);
                w[k] -= static_cast<float>(lr_ * (m / c1) / (std::sqrt(v / c2) + 1e-8));
            }
        }
    }

private:
    std::vector<ggml_tensor*> params_;
    std::vector<std::vector<float>> m_, v_;
    double lr_;
    long t_ = 0;
};

/// The host: the current and the reference policy, the optimizer, and the graphs that connect them to grpo.
class host {
public:
    host(const options& o, rng& g)
        : o_(o), policy_(o.hidden, g), reference_(o.hidden, g), opt_(policy_.parameters(), o.lr), scratch_(512u << 20) {
        reference_.copy_from(policy_);
    }

    /// log-probs of the given tokens for cells (problem, prefix, t): out[c] = log pi(token_c | ...).
    /// With `distribution`, also the full log-distribution per cell (vocab floats each).
    void evaluate(const ggml_policy& net, const std::vector<const problem*>& probs,
                  const std::vector<const grpo::token_id*>& prefixes, const std::vector<int>& positions,
                  std::vector<float>& distribution) {
        const int64_t cells = static_cast<int64_t>(positions.size());
        ggml_context* ctx = scratch_.begin();
        ggml_tensor* feats = feature_tensor(ctx, probs, prefixes, positions);
        ggml_tensor* lp = net.log_probs(ctx, feats, cells);
        ggml_cgraph* gf = ggml_new_graph(ctx);
        ggml_build_forward_expand(gf, lp);
        ggml_graph_compute_with_ctx(ctx, gf, o_.threads);
        distribution.assign(static_cast<const float*>(lp->data), static_cast<const float*>(lp->data) + vocab * cells);
        scratch_.end();
    }

    /// logp [rows, max_tokens] of a rollout under `net` (0 past each row's length).
    void rollout_logp(const ggml_policy& net, const std::vector<problem>& prompts, const grpo::rollout_batch<float>& b,
                      grpo::matrix_view<float> out) {
        std::vector<const problem*> probs;
        std::vector<const grpo::token_id*> prefixes;
        std::vector<int> positions;
        cells_of(prompts, b, probs, prefixes, positions);
        std::vector<float> dist;
        evaluate(net, probs, prefixes, positions, dist);
        for (grpo::index_t i = 0; i < b.rows(); ++i)
            for (grpo::index_t t = 0; t < b.max_tokens(); ++t) {
                const std::size_t c = static_cast<std::size_t>(i * b.max_tokens() + t);
                out(i, t) = t < b.lengths[i] ? dist[c * vocab + static_cast<std::size_t>(b.tokens(i, t))] : 0.0f;
            }
    }

    /// One update: the training graph loss = sum(logp * G) - entropy_coef * mean entropy, G <- grpo's gradient,
    /// backward, Adam.
    void apply_gradient(const std::vector<problem>& prompts, const grpo::rollout_batch<float>& b,
                        grpo::matrix_view<const float> grad) {
        std::vector<const problem*> probs;
        std::vector<const grpo::token_id*> prefixes;
        std::vector<int> positions;
        cells_of(prompts, b, probs, prefixes, positions);
        const int64_t rows = b.rows(), cols = b.max_tokens(), cells = rows * cols;

        ggml_context* ctx = scratch_.begin();
        ggml_tensor* feats = feature_tensor(ctx, probs, prefixes, positions);
        ggml_tensor* lp_all = policy_.log_probs(ctx, feats, cells); // ne = {vocab, cells}
        // Gather the sampled tokens' log-probs: logp ne = {max_tokens, rows}, the layout grpo's view expects.
        ggml_tensor* index = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, cells);
        ggml_tensor* live = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, 1, cells); // 1 / tokens where a token is
        int64_t tokens = 0;
        for (int64_t i = 0; i < rows; ++i) tokens += b.lengths[i];
        for (int64_t i = 0; i < rows; ++i)
            for (int64_t t = 0; t < cols; ++t) {
                const int64_t c = i * cols + t;
                const bool in = t < b.lengths[i];
                static_cast<int32_t*>(index->data)[c] = static_cast<int32_t>(c * vocab + (in ? b.tokens(i, t) : 0));
                static_cast<float*>(live->data)[c] = in ? static_cast<float>(o_.entropy_coef / double(tokens)) : 0.0f;
            }
        // snippet-begin ggml-surrogate
        ggml_tensor* flat = ggml_reshape_2d(ctx, lp_all, 1, vocab * cells);
        ggml_tensor* logp = ggml_reshape_2d(ctx, ggml_get_rows(ctx, flat, index), cols, rows);
        // The host's own regularizer: + coef * mean_t sum_v p log p (an entropy bonus, TRL entropy_coef).
        ggml_tensor* neg_entropy = ggml_sum_rows(ctx, ggml_mul(ctx, ggml_exp(ctx, lp_all), lp_all)); // ne = {1, cells}
        ggml_tensor* bonus = ggml_sum(ctx, ggml_mul(ctx, neg_entropy, live));
        const grpo::ggml::policy_gradient_loss pg = grpo::ggml::add_policy_gradient_loss(ctx, logp, bonus);

        // G <- dLoss/dlogp from grpo (a host F32 tensor: a view, no copy).
        auto g = grpo::ggml::matrix(pg.gradient);
        for (int64_t i = 0; i < rows; ++i)
            for (int64_t t = 0; t < cols; ++t) g(i, t) = grad(i, t);

        ggml_cgraph* gf = ggml_new_graph_custom(ctx, 4096, true);
        ggml_build_forward_expand(gf, pg.loss);
        ggml_cgraph* gb = ggml_graph_dup(ctx, gf, true);
        ggml_build_backward_expand(ctx, gb, nullptr);
        ggml_graph_reset(gb);
        ggml_graph_compute_with_ctx(ctx, gb, o_.threads);
        opt_.step(gb);
        // snippet-end ggml-surrogate
        scratch_.end();
    }

    const ggml_policy& policy() const { return policy_; }
    const ggml_policy& reference() const { return reference_; }
    void refresh_reference() { reference_.copy_from(policy_); }

private:
    static void cells_of(const std::vector<problem>& prompts, const grpo::rollout_batch<float>& b,
                         std::vector<const problem*>& probs, std::vector<const grpo::token_id*>& prefixes,
                         std::vector<int>& positions) {
        for (grpo::index_t i = 0; i < b.rows(); ++i)
            for (grpo::index_t t = 0; t < b.max_tokens(); ++t) {
                probs.push_back(&prompts[static_cast<std::size_t>(b.prompt_of(i))]);
                prefixes.push_back(b.tokens.row_data(i));
                // Past the row's end the prefix holds padding: evaluate position 0 instead (masked anyway).
                positions.push_back(t < b.lengths[i] ? static_cast<int>(t) : 0);
            }
    }
    static ggml_tensor* feature_tensor(ggml_context* ctx, const std::vector<const problem*>& probs,
                                       const std::vector<const grpo::token_id*>& prefixes,
                                       const std::vector<int>& positions) {
        const int64_t cells = static_cast<int64_t>(positions.size());
        ggml_tensor* feats = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, slots * cells);
        int32_t* f = static_cast<int32_t*>(feats->data);
        for (int64_t c = 0; c < cells; ++c) {
            int32_t one[slots];
            cell_features(*probs[static_cast<std::size_t>(c)], prefixes[static_cast<std::size_t>(c)],
                          positions[static_cast<std::size_t>(c)], one);
            for (int k = 0; k < slots; ++k) f[k * cells + c] = one[k];
        }
        return feats;
    }

    options o_;
    ggml_policy policy_, reference_;
    adam opt_;
    scratch scratch_;
};

/// The batched log-probabilities grpo_demo's decoding helpers ask for, from one ggml graph per call.
auto log_probs_of(host& h, const ggml_policy& net) {
    return [&h, &net, dist = std::vector<float>()](const std::vector<const problem*>& probs,
                                                   const std::vector<const grpo::token_id*>& prefixes,
                                                   const std::vector<int>& positions) mutable {
        h.evaluate(net, probs, prefixes, positions, dist);
        return static_cast<const float*>(dist.data());
    };
}

/// The GroupSampler: G completions per prompt, position by position, all rows of the batch in one graph each.
class ggml_sampler : public grpo::group_sampler<problem, float> {
public:
    ggml_sampler(host& h, rng& g) : host_(&h), rng_(&g) {}
    grpo::index_t max_tokens() const override { return ::max_tokens; }

    void sample(const problem* prompts, grpo::index_t num_prompts, grpo::index_t group_size,
                grpo::rollout_buffer<float>& out) override {
        grpo_demo::sample_groups(prompts, num_prompts, group_size, out, *rng_, log_probs_of(*host_, host_->policy()));
    }

private:
    host* host_;
    rng* rng_;
};

/// Greedy exact-match accuracy on the held-out prompts, all prompts in one graph per position.
double held_out_accuracy(host& h, const std::vector<problem>& eval) {
    return grpo_demo::greedy_accuracy(eval, log_probs_of(h, h.policy()));
}

[[noreturn]] void usage(const std::string& msg) {
    std::fprintf(stderr,
                 "grpo_ggml_example: %s\nusage: grpo_ggml_example [--seed N] [--steps N] [--threads N] [--logdir DIR] "
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
    std::printf(
        "grpo ggml example: 2-digit addition, ggml policy (%d hidden), G=%d, %d prompts/step, %d steps, seed %llu\n",
        o.hidden, o.group_size, o.prompts_per_step, o.steps, static_cast<unsigned long long>(o.seed));
    std::fflush(stdout);
    const auto start = std::chrono::steady_clock::now();
    ggml_cpu_init();

    rng g(o.seed);
    std::vector<problem> train, eval;
    for (int a = 0; a < 100; ++a)
        for (int b = 0; b < 100; ++b) (grpo_demo::held_out(a, b) ? eval : train).push_back({a, b});
    host h(o, g);
    ggml_sampler sampler(h, g);
    std::vector<problem> batch(static_cast<std::size_t>(o.prompts_per_step));

    grpo::policy_callbacks<float> policy;
    policy.current_logp = [&](const grpo::rollout_batch<float>& b, grpo::matrix_view<float> out) {
        h.rollout_logp(h.policy(), batch, b, out);
    };
    policy.reference_logp = [&](const grpo::rollout_batch<float>& b, grpo::matrix_view<float> out) {
        h.rollout_logp(h.reference(), batch, b, out);
    };
    policy.apply_gradient = [&](const grpo::rollout_batch<float>& b, grpo::matrix_view<const float> grad) {
        h.apply_gradient(batch, b, grad);
    };
    policy.refresh_reference = [&] { h.refresh_reference(); };

    grpo::train_config cfg; // as examples/demo: mu = 2, reference refreshed every 10 steps, beta = 0.02 (k3)
    cfg.group_size = o.group_size;
    cfg.inner_updates = 2;
    cfg.reference_refresh_every = 10;
    cfg.loss.beta = 0.02;
    cfg.mask_truncated_completions = true;
    grpo::trainer<problem, float> trainer(sampler, policy, cfg);
    trainer.set_outcome_rewards(grpo_demo::outcome_reward_functions());

    // The trainer logs each step's metrics (TRL's names) to --logdir; the held-out evaluation joins its step.
    grpo::metrics_logger metrics;
    if (!grpo_demo::log_to_directory(metrics, o.logdir, "grpo_ggml_example")) return 1;
    trainer.set_metrics_logger(&metrics);

    const double before = held_out_accuracy(h, eval);
    metrics.log(0, "eval_accuracy", before);
    for (int s = 1; s <= o.steps; ++s) {
        for (auto& p : batch) p = train[static_cast<std::size_t>(g.below(static_cast<int>(train.size())))];
        const grpo::step_metrics m = trainer.step(batch.data(), o.prompts_per_step);
        const grpo::rollout_batch<float> rb = trainer.last_rollout();
        int correct = 0;
        for (grpo::index_t i = 0; i < rb.rows(); ++i)
            correct += grpo_demo::is_correct(batch[static_cast<std::size_t>(rb.prompt_of(i))], rb.tokens.row_data(i),
                                             rb.lengths[i]);
        metrics.log(s, "sampled_accuracy", double(correct) / double(rb.rows()));
        // (Greedy decoding draws no random numbers: evaluating does not change the run.)
        const double held = s % 25 == 0 && (!o.quiet || !o.logdir.empty()) ? held_out_accuracy(h, eval) : -1;
        if (held >= 0) metrics.log(s, "eval_accuracy", held);
        if (!o.quiet) {
            std::printf("step %4d  reward %6.3f  accuracy %5.3f  kl %.5f  clip %.4f  zero-var %.2f  len %.2f", s,
                        m.reward_mean, double(correct) / double(rb.rows()), m.kl_mean, m.clip_fraction_region,
                        m.zero_variance_fraction, m.completion_length_mean);
            if (held >= 0) std::printf("  held-out %5.3f", held);
            std::printf("\n");
            std::fflush(stdout);
        }
    }
    const double after = held_out_accuracy(h, eval);
    metrics.log(o.steps, "eval_accuracy", after);
    metrics.flush();
    std::printf("wall time: %.1f s\n", std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    std::printf("held-out accuracy: %.3f -> %.3f\n", before, after);
    return 0;
}
