// SPDX-License-Identifier: MIT
// logprobs_from_hidden and its backward: a torch peer case, a naive long-double reference (the logits
// hidden weight^T + bias materialized), finite differences, chunk sizes, masked rows, thread counts, the logits
// form on the same logits, and bad input.
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include <grpo/logprobs_hidden.hpp>

#include "catch.hpp"
#include "test_helpers.hpp"

namespace {

// Runs f, which must throw a grpo::error whose message names argument `arg`.
template <class F>
void require_error_names(const F& f, const char* arg) {
    try {
        f();
        FAIL("no error for " << arg);
    } catch (const grpo::error& e) {
        INFO(e.what());
        CHECK(std::string(e.what()).find(std::string("argument '") + arg + "'") != std::string::npos);
    }
}

template <class T>
struct head_case {
    grpo::index_t rows, vocab, width;
    std::vector<T> hidden, weight, bias;
    std::vector<std::int64_t> tokens;
    std::vector<T> mask;
    std::vector<T> logp, entropy, g_logp, g_entropy;
    std::vector<double> lse;
    std::vector<T> d_hidden, d_weight, d_bias;
    bool with_bias = true, with_mask = false;
    head_case(grpo::index_t m, grpo::index_t v, grpo::index_t h, unsigned seed = 1)
        : rows(m),
          vocab(v),
          width(h),
          hidden(static_cast<std::size_t>(m * h)),
          weight(static_cast<std::size_t>(v * h)),
          bias(static_cast<std::size_t>(v)),
          tokens(static_cast<std::size_t>(m)),
          mask(static_cast<std::size_t>(m), T(1)),
          logp(static_cast<std::size_t>(m), T(-7)),
          entropy(static_cast<std::size_t>(m), T(-7)),
          g_logp(static_cast<std::size_t>(m)),
          g_entropy(static_cast<std::size_t>(m)),
          lse(static_cast<std::size_t>(m), -7.0),
          d_hidden(static_cast<std::size_t>(m * h), T(-7)),
          d_weight(static_cast<std::size_t>(v * h), T(0)),
          d_bias(static_cast<std::size_t>(v), T(0)) {
        std::uint64_t s = seed * 0x9E3779B97F4A7C15ull + 7;
        const auto next = [&] { // uniform in [-1, 1)
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            return static_cast<double>(s >> 11) / 4503599627370496.0 - 1.0;
        };
        for (auto& x : hidden) x = static_cast<T>(2 * next());
        for (auto& x : weight) x = static_cast<T>(next() / std::sqrt(static_cast<double>(h)) * 2);
        for (auto& x : bias) x = static_cast<T>(0.5 * next());
        for (grpo::index_t i = 0; i < m; ++i) {
            tokens[static_cast<std::size_t>(i)] = static_cast<std::int64_t>((next() + 1) / 2 * static_cast<double>(v));
            g_logp[static_cast<std::size_t>(i)] = static_cast<T>(next());
            g_entropy[static_cast<std::size_t>(i)] = static_cast<T>(next());
        }
    }
    grpo::hidden_inputs<T> in() const {
        grpo::hidden_inputs<T> v;
        v.hidden = grpo::matrix_view<const T>(hidden.data(), rows, width);
        v.weight = grpo::matrix_view<const T>(weight.data(), vocab, width);
        if (with_bias) v.bias = grpo::vector_view<const T>(bias.data(), vocab);
        v.tokens = grpo::vector_view<const std::int64_t>(tokens.data(), rows);
        if (with_mask) v.mask = grpo::vector_view<const T>(mask.data(), rows);
        return v;
    }
    grpo::logprob_outputs<T> out() {
        grpo::logprob_outputs<T> o;
        o.logp = grpo::vector_view<T>(logp.data(), rows);
        o.entropy = grpo::vector_view<T>(entropy.data(), rows);
        o.lse = grpo::vector_view<double>(lse.data(), rows);
        return o;
    }
    grpo::logprob_grad_inputs<T> grad(bool with_entropy = true) const {
        grpo::logprob_grad_inputs<T> g;
        g.lse = grpo::vector_view<const double>(lse.data(), rows);
        g.grad_logp = grpo::vector_view<const T>(g_logp.data(), rows);
        if (with_entropy) {
            g.entropy = grpo::vector_view<const T>(entropy.data(), rows);
            g.grad_entropy = grpo::vector_view<const T>(g_entropy.data(), rows);
        }
        return g;
    }
    grpo::hidden_grads<T> grads() {
        grpo::hidden_grads<T> g;
        g.hidden = grpo::matrix_view<T>(d_hidden.data(), rows, width);
        g.weight = grpo::matrix_view<T>(d_weight.data(), vocab, width);
        if (with_bias) g.bias = grpo::vector_view<T>(d_bias.data(), vocab);
        return g;
    }
    // Forward then backward with the given configuration and executor.
    grpo::logprob_stats run(const grpo::hidden_logprob_config& cfg, const grpo::exec::host& ex = {}) {
        const grpo::logprob_stats st = grpo::logprobs_from_hidden(ex, in(), out(), cfg);
        grpo::logprobs_from_hidden_backward(ex, in(), grad(), grads(), cfg);
        return st;
    }
};

// The naive reference in long double: logits materialized, log_softmax, gather, entropy and the gradients of
// L = sum_i g_i logp_i + h_i entropy_i with respect to hidden, weight and bias.
struct head_reference {
    std::vector<long double> logp, entropy, d_hidden, d_weight, d_bias;
};
template <class T>
head_reference naive(const head_case<T>& c, double temperature) {
    const auto M = static_cast<std::size_t>(c.rows), V = static_cast<std::size_t>(c.vocab),
               H = static_cast<std::size_t>(c.width);
    head_reference r;
    r.logp.assign(M, 0);
    r.entropy.assign(M, 0);
    r.d_hidden.assign(M * H, 0);
    r.d_weight.assign(V * H, 0);
    r.d_bias.assign(V, 0);
    std::vector<long double> z(V), dz(V);
    for (std::size_t i = 0; i < M; ++i) {
        if (c.with_mask && c.mask[i] == T(0)) continue;
        long double m = -INFINITY;
        for (std::size_t v = 0; v < V; ++v) {
            long double acc = c.with_bias ? static_cast<long double>(c.bias[v]) : 0;
            for (std::size_t k = 0; k < H; ++k)
                acc += static_cast<long double>(c.hidden[i * H + k]) * static_cast<long double>(c.weight[v * H + k]);
            z[v] = acc / temperature;
            m = std::max(m, z[v]);
        }
        long double s = 0;
        for (std::size_t v = 0; v < V; ++v) s += std::exp(z[v] - m);
        const long double lse = m + std::log(s);
        const auto y = static_cast<std::size_t>(c.tokens[i]);
        r.logp[i] = z[y] - lse;
        for (std::size_t v = 0; v < V; ++v) r.entropy[i] -= std::exp(z[v] - lse) * (z[v] - lse);
        const long double g = c.g_logp[i], h = c.g_entropy[i];
        for (std::size_t v = 0; v < V; ++v) {
            const long double lp = z[v] - lse, p = std::exp(lp);
            dz[v] = ((v == y ? g : 0) - p * (g + h * (lp + r.entropy[i]))) / temperature;
            r.d_bias[v] += dz[v];
            for (std::size_t k = 0; k < H; ++k) {
                r.d_hidden[i * H + k] += dz[v] * static_cast<long double>(c.weight[v * H + k]);
                r.d_weight[v * H + k] += dz[v] * static_cast<long double>(c.hidden[i * H + k]);
            }
        }
    }
    return r;
}

template <class T>
void check_against(const head_case<T>& c, const head_reference& r, double tol) {
    const auto close = [&](long double expected, T actual) {
        CHECK(std::fabs(static_cast<double>(expected) - static_cast<double>(actual)) <=
              tol * (1 + std::fabs(static_cast<double>(expected))));
    };
    for (std::size_t i = 0; i < r.logp.size(); ++i) {
        close(r.logp[i], c.logp[i]);
        close(r.entropy[i], c.entropy[i]);
    }
    for (std::size_t k = 0; k < r.d_hidden.size(); ++k) close(r.d_hidden[k], c.d_hidden[k]);
    for (std::size_t k = 0; k < r.d_weight.size(); ++k) close(r.d_weight[k], c.d_weight[k]);
    if (c.with_bias)
        for (std::size_t k = 0; k < r.d_bias.size(); ++k) close(r.d_bias[k], c.d_bias[k]);
}

} // namespace

TEST_CASE("logprobs_from_hidden: torch's lm_head, log_softmax, gather, entropy and autograd (peer case)",
          "[logprobs][hidden]") {
    // torch 1.13, float64: logits = (h @ w.T + b) / 0.7; lp = log_softmax(logits, -1); logp = lp.gather(-1, tok);
    // ent = -(lp.exp() * lp).sum(-1) (TRL entropy_from_logits); loss = (g * logp + ge * ent).sum(); backward.
    head_case<double> c(2, 4, 3);
    c.hidden = {0.5, -1.25, 2.0, 1.5, 0.25, -0.75};
    c.weight = {0.2, -0.4, 0.6, 1.0, 0.5, -0.5, -0.3, 0.8, 0.1, 0.7, -0.9, 0.4};
    c.bias = {0.1, -0.2, 0.3, 0.0};
    c.tokens = {2, 0};
    c.g_logp = {0.75, -1.5};
    c.g_entropy = {0.25, 0.5};
    grpo::hidden_logprob_config cfg;
    cfg.temperature = 0.7;
    const grpo::logprob_stats st = c.run(cfg);
    const std::vector<double> logp = {-4.652574835435046, -3.045941195576392};
    const std::vector<double> ent = {0.7277265285086587, 0.7680784844006106};
    const std::vector<double> dh = {-0.897015944612329, 1.6533914597362696, -0.39531219203419976,
                                    1.1864076145928262, 1.2913469570503038, -1.6898548324763953};
    const std::vector<double> dw = {-3.1222155453762883, -0.048831203044703064, 0.7653873056889995,
                                    2.059589837095873,   0.33999403771190756,   -1.0242752155035661,
                                    0.8478812742338311,  -1.2914580215776938,   1.993861382673708,
                                    0.21474443404658428, 1.0002951869104897,    -1.7349734728591417};
    const std::vector<double> db = {-2.317246057509865, 1.3746953589659507, 1.2816399664642202, -0.33908926792030664};
    for (std::size_t i = 0; i < 2; ++i) {
        CHECK(c.logp[i] == Approx(logp[i]).epsilon(1e-13));
        CHECK(c.entropy[i] == Approx(ent[i]).epsilon(1e-13));
    }
    for (std::size_t k = 0; k < dh.size(); ++k) CHECK(c.d_hidden[k] == Approx(dh[k]).epsilon(1e-12));
    for (std::size_t k = 0; k < dw.size(); ++k) CHECK(c.d_weight[k] == Approx(dw[k]).epsilon(1e-12));
    for (std::size_t k = 0; k < db.size(); ++k) CHECK(c.d_bias[k] == Approx(db[k]).epsilon(1e-12));
    CHECK(st.rows == 2);
    CHECK(st.logp_sum == Approx(logp[0] + logp[1]).epsilon(1e-13));
}

TEST_CASE("logprobs_from_hidden: the naive reference at 1e-12 in double, any chunk size, vocabulary tiles",
          "[logprobs][hidden]") {
    // V = 4100 spans two vocabulary tiles (4096) and several logit blocks (512).
    for (const grpo::index_t chunk : {grpo::index_t(0), grpo::index_t(1), grpo::index_t(3), grpo::index_t(64)}) {
        for (const double temperature : {1.0, 0.6}) {
            head_case<double> c(7, 4100, 5, 3);
            grpo::hidden_logprob_config cfg;
            cfg.chunk_rows = chunk;
            cfg.temperature = temperature;
            c.run(cfg);
            check_against(c, naive(c, temperature), 1e-12);
        }
    }
}

TEST_CASE("logprobs_from_hidden: the backward is the derivative (finite differences)", "[logprobs][hidden]") {
    head_case<double> c(3, 6, 4, 5);
    grpo::hidden_logprob_config cfg;
    cfg.temperature = 0.9;
    c.run(cfg);
    // L(hidden, weight, bias) = sum_i g_i logp_i + h_i entropy_i, evaluated by the forward alone.
    const auto loss = [&](head_case<double>& d) {
        grpo::logprobs_from_hidden(grpo::exec::host{}, d.in(), d.out(), cfg);
        double l = 0;
        for (std::size_t i = 0; i < d.logp.size(); ++i) l += d.g_logp[i] * d.logp[i] + d.g_entropy[i] * d.entropy[i];
        return l;
    };
    const double eps = 1e-6;
    const auto fd = [&](std::vector<double> head_case<double>::*member, std::size_t k) {
        head_case<double> d = c;
        (d.*member)[k] += eps;
        const double up = loss(d);
        (d.*member)[k] -= 2 * eps;
        return (up - loss(d)) / (2 * eps);
    };
    for (std::size_t k = 0; k < c.hidden.size(); ++k)
        CHECK(c.d_hidden[k] == Approx(fd(&head_case<double>::hidden, k)).margin(1e-8));
    for (std::size_t k = 0; k < c.weight.size(); ++k)
        CHECK(c.d_weight[k] == Approx(fd(&head_case<double>::weight, k)).margin(1e-8));
    for (std::size_t k = 0; k < c.bias.size(); ++k)
        CHECK(c.d_bias[k] == Approx(fd(&head_case<double>::bias, k)).margin(1e-8));
}

TEST_CASE("logprobs_from_hidden: equals the logits form on the same logits; float against the reference",
          "[logprobs][hidden]") {
    head_case<double> c(5, 700, 8, 9);
    c.with_bias = false;
    grpo::hidden_logprob_config cfg;
    cfg.temperature = 1.3;
    c.run(cfg);
    // The logits form on the logits the reference multiplies out.
    std::vector<double> logits(static_cast<std::size_t>(5 * 700));
    for (std::size_t i = 0; i < 5; ++i)
        for (std::size_t v = 0; v < 700; ++v) {
            long double acc = 0;
            for (std::size_t k = 0; k < 8; ++k)
                acc += static_cast<long double>(c.hidden[i * 8 + k]) * c.weight[v * 8 + k];
            logits[i * 700 + v] = static_cast<double>(acc);
        }
    grpo::logits_inputs<double> lin;
    lin.logits = grpo::matrix_view<const double>(logits.data(), 5, 700);
    lin.tokens = grpo::vector_view<const std::int64_t>(c.tokens.data(), 5);
    std::vector<double> logp(5), entropy(5), lse(5);
    grpo::logprob_outputs<double> lout;
    lout.logp = grpo::vector_view<double>(logp.data(), 5);
    lout.entropy = grpo::vector_view<double>(entropy.data(), 5);
    lout.lse = grpo::vector_view<double>(lse.data(), 5);
    grpo::logprobs_from_logits(grpo::exec::host{}, lin, lout, cfg);
    for (std::size_t i = 0; i < 5; ++i) {
        CHECK(c.logp[i] == Approx(logp[i]).epsilon(1e-12));
        CHECK(c.entropy[i] == Approx(entropy[i]).epsilon(1e-12));
        CHECK(c.lse[i] == Approx(lse[i]).epsilon(1e-12));
    }
    // Float inputs: fp32 products and math, against the long-double reference of the same float inputs.
    head_case<float> f(6, 1500, 16, 4);
    grpo::hidden_logprob_config fcfg;
    fcfg.chunk_rows = 4;
    f.run(fcfg);
    check_against(f, naive(f, 1.0), 2e-4);
}

TEST_CASE("logprobs_from_hidden: masked rows are not read, give zeros and no gradient", "[logprobs][hidden]") {
    head_case<double> c(6, 300, 4, 11);
    c.with_mask = true;
    c.mask = {1, 0, 1, 0, 0, 1};
    for (std::size_t k = 0; k < 4; ++k) {
        c.hidden[4 + k] = std::numeric_limits<double>::quiet_NaN(); // never read
        c.hidden[12 + k] = std::numeric_limits<double>::infinity();
    }
    c.tokens[4] = 99999; // never checked either
    grpo::hidden_logprob_config cfg;
    cfg.chunk_rows = 2; // chunks of unmasked rows: {0, 2}, {5}
    const grpo::logprob_stats st = c.run(cfg);
    CHECK(st.rows == 3);
    for (const std::size_t i : {1u, 3u, 4u}) {
        CHECK(c.logp[i] == 0);
        CHECK(c.entropy[i] == 0);
        for (std::size_t k = 0; k < 4; ++k) CHECK(c.d_hidden[i * 4 + k] == 0);
    }
    for (std::size_t k = 0; k < 4; ++k) c.hidden[4 + k] = c.hidden[12 + k] = 0;
    check_against(c, naive(c, 1.0), 1e-12);
}

TEST_CASE("logprobs_from_hidden: bit-identical for any thread count; gradients accumulate; int32 tokens",
          "[logprobs][hidden]") {
    head_case<float> base(37, 9000, 24, 21);
    grpo::hidden_logprob_config cfg;
    cfg.chunk_rows = 16;
    cfg.temperature = 0.8;
    base.run(cfg);
    for (const std::size_t threads : {1u, 2u, 3u}) {
        grpo::thread_pool pool(threads);
        head_case<float> c(37, 9000, 24, 21);
        c.run(cfg, grpo::exec::host{&pool});
        CHECK(c.logp == base.logp);
        CHECK(c.entropy == base.entropy);
        CHECK(c.d_hidden == base.d_hidden);
        CHECK(c.d_weight == base.d_weight);
        CHECK(c.d_bias == base.d_bias);
    }
    // A second backward adds the same gradient to the weight and the bias again; dhidden is overwritten.
    head_case<double> d(4, 50, 3, 2);
    d.run({});
    const std::vector<double> once_w = d.d_weight, once_b = d.d_bias, once_h = d.d_hidden;
    grpo::logprobs_from_hidden_backward(grpo::exec::host{}, d.in(), d.grad(), d.grads(), {});
    for (std::size_t k = 0; k < once_w.size(); ++k) CHECK(d.d_weight[k] == Approx(2 * once_w[k]).epsilon(1e-14));
    for (std::size_t k = 0; k < once_b.size(); ++k) CHECK(d.d_bias[k] == Approx(2 * once_b[k]).epsilon(1e-14));
    CHECK(d.d_hidden == once_h);
    // int32 ids give what int64 ids give.
    const std::vector<std::int32_t> ids32(d.tokens.begin(), d.tokens.end());
    grpo::hidden_inputs<double, std::int32_t> in32;
    in32.hidden = d.in().hidden;
    in32.weight = d.in().weight;
    in32.bias = d.in().bias;
    in32.tokens = grpo::vector_view<const std::int32_t>(ids32.data(), 4);
    std::vector<double> logp32(4);
    grpo::logprob_outputs<double> o32;
    o32.logp = grpo::vector_view<double>(logp32.data(), 4);
    grpo::logprobs_from_hidden(grpo::exec::host{}, in32, o32);
    CHECK(logp32 == d.logp);
}

TEST_CASE("logprobs_from_hidden: bad input is a grpo::error naming it, outputs untouched",
          "[logprobs][hidden][errors]") {
    head_case<double> c(3, 10, 4);
    const auto forward_fails = [&](const grpo::hidden_inputs<double>& in, const char* arg,
                                   const grpo::hidden_logprob_config& cfg = {}) {
        std::fill(c.logp.begin(), c.logp.end(), -7.0);
        require_error_names([&] { grpo::logprobs_from_hidden(grpo::exec::host{}, in, c.out(), cfg); }, arg);
        for (const double v : c.logp) CHECK(v == -7.0);
    };
    grpo::hidden_inputs<double> in = c.in();
    in.weight = grpo::matrix_view<const double>(c.weight.data(), 4, 10); // transposed
    forward_fails(in, "weight");
    in = c.in();
    in.bias = grpo::vector_view<const double>(c.bias.data(), 9);
    forward_fails(in, "bias");
    in = c.in();
    in.weight = grpo::matrix_view<const double>();
    forward_fails(in, "weight");
    c.tokens[1] = 10;
    forward_fails(c.in(), "tokens");
    c.tokens[1] = 3;
    grpo::hidden_logprob_config cfg;
    cfg.chunk_rows = -1;
    forward_fails(c.in(), "config.chunk_rows", cfg);
    cfg = {};
    cfg.temperature = 0;
    forward_fails(c.in(), "config.temperature", cfg);
    c.hidden[5] = std::numeric_limits<double>::quiet_NaN();
    forward_fails(c.in(), "hidden");
    c.hidden[5] = 0.5;
    c.weight[7] = std::numeric_limits<double>::infinity();
    forward_fails(c.in(), "weight");
    c.weight[7] = 0.5;
    c.bias[2] = -std::numeric_limits<double>::infinity();
    forward_fails(c.in(), "bias");
    c.bias[2] = 0;
    c.hidden[0] = 1e200; // finite, but the logits overflow
    c.weight[0] = 1e200;
    forward_fails(c.in(), "hidden");
    c.hidden[0] = c.weight[0] = 0.25;

    // The backward: outputs overlapping inputs, a bias gradient without a bias, non-finite row gradients.
    REQUIRE_NOTHROW(c.run({}));
    const std::vector<double> dh = c.d_hidden, dw = c.d_weight;
    const auto backward_fails = [&](const grpo::logprob_grad_inputs<double>& g, const grpo::hidden_grads<double>& out,
                                    const char* arg, const grpo::hidden_inputs<double>& inputs) {
        require_error_names([&] { grpo::logprobs_from_hidden_backward(grpo::exec::host{}, inputs, g, out, {}); }, arg);
        CHECK(c.d_hidden == dh);
        CHECK(c.d_weight == dw);
    };
    grpo::hidden_grads<double> out = c.grads();
    out.weight = grpo::matrix_view<double>(c.weight.data(), 10, 4); // the weight itself
    backward_fails(c.grad(), out, "grads.weight", c.in());
    out = c.grads();
    in = c.in();
    in.bias = {};
    backward_fails(c.grad(), out, "grads.bias", in);
    out = c.grads();
    out.hidden = grpo::matrix_view<double>(c.d_hidden.data(), 3, 3);
    backward_fails(c.grad(), out, "grads.hidden", c.in());
    c.g_logp[2] = std::numeric_limits<double>::infinity();
    backward_fails(c.grad(), c.grads(), "grad_logp", c.in());
    c.g_logp[2] = 1e308; // finite, but dLoss/dlogits / temperature and the products could overflow to +-inf
    backward_fails(c.grad(), c.grads(), "grad_logp", c.in());
    c.g_logp[2] = 0.5;
    grpo::logprob_grad_inputs<double> g = c.grad();
    g.entropy = {};
    backward_fails(g, c.grads(), "entropy", c.in());
}
