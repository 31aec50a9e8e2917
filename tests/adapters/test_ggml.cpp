// SPDX-License-Identifier: MIT
// grpo/adapters/ggml.hpp: views of ggml tensors (ne[0] innermost, nb in bytes, views and transposes), F16/BF16
// through float_matrix, the errors, and the policy-gradient surrogate: ggml's backward of sum(logp * G) with G
// filled by grpo is the gradient of the GRPO loss (exactly at logp; by finite differences at the parameters,
// including the mu > 1 case where G depends on the current logp), and the logits form: grpo's log-probs of a
// graph's logits and its dLoss/dlogits written into G reach the parameters through ggml's backward.
#include <grpo/adapters/ggml.hpp>
#include <grpo/grpo.hpp>

#include <ggml-cpu.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "catch.hpp"

namespace {

struct context_deleter {
    void operator()(ggml_context* c) const { ggml_free(c); }
};
using context_ptr = std::unique_ptr<ggml_context, context_deleter>;

context_ptr make_context(std::size_t bytes = 16u << 20) {
    ggml_cpu_init(); // the CPU backend's fp16 tables, used by ggml_get_f32_nd on F16 tensors
    ggml_init_params p{};
    p.mem_size = bytes;
    p.mem_buffer = nullptr;
    p.no_alloc = false;
    return context_ptr(ggml_init(p));
}

void fill(ggml_tensor* t, float start) {
    float* d = static_cast<float*>(t->data);
    for (int64_t k = 0; k < ggml_nelements(t); ++k) d[k] = start + 0.25f * static_cast<float>(k);
}

} // namespace

TEST_CASE("ggml: matrix() views ne = {tokens, completions} without a copy", "[ggml]") {
    auto ctx = make_context();
    ggml_tensor* t = ggml_new_tensor_2d(ctx.get(), GGML_TYPE_F32, 5, 3); // 3 completions x 5 tokens
    fill(t, -2.0f);
    auto v = grpo::ggml::matrix(t);
    REQUIRE(v.rows() == 3);
    REQUIRE(v.cols() == 5);
    CHECK(v.data() == static_cast<float*>(t->data));
    CHECK(v.col_stride() == 1);
    CHECK(v.row_stride() == 5);
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 5; ++j) CHECK(v(i, j) == ggml_get_f32_nd(t, j, i, 0, 0));

    SECTION("a view with a row pitch and an offset") {
        ggml_tensor* sub =
            ggml_view_2d(ctx.get(), t, 3, 2, t->nb[1], 1 * t->nb[1] + 2 * t->nb[0]); // rows 1..2, cols 2..4
        auto s = grpo::ggml::matrix(static_cast<const ggml_tensor*>(sub));
        REQUIRE(s.rows() == 2);
        REQUIRE(s.cols() == 3);
        for (int i = 0; i < 2; ++i)
            for (int j = 0; j < 3; ++j) CHECK(s(i, j) == v(i + 1, j + 2));
    }
    SECTION("a transposed tensor (column stride != 1)") {
        ggml_tensor* tr = ggml_transpose(ctx.get(), t); // ne = {3, 5}: element (i, j) of the view is v(j, i)
        auto s = grpo::ggml::matrix(tr);
        REQUIRE(s.rows() == 5);
        REQUIRE(s.cols() == 3);
        CHECK(s.col_stride() == 5);
        for (int i = 0; i < 5; ++i)
            for (int j = 0; j < 3; ++j) CHECK(s(i, j) == v(j, i));
    }
    SECTION("vector() of a rank-1 tensor") {
        ggml_tensor* r = ggml_new_tensor_1d(ctx.get(), GGML_TYPE_F32, 4);
        fill(r, 1.0f);
        auto rv = grpo::ggml::vector(r);
        REQUIRE(rv.size() == 4);
        CHECK(rv[3] == 1.75f);
    }
}

TEST_CASE("ggml: F16 and BF16 through float_matrix, both ways", "[ggml]") {
    auto ctx = make_context();
    for (ggml_type type : {GGML_TYPE_F16, GGML_TYPE_BF16}) {
        ggml_tensor* t = ggml_new_tensor_2d(ctx.get(), type, 4, 2);
        for (int i = 0; i < 2; ++i)
            for (int j = 0; j < 4; ++j) ggml_set_f32_nd(t, j, i, 0, 0, 0.5f * static_cast<float>(i * 4 + j) - 1.0f);
        const auto m = grpo::ggml::float_matrix::read(t);
        for (int i = 0; i < 2; ++i)
            for (int j = 0; j < 4; ++j) CHECK(m.view()(i, j) == 0.5f * static_cast<float>(i * 4 + j) - 1.0f);

        ggml_tensor* out = ggml_new_tensor_2d(ctx.get(), type, 4, 2);
        auto o = grpo::ggml::float_matrix::for_output(out);
        for (int i = 0; i < 2; ++i)
            for (int j = 0; j < 4; ++j) o.mutable_view()(i, j) = 0.25f * static_cast<float>(j - i); // exact in both
        o.write_back();
        for (int i = 0; i < 2; ++i)
            for (int j = 0; j < 4; ++j) CHECK(ggml_get_f32_nd(out, j, i, 0, 0) == 0.25f * static_cast<float>(j - i));
        CHECK_THROWS_AS(m.write_back(), grpo::error);
    }
}

TEST_CASE("ggml: errors name the tensor and what was expected", "[ggml][errors]") {
    auto ctx = make_context();
    auto code_of = [](auto&& f) {
        try {
            f();
        } catch (const grpo::error& e) {
            return e.code();
        }
        return grpo::errc::ok;
    };
    ggml_tensor* q = ggml_new_tensor_2d(ctx.get(), GGML_TYPE_Q4_0, 64, 2);
    ggml_set_name(q, "quantized_logp");
    CHECK(code_of([&] { grpo::ggml::matrix(q); }) == grpo::errc::unsupported);
    CHECK(code_of([&] { grpo::ggml::float_matrix::read(q); }) == grpo::errc::unsupported);
    try {
        grpo::ggml::matrix(q);
    } catch (const grpo::error& e) {
        const std::string what = e.what();
        CHECK(what.find("quantized_logp") != std::string::npos);
        CHECK(what.find("q4_0") != std::string::npos);
        CHECK(what.find("not quantized") != std::string::npos);
    }
    ggml_tensor* h = ggml_new_tensor_2d(ctx.get(), GGML_TYPE_F16, 4, 2);
    CHECK(code_of([&] { grpo::ggml::matrix(h); }) == grpo::errc::unsupported); // needs float_matrix
    ggml_tensor* i32 = ggml_new_tensor_1d(ctx.get(), GGML_TYPE_I32, 4);
    CHECK(code_of([&] { grpo::ggml::vector(i32); }) == grpo::errc::unsupported);
    ggml_tensor* r3 = ggml_new_tensor_3d(ctx.get(), GGML_TYPE_F32, 4, 2, 2);
    CHECK(code_of([&] { grpo::ggml::matrix(r3); }) == grpo::errc::shape_mismatch);
    ggml_tensor* m2 = ggml_new_tensor_2d(ctx.get(), GGML_TYPE_F32, 4, 2);
    CHECK(code_of([&] { grpo::ggml::vector(m2); }) == grpo::errc::shape_mismatch);
    CHECK(code_of([&] { grpo::ggml::matrix(static_cast<ggml_tensor*>(nullptr)); }) == grpo::errc::invalid_value);
    CHECK(code_of([&] { grpo::ggml::add_policy_gradient_loss(ctx.get(), h); }) == grpo::errc::unsupported);
    CHECK_FALSE(grpo::ggml::is_viewable(h));
    CHECK(grpo::ggml::is_viewable(m2));

    ggml_init_params p{};
    p.mem_size = 1 << 20;
    p.no_alloc = true; // tensors without data
    context_ptr meta(ggml_init(p));
    ggml_tensor* unallocated = ggml_new_tensor_2d(meta.get(), GGML_TYPE_F32, 4, 2);
    CHECK(code_of([&] { grpo::ggml::matrix(unallocated); }) == grpo::errc::invalid_value);
}

namespace {

/// A tiny policy in ggml: logits = W x_c for each cell c (x one-hot of the cell's context), logp of the
/// sampled token gathered with get_rows. Returns logp with ne = {T, B}. W: ne = {contexts, V}.
struct tiny_policy {
    static constexpr int B = 4, T = 3, V = 5, contexts = 6;
    int context_of[B * T];
    int token_of[B * T];
    ggml_tensor* build(ggml_context* ctx, ggml_tensor* w) const {
        ggml_tensor* x = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, contexts, B * T);
        std::memset(x->data, 0, ggml_nbytes(x));
        for (int c = 0; c < B * T; ++c) ggml_set_f32_nd(x, context_of[c], c, 0, 0, 1.0f);
        ggml_tensor* idx = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, B * T);
        for (int c = 0; c < B * T; ++c) static_cast<int32_t*>(idx->data)[c] = c * V + token_of[c];
        ggml_tensor* logits = ggml_mul_mat(ctx, w, x);               // ne = {V, B*T}
        ggml_tensor* lp = ggml_log(ctx, ggml_soft_max(ctx, logits)); // ne = {V, B*T}
        ggml_tensor* flat = ggml_reshape_2d(ctx, lp, 1, V * B * T);
        return ggml_reshape_2d(ctx, ggml_get_rows(ctx, flat, idx), T, B); // ne = {T, B}
    }
};

/// GRPO loss (double) of logp given the fixed rollout data, for finite differences.
double grpo_loss(const std::vector<double>& logp, const std::vector<double>& old_logp,
                 const std::vector<double>& ref_logp, const std::vector<double>& adv, const grpo::loss_config& cfg) {
    constexpr int B = tiny_policy::B, T = tiny_policy::T;
    grpo::loss_inputs<double> in;
    in.logp = grpo::matrix_view<const double>(logp.data(), B, T);
    in.old_logp = grpo::matrix_view<const double>(old_logp.data(), B, T);
    in.ref_logp = grpo::matrix_view<const double>(ref_logp.data(), B, T);
    in.advantages = grpo::broadcast_to_tokens(grpo::vector_view<const double>(adv.data(), B), T);
    return grpo::loss_and_grad(grpo::exec::host{}, in, grpo::loss_outputs<double>{}, cfg).loss;
}

} // namespace

TEST_CASE("ggml: backward of sum(logp * G) with G = grpo's gradient is the GRPO gradient", "[ggml][grad]") {
    constexpr int B = tiny_policy::B, T = tiny_policy::T, V = tiny_policy::V, C = tiny_policy::contexts;
    tiny_policy pol{};
    for (int c = 0; c < B * T; ++c) {
        pol.context_of[c] = (c * 5 + 1) % C;
        pol.token_of[c] = (c * 3 + 2) % V;
    }
    std::vector<float> w0(C * V);
    for (int k = 0; k < C * V; ++k) w0[k] = 0.3f * std::sin(1.7f * static_cast<float>(k));
    const std::vector<double> adv = {1.0, -0.5, 0.25, -0.75};
    grpo::loss_config cfg = grpo::loss_config::deepseekmath(); // seq-mean-token-mean, beta 0.04, k3
    cfg.epsilon_low = cfg.epsilon_high = 0.05;                 // make some clips active

    // logp of W as a double vector (forward graph only).
    auto forward = [&](const std::vector<float>& wv) {
        auto ctx = make_context();
        ggml_tensor* w = ggml_new_tensor_2d(ctx.get(), GGML_TYPE_F32, C, V);
        std::memcpy(w->data, wv.data(), wv.size() * sizeof(float));
        ggml_tensor* logp = pol.build(ctx.get(), w);
        ggml_cgraph* gf = ggml_new_graph(ctx.get());
        ggml_build_forward_expand(gf, logp);
        ggml_graph_compute_with_ctx(ctx.get(), gf, 1);
        const auto m = grpo::ggml::matrix(static_cast<const ggml_tensor*>(logp));
        std::vector<double> out(B * T);
        for (int i = 0; i < B; ++i)
            for (int t = 0; t < T; ++t) out[static_cast<std::size_t>(i * T + t)] = m(i, t);
        return out;
    };
    // The sampling policy and the reference differ from W: mu > 1 (ratio != 1) and a non-zero KL.
    std::vector<float> w_old = w0, w_ref = w0;
    for (int k = 0; k < C * V; ++k) {
        w_old[k] += 0.15f * std::cos(2.3f * static_cast<float>(k));
        w_ref[k] -= 0.1f * std::sin(0.9f * static_cast<float>(k));
    }
    const std::vector<double> old_logp = forward(w_old), ref_logp = forward(w_ref);

    // The training graph: forward, grpo on the current logp, G <- dL/dlogp, backward.
    auto ctx = make_context(64u << 20);
    ggml_tensor* w = ggml_new_tensor_2d(ctx.get(), GGML_TYPE_F32, C, V);
    std::memcpy(w->data, w0.data(), w0.size() * sizeof(float));
    ggml_set_param(w);
    ggml_tensor* logp = pol.build(ctx.get(), w);
    const grpo::ggml::policy_gradient_loss pg = grpo::ggml::add_policy_gradient_loss(ctx.get(), logp);
    ggml_cgraph* gf = ggml_new_graph_custom(ctx.get(), GGML_DEFAULT_GRAPH_SIZE, true);
    ggml_build_forward_expand(gf, pg.loss);
    ggml_cgraph* gb = ggml_graph_dup(ctx.get(), gf, true);
    ggml_build_backward_expand(ctx.get(), gb, nullptr);

    // snippet-begin ggml-mu-greater-than-one
    std::memset(pg.gradient->data, 0, ggml_nbytes(pg.gradient));
    ggml_graph_compute_with_ctx(ctx.get(), gf, 2); // forward: the current logp
    const std::vector<float> old_f(old_logp.begin(), old_logp.end()), ref_f(ref_logp.begin(), ref_logp.end());
    std::vector<float> adv_f(adv.begin(), adv.end());
    grpo::loss_inputs<float> in;
    in.logp = grpo::ggml::matrix(static_cast<const ggml_tensor*>(logp));
    in.old_logp = grpo::matrix_view<const float>(old_f.data(), B, T);
    in.ref_logp = grpo::matrix_view<const float>(ref_f.data(), B, T);
    in.advantages = grpo::broadcast_to_tokens(grpo::vector_view<const float>(adv_f.data(), B), T);
    grpo::loss_outputs<float> out;
    out.grad_logp = grpo::ggml::matrix(pg.gradient); // grpo writes dL/dlogp straight into G
    const grpo::loss_stats st = grpo::loss_and_grad(grpo::exec::host{}, in, out, cfg);

    ggml_graph_reset(gb); // d loss = 1, other gradients 0
    ggml_graph_compute_with_ctx(ctx.get(), gb, 2);
    // snippet-end ggml-mu-greater-than-one
    REQUIRE(st.clip_fraction_region > 0); // the case is not trivial: some ratios are clipped

    // 1. At logp the gradient is G itself (the surrogate's backward).
    ggml_tensor* dlogp = ggml_graph_get_grad(gb, logp);
    REQUIRE(dlogp != nullptr);
    const auto g = grpo::ggml::matrix(static_cast<const ggml_tensor*>(pg.gradient));
    const auto d = grpo::ggml::matrix(static_cast<const ggml_tensor*>(dlogp));
    for (int i = 0; i < B; ++i)
        for (int t = 0; t < T; ++t) CHECK(d(i, t) == g(i, t));

    // 2. At the parameters it is the GRPO loss's gradient: central differences through the forward graph.
    ggml_tensor* dw = ggml_graph_get_grad(gb, w);
    REQUIRE(dw != nullptr);
    const double h = 1e-2;
    double max_err = 0, max_grad = 0;
    for (int k = 0; k < C * V; ++k) {
        std::vector<float> wp = w0, wm = w0;
        wp[k] += static_cast<float>(h);
        wm[k] -= static_cast<float>(h);
        const double fd = (grpo_loss(forward(wp), old_logp, ref_logp, adv, cfg) -
                           grpo_loss(forward(wm), old_logp, ref_logp, adv, cfg)) /
                          (2 * h);
        const double an = static_cast<const float*>(dw->data)[k];
        max_err = std::max(max_err, std::abs(fd - an));
        max_grad = std::max(max_grad, std::abs(an));
    }
    INFO("max |fd - backward| = " << max_err << ", max |grad| = " << max_grad);
    CHECK(max_grad > 1e-3);
    CHECK(max_err < 1e-4); // measured 7e-7: fp32 forward, central differences
}

TEST_CASE("ggml: log-probs from a graph's logits, dLoss/dlogits into G, ggml's backward to the parameters",
          "[ggml][grad][logprobs]") {
    constexpr int B = 2, T = 3, M = B * T, V = 7, H = 4;
    auto ctx = make_context();
    ggml_tensor* w = ggml_new_tensor_2d(ctx.get(), GGML_TYPE_F32, H, V); // the parameter, W[v][h]
    ggml_tensor* x = ggml_new_tensor_2d(ctx.get(), GGML_TYPE_F32, H, M); // the input, x[i][h]
    float* wd = static_cast<float*>(w->data);
    float* xd = static_cast<float*>(x->data);
    for (int k = 0; k < H * V; ++k) wd[k] = 0.8f * std::sin(1.3f * static_cast<float>(k) + 0.4f);
    for (int k = 0; k < H * M; ++k) xd[k] = std::cos(0.7f * static_cast<float>(k));
    ggml_set_param(w);
    ggml_tensor* tokens = ggml_new_tensor_1d(ctx.get(), GGML_TYPE_I32, M);
    ggml_set_name(tokens, "tokens");
    for (int i = 0; i < M; ++i) static_cast<std::int32_t*>(tokens->data)[i] = (i * 3 + 1) % V;
    ggml_tensor* mask = ggml_new_tensor_1d(ctx.get(), GGML_TYPE_F32, M);
    for (int i = 0; i < M; ++i) static_cast<float*>(mask->data)[i] = i == M - 1 ? 0.0f : 1.0f; // one padded row
    const std::vector<float> old_logp = {-2.5f, -2.0f, -1.4f, -1.25f, -1.8f, -3.0f}, adv = {0.8f, -0.6f};
    grpo::loss_config cfg;
    cfg.entropy_coef = 0.05; // an entropy bonus: dLoss/dentropy != 0

    ggml_tensor* logits = ggml_mul_mat(ctx.get(), w, x); // ne = {V, M}: the [M, V] logits
    const grpo::ggml::policy_gradient_loss pg = grpo::ggml::add_policy_gradient_loss(ctx.get(), logits);
    ggml_cgraph* gf = ggml_new_graph_custom(ctx.get(), GGML_DEFAULT_GRAPH_SIZE, true);
    ggml_build_forward_expand(gf, pg.loss);
    ggml_cgraph* gb = ggml_graph_dup(ctx.get(), gf, true);
    ggml_build_backward_expand(ctx.get(), gb, nullptr);
    std::memset(pg.gradient->data, 0, ggml_nbytes(pg.gradient));

    // snippet-begin ggml-logits
    ggml_graph_compute_with_ctx(ctx.get(), gf, 2); // forward: the logits
    const grpo::logits_inputs<float, std::int32_t> lin = grpo::ggml::logits_inputs_of(logits, tokens, mask);
    std::vector<float> logp(M), entropy(M), grad_logp(M), grad_entropy(M);
    std::vector<double> lse(M);
    grpo::logprob_outputs<float> lout;
    lout.logp = {logp.data(), M};
    lout.entropy = {entropy.data(), M};
    lout.lse = {lse.data(), M}; // kept for the backward
    grpo::logprobs_from_logits(grpo::exec::host{}, lin, lout);

    // The GRPO loss over [B, T] = the M rows, with an entropy bonus: dLoss/dlogp and dLoss/dentropy.
    grpo::loss_inputs<float> in;
    in.logp = {logp.data(), B, T};
    in.old_logp = {old_logp.data(), B, T};
    in.advantages = grpo::broadcast_to_tokens(grpo::vector_view<const float>(adv.data(), B), T);
    in.mask = {lin.mask.data(), B, T};
    in.entropy = {entropy.data(), B, T};
    grpo::loss_outputs<float> out;
    out.grad_logp = {grad_logp.data(), B, T};
    out.grad_entropy = {grad_entropy.data(), B, T};
    grpo::loss_and_grad(grpo::exec::host{}, in, out, cfg);

    // dLoss/dlogits straight into G; ggml's backward of sum(logits * G) takes it to W.
    grpo::logprob_grad_inputs<float> g;
    g.lse = {lse.data(), M};
    g.grad_logp = {grad_logp.data(), M};
    g.entropy = {entropy.data(), M};
    g.grad_entropy = {grad_entropy.data(), M};
    grpo::logprobs_from_logits_backward(grpo::exec::host{}, lin, g, grpo::ggml::matrix(pg.gradient));
    ggml_graph_reset(gb); // d loss = 1, other gradients 0
    ggml_graph_compute_with_ctx(ctx.get(), gb, 2);
    // snippet-end ggml-logits

    // Reference in double from W and x: log_softmax, entropy, dLoss/dlogits with grpo's g and h, dW = dlogits^T x.
    std::vector<double> dlogits_ref(M * V, 0.0), dw_ref(V * H, 0.0);
    double max_dw = 0, max_logit_grad = 0;
    for (int i = 0; i < M; ++i) {
        const int y = static_cast<std::int32_t*>(tokens->data)[i];
        if (i == M - 1) {
            CHECK(logp[i] == 0.0f);
            continue;
        }
        std::vector<double> z(V);
        double zmax = -HUGE_VAL;
        for (int v = 0; v < V; ++v) {
            z[v] = 0;
            for (int h = 0; h < H; ++h) z[v] += static_cast<double>(wd[v * H + h]) * xd[i * H + h];
            zmax = std::max(zmax, z[v]);
        }
        double s = 0;
        for (int v = 0; v < V; ++v) s += std::exp(z[v] - zmax);
        const double ref_lse = zmax + std::log(s);
        double ref_entropy = 0;
        for (int v = 0; v < V; ++v) ref_entropy -= std::exp(z[v] - ref_lse) * (z[v] - ref_lse);
        CHECK(std::abs(logp[i] - (z[y] - ref_lse)) <= 1e-5 * std::max(1.0, std::abs(z[y] - ref_lse)));
        CHECK(std::abs(entropy[i] - ref_entropy) <= 1e-5 * std::max(1.0, ref_entropy));
        const double gi = grad_logp[i], hi = grad_entropy[i];
        CHECK(gi != 0.0);
        CHECK(hi != 0.0);
        for (int v = 0; v < V; ++v) {
            const double lp = z[v] - ref_lse, p = std::exp(lp);
            dlogits_ref[i * V + v] = (v == y ? gi : 0.0) - p * (gi + hi * (lp + ref_entropy));
            max_logit_grad = std::max(max_logit_grad, std::abs(dlogits_ref[i * V + v]));
        }
    }
    const auto gm = grpo::ggml::matrix(static_cast<const ggml_tensor*>(pg.gradient)); // [M, V]
    double max_err = 0;
    for (int i = 0; i < M; ++i)
        for (int v = 0; v < V; ++v) max_err = std::max(max_err, std::abs(gm(i, v) - dlogits_ref[i * V + v]));
    for (int v = 0; v < V; ++v) CHECK(gm(M - 1, v) == 0.0f); // the padded row: no gradient
    INFO("max |G - dlogits_ref| = " << max_err << ", max |dlogits| = " << max_logit_grad);
    CHECK(max_err <= 1e-5 * max_logit_grad);

    for (int v = 0; v < V; ++v)
        for (int h = 0; h < H; ++h) {
            for (int i = 0; i < M; ++i) dw_ref[v * H + h] += dlogits_ref[i * V + v] * xd[i * H + h];
            max_dw = std::max(max_dw, std::abs(dw_ref[v * H + h]));
        }
    ggml_tensor* dw = ggml_graph_get_grad(gb, w);
    REQUIRE(dw != nullptr);
    const float* dwd = static_cast<const float*>(dw->data);
    double max_dw_err = 0;
    for (int k = 0; k < V * H; ++k) max_dw_err = std::max(max_dw_err, std::abs(dwd[k] - dw_ref[k]));
    INFO("max |dW - dW_ref| = " << max_dw_err << ", max |dW| = " << max_dw);
    CHECK(max_dw > 1e-3);
    CHECK(max_dw_err <= 1e-5 * max_dw);
}

TEST_CASE("ggml: logits_inputs_of and token_ids name the argument and the tensor", "[ggml][errors][logprobs]") {
    auto ctx = make_context();
    ggml_tensor* logits = ggml_new_tensor_2d(ctx.get(), GGML_TYPE_F32, 5, 3); // V = 5, M = 3
    ggml_tensor* ids = ggml_new_tensor_1d(ctx.get(), GGML_TYPE_I32, 3);
    auto message_of = [](auto&& f) -> std::string {
        try {
            f();
        } catch (const grpo::error& e) {
            return e.what();
        }
        return "";
    };
    const auto in = grpo::ggml::logits_inputs_of(logits, ids);
    CHECK(in.logits.rows() == 3);
    CHECK(in.logits.cols() == 5);
    CHECK(in.tokens.size() == 3);
    CHECK(in.tokens.data() == static_cast<const std::int32_t*>(ids->data));
    CHECK_FALSE(in.mask.present());
    CHECK(grpo::ggml::token_ids(ids).size() == 3);

    ggml_tensor* i64 = ggml_new_tensor_1d(ctx.get(), GGML_TYPE_I64, 3);
    ggml_set_name(i64, "sampled_ids");
    std::string what = message_of([&] { grpo::ggml::logits_inputs_of(logits, i64); });
    CHECK(what.find("'tokens'") != std::string::npos);
    CHECK(what.find("sampled_ids") != std::string::npos);
    CHECK(what.find("an I32 tensor") != std::string::npos);
    CHECK(what.find("i64") != std::string::npos);

    ggml_tensor* four = ggml_new_tensor_1d(ctx.get(), GGML_TYPE_I32, 4);
    ggml_set_name(four, "four_ids");
    what = message_of([&] { grpo::ggml::logits_inputs_of(logits, four); });
    CHECK(what.find("'tokens'") != std::string::npos);
    CHECK(what.find("ne = {3, 1, 1, 1}") != std::string::npos);
    CHECK(what.find("four_ids") != std::string::npos);

    ggml_tensor* short_mask = ggml_new_tensor_1d(ctx.get(), GGML_TYPE_F32, 2);
    what = message_of([&] { grpo::ggml::logits_inputs_of(logits, ids, short_mask); });
    CHECK(what.find("'mask'") != std::string::npos);
    ggml_tensor* f16_logits = ggml_new_tensor_2d(ctx.get(), GGML_TYPE_F16, 5, 3);
    what = message_of([&] { grpo::ggml::logits_inputs_of(f16_logits, ids); });
    CHECK(what.find("'logits'") != std::string::npos);
    CHECK(what.find("float_matrix") != std::string::npos);
    ggml_tensor* logits3d = ggml_new_tensor_3d(ctx.get(), GGML_TYPE_F32, 5, 3, 2); // [B = 2, T = 3, V = 5]
    what = message_of([&] { grpo::ggml::logits_inputs_of(logits3d, ids); });
    CHECK(what.find("'logits'") != std::string::npos);
    CHECK(what.find("ggml_reshape_2d") != std::string::npos);
    ggml_tensor* ids2d = ggml_new_tensor_2d(ctx.get(), GGML_TYPE_I32, 3, 2);
    CHECK(message_of([&] { grpo::ggml::token_ids(ids2d); }).find("ne = {n, 1, 1, 1}") != std::string::npos);
}
