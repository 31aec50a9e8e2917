// SPDX-License-Identifier: MIT
// The documentation's C++ blocks marked "compiled" (README.md, docs/cuda.md, docs/rewards-and-sampling.md),
// word for word: check_docs.py extracts each block to <name>.inc at build time, and each test case below gives
// it the variables it names, includes it, and checks what it computed. (A block's own `#include <grpo/...>` is
// empty there: the header was included above.)
#include <cmath>
#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include <grpo/grpo.hpp>
#include <grpo/cuda_emulated.hpp>

#include "catch.hpp"

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
