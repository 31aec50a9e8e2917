// SPDX-License-Identifier: MIT
// GRPO from scratch on a verifiable task: two-digit addition answered token by token.
//
// Prompt "a + b" with a, b in [0, 99]. The policy answers the three digits of the sum least significant first,
// then <eos> (57 + 68 = 125 -> "5 2 1 <eos>"). A random policy is right about once in a thousand tries; the
// held-out prompts (one pair in ten, fixed by a hash) are never trained on. The policy is a two-hidden-layer MLP
// (64 units) trained with Adam; the host adds an entropy bonus (TRL entropy_coef) against entropy collapse.
//
// The demo is a host in the sense of grpo: it owns the model (policy.hpp), implements grpo::group_sampler,
// supplies reward functions (outcome) or a step-reward function (process, DeepSeekMath §4.1.3), and gives the
// step helper (grpo::trainer) its log-prob / gradient callables.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <ostream>
#include <string>
#include <vector>

#include <grpo/grpo.hpp>

#include "policy.hpp"

namespace grpo_demo {

constexpr int digits_in_answer = 3;
constexpr int eos = 10;
constexpr int vocab = 11;     // '0'..'9', <eos>
constexpr int max_tokens = 5; // 3 digits + <eos> + 1 of slack: a row without <eos> by then is truncated
constexpr int prev_slots = max_tokens - 1;
// Features (sparse 0/1, their first-layer rows summed). The policy reads the column it is writing the way a
// person does: the column digit sum s_t = a_t + b_t together with the sum of the column before it (where a carry
// comes from), that previous sum together with the token it wrote last, each sum alone, its position and its
// last token (one-hot each, s = 19 for "no column"). It still has to learn, from rewards alone, which digit to write
// for every (s_t, s_t-1) and when a carry ripples (s_t-1 = 9 after a carry), and when to stop.
constexpr int columns = 3;
constexpr int no_column = 19;
constexpr int sums_base = 0;                      // (s_t, s_t-1): 20 x 20
constexpr int prev_base = sums_base + 20 * 20;    // (s_t-1, previous token or none): 20 x 12
constexpr int cur_sum_base = prev_base + 20 * 12; // s_t alone (shares what the joint features learn)
constexpr int prev_sum_base = cur_sum_base + 20;  // s_t-1 alone
constexpr int position_base = prev_sum_base + 20;
constexpr int prev_token_base = position_base + max_tokens;
constexpr int feature_count = prev_token_base + vocab;
constexpr int max_active = 6;

struct problem {
    int a = 0, b = 0;
    int answer_digit(int k) const {
        int s = a + b;
        for (int i = 0; i < k; ++i) s /= 10;
        return s % 10;
    }
};

/// One pair in ten is held out (a fixed hash, independent of the seed).
inline bool held_out(int a, int b) {
    std::uint64_t h = static_cast<std::uint64_t>(a * 100 + b) * 0x9E3779B97F4A7C15ull;
    h ^= h >> 29;
    return h % 10 == 3;
}

/// Active features for predicting position t after prefix tokens[0..t).
inline int features(const problem& p, const grpo::token_id* prefix, int t, int* out) {
    auto column_sum = [&](int k) {
        if (k < 0 || k >= columns) return no_column;
        auto digit = [k](int x) { return k == 0 ? x % 10 : k == 1 ? x / 10 : 0; };
        return digit(p.a) + digit(p.b);
    };
    const int cur = column_sum(t), prev = column_sum(t - 1);
    const int last = t >= 1 ? prefix[t - 1] : vocab;
    int n = 0;
    out[n++] = sums_base + cur * 20 + prev;
    out[n++] = prev_base + prev * 12 + last;
    out[n++] = cur_sum_base + cur;
    out[n++] = prev_sum_base + prev;
    out[n++] = position_base + t;
    if (t >= 1) out[n++] = prev_token_base + last;
    return n;
}

struct options {
    std::uint64_t seed = 1;
    int steps = 200;
    int group_size = 8;
    int prompts_per_step = 64;
    int hidden = 64;
    int inner_updates = 2;      // mu
    int ref_refresh_every = 10; // K
    double beta = 0.02;
    double lr = 2e-2;
    double temperature = 1.0;
    double init_scale = 0.5;   // std of the first layer's weights
    double entropy_coef = 0.2; // host-side entropy bonus (TRL entropy_coef), against entropy collapse
    bool process_rewards = false;
    bool quiet = false;
    int eval_every = 5; // held-out evaluation cadence (0: only before and after)
    std::string logdir; // write the run's metrics here (metrics.jsonl, metrics.csv, TensorBoard); empty: none
};

struct result {
    double before = 0, after = 0;
    std::vector<double> reward_curve;   // reward mean per step
    std::vector<double> accuracy_curve; // sampled exact-match accuracy per step
    int steps_to_90 = -1;               // first evaluated step with held-out accuracy >= 0.9
    double seconds = 0;
};

/// The host model: current and reference parameters, optimizer, forward cache for the backward pass.
class host_model {
public:
    host_model(const options& o, rng& g)
        : theta_(feature_count, o.hidden, vocab, g, o.init_scale, 0.1),
          ref_(theta_),
          grad_(theta_),
          opt_(theta_),
          temp_(o.temperature),
          entropy_coef_(o.entropy_coef) {
        opt_.lr = o.lr;
    }

    const mlp& current() const { return theta_; }

    /// log pi(token | prompt, prefix) for every position of every row; with cache, keeps what backward needs.
    template <class Batch>
    void log_probs(const mlp& net, const std::vector<problem>& prompts, const Batch& b, grpo::matrix_view<float> out,
                   bool cache) {
        const grpo::index_t rows = b.rows(), cols = b.max_tokens();
        if (cache) {
            cache_h_.resize(static_cast<std::size_t>(rows * cols * net.hidden));
            cache_h1_.resize(static_cast<std::size_t>(rows * cols * net.hidden));
            cache_p_.resize(static_cast<std::size_t>(rows * cols * vocab));
            cache_f_.resize(static_cast<std::size_t>(rows * cols * max_active));
            cache_n_.resize(static_cast<std::size_t>(rows * cols));
        }
        std::vector<float> h1(net.hidden), h(net.hidden), logits(vocab), probs(vocab);
        for (grpo::index_t i = 0; i < rows; ++i) {
            const problem& p = prompts[static_cast<std::size_t>(b.prompt_of(i))];
            const grpo::token_id* toks = b.tokens.row_data(i);
            for (grpo::index_t t = 0; t < cols; ++t) {
                if (t >= b.lengths[i]) {
                    out(i, t) = 0.0f;
                    continue;
                }
                const std::size_t cell = static_cast<std::size_t>(i * cols + t);
                int f[max_active];
                const int nf = features(p, toks, static_cast<int>(t), f);
                float* hp = cache ? &cache_h_[cell * net.hidden] : h.data();
                float* h1p = cache ? &cache_h1_[cell * net.hidden] : h1.data();
                float* pp = cache ? &cache_p_[cell * vocab] : probs.data();
                net.forward(f, nf, h1p, hp, logits.data());
                for (auto& z : logits) z /= static_cast<float>(temp_);
                out(i, t) = log_softmax_at(logits.data(), vocab, toks[t], pp);
                if (cache) {
                    std::copy(f, f + nf, &cache_f_[cell * max_active]);
                    cache_n_[cell] = nf;
                }
            }
        }
    }

    /// Backward of sum_it grad(i,t) * logp(i,t) through the cached forward, then one Adam step.
    template <class Batch>
    void apply_gradient(const Batch& b, grpo::matrix_view<const float> grad) {
        backward(b, grad, active_tokens(b, grad));
        step();
    }

    /// The tokens the gradient reaches (grpo writes exactly 0 where masked), over which the entropy bonus averages.
    template <class Batch>
    static double active_tokens(const Batch& b, grpo::matrix_view<const float> grad) {
        double tokens = 0;
        for (grpo::index_t i = 0; i < b.rows(); ++i)
            for (grpo::index_t t = 0; t < b.lengths[i]; ++t) tokens += grad(i, t) != 0.0f;
        return tokens;
    }

    /// gradient() = backward of sum_it grad(i,t) * logp(i,t) through the cached forward, with the entropy bonus
    /// averaged over `tokens` tokens (data-parallel: every rank's active_tokens).
    /// d logp_t / d logits = (onehot(y) - softmax) / temperature. The host adds its own entropy bonus
    /// -entropy_coef * mean_t H(pi(.|context_t)) (TRL entropy_coef): dH/dlogit_v = -p_v (log p_v + H) / T.
    template <class Batch>
    void backward(const Batch& b, grpo::matrix_view<const float> grad, double tokens) {
        grad_.zero();
        const grpo::index_t rows = b.rows(), cols = b.max_tokens();
        std::vector<float> dlogits(vocab), dh(theta_.hidden), dh1(theta_.hidden);
        const float ent = tokens > 0 ? static_cast<float>(entropy_coef_ / tokens / temp_) : 0.0f;
        for (grpo::index_t i = 0; i < rows; ++i)
            for (grpo::index_t t = 0; t < b.lengths[i]; ++t) {
                const float g = grad(i, t);
                if (g == 0.0f) continue; // masked (grpo writes exactly 0 there)
                const std::size_t cell = static_cast<std::size_t>(i * cols + t);
                const float* p = &cache_p_[cell * vocab];
                const float s = g / static_cast<float>(temp_);
                float h = 0;
                for (int v = 0; v < vocab; ++v) h -= p[v] > 0 ? p[v] * std::log(p[v]) : 0.0f;
                for (int v = 0; v < vocab; ++v) {
                    const float lp = p[v] > 0 ? std::log(p[v]) : 0.0f;
                    dlogits[v] = -s * p[v] + ent * p[v] * (lp + h); // d(-coef*H)/dlogit
                }
                dlogits[b.tokens(i, t)] += s;
                grad_.accumulate(theta_, &cache_f_[cell * max_active], cache_n_[cell], &cache_h1_[cell * theta_.hidden],
                                 &cache_h_[cell * theta_.hidden], dlogits.data(), dh.data(), dh1.data());
            }
    }
    mlp_grad& gradient() { return grad_; }
    /// One Adam step with gradient().
    void step() { opt_.step(theta_, grad_); }

    void refresh_reference() { ref_ = theta_; }
    const mlp& reference() const { return ref_; }
    double temperature() const { return temp_; }

private:
    mlp theta_, ref_;
    mlp_grad grad_;
    adam opt_;
    double temp_;
    double entropy_coef_;
    std::vector<float> cache_h1_, cache_h_, cache_p_;
    std::vector<int> cache_f_, cache_n_;
};

/// The host's GroupSampler: G autoregressive samples per prompt from the current policy, with temperature.
class addition_sampler : public grpo::group_sampler<problem, float> {
public:
    addition_sampler(const host_model& m, rng& g) : model_(&m), rng_(&g) {}
    grpo::index_t max_tokens() const override { return grpo_demo::max_tokens; }

    void sample(const problem* prompts, grpo::index_t num_prompts, grpo::index_t group_size,
                grpo::rollout_buffer<float>& out) override {
        const mlp& net = model_->current();
        std::vector<float> h1(net.hidden), h(net.hidden), logits(vocab), probs(vocab);
        auto tokens = out.tokens();
        auto logp = out.old_logp();
        auto lengths = out.lengths();
        auto truncated = out.truncated();
        for (grpo::index_t p = 0; p < num_prompts; ++p)
            for (grpo::index_t k = 0; k < group_size; ++k) {
                const grpo::index_t row = p * group_size + k;
                grpo::token_id* toks = tokens.row_data(row);
                int t = 0;
                bool ended = false;
                for (; t < grpo_demo::max_tokens && !ended; ++t) {
                    int f[max_active];
                    const int nf = features(prompts[p], toks, t, f);
                    net.forward(f, nf, h1.data(), h.data(), logits.data());
                    for (auto& z : logits) z /= static_cast<float>(model_->temperature());
                    log_softmax_at(logits.data(), vocab, 0, probs.data());
                    const double u = rng_->uniform();
                    double c = 0;
                    int y = vocab - 1;
                    for (int v = 0; v < vocab; ++v) {
                        c += probs[v];
                        if (u < c) {
                            y = v;
                            break;
                        }
                    }
                    toks[t] = y;
                    logp(row, t) = log_softmax_at(logits.data(), vocab, y, probs.data());
                    ended = y == eos;
                }
                lengths[row] = t;
                truncated[row] = !ended;
            }
    }

private:
    const host_model* model_;
    rng* rng_;
};

/// Completion tokens as text: digits, stopping at <eos> ("5", "52", "521").
inline std::string decode(const grpo::completion_view& c) {
    std::string s;
    for (grpo::index_t t = 0; t < c.length() && c.tokens[t] != eos; ++t) s += static_cast<char>('0' + c.tokens[t]);
    return s;
}
inline std::string gold_answer(const problem& p) {
    std::string s;
    for (int k = 0; k < digits_in_answer; ++k) s += static_cast<char>('0' + p.answer_digit(k));
    return s;
}
inline bool is_correct(const problem& p, const grpo::token_id* toks, grpo::index_t length) {
    if (length != digits_in_answer + 1 || toks[digits_in_answer] != eos) return false;
    for (int k = 0; k < digits_in_answer; ++k)
        if (toks[k] != p.answer_digit(k)) return false;
    return true;
}

// ---- Shared by the framework examples (examples/ggml, examples/libtorch), whose policies evaluate many cells at
// once: `log_probs(probs, prefixes, positions)` returns a pointer to vocab log-probabilities per cell, cell-major,
// valid until the next call.

/// The token whose cumulative probability first exceeds u (u uniform in [0, 1)); the last token if none does.
inline int sample_from_log_probs(const float* lp, double u) {
    double acc = 0;
    for (int v = 0; v < vocab; ++v) {
        acc += std::exp(double(lp[v]));
        if (u < acc) return v;
    }
    return vocab - 1;
}

/// Decodes every row position by position, one batched log_probs call per position, until each row has
/// emitted <eos> or max_tokens tokens. choose(row, lp) picks the token from the row's log-probabilities;
/// emit(row, t, token, lp) records it. prefix(row) is the row's token buffer (max_tokens entries).
template <class LogProbs, class Prefix, class Choose, class Emit>
void decode_rows(std::size_t rows, const std::vector<const problem*>& problem_of, Prefix prefix, LogProbs log_probs,
                 Choose choose, Emit emit) {
    std::vector<char> done(rows, 0);
    for (int t = 0; t < max_tokens; ++t) {
        std::vector<const problem*> probs;
        std::vector<const grpo::token_id*> prefixes;
        std::vector<int> positions;
        std::vector<std::size_t> which;
        for (std::size_t i = 0; i < rows; ++i)
            if (!done[i]) {
                probs.push_back(problem_of[i]);
                prefixes.push_back(prefix(i));
                positions.push_back(t);
                which.push_back(i);
            }
        if (which.empty()) break;
        const float* dist = log_probs(probs, prefixes, positions);
        for (std::size_t c = 0; c < which.size(); ++c) {
            const float* lp = dist + c * vocab;
            const int y = choose(which[c], lp);
            emit(which[c], t, y, lp);
            if (y == eos) done[which[c]] = 1;
        }
    }
}

/// GroupSampler body: G completions per prompt sampled from log_probs, old log-probs recorded.
template <class LogProbs>
void sample_groups(const problem* prompts, grpo::index_t num_prompts, grpo::index_t group_size,
                   grpo::rollout_buffer<float>& out, rng& g, LogProbs log_probs) {
    const auto rows = static_cast<std::size_t>(num_prompts * group_size);
    auto tokens = out.tokens();
    auto logp = out.old_logp();
    auto lengths = out.lengths();
    auto truncated = out.truncated();
    std::vector<const problem*> problem_of(rows);
    for (std::size_t i = 0; i < rows; ++i) {
        problem_of[i] = &prompts[static_cast<grpo::index_t>(i) / group_size];
        lengths[static_cast<grpo::index_t>(i)] = 0;
    }
    decode_rows(
        rows, problem_of, [&](std::size_t i) { return tokens.row_data(static_cast<grpo::index_t>(i)); }, log_probs,
        [&](std::size_t, const float* lp) { return sample_from_log_probs(lp, g.uniform()); },
        [&](std::size_t i, int t, int y, const float* lp) {
            const auto r = static_cast<grpo::index_t>(i);
            tokens(r, t) = y;
            logp(r, t) = lp[y];
            lengths[r] = t + 1;
        });
    for (std::size_t i = 0; i < rows; ++i) {
        const auto r = static_cast<grpo::index_t>(i);
        truncated[r] = !(lengths[r] > 0 && tokens(r, lengths[r] - 1) == eos);
    }
}

/// Greedy exact-match accuracy on the held-out prompts.
template <class LogProbs>
double greedy_accuracy(const std::vector<problem>& eval, LogProbs log_probs) {
    const std::size_t n = eval.size();
    std::vector<grpo::token_id> toks(n * max_tokens, eos);
    std::vector<int> length(n, 0);
    std::vector<const problem*> problem_of(n);
    for (std::size_t i = 0; i < n; ++i) problem_of[i] = &eval[i];
    decode_rows(
        n, problem_of, [&](std::size_t i) { return &toks[i * max_tokens]; }, log_probs,
        [](std::size_t, const float* lp) { return static_cast<int>(std::max_element(lp, lp + vocab) - lp); },
        [&](std::size_t i, int t, int y, const float*) {
            toks[i * max_tokens + static_cast<std::size_t>(t)] = y;
            length[i] = t + 1;
        });
    int correct = 0;
    for (std::size_t i = 0; i < n; ++i) correct += is_correct(eval[i], &toks[i * max_tokens], length[i]);
    return n ? double(correct) / double(n) : 0.0;
}

/// Outcome rewards: exact match on the answer (1), per-digit partial credit (1), a format check (0.2) and DAPO
/// soft overlong punishment (0.2). The last two use grpo's ready-made reward functions.
inline grpo::outcome_rewards<problem> outcome_reward_functions() {
    grpo::outcome_rewards<problem> r;
    r.add("exact_match",
          grpo::exact_match_reward<problem>(
              decode, [](const problem& p) { return std::optional<std::string>(gold_answer(p)); },
              grpo::answer_format::whole),
          1.0);
    r.add(
        "digits",
        [](const problem& p, const grpo::completion_view& c) {
            int ok = 0;
            for (int k = 0; k < digits_in_answer && k < c.length(); ++k) ok += c.tokens[k] == p.answer_digit(k);
            return double(ok) / digits_in_answer;
        },
        1.0);
    r.add("format",
          grpo::format_reward<problem>([](const grpo::completion_view& c) { return c; },
                                       [](const grpo::completion_view& c) {
                                           return c.length() == digits_in_answer + 1 &&
                                                  c.tokens[digits_in_answer] == eos;
                                       }),
          0.2);
    r.add("overlong", grpo::soft_overlong_punishment<problem>(max_tokens, 1), 0.2);
    return r;
}

/// Process rewards: one step per generated token; an answer digit scores 1 if right, the <eos> after the third
/// digit scores 1, anything else 0. Each step ends at its own token.
inline void process_reward(const problem& p, const grpo::completion_view& c, grpo::process_steps& steps) {
    for (grpo::index_t t = 0; t < c.length(); ++t) {
        double r = 0;
        if (t < digits_in_answer) r = c.tokens[t] == p.answer_digit(static_cast<int>(t)) ? 1.0 : 0.0;
        else if (t == digits_in_answer) r = c.tokens[t] == eos ? 1.0 : 0.0;
        steps.add(r, static_cast<std::int64_t>(t));
    }
}

/// Greedy-decoding exact-match accuracy on the held-out prompts.
inline double held_out_accuracy(const mlp& net, const std::vector<problem>& eval) {
    std::vector<float> h1(net.hidden), h(net.hidden), logits(vocab);
    int correct = 0;
    for (const problem& p : eval) {
        grpo::token_id toks[max_tokens];
        int t = 0;
        for (; t < max_tokens; ++t) {
            int f[max_active];
            const int nf = features(p, toks, t, f);
            net.forward(f, nf, h1.data(), h.data(), logits.data());
            int y = 0;
            for (int v = 1; v < vocab; ++v)
                if (logits[v] > logits[y]) y = v;
            toks[t] = y;
            if (y == eos) {
                ++t;
                break;
            }
        }
        correct += is_correct(p, toks, t);
    }
    return eval.empty() ? 0.0 : double(correct) / double(eval.size());
}

/// Every pair a + b, split into the training prompts and the held-out ones.
inline void split_prompts(std::vector<problem>& train, std::vector<problem>& eval) {
    for (int a = 0; a < 100; ++a)
        for (int b = 0; b < 100; ++b) (held_out(a, b) ? eval : train).push_back({a, b});
}

/// The completions of a rollout that are exactly right.
inline int correct_count(const std::vector<problem>& prompts, const grpo::rollout_batch<float>& rb) {
    int correct = 0;
    for (grpo::index_t i = 0; i < rb.rows(); ++i)
        correct += is_correct(prompts[static_cast<std::size_t>(rb.prompt_of(i))], rb.tokens.row_data(i), rb.lengths[i]);
    return correct;
}

/// Records step s in res (curves, the held-out evaluation every eval_every steps), adds the host's figures to the
/// step's metrics (sampled_accuracy, eval_accuracy) and writes its progress line unless quiet. acc: the sampled
/// exact-match accuracy of the step.
inline void record_step(const options& o, int s, const grpo::step_metrics& m, double acc, const mlp& net,
                        const std::vector<problem>& eval, result& res, grpo::metrics_logger& metrics,
                        std::ostream& log) {
    res.reward_curve.push_back(m.reward_mean);
    res.accuracy_curve.push_back(acc);
    metrics.log(s, "sampled_accuracy", acc);
    double held = -1;
    if (o.eval_every > 0 && (s % o.eval_every == 0 || s == o.steps)) {
        held = held_out_accuracy(net, eval);
        if (held >= 0.9 && res.steps_to_90 < 0) res.steps_to_90 = s;
        metrics.log(s, "eval_accuracy", held);
    }
    if (o.quiet) return;
    char line[256];
    int n = std::snprintf(
        line, sizeof line, "step %4d  reward %6.3f  sampled-acc %5.3f  kl %.5f  clip %.4f  zero-var %.2f  len %.2f", s,
        m.reward_mean, acc, m.kl_mean, m.clip_fraction_region, m.zero_variance_fraction, m.completion_length_mean);
    if (held >= 0 && n > 0 && n < int(sizeof line))
        std::snprintf(line + n, sizeof line - static_cast<std::size_t>(n), "  held-out-greedy %5.3f", held);
    log << line << (m.reference_refreshed ? "  [ref refreshed]" : "") << '\n';
}

/// Adds the sinks of a --logdir run directory to `metrics` (none when `dir` is empty). Returns false, after printing
/// grpo's error, when the directory or its files cannot be created.
inline bool log_to_directory(grpo::metrics_logger& metrics, const std::string& dir, const char* program) {
    if (dir.empty()) return true;
    try {
        grpo::log_to_directory(metrics, dir);
    } catch (const grpo::error& e) {
        std::fprintf(stderr, "%s: %s\n", program, e.what());
        return false;
    }
    return true;
}

/// The closing lines; the last is "held-out accuracy: <before> -> <after>" (examples/check-example.cmake).
inline void print_result(const result& r) {
    if (r.steps_to_90 > 0) std::printf("steps to 90%% held-out accuracy: %d\n", r.steps_to_90);
    else std::printf("steps to 90%% held-out accuracy: not reached\n");
    std::printf("wall time: %.1f s\n", r.seconds);
    std::printf("held-out accuracy: %.3f -> %.3f\n", r.before, r.after);
}

/// Trains with grpo::trainer and returns the curves; writes one progress line per step unless quiet.
inline result run(const options& o, std::ostream& log) {
    const auto start = std::chrono::steady_clock::now();
    rng g(o.seed);
    std::vector<problem> train, eval;
    split_prompts(train, eval);

    host_model model(o, g);
    addition_sampler sampler(model, g);
    std::vector<problem> batch_prompts(static_cast<std::size_t>(o.prompts_per_step));

    grpo::policy_callbacks<float> policy;
    policy.current_logp = [&](const grpo::rollout_batch<float>& b, grpo::matrix_view<float> out) {
        model.log_probs(model.current(), batch_prompts, b, out, true);
    };
    policy.reference_logp = [&](const grpo::rollout_batch<float>& b, grpo::matrix_view<float> out) {
        model.log_probs(model.reference(), batch_prompts, b, out, false);
    };
    policy.apply_gradient = [&](const grpo::rollout_batch<float>& b, grpo::matrix_view<const float> grad) {
        model.apply_gradient(b, grad);
    };
    policy.refresh_reference = [&] { model.refresh_reference(); };

    grpo::train_config cfg;
    cfg.group_size = o.group_size;
    cfg.inner_updates = o.inner_updates;
    cfg.reference_refresh_every = o.ref_refresh_every;
    cfg.loss.beta = o.beta;
    cfg.mask_truncated_completions = true;
    cfg.process.epsilon = 1e-4;
    grpo::trainer<problem, float> trainer(sampler, policy, cfg);
    if (o.process_rewards) trainer.set_process_rewards(process_reward);
    else trainer.set_outcome_rewards(outcome_reward_functions());

    // Every step's metrics under TRL's names, to o.logdir when given (docs/metrics.md).
    grpo::metrics_logger metrics;
    if (!o.logdir.empty()) grpo::log_to_directory(metrics, o.logdir);
    trainer.set_metrics_logger(&metrics);

    result res;
    res.before = held_out_accuracy(model.current(), eval);
    metrics.log(0, "eval_accuracy", res.before);
    for (int s = 1; s <= o.steps; ++s) {
        for (auto& p : batch_prompts) p = train[static_cast<std::size_t>(g.below(static_cast<int>(train.size())))];
        const grpo::step_metrics m = trainer.step(batch_prompts.data(), o.prompts_per_step);
        const grpo::rollout_batch<float> rb = trainer.last_rollout();
        record_step(o, s, m, double(correct_count(batch_prompts, rb)) / double(rb.rows()), model.current(), eval, res,
                    metrics, log);
    }
    res.after = held_out_accuracy(model.current(), eval);
    metrics.flush();
    res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return res;
}

} // namespace grpo_demo
