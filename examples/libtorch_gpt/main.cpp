// SPDX-License-Identifier: MIT
// grpo_libtorch_gpt: GRPO on a small language model. A tiny decoder-only transformer written with torch::nn (token
// and position embeddings, 2 pre-norm blocks of causal self-attention and MLP, a linear LM head) reads characters
// ("0"-"9", "+", "=", end of sequence, padding) and is asked "ab+cd=" for two-digit numbers; it answers with the
// digits of the sum and an end-of-sequence token, and the reward is 1 for an exact answer, 0 otherwise.
//   1. Warm start: teacher-forced cross-entropy, stopped early (at 35% greedy accuracy on training problems) so
//      that the answers are well formed but mostly wrong.
//   2. GRPO: G completions sampled per prompt (KV cache, the prompt run once per group), rewards -> group-relative
//      advantages with grpo::compute_advantages, then the completions' log-probs and entropies recomputed with
//      gradient from the final hidden states through the LM head by grpo's fused head and log-softmax
//      (token_logprobs below: grpo::libtorch::logprobs_from_hidden, no [B, T, V] logits), and
//        loss = grpo::libtorch::grpo_loss(logp, old_logp, ref_logp, advantages, mask, cfg) - c * mean entropy;
//        loss.backward(); optimizer.step();
//   3. Greedy exact-match accuracy on held-out problems (about one pair in ten, never trained on: neither in the
//      warm start nor in GRPO) after the warm start and after GRPO.
// One thread by default: the model is so small that LibTorch's intra-op threads cost more than they give.
//   grpo_libtorch_gpt [--seed N] [--steps N] [--threads N] [--logdir DIR] [--quiet] [...] (--help lists every flag)
// Ends with "held-out accuracy: <before> -> <after>".
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include <torch/version.h> // TORCH_VERSION

#include <grpo/adapters/torch.hpp>
#include <grpo/grpo.hpp>

namespace {

// The vocabulary: the ten digits are their own ids.
constexpr std::int64_t plus_id = 10, equals_id = 11, eos_id = 12, pad_id = 13, vocab = 14;
constexpr std::int64_t prompt_len = 6; // "ab+cd="
constexpr std::int64_t max_new = 4;    // up to three digits of the sum and EOS
constexpr std::int64_t context = 16;   // positions the model knows (prompt_len + max_new - 1 are used)

struct options {
    std::uint64_t seed = 1;
    double warmup_target = 0.35; // the warm start stops once it answers this fraction of a training sample right
    int warmup_check_every = 5;
    int warmup_steps = 1000; // at most
    int warmup_batch = 64;
    double warmup_lr = 3e-3;
    int steps = 500; // GRPO steps
    int group_size = 8;
    int inner_updates = 1; // mu: updates per rollout
    int prompts_per_step = 32;
    double lr = 1e-3;
    double temperature = 1.0;
    double beta = 0.0; // KL coefficient (k3) to the reference model: measured, it neither helps nor hurts here
    int reference_refresh_every = 10;
    double entropy_coef = 0.01;
    double partial_credit = 0.0;
    int d_model = 32, heads = 4, layers = 2;
    int eval_every = 25;
    int threads = 1; // the model is too small for intra-op threads to pay: 2 are about twice as slow
    bool quiet = false;
    std::string logdir; // --logdir: the run's metrics (empty: none)
};

/// splitmix64: the same stream with every compiler and standard library (std::*_distribution is not).
struct rng {
    std::uint64_t state;
    explicit rng(std::uint64_t seed) : state(seed) {}
    std::uint64_t next() {
        std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
    }
    double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
    int below(int n) { return static_cast<int>(next() % static_cast<std::uint64_t>(n)); }
};

// ---------------------------------------------------------------------------------------------------------------
// The task.

struct problem {
    int a = 0, b = 0;
};

/// About one pair in ten is held out: never trained on, neither in the warm start nor in GRPO.
bool held_out(int a, int b) {
    std::uint64_t h = static_cast<std::uint64_t>(a * 100 + b) * 0x9E3779B97F4A7C15ull;
    h ^= h >> 29;
    return h % 10 == 3;
}

/// The expected completion: the digits of a + b, then EOS.
std::vector<std::int64_t> answer(const problem& p) {
    std::vector<std::int64_t> out;
    for (const char c : std::to_string(p.a + p.b)) out.push_back(c - '0');
    out.push_back(eos_id);
    return out;
}

/// Prompts as int64 [rows, prompt_len]: the characters of "ab+cd=".
torch::Tensor prompt_tensor(const std::vector<problem>& probs) {
    torch::Tensor t = torch::empty({static_cast<std::int64_t>(probs.size()), prompt_len}, torch::kLong);
    auto acc = t.accessor<std::int64_t, 2>();
    for (std::size_t i = 0; i < probs.size(); ++i) {
        const auto r = static_cast<std::int64_t>(i);
        const problem& p = probs[i];
        const std::int64_t row[prompt_len] = {p.a / 10, p.a % 10, plus_id, p.b / 10, p.b % 10, equals_id};
        for (std::int64_t k = 0; k < prompt_len; ++k) acc[r][k] = row[k];
    }
    return t;
}

/// Expected tokens that the completion has at their place (the digits and EOS).
grpo::index_t right_tokens(const problem& p, const grpo::completion_view& c) {
    const std::vector<std::int64_t> want = answer(p);
    grpo::index_t right = 0;
    for (grpo::index_t k = 0; k < std::min(static_cast<grpo::index_t>(want.size()), c.length()); ++k)
        right += c.tokens[k] == want[static_cast<std::size_t>(k)];
    return right;
}

/// Exactly the digits of the sum, then EOS.
bool is_correct(const problem& p, const grpo::completion_view& c) {
    const auto n = static_cast<grpo::index_t>(answer(p).size());
    return c.length() == n && right_tokens(p, c) == n;
}

/// 1 for a correct answer; otherwise `partial` times the fraction of the expected tokens at their place.
double reward(const problem& p, const grpo::completion_view& c, double partial) {
    if (is_correct(p, c)) return 1.0;
    return partial > 0 ? partial * double(right_tokens(p, c)) / double(answer(p).size()) : 0.0;
}

// ---------------------------------------------------------------------------------------------------------------
// The model: token and position embeddings, pre-norm blocks of causal self-attention and a GELU MLP, a final
// layer norm and a linear LM head. Attention is written with torch ops; prompts all have the same length and
// padding only follows the completion, so the causal mask is the only mask needed.

struct blockImpl : torch::nn::Module {
    blockImpl(int d, int h) : heads(h) {
        ln1 = register_module("ln1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({d})));
        qkv = register_module("qkv", torch::nn::Linear(d, 3 * d));
        proj = register_module("proj", torch::nn::Linear(d, d));
        ln2 = register_module("ln2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({d})));
        fc1 = register_module("fc1", torch::nn::Linear(d, 4 * d));
        fc2 = register_module("fc2", torch::nn::Linear(4 * d, d));
    }
    /// x: [B, T, d], the positions after the `past` ones whose keys and values are in k_cache / v_cache
    /// ([B, heads, past, d / heads], undefined when past = 0); appends this call's keys and values to them.
    torch::Tensor forward(const torch::Tensor& x, torch::Tensor& k_cache, torch::Tensor& v_cache) {
        const std::int64_t B = x.size(0), T = x.size(1), d = x.size(2), dh = d / heads;
        const torch::Tensor qkv_ = qkv(ln1(x)).view({B, T, 3, heads, dh}).permute({2, 0, 3, 1, 4}); // [3, B, h, T, dh]
        const torch::Tensor q = qkv_[0];
        k_cache = k_cache.defined() ? torch::cat({k_cache, qkv_[1]}, 2) : qkv_[1];
        v_cache = v_cache.defined() ? torch::cat({v_cache, qkv_[2]}, 2) : qkv_[2];
        const std::int64_t past = k_cache.size(2) - T;
        // Query i sits at position past + i and sees keys 0 .. past + i.
        const torch::Tensor future = torch::ones({T, past + T}, torch::kBool).triu(past + 1);
        torch::Tensor att = torch::matmul(q, k_cache.transpose(-2, -1)) / std::sqrt(static_cast<double>(dh));
        att = torch::softmax(att.masked_fill(future, -INFINITY), -1);
        const torch::Tensor y = torch::matmul(att, v_cache).transpose(1, 2).reshape({B, T, d});
        const torch::Tensor x1 = x + proj(y);
        return x1 + fc2(torch::gelu(fc1(ln2(x1))));
    }
    int heads;
    torch::nn::LayerNorm ln1{nullptr}, ln2{nullptr};
    torch::nn::Linear qkv{nullptr}, proj{nullptr}, fc1{nullptr}, fc2{nullptr};
};
TORCH_MODULE(block);

/// Keys and values of the positions a model has seen, per layer: [B, heads, positions, d / heads] each.
struct kv_cache {
    std::vector<torch::Tensor> k, v;
    std::int64_t length() const { return k.empty() || !k[0].defined() ? 0 : k[0].size(2); }
    /// Each row repeated `times` times in place (row i -> rows i * times .. i * times + times - 1): one prompt's
    /// cache shared by its group of completions. Differentiable.
    void repeat_rows(std::int64_t times) {
        for (auto& t : k) t = t.repeat_interleave(times, 0);
        for (auto& t : v) t = t.repeat_interleave(times, 0);
    }
};

struct gptImpl : torch::nn::Module {
    gptImpl(int d, int heads, int layers) {
        tok = register_module("tok", torch::nn::Embedding(vocab, d));
        pos = register_module("pos", torch::nn::Embedding(context, d));
        for (int l = 0; l < layers; ++l)
            blocks.push_back(register_module("block" + std::to_string(l), block(d, heads)));
        ln_f = register_module("ln_f", torch::nn::LayerNorm(torch::nn::LayerNormOptions({d})));
        head = register_module("head", torch::nn::Linear(d, vocab));
        torch::NoGradGuard no_grad;
        for (auto& p : named_parameters()) {
            if (p.key().find("ln") != std::string::npos) continue; // layer norms: ones and zeros
            if (p.value().dim() == 1) p.value().zero_();
            else p.value().normal_(0, 0.02);
        }
    }
    /// tokens: int64 [B, T], the positions after those in `cache` -> final hidden states [B, T, d] (after the
    /// last layer norm, before the LM head); appends the tokens' keys and values to the cache.
    torch::Tensor hidden(const torch::Tensor& tokens, kv_cache& cache) {
        const std::int64_t T = tokens.size(1), past = cache.length();
        cache.k.resize(blocks.size());
        cache.v.resize(blocks.size());
        torch::Tensor x = tok(tokens) + pos(torch::arange(past, past + T, torch::kLong));
        for (std::size_t l = 0; l < blocks.size(); ++l) x = blocks[l](x, cache.k[l], cache.v[l]);
        return ln_f(x);
    }
    torch::nn::Embedding tok{nullptr}, pos{nullptr};
    std::vector<block> blocks;
    torch::nn::LayerNorm ln_f{nullptr};
    torch::nn::Linear head{nullptr};
};
TORCH_MODULE(gpt);

void copy_parameters(gpt& to, const gpt& from) {
    torch::NoGradGuard no_grad;
    const auto src = from->parameters();
    auto dst = to->parameters();
    for (std::size_t k = 0; k < src.size(); ++k) dst[k].copy_(src[k]);
}

/// Log-probs and entropies of `tokens` [B, T] (int64) at `temperature` from the final hidden states h [B, T, d]
/// through the LM head, as an autograd function: grpo's fused head and log-softmax, which computes the logits a
/// chunk of rows at a time and never holds [B, T, V] of them (nor a log-softmax tensor); its backward returns
/// dLoss/dh, dLoss/dweight and dLoss/dbias. Masked positions (mask [B, T], 0) are not read and give 0.
std::pair<torch::Tensor, torch::Tensor> token_logprobs(const torch::Tensor& h, torch::nn::Linear& head,
                                                       const torch::Tensor& tokens, const torch::Tensor& mask,
                                                       double temperature, grpo::logprob_stats* stats = nullptr) {
    grpo::libtorch::hidden_logprob_options lo;
    lo.temperature = temperature;
    lo.mask = mask;
    lo.stats = stats;
    return grpo::libtorch::logprobs_from_hidden(h, head->weight, head->bias, tokens, lo);
}

/// The hidden states that predict the completions' tokens, [P * G, max_new, d], from prompts [P, prompt_len] and
/// completions [P * G, max_new] (prompt-major groups of G): each prompt is run once and its keys and values are
/// shared by its group. Position prompt_len - 1 predicts the first completion token, completion token k the next.
torch::Tensor completion_hidden(gpt& model, const torch::Tensor& prompts, std::int64_t group_size,
                                const torch::Tensor& completions) {
    kv_cache cache;
    const torch::Tensor last = model->hidden(prompts, cache).select(1, prompt_len - 1); // [P, d]
    cache.repeat_rows(group_size);
    const torch::Tensor rest = model->hidden(completions.slice(1, 0, max_new - 1), cache); // [P * G, max_new - 1, d]
    return torch::cat({last.repeat_interleave(group_size, 0).unsqueeze(1), rest}, 1);
}

/// Autoregressive decoding of up to max_new tokens, G = group_size completions of each prompt [P, prompt_len],
/// with a KV cache (the prompt is run once per group): sampled at `temperature` (with `g`), or greedy when
/// temperature is 0. Fills `out` (tokens, their log-probs at the temperature, lengths, truncated = no EOS).
void decode(gpt& model, const torch::Tensor& prompts, grpo::index_t group_size, double temperature, rng* g,
            grpo::rollout_buffer<float>& out) {
    torch::NoGradGuard no_grad;
    const std::int64_t rows = prompts.size(0) * group_size;
    out.reset(prompts.size(0), group_size, max_new);
    auto tokens = out.tokens();
    auto old_logp = out.old_logp();
    auto lengths = out.lengths();
    auto truncated = out.truncated();
    std::vector<char> done(static_cast<std::size_t>(rows), 0);
    kv_cache cache;
    torch::Tensor h = model->hidden(prompts, cache).select(1, prompt_len - 1).repeat_interleave(group_size, 0);
    cache.repeat_rows(group_size);
    torch::Tensor previous; // int64 [rows, 1]: the tokens just chosen (padding for finished rows)
    for (std::int64_t t = 0; t < max_new; ++t) {
        if (t > 0) h = model->hidden(previous, cache).select(1, 0);
        const torch::Tensor logits = model->head(h); // [rows, V]
        const torch::Tensor logp = torch::log_softmax(temperature > 0 ? logits / temperature : logits, -1).contiguous();
        const auto lp = logp.accessor<float, 2>();
        previous = torch::full({rows, 1}, pad_id, torch::kLong);
        auto nx = previous.accessor<std::int64_t, 2>();
        for (std::int64_t i = 0; i < rows; ++i) {
            if (done[static_cast<std::size_t>(i)]) continue;
            std::int64_t v = 0;
            if (temperature > 0) { // inverse CDF of the softmax
                double u = g->uniform(), c = 0;
                for (v = 0; v < vocab - 1; ++v)
                    if ((c += std::exp(static_cast<double>(lp[i][v]))) > u) break;
            } else {
                for (std::int64_t w = 1; w < vocab; ++w)
                    if (lp[i][w] > lp[i][v]) v = w;
            }
            nx[i][0] = v;
            tokens(i, t) = static_cast<grpo::token_id>(v);
            old_logp(i, t) = lp[i][v];
            lengths[i] = t + 1;
            if (v == eos_id) done[static_cast<std::size_t>(i)] = 1;
        }
    }
    for (std::int64_t i = 0; i < rows; ++i) truncated[i] = done[static_cast<std::size_t>(i)] ? 0 : 1;
}

/// The completions of a rollout as int64 [rows, max_new], padding (-1 in grpo's buffer) as pad_id.
torch::Tensor completion_tensor(const grpo::rollout_batch<float>& rb) {
    torch::Tensor t = torch::full({rb.rows(), max_new}, pad_id, torch::kLong);
    auto acc = t.accessor<std::int64_t, 2>();
    for (grpo::index_t i = 0; i < rb.rows(); ++i)
        for (grpo::index_t k = 0; k < rb.lengths[i]; ++k) acc[i][k] = rb.tokens(i, k);
    return t;
}

/// Greedy exact-match accuracy on `probs`.
double accuracy(gpt& model, const std::vector<problem>& probs) {
    grpo::rollout_buffer<float> buf;
    decode(model, prompt_tensor(probs), 1, 0.0, nullptr, buf);
    const grpo::rollout_batch<float> rb = buf.view();
    int correct = 0;
    for (grpo::index_t i = 0; i < rb.rows(); ++i)
        correct += is_correct(probs[static_cast<std::size_t>(i)], rb.completion(i));
    return probs.empty() ? 0.0 : double(correct) / double(probs.size());
}

/// Supervised warm start: teacher-forced cross-entropy on the answers (the same log-prob function as GRPO),
/// stopped as soon as greedy accuracy on a fixed sample of training problems reaches o.warmup_target, so that
/// GRPO starts from a model that is right sometimes, whatever the seed. Returns the steps taken.
int warm_start(gpt& model, const std::vector<problem>& train, const options& o, rng& g) {
    torch::optim::Adam opt(model->parameters(), torch::optim::AdamOptions(o.warmup_lr));
    std::vector<problem> batch(static_cast<std::size_t>(o.warmup_batch)), sample(256);
    for (auto& p : sample) p = train[static_cast<std::size_t>(g.below(static_cast<int>(train.size())))];
    const std::int64_t B = o.warmup_batch;
    int s = 1;
    for (; s <= o.warmup_steps; ++s) {
        for (auto& p : batch) p = train[static_cast<std::size_t>(g.below(static_cast<int>(train.size())))];
        torch::Tensor target = torch::full({B, max_new}, pad_id, torch::kLong);
        torch::Tensor mask = torch::zeros({B, max_new});
        auto ta = target.accessor<std::int64_t, 2>();
        auto ma = mask.accessor<float, 2>();
        for (std::int64_t i = 0; i < B; ++i) {
            const std::vector<std::int64_t> want = answer(batch[static_cast<std::size_t>(i)]);
            for (std::size_t k = 0; k < want.size(); ++k) {
                ta[i][static_cast<std::int64_t>(k)] = want[k];
                ma[i][static_cast<std::int64_t>(k)] = 1.0f;
            }
        }
        const torch::Tensor h = completion_hidden(model, prompt_tensor(batch), 1, target);
        const torch::Tensor logp = token_logprobs(h, model->head, target, mask, 1.0).first;
        const torch::Tensor loss = -(logp * mask).sum() / mask.sum();
        opt.zero_grad();
        loss.backward();
        opt.step();
        if (s % o.warmup_check_every == 0) {
            const double acc = accuracy(model, sample);
            if (!o.quiet)
                std::printf("warm-up %4d  cross-entropy %.4f  train-sample accuracy %.3f\n", s, loss.item<double>(),
                            acc);
            if (acc >= o.warmup_target) break;
        }
    }
    return std::min(s, o.warmup_steps);
}

void print_flags(std::FILE* out) {
    const options d;
    std::fprintf(out,
                 "usage: grpo_libtorch_gpt [flags]\n"
                 "Warm-starts a tiny transformer LM on two-digit addition, trains it with GRPO and prints held-out\n"
                 "accuracy before -> after GRPO.\n"
                 "  --seed N           random seed of data, initialization and sampling (default %llu)\n"
                 "  --warmup-target A  stop the warm start at this greedy accuracy on training problems (default %g)\n"
                 "  --warmup-steps N   at most this many supervised warm-start steps (default %d)\n"
                 "  --steps N          GRPO steps (default %d)\n"
                 "  --group-size G     completions sampled per prompt (default %d)\n"
                 "  --prompts N        prompts per GRPO step (default %d)\n"
                 "  --mu N             policy updates per rollout, GRPO's mu (default %d)\n"
                 "  --lr LR            Adam learning rate of GRPO (default %g)\n"
                 "  --temperature T    sampling temperature (default %g)\n"
                 "  --beta B           KL coefficient to the reference model, k3 (default %g)\n"
                 "  --ref-every K      refresh the reference model every K steps, 0 = never (default %d)\n"
                 "  --entropy-coef C   entropy bonus coefficient (default %g)\n"
                 "  --partial-credit C reward of a wrong answer: C times the fraction of right tokens (default %g)\n"
                 "  --warmup-lr LR     Adam learning rate of the warm start (default %g)\n"
                 "  --warmup-batch N   problems per warm-start step (default %d)\n"
                 "  --d-model D        model width, a multiple of the 4 heads (default %d)\n"
                 "  --layers L         transformer blocks (default %d)\n"
                 "  --eval-every N     held-out accuracy every N GRPO steps, 0 = never (default %d)\n"
                 "  --threads N        LibTorch CPU threads (default %d)\n"
                 "  --quiet            no per-step lines, only the final result (default off)\n"
                 "  --logdir DIR       write each step's metrics to DIR: metrics.jsonl, metrics.csv, TensorBoard\n"
                 "                     events (default none)\n"
                 "  --help             this list\n",
                 static_cast<unsigned long long>(d.seed), d.warmup_target, d.warmup_steps, d.steps, d.group_size,
                 d.prompts_per_step, d.inner_updates, d.lr, d.temperature, d.beta, d.reference_refresh_every,
                 d.entropy_coef, d.partial_credit, d.warmup_lr, d.warmup_batch, d.d_model, d.layers, d.eval_every,
                 d.threads);
}

[[noreturn]] void usage(const std::string& msg) {
    std::fprintf(stderr, "grpo_libtorch_gpt: %s\n", msg.c_str());
    print_flags(stderr);
    std::exit(2);
}

} // namespace

int main(int argc, char** argv) {
    options o;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto text = [&] {
            if (i + 1 >= argc) usage(a + " needs a value");
            return argv[++i];
        };
        auto value = [&](long long lo) {
            char* end = nullptr;
            const long long v = std::strtoll(text(), &end, 10);
            if (*end != '\0' || v < lo) usage("bad value for " + a);
            return v;
        };
        auto real = [&] {
            char* end = nullptr;
            const double v = std::strtod(text(), &end);
            if (*end != '\0' || !(v >= 0) || !std::isfinite(v)) usage("bad value for " + a);
            return v;
        };
        if (a == "--seed") o.seed = static_cast<std::uint64_t>(value(0));
        else if (a == "--warmup-target") o.warmup_target = real();
        else if (a == "--warmup-steps") o.warmup_steps = static_cast<int>(value(0));
        else if (a == "--steps") o.steps = static_cast<int>(value(0));
        else if (a == "--mu") o.inner_updates = static_cast<int>(value(1));
        else if (a == "--group-size") o.group_size = static_cast<int>(value(2));
        else if (a == "--prompts") o.prompts_per_step = static_cast<int>(value(1));
        else if (a == "--lr") o.lr = real();
        else if (a == "--temperature") o.temperature = real();
        else if (a == "--beta") o.beta = real();
        else if (a == "--ref-every") o.reference_refresh_every = static_cast<int>(value(0));
        else if (a == "--entropy-coef") o.entropy_coef = real();
        else if (a == "--partial-credit") o.partial_credit = real();
        else if (a == "--warmup-lr") o.warmup_lr = real();
        else if (a == "--warmup-batch") o.warmup_batch = static_cast<int>(value(1));
        else if (a == "--d-model") o.d_model = static_cast<int>(value(4));
        else if (a == "--layers") o.layers = static_cast<int>(value(1));
        else if (a == "--eval-every") o.eval_every = static_cast<int>(value(0));
        else if (a == "--threads") o.threads = static_cast<int>(value(1));
        else if (a == "--quiet") o.quiet = true;
        else if (a == "--logdir") o.logdir = text();
        else if (a == "--help" || a == "-h") {
            print_flags(stdout);
            return 0;
        } else usage("unknown option " + a);
    }
    if (!(o.temperature > 0)) usage("--temperature must be > 0");
    if (o.d_model % o.heads != 0) usage("--d-model must be a multiple of the heads");
    std::printf("grpo libtorch gpt: 2-digit addition, transformer LM (%d layers, d_model %d, %d heads), warm start "
                "to %.2f, G=%d, %d prompts/step, %d GRPO steps, seed %llu (LibTorch %s)\n",
                o.layers, o.d_model, o.heads, o.warmup_target, o.group_size, o.prompts_per_step, o.steps,
                static_cast<unsigned long long>(o.seed), TORCH_VERSION);
    std::fflush(stdout);
    const auto start = std::chrono::steady_clock::now();
    torch::set_num_threads(o.threads);
    torch::manual_seed(o.seed);

    rng g(o.seed);
    std::vector<problem> train, eval;
    for (int a = 10; a < 100; ++a)
        for (int b = 10; b < 100; ++b) (held_out(a, b) ? eval : train).push_back({a, b});
    gpt policy(o.d_model, o.heads, o.layers), reference(o.d_model, o.heads, o.layers);

    // Each GRPO step's metrics under TRL's names (grpo::step_metrics filled from this loop) to --logdir.
    grpo::metrics_logger metrics;
    if (!o.logdir.empty()) {
        try {
            grpo::log_to_directory(metrics, o.logdir);
        } catch (const grpo::error& e) {
            std::fprintf(stderr, "grpo_libtorch_gpt: %s\n", e.what());
            return 1;
        }
    }

    const int warm = warm_start(policy, train, o, g);
    const double before = accuracy(policy, eval);
    metrics.log(0, "eval_accuracy", before);
    if (!o.quiet) std::printf("after %d warm-up steps: held-out %.3f\n", warm, before);
    copy_parameters(reference, policy);

    torch::optim::Adam optimizer(policy->parameters(), torch::optim::AdamOptions(o.lr));
    grpo::loss_config cfg; // TRL defaults: clip 0.2, token-mean; k3 KL penalty when beta > 0
    cfg.beta = o.beta;
    const grpo::index_t G = o.group_size, P = o.prompts_per_step, n = P * G;
    std::vector<problem> batch(static_cast<std::size_t>(P));
    grpo::rollout_buffer<float> buffer;
    grpo::workspace ws;
    for (int s = 1; s <= o.steps; ++s) {
        // The learning rate decays linearly to o.lr / 10 over the run: big steps early, a steady finish.
        const double lr = o.lr * (1.0 - 0.9 * double(s - 1) / double(std::max(1, o.steps - 1)));
        static_cast<torch::optim::AdamOptions&>(optimizer.param_groups()[0].options()).lr(lr);
        for (auto& p : batch) p = train[static_cast<std::size_t>(g.below(static_cast<int>(train.size())))];
        const torch::Tensor prompts = prompt_tensor(batch);

        // 1. G completions per prompt, sampled at the temperature without gradient.
        decode(policy, prompts, G, o.temperature, &g, buffer);
        const grpo::rollout_batch<float> rb = buffer.view();
        rb.validate("grpo_libtorch_gpt");

        // 2. Rewards -> group-relative advantages, written straight into a torch tensor through a view.
        torch::Tensor rewards = torch::empty({n});
        auto rw = rewards.accessor<float, 1>();
        for (grpo::index_t i = 0; i < n; ++i)
            rw[i] = static_cast<float>(
                reward(batch[static_cast<std::size_t>(rb.prompt_of(i))], rb.completion(i), o.partial_credit));
        torch::Tensor advantages = torch::empty({n});
        const grpo::advantage_stats st = grpo::compute_advantages(
            grpo::exec::host{}, grpo::libtorch::vector<const float>(rewards, "rewards"), grpo::groups::contiguous(G),
            grpo::libtorch::vector<float>(advantages, "advantages"), grpo::advantage_config::trl(), ws);

        // 3. Completions, mask (truncated completions masked, DAPO), sampling and reference log-probs.
        const torch::Tensor completions = completion_tensor(rb);
        torch::Tensor mask = torch::empty({n, max_new});
        grpo::completion_mask(rb, grpo::libtorch::matrix<float>(mask, "mask"), /*mask_truncated=*/true);
        const torch::Tensor old_logp = torch::from_blob(buffer.old_logp().data(), {n, max_new}).clone();
        torch::Tensor ref_logp;
        if (o.beta > 0) {
            torch::NoGradGuard no_grad;
            ref_logp = token_logprobs(completion_hidden(reference, prompts, G, completions), reference->head,
                                      completions, mask, o.temperature)
                           .first;
        }

        // 4. mu updates on this rollout (old_logp kept from sampling: the first update has ratio 1, the next ones
        //    are clipped): grpo's log-probs and loss inside torch's graph, minus the entropy bonus.
        grpo::loss_stats ls;
        grpo::logprob_stats lps;
        grpo::step_metrics m;
        for (int k = 0; k < o.inner_updates; ++k) {
            const auto [logp, entropy] = token_logprobs(completion_hidden(policy, prompts, G, completions),
                                                        policy->head, completions, mask, o.temperature, &lps);
            grpo::libtorch::loss_extras extras;
            extras.stats = &ls;
            torch::Tensor loss = grpo::libtorch::grpo_loss(logp, old_logp, ref_logp, advantages, mask, cfg, extras);
            if (o.entropy_coef > 0) loss = loss - o.entropy_coef * (entropy * mask).sum() / mask.sum().clamp_min(1);
            optimizer.zero_grad();
            loss.backward();
            torch::nn::utils::clip_grad_norm_(policy->parameters(), 1.0);
            optimizer.step();
            grpo::add_loss_metrics(m, ls);
        }
        grpo::finish_loss_metrics(m);
        if (o.reference_refresh_every > 0 && s % o.reference_refresh_every == 0) {
            copy_parameters(reference, policy);
            m.reference_refreshed = true;
        }

        m.step = s;
        m.reward_mean = st.reward_mean;
        m.reward_std = st.reward_std;
        grpo::set_advantage_metrics(m, st);
        grpo::set_length_metrics(m, rb);
        m.tokens = mask.sum().item<double>();
        metrics.log(m);
        metrics.log(s, "entropy", lps.entropy_mean()); // TRL's entropy: mean over the log-prob passes' tokens
        // (Greedy decoding draws no random numbers: evaluating does not change the run.)
        const bool evaluate = o.eval_every > 0 && s % o.eval_every == 0 && (!o.quiet || !o.logdir.empty());
        const double held = evaluate ? accuracy(policy, eval) : -1;
        if (evaluate) metrics.log(s, "eval_accuracy", held);
        if (!o.quiet) {
            std::printf("step %4d  reward %5.3f  zero-var %.2f  entropy %.3f  kl %.5f  clip %.4f", s, st.reward_mean,
                        st.zero_variance_fraction, lps.entropy_mean(), m.kl_mean, m.clip_fraction_region);
            if (evaluate) std::printf("  held-out %5.3f", held);
            std::printf("\n");
            std::fflush(stdout);
        }
    }
    const double after = accuracy(policy, eval);
    metrics.log(o.steps, "eval_accuracy", after);
    metrics.flush();
    std::printf("wall time: %.1f s\n", std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    std::printf("held-out accuracy: %.3f -> %.3f\n", before, after);
    return 0;
}
