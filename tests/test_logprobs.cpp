// SPDX-License-Identifier: MIT
// logprobs_from_logits and its backward: a peer case from torch, a naive long-double reference, finite
// differences, masked rows, banned tokens, extreme logits, in-place backward, thread counts and bad input.
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include <grpo/grpo.hpp>

#include "catch.hpp"
#include "test_helpers.hpp"

namespace {

constexpr double inf = std::numeric_limits<double>::infinity();

// The naive reference: z = x / temperature, everything in long double, one row at a time.
struct reference_row {
    long double lse = 0, logp = 0, entropy = 0;
    std::vector<long double> grad; // d (g logp + h entropy) / d x
};
reference_row naive(const double* x, long V, long y, double temperature, double g, double h) {
    reference_row r;
    long double m = -INFINITY;
    for (long j = 0; j < V; ++j) m = std::max(m, static_cast<long double>(x[j]) / temperature);
    long double s = 0;
    for (long j = 0; j < V; ++j) s += std::exp(static_cast<long double>(x[j]) / temperature - m);
    r.lse = m + std::log(s);
    r.logp = static_cast<long double>(x[y]) / temperature - r.lse;
    for (long j = 0; j < V; ++j) {
        const long double lp = static_cast<long double>(x[j]) / temperature - r.lse;
        if (x[j] != -inf) r.entropy -= std::exp(lp) * lp;
    }
    r.grad.resize(static_cast<std::size_t>(V));
    for (long j = 0; j < V; ++j) {
        const long double lp = static_cast<long double>(x[j]) / temperature - r.lse;
        const long double p = x[j] == -inf ? 0 : std::exp(lp);
        const long double d_logp = (j == y ? 1 : 0) - p;
        const long double d_entropy = x[j] == -inf ? 0 : -p * (lp + r.entropy);
        r.grad[static_cast<std::size_t>(j)] = (g * d_logp + h * d_entropy) / temperature;
    }
    return r;
}

template <class T>
struct logits_case {
    grpo::index_t rows, vocab, stride;
    std::vector<T> logits;
    std::vector<std::int64_t> tokens;
    std::vector<T> mask;
    std::vector<T> logp, entropy, g_logp, g_entropy;
    std::vector<double> lse;
    std::vector<T> grad;
    logits_case(grpo::index_t r, grpo::index_t v, grpo::index_t s = -1)
        : rows(r),
          vocab(v),
          stride(s < 0 ? v : s),
          logits(static_cast<std::size_t>(r * (s < 0 ? v : s)), T(0)),
          tokens(static_cast<std::size_t>(r), 0),
          mask(static_cast<std::size_t>(r), T(1)),
          logp(static_cast<std::size_t>(r), T(-7)),
          entropy(static_cast<std::size_t>(r), T(-7)),
          g_logp(static_cast<std::size_t>(r), T(0)),
          g_entropy(static_cast<std::size_t>(r), T(0)),
          lse(static_cast<std::size_t>(r), -7.0),
          grad(static_cast<std::size_t>(r * (s < 0 ? v : s)), T(-7)) {}
    T& at(grpo::index_t i, grpo::index_t j) { return logits[static_cast<std::size_t>(i * stride + j)]; }
    grpo::logits_inputs<T> in(bool with_mask = false) const {
        grpo::logits_inputs<T> v;
        v.logits = grpo::matrix_view<const T>(logits.data(), rows, vocab, stride, 1);
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
    grpo::logprob_grad_inputs<T> grad_in(bool with_entropy = true) const {
        grpo::logprob_grad_inputs<T> g;
        g.lse = grpo::vector_view<const double>(lse.data(), rows);
        g.grad_logp = grpo::vector_view<const T>(g_logp.data(), rows);
        if (with_entropy) {
            g.entropy = grpo::vector_view<const T>(entropy.data(), rows);
            g.grad_entropy = grpo::vector_view<const T>(g_entropy.data(), rows);
        }
        return g;
    }
    grpo::matrix_view<T> grad_out() { return grpo::matrix_view<T>(grad.data(), rows, vocab, stride, 1); }
};

} // namespace

TEST_CASE("logprobs_from_logits: torch's log_softmax, gather and entropy (peer case)", "[logprobs]") {
    // Values printed by torch 1.13 (float64) for TRL's selective_log_softmax after `logits /= temperature`
    // (trl/trainer/utils.py L479) and entropy_from_logits (utils.py L526; verl torch_functional.py L231 is the
    // same quantity): z = x / 0.7, lp = log_softmax(z).gather(y), H = -sum p log p, and autograd's gradient of
    // sum(lp * g + H * h). Row 1 has logits of +-1e4 and a banned (-inf) token; torch's backward gives NaN
    // there (its entropy's 0 * -inf), so that row's gradient is checked against the naive reference instead.
    logits_case<double> c(3, 5);
    const double x[15] = {1.5, -0.25, 3.0, 0.0, -2.0, -1e4, 2.0, 1e4, -inf, 9999.0, 0.1, 0.2, 0.3, 0.4, 0.5};
    c.logits.assign(x, x + 15);
    c.tokens = {2, 4, 0};
    c.g_logp = {0.5, -1.0, 2.0};
    c.g_entropy = {0.1, 0.0, -0.3};
    grpo::logprob_config cfg;
    cfg.temperature = 0.7;
    const grpo::logprob_stats st = grpo::logprobs_from_logits(grpo::exec::host{}, c.in(), c.out(), cfg);
    const double logp[3] = {-0.13234632910964897, -1.6434013463567057, -1.915470846237428};
    const double entropy[3] = {0.4483712764422892, 0.49100330321794927, 1.5892968584152718};
    const double lse[3] = {4.4180606148239345, 14285.929115632072, 2.058327989094571};
    for (int i = 0; i < 3; ++i) {
        CHECK(c.logp[i] == Approx(logp[i]).epsilon(1e-12));
        CHECK(c.entropy[i] == Approx(entropy[i]).epsilon(1e-12));
        CHECK(c.lse[i] == Approx(lse[i]).epsilon(1e-14));
    }
    CHECK(st.rows == 3);
    CHECK(st.entropy_mean() == Approx((entropy[0] + entropy[1] + entropy[2]) / 3).epsilon(1e-12));
    grpo::logprobs_from_logits_backward(grpo::exec::host{}, c.in(), c.grad_in(), c.grad_out(), cfg);
    const double grad[2][5] = {
        {-0.04658935372900436, -0.0008112986979671048, 0.04899465067764417, -0.0017747239418079797,
         0.0001807256911352751},
        {2.41577731123223, -0.49874251492626304, -0.5633332978934957, -0.6360003978195639, -0.7177011005929071}};
    for (int j = 0; j < 5; ++j) {
        CHECK(c.grad[static_cast<std::size_t>(j)] == Approx(grad[0][j]).margin(1e-15).epsilon(1e-11));
        CHECK(c.grad[static_cast<std::size_t>(10 + j)] == Approx(grad[1][j]).margin(1e-15).epsilon(1e-11));
    }
    const reference_row r1 = naive(x + 5, 5, 4, 0.7, -1.0, 0.0);
    for (int j = 0; j < 5; ++j)
        CHECK(c.grad[static_cast<std::size_t>(5 + j)] ==
              Approx(static_cast<double>(r1.grad[static_cast<std::size_t>(j)])).margin(1e-300).epsilon(1e-12));
    CHECK(c.grad[8] == 0.0); // the banned token
}

TEST_CASE("logprobs_from_logits: a naive long-double reference over several blocks", "[logprobs]") {
    grpo_test::rng rng(11);
    for (const grpo::index_t V : {1, 7, 512, 513, 1037, 2048}) {
        for (const double temperature : {1.0, 0.6, 1.7}) {
            logits_case<double> c(6, V, V + 3); // padded rows: any row stride
            for (grpo::index_t i = 0; i < c.rows; ++i) {
                for (grpo::index_t j = 0; j < V; ++j) c.at(i, j) = rng.uniform(-6, 6);
                c.tokens[static_cast<std::size_t>(i)] =
                    static_cast<std::int64_t>(rng.next() % static_cast<std::uint64_t>(V));
                if (V > 3 && i % 2 == 1) // banned tokens, never the sampled one
                    for (grpo::index_t j = 0; j < V; j += 3)
                        if (j != c.tokens[static_cast<std::size_t>(i)]) c.at(i, j) = -inf;
                c.g_logp[static_cast<std::size_t>(i)] = rng.uniform(-2, 2);
                c.g_entropy[static_cast<std::size_t>(i)] = rng.uniform(-1, 1);
            }
            grpo::logprob_config cfg;
            cfg.temperature = temperature;
            grpo::logprobs_from_logits(grpo::exec::host{}, c.in(), c.out(), cfg);
            grpo::logprobs_from_logits_backward(grpo::exec::host{}, c.in(), c.grad_in(), c.grad_out(), cfg);
            for (grpo::index_t i = 0; i < c.rows; ++i) {
                const auto k = static_cast<std::size_t>(i);
                const reference_row r = naive(&c.at(i, 0), V, c.tokens[k], temperature, c.g_logp[k], c.g_entropy[k]);
                CHECK(c.logp[k] == Approx(static_cast<double>(r.logp)).margin(1e-13).epsilon(1e-12));
                CHECK(c.entropy[k] == Approx(static_cast<double>(r.entropy)).margin(1e-13).epsilon(1e-12));
                CHECK(c.lse[k] == Approx(static_cast<double>(r.lse)).epsilon(1e-13));
                for (grpo::index_t j = 0; j < V; ++j)
                    CHECK(
                        c.grad[static_cast<std::size_t>(i * c.stride + j)] ==
                        Approx(static_cast<double>(r.grad[static_cast<std::size_t>(j)])).margin(1e-14).epsilon(1e-11));
            }
        }
    }
}

TEST_CASE("logprobs_from_logits: the backward is the derivative (finite differences)", "[logprobs]") {
    grpo_test::rng rng(5);
    logits_case<double> c(3, 9);
    for (auto& v : c.logits) v = rng.uniform(-3, 3);
    c.tokens = {0, 4, 8};
    c.g_logp = {0.7, -1.3, 0.2};
    c.g_entropy = {-0.4, 0.9, 0.05};
    grpo::logprob_config cfg;
    cfg.temperature = 0.8;
    const auto objective = [&](const std::vector<double>& x) {
        logits_case<double> d = c;
        d.logits = x;
        grpo::logprobs_from_logits(grpo::exec::host{}, d.in(), d.out(), cfg);
        double f = 0;
        for (std::size_t i = 0; i < 3; ++i) f += d.g_logp[i] * d.logp[i] + d.g_entropy[i] * d.entropy[i];
        return f;
    };
    grpo::logprobs_from_logits(grpo::exec::host{}, c.in(), c.out(), cfg);
    grpo::logprobs_from_logits_backward(grpo::exec::host{}, c.in(), c.grad_in(), c.grad_out(), cfg);
    for (std::size_t k = 0; k < c.logits.size(); ++k) {
        const double h = 1e-6;
        std::vector<double> up = c.logits, down = c.logits;
        up[k] += h;
        down[k] -= h;
        CHECK(c.grad[k] == Approx((objective(up) - objective(down)) / (2 * h)).margin(1e-8));
    }
}

TEST_CASE("logprobs_from_logits: float math against the double reference, extreme logits", "[logprobs]") {
    grpo_test::rng rng(3);
    const grpo::index_t V = 3000;
    logits_case<float> c(4, V);
    for (grpo::index_t i = 0; i < c.rows; ++i)
        for (grpo::index_t j = 0; j < V; ++j) c.at(i, j) = static_cast<float>(rng.uniform(-8, 8));
    c.at(1, 17) = 1e4f; // one dominant logit
    c.at(1, 18) = 1e4f - 1.5f;
    c.at(2, 5) = -1e4f;
    for (grpo::index_t j = 0; j < V; ++j) c.at(3, j) = 1e4f + static_cast<float>(j % 7); // large offset
    c.tokens = {10, 18, 5, 6};
    c.g_logp = {1.0f, -0.5f, 2.0f, 0.25f};
    c.g_entropy = {0.3f, 0.1f, -0.2f, 0.0f};
    grpo::logprob_config cfg;
    grpo::logprobs_from_logits(grpo::exec::host{}, c.in(), c.out(), cfg);
    grpo::logprobs_from_logits_backward(grpo::exec::host{}, c.in(), c.grad_in(), c.grad_out(), cfg);
    for (grpo::index_t i = 0; i < c.rows; ++i) {
        const auto k = static_cast<std::size_t>(i);
        std::vector<double> row(static_cast<std::size_t>(V));
        for (grpo::index_t j = 0; j < V; ++j) row[static_cast<std::size_t>(j)] = c.at(i, j);
        const reference_row r = naive(row.data(), V, c.tokens[k], 1.0, c.g_logp[k], c.g_entropy[k]);
        CHECK(std::isfinite(c.logp[k]));
        CHECK(c.logp[k] == Approx(static_cast<double>(r.logp)).margin(2e-5).epsilon(2e-6));
        CHECK(c.entropy[k] == Approx(static_cast<double>(r.entropy)).margin(2e-5).epsilon(2e-6));
        CHECK(c.lse[k] == Approx(static_cast<double>(r.lse)).epsilon(1e-7));
        double max_err = 0;
        for (grpo::index_t j = 0; j < V; ++j)
            max_err = std::max(max_err, std::fabs(c.grad[static_cast<std::size_t>(i * V + j)] -
                                                  static_cast<double>(r.grad[static_cast<std::size_t>(j)])));
        CHECK(max_err < 1e-6);
    }
}

TEST_CASE("logprobs_from_logits: logits near the top of the double range", "[logprobs]") {
    // lse = 1.7e308 + log 3 rounds to 1.7e308: logp and the gradient must not go through it.
    logits_case<double> c(2, 3);
    c.logits = {1.7e308, 1.7e308, 1.7e308, -1.7e308, 1e308, 1e308};
    c.tokens = {1, 2};
    c.g_logp = {1.0, -2.0};
    grpo::logprobs_from_logits(grpo::exec::host{}, c.in(), c.out());
    CHECK(c.logp[0] == Approx(-std::log(3.0)).epsilon(1e-15));
    CHECK(c.entropy[0] == Approx(std::log(3.0)).epsilon(1e-15));
    CHECK(c.logp[1] == Approx(-std::log(2.0)).epsilon(1e-15));
    grpo::logprobs_from_logits_backward(grpo::exec::host{}, c.in(), c.grad_in(false), c.grad_out());
    CHECK(c.grad[0] == Approx(-1.0 / 3).epsilon(1e-15));
    CHECK(c.grad[1] == Approx(2.0 / 3).epsilon(1e-15));
    CHECK(c.grad[3] == 0.0);
    CHECK(c.grad[4] == Approx(1.0).epsilon(1e-15));
    CHECK(c.grad[5] == Approx(-1.0).epsilon(1e-15));
}

TEST_CASE("logprobs_from_logits: masked rows are not read and give zeros", "[logprobs]") {
    logits_case<double> c(3, 4);
    c.logits = {0.1, 0.2, 0.3, 0.4, NAN, inf, -inf, NAN, 1.0, -1.0, 0.5, 0.0};
    c.tokens = {1, 99, 2}; // row 1's id is out of range, but the row is masked
    c.mask = {1, 0, 1};
    c.g_logp = {1, NAN, -1};
    c.lse[1] = NAN; // never read for a masked row
    grpo::logprob_config cfg;
    const grpo::logprob_stats st = grpo::logprobs_from_logits(grpo::exec::host{}, c.in(true), c.out(), cfg);
    CHECK(st.rows == 2);
    CHECK(c.logp[1] == 0.0);
    CHECK(c.entropy[1] == 0.0);
    CHECK(c.lse[1] == 0.0);
    c.lse[1] = NAN;
    grpo::logprobs_from_logits_backward(grpo::exec::host{}, c.in(true), c.grad_in(false), c.grad_out(), cfg);
    for (int j = 4; j < 8; ++j) CHECK(c.grad[static_cast<std::size_t>(j)] == 0.0);
    CHECK(std::isfinite(c.grad[0]));
}

TEST_CASE("logprobs_from_logits: in-place backward, int32 tokens, thread counts, V = 1", "[logprobs]") {
    grpo_test::rng rng(9);
    logits_case<float> c(37, 700);
    for (auto& v : c.logits) v = static_cast<float>(rng.uniform(-5, 5));
    for (auto& t : c.tokens) t = static_cast<std::int64_t>(rng.next() % 700);
    for (auto& g : c.g_logp) g = static_cast<float>(rng.uniform(-1, 1));
    for (auto& g : c.g_entropy) g = static_cast<float>(rng.uniform(-1, 1));
    grpo::logprob_config cfg;
    cfg.temperature = 0.9;
    grpo::logprobs_from_logits(grpo::exec::host{}, c.in(), c.out(), cfg);
    grpo::logprobs_from_logits_backward(grpo::exec::host{}, c.in(), c.grad_in(), c.grad_out(), cfg);
    for (unsigned threads : {2u, 3u, 4u}) {
        grpo::thread_pool pool(threads);
        logits_case<float> d = c;
        grpo::logprobs_from_logits(grpo::exec::host{&pool}, d.in(), d.out(), cfg);
        CHECK(d.logp == c.logp);
        CHECK(d.entropy == c.entropy);
        CHECK(d.lse == c.lse);
        // In place: the gradient overwrites the logits themselves.
        grpo::logprobs_from_logits_backward(grpo::exec::host{&pool}, d.in(), d.grad_in(),
                                            grpo::matrix_view<float>(d.logits.data(), d.rows, d.vocab), cfg);
        CHECK(d.logits == c.grad);
    }
    // The AVX2 copy and the baseline give the same bits (backend/cpu/dispatch.hpp).
    {
        logits_case<float> d = c;
        grpo::detail::cpu::cpu_version_limit() = grpo::detail::cpu::cpu_version::baseline;
        grpo::logprobs_from_logits(grpo::exec::host{}, d.in(), d.out(), cfg);
        grpo::logprobs_from_logits_backward(grpo::exec::host{}, d.in(), d.grad_in(), d.grad_out(), cfg);
        grpo::detail::cpu::cpu_version_limit() = grpo::detail::cpu::cpu_version::avx512;
        INFO("AVX2 on this CPU: " << grpo::detail::cpu::cpu_has_avx2());
        CHECK(d.logp == c.logp);
        CHECK(d.entropy == c.entropy);
        CHECK(d.lse == c.lse);
        CHECK(d.grad == c.grad);
    }
    // int32 token ids give the same results.
    std::vector<std::int32_t> t32(c.tokens.begin(), c.tokens.end());
    grpo::logits_inputs<float, std::int32_t> in32;
    in32.logits = c.in().logits;
    in32.tokens = grpo::vector_view<const std::int32_t>(t32.data(), c.rows);
    std::vector<float> logp32(static_cast<std::size_t>(c.rows));
    grpo::logprob_outputs<float> out32;
    out32.logp = grpo::vector_view<float>(logp32.data(), c.rows);
    grpo::logprobs_from_logits(grpo::exec::host{}, in32, out32, cfg);
    CHECK(logp32 == c.logp);
    // One column: probability 1, entropy 0, gradient 0.
    logits_case<double> one(2, 1);
    one.logits = {3.0, -1e300};
    one.g_logp = {1.0, 1.0};
    grpo::logprobs_from_logits(grpo::exec::host{}, one.in(), one.out());
    CHECK(one.logp == std::vector<double>{0.0, 0.0});
    CHECK(one.entropy == std::vector<double>{0.0, 0.0});
    grpo::logprobs_from_logits_backward(grpo::exec::host{}, one.in(), one.grad_in(false), one.grad_out());
    CHECK(one.grad == std::vector<double>{0.0, 0.0});
    // No rows: nothing to do.
    logits_case<double> none(0, 5);
    CHECK(grpo::logprobs_from_logits(grpo::exec::host{}, none.in(), none.out()).rows == 0);
}

TEST_CASE("logprobs_from_logits: bad input is a grpo::error naming it, outputs untouched", "[logprobs][errors]") {
    const auto fresh = [] {
        logits_case<double> c(2, 3);
        c.logits = {0.1, 0.2, 0.3, 1.0, 2.0, 3.0};
        c.tokens = {0, 2};
        c.g_logp = {1, 1};
        return c;
    };
    const auto forward_error = [](logits_case<double>& c, const grpo::logprob_config& cfg, const char* needle) {
        try {
            grpo::logprobs_from_logits(grpo::exec::host{}, c.in(true), c.out(), cfg);
            FAIL("no error");
        } catch (const grpo::error& e) {
            INFO(e.what());
            CHECK(std::string(e.what()).find(needle) != std::string::npos);
        }
        CHECK(c.logp == std::vector<double>{-7, -7});
        CHECK(c.lse == std::vector<double>{-7, -7});
    };
    grpo::logprob_config cfg;
    {
        logits_case<double> c = fresh();
        c.logits[4] = NAN;
        forward_error(c, cfg,
                      "argument 'logits': expected values that are finite or -inf (a banned token), got nan at (1, 1)");
    }
    {
        logits_case<double> c = fresh();
        c.logits[2] = inf;
        forward_error(c, cfg, "inf at (0, 2)");
    }
    {
        logits_case<double> c = fresh();
        c.logits[5] = -inf; // the sampled token of row 1
        forward_error(c, cfg, "argument 'tokens'");
    }
    {
        logits_case<double> c = fresh();
        c.tokens[1] = 3;
        forward_error(c, cfg, "ids in [0, 3), got 3 at row 1");
    }
    {
        logits_case<double> c = fresh();
        c.mask[0] = 0.5;
        forward_error(c, cfg, "argument 'mask'");
    }
    {
        logits_case<double> c = fresh();
        c.logits[0] = 1e308;
        grpo::logprob_config hot;
        hot.temperature = 0.1; // 1e308 / 0.1 overflows
        forward_error(c, hot, "overflows after dividing by the temperature");
    }
    for (const double t : {0.0, -1.0, double(NAN), inf}) {
        logits_case<double> c = fresh();
        grpo::logprob_config bad;
        bad.temperature = t;
        forward_error(c, bad, "config.temperature");
    }
    {
        logits_case<double> c = fresh();
        grpo::logprob_outputs<double> o = c.out();
        o.lse = grpo::vector_view<double>(reinterpret_cast<double*>(c.logits.data()), 2); // overlaps the logits
        CHECK_THROWS_WITH(grpo::logprobs_from_logits(grpo::exec::host{}, c.in(), o, cfg),
                          Catch::Contains("argument 'lse'") && Catch::Contains("disjoint"));
    }
    {
        logits_case<double> c = fresh();
        grpo::logits_inputs<double> in = c.in();
        in.logits = grpo::matrix_view<const double>(c.logits.data(), 3, 2, 2, 1); // 3 rows, 2 tokens
        CHECK_THROWS_WITH(grpo::logprobs_from_logits(grpo::exec::host{}, in, c.out(), cfg),
                          Catch::Contains("argument 'tokens': expected size 3"));
        in.logits = grpo::matrix_view<const double>(c.logits.data(), 2, 3, 1, 2); // column stride 2
        CHECK_THROWS_WITH(grpo::logprobs_from_logits(grpo::exec::host{}, in, c.out(), cfg),
                          Catch::Contains("column stride 1"));
    }
    // Without validation NaN logits give NaN, not an error.
    {
        logits_case<double> c = fresh();
        c.logits[4] = NAN;
        grpo::logprob_config quick;
        quick.checks = grpo::validation::shapes_only;
        grpo::logprobs_from_logits(grpo::exec::host{}, c.in(), c.out(), quick);
        CHECK(std::isnan(c.logp[1]));
        CHECK(std::isfinite(c.logp[0]));
    }
    // Backward: NaN logits (seen before anything is written), partial overlap, a lone grad_entropy.
    {
        logits_case<double> c = fresh();
        grpo::logprobs_from_logits(grpo::exec::host{}, c.in(), c.out(), cfg);
        c.logits[1] = NAN;
        CHECK_THROWS_WITH(grpo::logprobs_from_logits_backward(grpo::exec::host{}, c.in(), c.grad_in(false),
                                                              grpo::matrix_view<double>(c.logits.data(), 2, 3), cfg),
                          Catch::Contains("got nan at (0, 1)"));
        CHECK(c.logits[0] == 0.1); // in place, untouched
        c.logits[1] = 0.2;
        CHECK_THROWS_WITH(
            grpo::logprobs_from_logits_backward(grpo::exec::host{}, c.in(), c.grad_in(false),
                                                grpo::matrix_view<double>(c.logits.data() + 1, 1, 3), cfg),
            Catch::Contains("argument 'grad_logits'") && Catch::Contains("shape"));
        std::vector<double> big(7, 0.0);
        logits_case<double> d = fresh();
        grpo::logprobs_from_logits(grpo::exec::host{}, d.in(), d.out(), cfg);
        grpo::logits_inputs<double> shifted = d.in();
        std::copy(d.logits.begin(), d.logits.end(), big.begin());
        shifted.logits = grpo::matrix_view<const double>(big.data(), 2, 3);
        CHECK_THROWS_WITH(grpo::logprobs_from_logits_backward(grpo::exec::host{}, shifted, d.grad_in(false),
                                                              grpo::matrix_view<double>(big.data() + 1, 2, 3), cfg),
                          Catch::Contains("argument 'grad_logits'") && Catch::Contains("disjoint from 'logits'"));
        grpo::logprob_grad_inputs<double> lone = d.grad_in(true);
        lone.entropy = {};
        CHECK_THROWS_WITH(grpo::logprobs_from_logits_backward(grpo::exec::host{}, d.in(), lone, d.grad_out(), cfg),
                          Catch::Contains("argument 'entropy'"));
        d.g_logp[1] = inf;
        CHECK_THROWS_WITH(
            grpo::logprobs_from_logits_backward(grpo::exec::host{}, d.in(), d.grad_in(false), d.grad_out(), cfg),
            Catch::Contains("argument 'grad_logp'") && Catch::Contains("at row 1"));
        CHECK(d.grad == std::vector<double>(6, -7.0));
    }
}
