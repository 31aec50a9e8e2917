// SPDX-License-Identifier: MIT
// grpo/adapters/torch.hpp: views of torch::Tensor (strides, expand's stride 0, storage offset, transposes),
// the errors, and the autograd function: its loss and gradient equal torch autograd of the same loss written
// in torch ops, in double, for every aggregation mode and the clip/KL variants.
#include <grpo/adapters/torch.hpp>

#include <cmath>
#include <string>

#include "catch.hpp"

namespace {

using grpo::aggregation;
using grpo::loss_config;
namespace lt = grpo::libtorch;

const auto f64 = torch::TensorOptions().dtype(torch::kFloat64);

/// The GRPO loss written as plain torch ops (the TRL/verl formulas), for autograd to differentiate.
torch::Tensor reference_loss(const torch::Tensor& logp, const torch::Tensor& old, const torch::Tensor& ref,
                             const torch::Tensor& adv, const torch::Tensor& mask, const loss_config& c) {
    const torch::Tensor a = adv.dim() == 1 ? adv.unsqueeze(1).expand_as(logp) : adv;
    const torch::Tensor ratio = torch::exp(logp - old);
    torch::Tensor unclipped = ratio;
    if (c.delta > 0) unclipped = torch::clamp_max(ratio, c.delta);
    const torch::Tensor clipped = torch::clamp(ratio, 1 - c.epsilon_low, 1 + c.epsilon_high);
    torch::Tensor pg = -torch::min(unclipped * a, clipped * a);
    if (c.dual_clip_c > 0) pg = torch::where(a < 0, torch::min(pg, -c.dual_clip_c * a), pg);
    torch::Tensor per_token = pg;
    if (c.beta != 0) {
        const torch::Tensor d = ref - logp;
        per_token = per_token + c.beta * (torch::exp(d) - d - 1);
    }
    const torch::Tensor m = mask;
    const torch::Tensor row_sum = (per_token * m).sum(1);
    const torch::Tensor row_tokens = m.sum(1);
    const double S = static_cast<double>(logp.size(0));
    switch (c.agg) {
    case aggregation::token_mean: return row_sum.sum() / m.sum();
    case aggregation::seq_mean_token_mean:
        return torch::where(row_tokens > 0, row_sum / row_tokens.clamp_min(1), torch::zeros_like(row_sum)).sum() / S;
    case aggregation::seq_mean_token_sum: return row_sum.sum() / S;
    case aggregation::token_sum_over_constant: return row_sum.sum() / (S * c.max_completion_length);
    case aggregation::token_sum: return row_sum.sum();
    }
    return {};
}

struct batch {
    torch::Tensor logp, old, ref, adv, mask;
};

batch random_batch(std::int64_t rows, std::int64_t cols, std::uint64_t seed) {
    torch::manual_seed(seed);
    batch b;
    b.logp = -torch::rand({rows, cols}, f64) * 3 - 0.05;
    b.old = b.logp + torch::randn({rows, cols}, f64) * 0.3; // ratios on both sides of the clip range
    b.ref = b.logp + torch::randn({rows, cols}, f64) * 0.2;
    b.adv = torch::randn({rows}, f64);
    b.mask = (torch::rand({rows, cols}, f64) > 0.25).to(torch::kFloat64);
    b.mask.index_put_({1}, 0.0); // an empty row
    return b;
}

void check_against_torch_autograd(const loss_config& cfg, const batch& b) {
    const torch::Tensor x1 = b.logp.clone().requires_grad_(true);
    grpo::loss_stats st;
    lt::loss_extras extras;
    extras.stats = &st;
    const torch::Tensor ours = lt::grpo_loss(x1, b.old, b.ref, b.adv, b.mask, cfg, extras);
    ours.backward();

    const torch::Tensor x2 = b.logp.clone().requires_grad_(true);
    const torch::Tensor theirs = reference_loss(x2, b.old, b.ref, b.adv, b.mask, cfg);
    theirs.backward();

    CHECK(ours.dim() == 0);
    CHECK(ours.scalar_type() == torch::kFloat64);
    CHECK(ours.item<double>() == Approx(theirs.item<double>()).epsilon(1e-12).margin(1e-14));
    CHECK(st.loss == ours.item<double>());
    CHECK(st.token_count == b.mask.sum().item<double>());
    const double max_diff = (x1.grad() - x2.grad()).abs().max().item<double>();
    const double scale = x2.grad().abs().max().item<double>();
    INFO("max |grad_grpo - grad_torch| = " << max_diff << ", max |grad| = " << scale);
    CHECK(max_diff <= 1e-12 * std::max(1.0, scale));
    // Masked positions get exactly zero.
    CHECK((x1.grad() * (1 - b.mask)).abs().max().item<double>() == 0.0);
}

} // namespace

TEST_CASE("libtorch: grpo_loss backward equals torch autograd for every aggregation mode", "[torch]") {
    const batch b = random_batch(6, 9, 7);
    for (aggregation agg : {aggregation::token_mean, aggregation::seq_mean_token_mean, aggregation::seq_mean_token_sum,
                            aggregation::token_sum_over_constant, aggregation::token_sum}) {
        for (double beta : {0.0, 0.04}) {
            loss_config cfg;
            cfg.agg = agg;
            cfg.beta = beta;
            cfg.max_completion_length = 12;
            INFO("aggregation " << static_cast<int>(agg) << ", beta " << beta);
            check_against_torch_autograd(cfg, b);
        }
    }
}

TEST_CASE("libtorch: clip-higher, dual clip and delta match torch autograd", "[torch]") {
    const batch b = random_batch(5, 11, 3);
    loss_config cfg = loss_config::dapo();
    cfg.beta = 0.1;
    check_against_torch_autograd(cfg, b);
    cfg.dual_clip_c = 1.5;
    check_against_torch_autograd(cfg, b);
    cfg.dual_clip_c = 0;
    cfg.delta = 1.1;
    check_against_torch_autograd(cfg, b);
}

TEST_CASE("libtorch: per-token advantages, absent old_logp and a chained graph", "[torch]") {
    batch b = random_batch(4, 5, 11);
    b.adv = torch::randn({4, 5}, f64);
    loss_config cfg;
    check_against_torch_autograd(cfg, b);

    // old_logp absent: ratio 1 with gradient A (the on-policy case), equal to old = logp.detach().
    const torch::Tensor w = torch::randn({4, 5}, f64).requires_grad_(true);
    const torch::Tensor logp = torch::log_softmax(w, 1); // grpo sits inside a larger graph
    const torch::Tensor ours = lt::grpo_loss(logp, torch::Tensor(), torch::Tensor(), b.adv, b.mask, cfg);
    ours.backward();
    const torch::Tensor g_ours = w.grad().clone();
    w.grad().zero_();
    const torch::Tensor logp2 = torch::log_softmax(w, 1);
    reference_loss(logp2, logp2.detach(), logp2.detach(), b.adv, b.mask, cfg).backward();
    CHECK((g_ours - w.grad()).abs().max().item<double>() <= 1e-12);
}

TEST_CASE("libtorch: float32, bfloat16 and bool masks go through the compute dtype", "[torch]") {
    const batch b = random_batch(3, 8, 5);
    loss_config cfg;
    cfg.beta = 0.04;
    const torch::Tensor expected = reference_loss(b.logp, b.old, b.ref, b.adv, b.mask, cfg);

    const torch::Tensor x = b.logp.to(torch::kFloat32).requires_grad_(true);
    const torch::Tensor loss = lt::grpo_loss(x, b.old.to(torch::kFloat32), b.ref, b.adv, b.mask.to(torch::kBool), cfg);
    CHECK(loss.scalar_type() == torch::kFloat32);
    CHECK(loss.item<double>() == Approx(expected.item<double>()).epsilon(1e-5));
    loss.backward();
    CHECK(x.grad().scalar_type() == torch::kFloat32);

    const torch::Tensor h = b.logp.to(torch::kBFloat16).requires_grad_(true);
    const torch::Tensor lh = lt::grpo_loss(h, b.old, b.ref, b.adv, b.mask, cfg);
    CHECK(lh.scalar_type() == torch::kFloat32); // math in fp32
    lh.backward();
    CHECK(h.grad().scalar_type() == torch::kBFloat16);
    CHECK(h.grad().isfinite().all().item<bool>());
}

TEST_CASE("libtorch: views take strides, stride 0 and storage offsets as they are", "[torch]") {
    const torch::Tensor base = torch::arange(0, 60, f64).reshape({6, 10});
    SECTION("contiguous") {
        const auto v = lt::matrix<const double>(base);
        CHECK(v.rows() == 6);
        CHECK(v.cols() == 10);
        CHECK(v(2, 3) == 23.0);
    }
    SECTION("transposed") {
        const torch::Tensor t = base.t();
        const auto v = lt::matrix<const double>(t);
        CHECK(v.rows() == 10);
        CHECK(v.cols() == 6);
        CHECK(v.row_stride() == 1);
        CHECK(v.col_stride() == 10);
        CHECK(v(3, 2) == 23.0);
    }
    SECTION("slice with storage offset and step") {
        const torch::Tensor s = base.slice(0, 1, 5).slice(1, 2, 10, 3); // rows 1..4, cols 2,5,8
        REQUIRE(s.storage_offset() == 12);
        const auto v = lt::matrix<const double>(s);
        CHECK(v.rows() == 4);
        CHECK(v.cols() == 3);
        CHECK(v(0, 0) == 12.0);
        CHECK(v(3, 2) == 48.0);
    }
    SECTION("expand gives stride 0 (read-only)") {
        const torch::Tensor adv = torch::tensor({1.0, -2.0, 3.0}, f64);
        const torch::Tensor e = adv.unsqueeze(1).expand({3, 7});
        const auto v = lt::matrix<const double>(e);
        CHECK(v.col_stride() == 0);
        CHECK(v(1, 6) == -2.0);
        CHECK_THROWS_AS(lt::matrix<double>(e), grpo::error); // a writable view may not alias itself
    }
    SECTION("vectors and writable views") {
        torch::Tensor out = torch::zeros({4, 3}, f64);
        const auto w = lt::matrix<double>(out.t());
        w(2, 1) = 5.0;
        CHECK(out[1][2].item<double>() == 5.0);
        const torch::Tensor len = torch::tensor({3, 1, 0}, torch::kLong);
        const auto l = lt::vector<const std::int64_t>(len);
        CHECK(l.size() == 3);
        CHECK(l[0] == 3);
        const auto col = lt::vector<const double>(base.select(1, 4)); // stride 10
        CHECK(col.stride() == 10);
        CHECK(col[5] == 54.0);
    }
}

namespace {
template <class F>
std::string error_of(F&& f) {
    try {
        f();
    } catch (const grpo::error& e) {
        return e.what();
    }
    return "no error";
}
bool mentions(const std::string& message, std::initializer_list<const char*> fragments) {
    for (const char* f : fragments)
        if (message.find(f) == std::string::npos) {
            UNSCOPED_INFO("message: " << message << "\nmissing: " << f);
            return false;
        }
    return true;
}
} // namespace

TEST_CASE("libtorch: errors name the argument, what was expected and what was found", "[torch]") {
    const batch b = random_batch(3, 4, 1);
    CHECK(
        mentions(error_of([&] { lt::matrix<const float>(b.logp, "logp"); }), {"logp", "torch.Float", "torch.Double"}));
    CHECK(mentions(error_of([&] { lt::matrix<const double>(b.adv, "adv"); }), {"2-D", "1-D"}));
    CHECK(mentions(error_of([&] { lt::vector<const double>(torch::Tensor(), "x"); }), {"undefined"}));
    const torch::Tensor meta = torch::empty({3, 4}, torch::TensorOptions().dtype(torch::kFloat64).device(torch::kMeta));
    CHECK(mentions(error_of([&] { lt::matrix<const double>(meta, "logp"); }), {"CPU tensor", "meta"}));
    CHECK(mentions(error_of([&] { lt::grpo_loss(meta, b.old, b.ref, b.adv, b.mask); }), {"logp"}));
    CHECK(mentions(error_of([&] { lt::grpo_loss(b.logp.to(torch::kLong), b.old, b.ref, b.adv, b.mask); }),
                   {"floating dtype", "torch.Long"}));
    CHECK(mentions(error_of([&] { lt::grpo_loss(b.logp.unsqueeze(0), b.old, b.ref, b.adv, b.mask); }), {"3-D"}));
    CHECK(mentions(error_of([&] { lt::grpo_loss(b.logp, b.old, b.ref, torch::Tensor(), b.mask); }),
                   {"advantages", "undefined"}));
    CHECK(mentions(error_of([&] { lt::grpo_loss(b.logp, b.old.slice(1, 0, 3), b.ref, b.adv, b.mask); }), {"old_logp"}));
    CHECK(mentions(error_of([&] { lt::grpo_loss(b.logp, b.old, b.ref, b.adv.slice(0, 0, 2), b.mask); }),
                   {"advantages", "[3] (one per completion) or [3, 4] (per token)", "got shape [2]"}));
    // A transposed logp [tokens, completions] with per-completion advantages: the advantages no longer fit, and
    // the message says why.
    CHECK(mentions(error_of([&] { lt::grpo_loss(b.logp.t(), b.old.t(), b.ref.t(), b.adv, b.mask.t()); }),
                   {"'advantages'", "logp of shape [4, 3]", "got shape [3]", "is logp transposed?"}));
    loss_config kl;
    kl.beta = 0.1;
    CHECK(mentions(error_of([&] { lt::grpo_loss(b.logp, b.old, torch::Tensor(), b.adv, b.mask, kl); }), {"ref_logp"}));
    CHECK(mentions(error_of([&] { lt::grpo_loss(b.logp, b.old, b.ref, b.adv, b.mask.to(torch::kComplexDouble)); }),
                   {"mask", "ComplexDouble"}));

    // A failed call computes nothing: the gradient of logp stays undefined.
    const torch::Tensor x = b.logp.clone().requires_grad_(true);
    CHECK_THROWS_AS(lt::grpo_loss(x, b.old, b.ref, b.adv.slice(0, 0, 2), b.mask), grpo::error);
    CHECK_FALSE(x.grad().defined());
}

TEST_CASE("libtorch: lengths, stats and thread-count determinism", "[torch]") {
    const batch b = random_batch(16, 40, 21);
    const torch::Tensor lengths = torch::randint(0, 41, {16}, torch::kLong);
    loss_config cfg = loss_config::deepseekmath();
    grpo::loss_stats s1, s2;
    lt::loss_extras e1;
    e1.stats = &s1;
    e1.lengths = lengths;
    const torch::Tensor x1 = b.logp.clone().requires_grad_(true);
    lt::grpo_loss(x1, b.old, b.ref, b.adv, b.mask, cfg, e1).backward();

    grpo::thread_pool pool(2);
    lt::loss_extras e2 = e1;
    e2.stats = &s2;
    e2.pool = &pool;
    const torch::Tensor x2 = b.logp.clone().requires_grad_(true);
    lt::grpo_loss(x2, b.old, b.ref, b.adv, b.mask, cfg, e2).backward();
    CHECK(s1.loss == s2.loss);
    CHECK(torch::equal(x1.grad(), x2.grad()));

    // lengths act as a mask: the same as folding them into the mask.
    const torch::Tensor positions = torch::arange(40, torch::kLong).unsqueeze(0);
    const torch::Tensor folded = b.mask * (positions < lengths.unsqueeze(1)).to(torch::kFloat64);
    CHECK(s1.token_count == folded.sum().item<double>());
    const torch::Tensor x3 = b.logp.clone().requires_grad_(true);
    reference_loss(x3, b.old, b.ref, b.adv, folded, cfg).backward();
    CHECK((x1.grad() - x3.grad()).abs().max().item<double>() <= 1e-12);
}

TEST_CASE("libtorch: the training-loop snippet of docs/adapters/libtorch.md", "[torch]") {
    torch::manual_seed(0);
    torch::nn::Linear model(4, 6); // stands for the host's policy: features -> logits over 6 tokens
    torch::optim::SGD optimizer(model->parameters(), torch::optim::SGDOptions(0.1));
    const torch::Tensor features = torch::randn({4, 5, 4});                  // [completions, tokens, features]
    const torch::Tensor tokens = torch::randint(0, 6, {4, 5}, torch::kLong); // the sampled completions
    const torch::Tensor rewards = torch::tensor({1.0f, 0.0f, 0.0f, 0.5f});   // one group of G = 4
    const torch::Tensor mask = torch::ones({4, 5}, torch::kBool);
    auto token_logp = [&] { return torch::log_softmax(model(features), -1).gather(2, tokens.unsqueeze(2)).squeeze(2); };
    torch::Tensor old_logp, ref_logp;
    {
        torch::NoGradGuard no_grad;
        old_logp = token_logp();
        ref_logp = old_logp.clone();
    }
    const torch::Tensor weight_before = model->weight.detach().clone();

    // snippet-begin libtorch-basic
    // Group-relative advantages, written into a torch tensor through a view (no copy).
    torch::Tensor advantages = torch::empty({4});
    grpo::compute_advantages(grpo::exec::host{}, grpo::libtorch::vector<const float>(rewards, "rewards"),
                             grpo::groups::contiguous(4), grpo::libtorch::vector<float>(advantages, "advantages"),
                             grpo::advantage_config::trl());

    // The loss as a node of the host's graph: backward() is grpo's fused dLoss/dlogp.
    grpo::loss_config cfg = grpo::loss_config::deepseekmath(); // seq-mean-token-mean, beta 0.04, k3
    grpo::loss_stats stats;
    grpo::libtorch::loss_extras extras;
    extras.stats = &stats;
    const torch::Tensor logp = token_logp(); // [completions, tokens], requires grad
    const torch::Tensor loss = grpo::libtorch::grpo_loss(logp, old_logp, ref_logp, advantages, mask, cfg, extras);
    optimizer.zero_grad();
    loss.backward();
    optimizer.step();
    // snippet-end libtorch-basic

    // TRL's std is unbiased with eps 1e-4: rewards 1,0,0,0.5 -> mean 0.375, std 0.4787.
    const double sd = std::sqrt((0.625 * 0.625 + 2 * 0.375 * 0.375 + 0.125 * 0.125) / 3.0);
    CHECK(advantages[0].item<double>() == Approx(0.625 / (sd + 1e-4)).epsilon(1e-6));
    CHECK(stats.token_count == 20);
    CHECK(stats.ratio_mean == Approx(1.0).epsilon(1e-6)); // first update: ratio 1 everywhere
    CHECK(loss.item<double>() == Approx(stats.loss));
    CHECK((model->weight.detach() - weight_before).abs().max().item<double>() > 0); // the update happened
}

TEST_CASE("libtorch: logprobs_from_logits equals log_softmax + gather + entropy and their autograd", "[torch]") {
    torch::manual_seed(3);
    const double temperature = 0.8;
    const torch::Tensor base = torch::randn({3, 4, 37}, f64) * 3;
    const torch::Tensor tokens = torch::randint(0, 37, {3, 4}, torch::kLong);
    const torch::Tensor g_logp = torch::randn({3, 4}, f64), g_entropy = torch::randn({3, 4}, f64);
    // The reference in torch ops (TRL: logits /= temperature; selective_log_softmax; entropy_from_logits).
    const torch::Tensor xr = base.clone().requires_grad_(true);
    const torch::Tensor ls = torch::log_softmax(xr / temperature, -1);
    const torch::Tensor lp_ref = ls.gather(-1, tokens.unsqueeze(-1)).squeeze(-1);
    const torch::Tensor h_ref = -(ls.exp() * ls).sum(-1);
    ((lp_ref * g_logp).sum() + (h_ref * g_entropy).sum()).backward();
    // grpo's, separate and in place (on a non-leaf: the logits of a graph, as a model's head would give).
    for (const bool in_place : {false, true}) {
        const torch::Tensor leaf = base.clone().requires_grad_(true);
        const torch::Tensor logits = leaf * 1.0; // a non-leaf whose memory grpo may overwrite in backward
        lt::logprob_options opt;
        opt.temperature = temperature;
        opt.backward_in_place = in_place;
        grpo::logprob_stats st;
        opt.stats = &st;
        const auto out = lt::logprobs_from_logits(logits, tokens, opt);
        CHECK(out.first.sizes() == tokens.sizes());
        CHECK(torch::allclose(out.first, lp_ref, 1e-12, 1e-12));
        CHECK(torch::allclose(out.second, h_ref, 1e-12, 1e-12));
        CHECK(st.rows == 12);
        ((out.first * g_logp).sum() + (out.second * g_entropy).sum()).backward();
        CHECK(torch::allclose(leaf.grad(), xr.grad(), 1e-12, 1e-12));
    }
}

TEST_CASE("libtorch: logprobs_from_logits with a mask, float logits, composed with grpo_loss", "[torch]") {
    torch::manual_seed(4);
    const torch::Tensor base = torch::randn({2, 5, 50}) * 2;
    const torch::Tensor tokens = torch::randint(0, 50, {2, 5}, torch::kLong);
    const torch::Tensor mask = torch::tensor({{1.0f, 1.0f, 1.0f, 0.0f, 0.0f}, {1.0f, 1.0f, 1.0f, 1.0f, 1.0f}});
    const torch::Tensor leaf = base.clone().requires_grad_(true);
    const torch::Tensor adv = torch::tensor({1.0f, -0.5f});
    const torch::Tensor& logits = leaf; // [B, T, V], e.g. the LM head's output
    // snippet-begin libtorch-logprobs
    grpo::libtorch::logprob_options opt;
    opt.temperature = 1.0; // the sampling temperature
    opt.mask = mask;       // [B, T]: padding is not read
    const auto [logp, entropy] = grpo::libtorch::logprobs_from_logits(logits, tokens, opt); // each [B, T]
    const torch::Tensor loss = grpo::libtorch::grpo_loss(logp, torch::Tensor(), torch::Tensor(), adv, opt.mask) -
                               0.01 * (entropy * opt.mask).sum() / opt.mask.sum(); // an entropy bonus
    loss.backward(); // dLoss/dlogits reaches the model through grpo's backward
    // snippet-end
    const std::pair<torch::Tensor, torch::Tensor> out{logp, entropy};
    CHECK(out.first[0][3].item<float>() == 0.0f);
    const torch::Tensor ls = torch::log_softmax(base, -1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1);
    CHECK(torch::allclose(out.first.masked_select(mask.to(torch::kBool)), ls.masked_select(mask.to(torch::kBool)), 1e-5,
                          1e-6));
    CHECK(leaf.grad().defined());
    CHECK(leaf.grad()[0][3].abs().sum().item<float>() == 0.0f); // masked position
    // The same gradient through torch ops.
    const torch::Tensor xr = base.clone().requires_grad_(true);
    const torch::Tensor lpr = torch::log_softmax(xr, -1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1);
    const torch::Tensor lsr = torch::log_softmax(xr, -1);
    const torch::Tensor hr = -(lsr.exp() * lsr).sum(-1);
    const torch::Tensor lref =
        lt::grpo_loss(lpr, torch::Tensor(), torch::Tensor(), adv, mask) - 0.01 * (hr * mask).sum() / mask.sum();
    lref.backward();
    CHECK(torch::allclose(leaf.grad(), xr.grad(), 1e-5, 1e-7));
    // Errors name the argument.
    CHECK_THROWS_WITH(lt::logprobs_from_logits(base, tokens.narrow(1, 0, 4)),
                      Catch::Contains("argument 'tokens': expected shape [2, 5]"));
    lt::logprob_options leaf_in_place;
    leaf_in_place.backward_in_place = true;
    CHECK_THROWS_WITH(lt::logprobs_from_logits(leaf, tokens, leaf_in_place),
                      Catch::Contains("argument 'options.backward_in_place'"));
    const torch::Tensor bad_tokens = tokens.clone();
    bad_tokens[1][2] = 50;
    CHECK_THROWS_WITH(lt::logprobs_from_logits(base, bad_tokens), Catch::Contains("ids in [0, 50), got 50 at row 7"));
}

#if GRPO_TORCH_HAS_HIDDEN
TEST_CASE("libtorch: logprobs_from_hidden equals the head, log_softmax, gather, entropy and their autograd",
          "[torch]") {
    torch::manual_seed(5);
    const double temperature = 0.9;
    const torch::Tensor h0 = torch::randn({3, 4, 16}, f64), w0 = torch::randn({300, 16}, f64) * 0.5,
                        b0 = torch::randn({300}, f64) * 0.1;
    const torch::Tensor tokens = torch::randint(0, 300, {3, 4}, torch::kLong);
    const torch::Tensor mask = (torch::rand({3, 4}) > 0.25).to(f64);
    const torch::Tensor g_logp = torch::randn({3, 4}, f64), g_entropy = torch::randn({3, 4}, f64);
    // The reference in torch ops: the head, then TRL's selective_log_softmax and entropy_from_logits.
    const torch::Tensor hr = h0.clone().requires_grad_(true), wr = w0.clone().requires_grad_(true),
                        br = b0.clone().requires_grad_(true);
    const torch::Tensor ls = torch::log_softmax(torch::nn::functional::linear(hr, wr, br) / temperature, -1);
    const torch::Tensor lp_ref = ls.gather(-1, tokens.unsqueeze(-1)).squeeze(-1) * mask;
    const torch::Tensor e_ref = -(ls.exp() * ls).sum(-1) * mask;
    ((lp_ref * g_logp).sum() + (e_ref * g_entropy).sum()).backward();
    for (const std::int64_t chunk : {std::int64_t(0), std::int64_t(5)}) {
        const torch::Tensor h = h0.clone().requires_grad_(true), w = w0.clone().requires_grad_(true),
                            b = b0.clone().requires_grad_(true);
        lt::hidden_logprob_options opt;
        opt.temperature = temperature;
        opt.mask = mask;
        opt.chunk_rows = chunk;
        const auto out = lt::logprobs_from_hidden(h, w, b, tokens, opt);
        CHECK(torch::allclose(out.first, lp_ref, 1e-12, 1e-12));
        CHECK(torch::allclose(out.second, e_ref, 1e-12, 1e-12));
        ((out.first * g_logp).sum() + (out.second * g_entropy).sum()).backward();
        CHECK(torch::allclose(h.grad(), hr.grad(), 1e-12, 1e-12));
        CHECK(torch::allclose(w.grad(), wr.grad(), 1e-12, 1e-12));
        CHECK(torch::allclose(b.grad(), br.grad(), 1e-12, 1e-12));
    }
    // Without a bias, a frozen head (no weight gradient), errors.
    const torch::Tensor h = h0.clone().requires_grad_(true);
    const auto out = lt::logprobs_from_hidden(h, w0, torch::Tensor(), tokens);
    out.first.sum().backward();
    CHECK(h.grad().defined());
    CHECK_THROWS_WITH(lt::logprobs_from_hidden(h0, w0.t(), torch::Tensor(), tokens),
                      Catch::Contains("argument 'weight': expected [vocabulary, 16]"));
    CHECK_THROWS_WITH(lt::logprobs_from_hidden(h0, w0, b0.narrow(0, 0, 5), tokens), Catch::Contains("argument 'bias'"));
    CHECK_THROWS_WITH(lt::logprobs_from_hidden(h0, w0.to(torch::kFloat), torch::Tensor(), tokens),
                      Catch::Contains("argument 'weight'"));
}

TEST_CASE("libtorch: logprobs_from_hidden on float, composed with grpo_loss (the documented snippet)", "[torch]") {
    torch::manual_seed(6);
    torch::nn::Linear lm_head(32, 500);
    const torch::Tensor hidden_leaf = torch::randn({2, 6, 32}, torch::requires_grad());
    const torch::Tensor hidden = hidden_leaf * 1.0; // [B, T, H], the decoder's last hidden states
    const torch::Tensor tokens = torch::randint(0, 500, {2, 6}, torch::kLong);
    const torch::Tensor mask = torch::tensor({{1.f, 1.f, 1.f, 1.f, 0.f, 0.f}, {1.f, 1.f, 1.f, 1.f, 1.f, 1.f}});
    const torch::Tensor adv = torch::tensor({0.5f, -1.0f});
    // snippet-begin libtorch-logprobs-hidden
    grpo::libtorch::hidden_logprob_options opt;
    opt.mask = mask;      // [B, T]: padding is neither multiplied nor read
    opt.chunk_rows = 256; // logits are computed 256 rows at a time: never [B * T, V]
    const auto [logp, entropy] = grpo::libtorch::logprobs_from_hidden(hidden, lm_head->weight, lm_head->bias, tokens,
                                                                      opt); // each [B, T]
    const torch::Tensor loss = grpo::libtorch::grpo_loss(logp, torch::Tensor(), torch::Tensor(), adv, opt.mask) -
                               0.01 * (entropy * opt.mask).sum() / opt.mask.sum();
    loss.backward(); // gradients reach hidden (and the model below it), lm_head->weight and lm_head->bias
    // snippet-end
    // The same through torch's own head and log_softmax.
    const torch::Tensor hr = hidden_leaf.detach().clone().requires_grad_(true);
    const torch::Tensor wr = lm_head->weight.detach().clone().requires_grad_(true);
    const torch::Tensor br = lm_head->bias.detach().clone().requires_grad_(true);
    const torch::Tensor ls = torch::log_softmax(torch::nn::functional::linear(hr, wr, br), -1);
    const torch::Tensor lpr = ls.gather(-1, tokens.unsqueeze(-1)).squeeze(-1);
    const torch::Tensor er = -(ls.exp() * ls).sum(-1);
    const torch::Tensor lref =
        lt::grpo_loss(lpr, torch::Tensor(), torch::Tensor(), adv, mask) - 0.01 * (er * mask).sum() / mask.sum();
    lref.backward();
    CHECK(torch::allclose(loss, lref, 1e-5, 1e-6));
    CHECK(torch::allclose(hidden_leaf.grad(), hr.grad(), 1e-4, 1e-6));
    CHECK(torch::allclose(lm_head->weight.grad(), wr.grad(), 1e-4, 1e-6));
    CHECK(torch::allclose(lm_head->bias.grad(), br.grad(), 1e-4, 1e-6));
    CHECK(hidden_leaf.grad()[0][4].abs().sum().item<float>() == 0.0f); // a masked position
}
#elif defined(GRPO_TEST_EXPECT_TORCH_HIDDEN)
#error "grpo::torch links grpo::eigen here, so logprobs_from_hidden must be available"
#endif
