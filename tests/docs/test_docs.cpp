// SPDX-License-Identifier: MIT
// The documentation's C++ blocks marked "compiled" (README.md, docs/cuda.md, docs/rewards-and-sampling.md,
// docs/fused-logprobs.md, docs/distributed.md, docs/metrics.md),
// word for word: check_docs.py extracts each block to <name>.inc at build time, and each test case below gives
// it the variables it names, includes it, and checks what it computed. (A block's own `#include <grpo/...>` is
// empty there: the header was included above.)
#include <cmath>
#include <cstddef>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include <grpo/grpo.hpp>
#include <grpo/cuda_emulated.hpp>
#include <grpo/distributed.hpp>
#if GRPO_DOCS_WITH_EIGEN
#include <grpo/logprobs_hidden.hpp>
#endif

#include "catch.hpp"
#include "dist/thread_communicator.hpp"

namespace {

struct Prompt {
    std::string question;
    std::optional<std::string> answer;
};

// docs/rewards-and-sampling.md: the sampler a host implements (declared, as the page shows it).
#include "rewards-sampler.inc"

// A small rollout: completions of up to 48 tokens, one character per token.
struct tiny_rollout {
    grpo::rollout_buffer<float> buf;
    tiny_rollout(const std::vector<std::string>& texts, grpo::index_t G) {
        buf.reset(static_cast<grpo::index_t>(texts.size()) / G, G, 48);
        for (grpo::index_t i = 0; i < buf.rows(); ++i) {
            const std::string& s = texts[static_cast<std::size_t>(i)];
            for (grpo::index_t t = 0; t < buf.max_tokens(); ++t) {
                buf.tokens()(i, t) = t < static_cast<grpo::index_t>(s.size()) ? s[static_cast<std::size_t>(t)] : 0;
                buf.old_logp()(i, t) = -1.0f;
            }
            buf.lengths()[i] = static_cast<std::int64_t>(s.size());
            buf.truncated()[i] = 0;
        }
    }
};

} // namespace

TEST_CASE("README: GRPO in 20 lines", "[docs]") {
    const int B = 4, G = 2, T = 3;
    const std::vector<float> rewards = {1, 0, 0.5f, 0.5f};
    const std::vector<float> logp = {-0.5f, -1, -1.5f, -0.7f, -0.2f, -2, -1, -1, -1, -0.3f, -0.3f, -0.3f};
    const std::vector<float> old = {-0.6f, -1, -1.4f, -0.7f, -0.3f, -2, -1, -1, -1, -0.3f, -0.3f, -0.3f};
    const std::vector<float> ref = {-0.5f, -1, -1.5f, -0.7f, -0.2f, -2, -1, -1, -1, -0.3f, -0.3f, -0.2f};
    const std::vector<float> mask = {1, 1, 0, 1, 1, 1, 1, 0, 0, 1, 1, 1};
    std::vector<float> grad(static_cast<std::size_t>(B) * T, -7.0f);
    const float *logp_ptr = logp.data(), *old_ptr = old.data(), *ref_ptr = ref.data(), *mask_ptr = mask.data();
    float* grad_ptr = grad.data();
    {
#include "readme-in-20-lines.inc"
        CHECK(adv[0] > 0);
        CHECK(adv[1] < 0);
        CHECK(adv[2] == 0); // a zero-variance group
        CHECK(std::isfinite(st.loss));
        CHECK(st.loss != 0);
    }
    for (int k = 0; k < B * T; ++k) {
        if (mask[static_cast<std::size_t>(k)] == 0) CHECK(grad[static_cast<std::size_t>(k)] == 0.0f);
    }
    CHECK(grad[0] < 0); // a positive advantage: raising logp lowers the loss
}

TEST_CASE("docs/cuda.md: the emulator takes the CUDA calls", "[docs]") {
    const grpo::index_t rows = 2, cols = 3;
    const std::vector<float> logp = {-0.5f, -1, -1.5f, -0.7f, -0.2f, -2}, adv = {1, -1}, mask = {1, 1, 1, 1, 1, 0};
    std::vector<float> grad(6, -7.0f), host_grad(6, -7.0f);
    using dview = grpo::matrix_view<const float, grpo::device_space>;
    grpo::loss_inputs<float, grpo::device_space> in;
    in.logp = dview(logp.data(), rows, cols);
    in.advantages =
        grpo::broadcast_to_tokens(grpo::vector_view<const float, grpo::device_space>(adv.data(), rows), cols);
    in.mask = dview(mask.data(), rows, cols);
    grpo::loss_outputs<float, grpo::device_space> out;
    out.grad_logp = grpo::matrix_view<float, grpo::device_space>(grad.data(), rows, cols);
    const grpo::loss_config cfg = grpo::loss_config::dapo();
    {
#include "cuda-emulated.inc"
        grpo::loss_inputs<float> hin;
        hin.logp = {logp.data(), rows, cols};
        hin.advantages = grpo::broadcast_to_tokens(grpo::vector_view<const float>(adv.data(), rows), cols);
        hin.mask = {mask.data(), rows, cols};
        grpo::loss_outputs<float> hout;
        hout.grad_logp = {host_grad.data(), rows, cols};
        const grpo::loss_stats hst = grpo::loss_and_grad(grpo::exec::host{}, hin, hout, cfg);
        CHECK(st.loss == Approx(hst.loss).epsilon(1e-6));
    }
    for (std::size_t k = 0; k < grad.size(); ++k) CHECK(grad[k] == Approx(host_grad[k]).epsilon(1e-6));
    CHECK(grad[5] == 0.0f);
}

TEST_CASE("docs/rewards-and-sampling.md: outcome rewards and group ids", "[docs]") {
    const grpo::index_t G = 2;
    const std::vector<Prompt> prompt_list = {{"1+1", "2"}, {"2+2", "4"}};
    const Prompt* prompts = prompt_list.data();
    const tiny_rollout ro({"<think>x</think><answer>\\boxed{2}</answer>", "\\boxed{3}", "\\boxed{4}", "\\boxed{4}"}, G);
    const grpo::rollout_batch<float> rollout = ro.buf.view();
    auto decode = [](const grpo::completion_view& c) {
        std::string s;
        for (grpo::index_t t = 0; t < c.length(); ++t) s += static_cast<char>(c.tokens[t]);
        return s;
    };
    auto gold = [](const Prompt& p) { return p.answer; };
    std::vector<double> score_data(12, -7.0); // [4 completions, 3 functions]
    std::vector<float> adv_data(4, -7.0f), reward_data(4, -7.0f);
    const grpo::matrix_view<double> scores(score_data.data(), 4, 3);
    const grpo::vector_view<float> advantages(adv_data.data(), 4), rewards(reward_data.data(), 4);
    {
#include "rewards-outcome.inc"
    } CHECK(score_data[0] == 1.0); // accuracy
    CHECK(score_data[1] == 1.0);   // format
    CHECK(score_data[3] == 0.0);   // wrong answer
    CHECK(reward_data[0] == Approx(1.2));
    CHECK(adv_data[0] > 0);
    CHECK(adv_data[1] < 0);
    CHECK(adv_data[2] == 0.0f);

    const std::vector<std::string> uids = {"b", "a", "b", "a"};
    const std::vector<float> reward_values = {1, 2, 3, 5};
    const grpo::vector_view<const float> group_rewards(reward_values.data(), 4);
    {
        const grpo::vector_view<const float> rewards = group_rewards;
#include "rewards-group-index.inc"
        CHECK(gi.num_groups() == 2);
    }
    CHECK(adv_data[0] < 0); // group "b" = rows 0 and 2: 1 < 3
    CHECK(adv_data[2] > 0);
    CHECK(adv_data[1] < 0); // group "a" = rows 1 and 3: 2 < 5
    CHECK(adv_data[3] > 0);
}

// The variables docs/fused-logprobs.md's blocks name: M = 3 positions of a vocabulary of V = 5 (row stride 6), the
// last position padding, and the upstream gradients of a loss.
struct fused_logprobs_buffers {
    grpo::index_t M = 3, V = 5, H = 4, row_stride = 6;
    std::vector<float> logits = {1, 2, 3, 4, 5, -1, 0, 0, 0, 0, 9, -1, 7, 7, 7, 7, 7, -1};
    std::vector<float> pristine = logits;
    std::vector<std::int64_t> ids = {4, 0, 2};
    std::vector<float> mask = {1, 1, 0}, logp = std::vector<float>(3, -7.0f), entropy = logp;
    std::vector<double> lse = std::vector<double>(3, -7.0);
    std::vector<float> grad_logp = {0.5f, -1.0f, 0.0f}, grad_entropy = {-0.01f, -0.01f, 0.0f};
    float *logits_ptr = logits.data(), *mask_ptr = mask.data(), *logp_ptr = logp.data(), *entropy_ptr = entropy.data(),
          *grad_logp_ptr = grad_logp.data(), *grad_entropy_ptr = grad_entropy.data();
    const std::int64_t* token_ids_ptr = ids.data();
    double* lse_ptr = lse.data();
};

TEST_CASE("docs/fused-logprobs.md: log-probs from logits, backward in place", "[docs]") {
    fused_logprobs_buffers b;
    auto& [M, V, H, row_stride, logits, pristine, ids, mask, logp, entropy, lse, grad_logp, grad_entropy, logits_ptr,
           mask_ptr, logp_ptr, entropy_ptr, grad_logp_ptr, grad_entropy_ptr, token_ids_ptr, lse_ptr] = b;
    (void)H;
    grpo::thread_pool pool(2);
    grpo::workspace ws;
    {
#include "fused-logits.inc"
        CHECK(st.rows == 2);
    }
    // Row 0 at temperature 0.7: logp of the largest logit; the padding row is neither read nor differentiated.
    double s = 0;
    for (int v = 0; v < 5; ++v) s += std::exp((pristine[static_cast<std::size_t>(v)] - 5.0) / 0.7);
    CHECK(logp[0] == Approx(-std::log(s)).epsilon(1e-6));
    CHECK(logp[2] == 0.0f);
    for (int v = 0; v < 5; ++v) CHECK(logits[static_cast<std::size_t>(12 + v)] == 0.0f); // masked: gradient 0
    CHECK(logits[5] == -1.0f);                                                           // the row padding
    CHECK(logits[4] > 0.0f); // row 0 (grad_logp 0.5 > 0): d loss / d logit of the sampled token
}

#if GRPO_DOCS_WITH_EIGEN
TEST_CASE("docs/fused-logprobs.md: log-probs from hidden states", "[docs]") {
    fused_logprobs_buffers b;
    const grpo::index_t M = b.M, V = b.V, H = b.H;
    std::vector<float> hidden = {0.5f, -1, 0.25f, 2, 1, 0, -0.5f, 0.75f, 3, 3, 3, 3};
    std::vector<float> weight(static_cast<std::size_t>(V * H));
    for (std::size_t k = 0; k < weight.size(); ++k) weight[k] = 0.1f * static_cast<float>(k % 7) - 0.3f;
    std::vector<float> grad_hidden(hidden.size(), -7.0f), grad_weight(weight.size(), 0.0f);
    const float *hidden_ptr = hidden.data(), *lm_head_weight_ptr = weight.data(), *mask_ptr = b.mask_ptr;
    float *grad_hidden_ptr = grad_hidden.data(), *grad_weight_ptr = grad_weight.data();
    const std::int64_t* token_ids_ptr = b.token_ids_ptr;
    grpo::logprob_outputs<float> out;
    out.logp = {b.logp_ptr, M};
    out.entropy = {b.entropy_ptr, M};
    out.lse = {b.lse_ptr, M};
    grpo::logprob_grad_inputs<float> g;
    g.lse = {b.lse_ptr, M};
    g.grad_logp = {b.grad_logp_ptr, M};
    g.entropy = {b.entropy_ptr, M};
    g.grad_entropy = {b.grad_entropy_ptr, M};
    grpo::thread_pool pool(2);
    grpo::workspace ws;
    {
#include "fused-hidden.inc"
        CHECK(st.rows == 2);
    }
    // Against the logits form on the logits the head gives.
    std::vector<float> logits(static_cast<std::size_t>(M * V));
    for (grpo::index_t i = 0; i < M; ++i)
        for (grpo::index_t v = 0; v < V; ++v) {
            float z = 0;
            for (grpo::index_t k = 0; k < H; ++k)
                z += hidden[static_cast<std::size_t>(i * H + k)] * weight[static_cast<std::size_t>(v * H + k)];
            logits[static_cast<std::size_t>(i * V + v)] = z;
        }
    grpo::logits_inputs<float> lin;
    lin.logits = {logits.data(), M, V};
    lin.tokens = {token_ids_ptr, M};
    lin.mask = {mask_ptr, M};
    std::vector<float> logp(3);
    grpo::logprob_outputs<float> lout;
    lout.logp = {logp.data(), M};
    grpo::logprob_config lcfg;
    grpo::logprobs_from_logits(grpo::exec::host{}, lin, lout, lcfg);
    for (std::size_t i = 0; i < 3; ++i) CHECK(b.logp[i] == Approx(logp[i]).epsilon(1e-5));
    for (std::size_t k = 8; k < 12; ++k) CHECK(grad_hidden[k] == 0.0f); // the padding row
    CHECK(grad_hidden[0] != -7.0f);
}
#endif

TEST_CASE("docs/distributed.md: a data-parallel step", "[docs]") {
    // Two ranks (threads) of one batch: 2 prompts x G = 2 completions, 3 tokens; rank 0 holds 1 row, rank 1 three,
    // so the first group straddles the ranks. The one-process call on the whole batch is the reference.
    const grpo::index_t G = 2, T = 3, total = 4;
    const std::vector<float> all_rewards = {1, 0, 0.5f, 0.25f},
                             all_logp = {-1, -2, -0.5f, -1.5f, -0.2f, -3, -0.7f, -0.1f, -2, -1, -1, -1};
    const std::vector<float> all_mask = {1, 1, 0, 1, 1, 1, 1, 0, 0, 1, 1, 1};
    std::vector<float> ref_adv(4), ref_grad(12);
    grpo::compute_advantages(grpo::exec::host{}, grpo::vector_view<const float>(all_rewards),
                             grpo::groups::contiguous(G), grpo::vector_view<float>(ref_adv));
    grpo::loss_inputs<float> whole;
    whole.logp = {all_logp.data(), total, T};
    whole.old_logp = {all_logp.data(), total, T};
    whole.advantages = grpo::broadcast_to_tokens(grpo::vector_view<const float>(ref_adv), T);
    whole.mask = {all_mask.data(), total, T};
    const grpo::loss_stats ref = grpo::loss_and_grad(
        grpo::exec::host{}, whole, grpo::loss_outputs<float>{{ref_grad.data(), total, T}, {}}, grpo::loss_config{});
    std::vector<double> loss(2), summed(2);
    std::vector<std::vector<float>> grads(2);
    dist_cases::thread_group ranks(2);
    ranks.run([&](const dist_cases::thread_group::communicator& comm) {
        const grpo::index_t first = comm.rank() == 0 ? 0 : 1, rows = comm.rank() == 0 ? 1 : 3;
        const auto slice = [&](const std::vector<float>& v, grpo::index_t width) {
            return std::vector<float>(v.begin() + first * width, v.begin() + (first + rows) * width);
        };
        const std::vector<float> rewards = slice(all_rewards, 1), logp = slice(all_logp, T),
                                 old_logp = slice(all_logp, T), mask = slice(all_mask, T);
        std::vector<float> advantages(static_cast<std::size_t>(rows)), grad_logp(static_cast<std::size_t>(rows * T));
        std::vector<double> param_grads = {double(comm.rank()) + 0.5};
#include "dist-step.inc"
        loss[comm.rank()] = stats.loss;
        summed[comm.rank()] = param_grads[0];
        grads[comm.rank()] = grad_logp;
    });
    CHECK(loss[0] == ref.loss);
    CHECK(loss[1] == ref.loss);
    std::vector<float> joined = grads[0];
    joined.insert(joined.end(), grads[1].begin(), grads[1].end());
    CHECK(joined == ref_grad);
    CHECK(summed == std::vector<double>{2.0, 2.0});
}

// docs/metrics.md: a trainer on a one-token task (token 1 scores 1) logs 20 steps to a directory, the host adds a
// held-out figure every 10.
TEST_CASE("docs/metrics.md: the logger block writes every step with the host's evaluation", "[docs]") {
    struct one_token_sampler : grpo::group_sampler<int, float> {
        grpo::index_t max_tokens() const override { return 1; }
        void sample(const int*, grpo::index_t n, grpo::index_t g, grpo::rollout_buffer<float>& out) override {
            for (grpo::index_t i = 0; i < n * g; ++i) {
                out.tokens()(i, 0) = static_cast<grpo::token_id>(i % 2);
                out.old_logp()(i, 0) = -0.5f;
                out.lengths()[i] = 1;
                out.truncated()[i] = 0;
            }
        }
    } sampler;
    grpo::policy_callbacks<float> cb;
    cb.current_logp = [](const grpo::rollout_batch<float>& b, grpo::matrix_view<float> out) {
        for (grpo::index_t i = 0; i < b.rows(); ++i) out(i, 0) = -0.5f;
    };
    cb.apply_gradient = [](const grpo::rollout_batch<float>&, grpo::matrix_view<const float>) {};
    grpo::train_config cfg;
    cfg.group_size = 4;
    grpo::trainer<int, float> trainer(sampler, cb, cfg);
    grpo::outcome_rewards<int> rewards;
    rewards.add("one", [](const int&, const grpo::completion_view& c) { return c.tokens[0] == 1 ? 1.0 : 0.0; });
    trainer.set_outcome_rewards(rewards);
    const int prompt_values[2] = {0, 1};
    const int* prompts = prompt_values;
    const grpo::index_t num_prompts = 2;
    const int steps = 20;
    int evaluations = 0;
    const auto evaluate = [&] { return 0.25 * ++evaluations; };
    const std::string logdir = (std::filesystem::temp_directory_path() / "grpo_docs_metrics_run").string();
    std::filesystem::remove_all(logdir);
    {
#include "metrics-logger.inc"
    } std::ifstream in(logdir + "/metrics.jsonl");
    std::vector<std::string> lines;
    for (std::string l; std::getline(in, l);) lines.push_back(l);
    REQUIRE(lines.size() == 20);
    CHECK(lines[0].rfind("{\"step\": 1, ", 0) == 0);
    CHECK(lines[9].find("\"rewards/one/mean\": 0.5") != std::string::npos);
    CHECK(lines[9].find("\"eval_accuracy\": 0.25}") != std::string::npos);
    CHECK(lines[19].find("\"eval_accuracy\": 0.5}") != std::string::npos);
    CHECK(std::filesystem::exists(logdir + "/metrics.csv"));
    std::filesystem::remove_all(logdir);
}
