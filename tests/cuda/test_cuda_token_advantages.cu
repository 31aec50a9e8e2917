// SPDX-License-Identifier: MIT
// CPU-vs-CUDA parity of token_advantages: REINFORCE++, ReMax, the optimal token baseline and its TIR variant,
// masks with holes and empty rows, contiguous and id-based prompt groups, IS weights, both tail rules, float
// and double, batches over many chunks; determinism; the CPU's errors for bad values, outputs untouched.
// Built twice (device_harness.hpp): for a GPU (exits 77 without one) and for the host emulator
// (test_cuda_token_advantages_emulated).
#ifdef GRPO_CATCH3
#include <catch2/catch_session.hpp>
#include <catch2/catch_test_macros.hpp>
#else
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#endif

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "device_harness.hpp"
#include "test_helpers.hpp"

namespace {

using grpo::index_t;
using grpo_test::dbuf;

/// One batch of token-level inputs (row-major [rows, cols]) and its prompt groups.
struct token_problem {
    index_t rows = 0, cols = 0;
    std::vector<double> rewards, mask, old_logp, sum_pi_squared, is_weights, baselines;
    index_t group_size = 0;        // contiguous prompt groups when ids is empty
    std::vector<std::int64_t> ids; // id-based prompt groups
    index_t num_groups = 0;
};

/// Random rewards (a sparse terminal reward plus small process rewards), masks with tool-token holes, empty
/// rows and ragged lengths, policy figures in range.
token_problem random_problem(index_t rows, index_t cols, index_t group_size, bool by_id, std::uint64_t seed) {
    grpo_test::rng g(seed);
    token_problem p;
    p.rows = rows, p.cols = cols;
    const std::size_t cells = static_cast<std::size_t>(rows * cols);
    p.rewards.resize(cells), p.mask.resize(cells), p.old_logp.resize(cells), p.sum_pi_squared.resize(cells);
    p.is_weights.resize(cells);
    for (index_t i = 0; i < rows; ++i) {
        const index_t len = i % 5 == 3 ? 0 : 1 + static_cast<index_t>(g.next() % static_cast<std::uint64_t>(cols));
        for (index_t t = 0; t < cols; ++t) {
            const std::size_t c = static_cast<std::size_t>(i * cols + t);
            p.mask[c] = t < len && !(i % 3 == 1 && t % 4 == 2) ? 1.0 : 0.0; // holes: tool tokens
            p.rewards[c] = t == len - 1 ? double(g.next() % 2) : (g.next() % 4 == 0 ? g.uniform(-0.2, 0.2) : 0.0);
            p.old_logp[c] = -g.uniform(0, 3);
            p.sum_pi_squared[c] = g.uniform(0.05, 1);
            p.is_weights[c] = g.uniform(0.5, 1.5);
        }
        p.baselines.push_back(g.uniform(0, 1));
    }
    if (by_id) {
        p.num_groups = (rows + group_size - 1) / group_size + 1; // one group without rows
        for (index_t i = 0; i < rows; ++i)
            p.ids.push_back(static_cast<std::int64_t>(g.next() % static_cast<std::uint64_t>(p.num_groups - 1)));
    } else {
        p.group_size = group_size;
    }
    return p;
}

struct token_result {
    grpo::token_advantage_stats st;
    std::vector<double> adv, ret;
};

template <class T>
std::vector<T> as(const std::vector<double>& v) {
    return std::vector<T>(v.begin(), v.end());
}

template <class T>
token_result run_cpu(const token_problem& p, const grpo::token_advantage_config& cfg, bool rho) {
    const auto r = as<T>(p.rewards), m = as<T>(p.mask), lp = as<T>(p.old_logp), sq = as<T>(p.sum_pi_squared),
               w = as<T>(p.is_weights), b = as<T>(p.baselines);
    std::vector<T> a(r.size(), T(-99)), g(r.size(), T(-99));
    grpo::token_advantage_inputs<T> in;
    in.rewards = grpo::matrix_view<const T>(r.data(), p.rows, p.cols);
    in.mask = grpo::matrix_view<const T>(m.data(), p.rows, p.cols);
    in.old_logp = grpo::matrix_view<const T>(lp.data(), p.rows, p.cols);
    in.sum_pi_squared = grpo::matrix_view<const T>(sq.data(), p.rows, p.cols);
    if (rho) in.is_weights = grpo::matrix_view<const T>(w.data(), p.rows, p.cols);
    in.baselines = grpo::vector_view<const T>(b.data(), p.rows);
    in.prompts = p.ids.empty() ? grpo::groups::contiguous(p.group_size)
                               : grpo::groups::by_id({p.ids.data(), p.rows}, p.num_groups);
    grpo::token_advantage_outputs<T> out;
    out.advantages = grpo::matrix_view<T>(a.data(), p.rows, p.cols);
    out.returns = grpo::matrix_view<T>(g.data(), p.rows, p.cols);
    token_result res;
    res.st = grpo::token_advantages(grpo::exec::host{}, in, out, cfg);
    res.adv.assign(a.begin(), a.end());
    res.ret.assign(g.begin(), g.end());
    return res;
}

/// Device buffers of one problem.
template <class T>
struct device_problem {
    dbuf<T> r, m, lp, sq, w, b, a, g;
    dbuf<std::int64_t> ids;
    const token_problem& p;
    explicit device_problem(const token_problem& pb)
        : r(as<T>(pb.rewards)),
          m(as<T>(pb.mask)),
          lp(as<T>(pb.old_logp)),
          sq(as<T>(pb.sum_pi_squared)),
          w(as<T>(pb.is_weights)),
          b(as<T>(pb.baselines)),
          a(pb.rewards.size(), T(-99)),
          g(pb.rewards.size(), T(-99)),
          ids(pb.ids),
          p(pb) {}
    grpo::token_advantage_inputs<T, grpo::device_space> inputs(bool rho) const {
        grpo::token_advantage_inputs<T, grpo::device_space> in;
        in.rewards = r.cmview(p.rows, p.cols);
        in.mask = m.cmview(p.rows, p.cols);
        in.old_logp = lp.cmview(p.rows, p.cols);
        in.sum_pi_squared = sq.cmview(p.rows, p.cols);
        if (rho) in.is_weights = w.cmview(p.rows, p.cols);
        in.baselines = b.cview();
        in.prompts = p.ids.empty() ? grpo::device_groups::contiguous(p.group_size)
                                   : grpo::device_groups::by_id(ids.cview(), p.num_groups);
        return in;
    }
    grpo::token_advantage_outputs<T, grpo::device_space> outputs() const {
        grpo::token_advantage_outputs<T, grpo::device_space> out;
        out.advantages = a.mview(p.rows, p.cols);
        out.returns = g.mview(p.rows, p.cols);
        return out;
    }
};

template <class T>
token_result run_device(const token_problem& p, const grpo::token_advantage_config& cfg, bool rho,
                        grpo_test::device_workspace& ws) {
    device_problem<T> d(p);
    token_result res;
    res.st = grpo::token_advantages(grpo_test::default_exec(), d.inputs(rho), d.outputs(), cfg, ws);
    const std::vector<T> a = d.a.get(), g = d.g.get();
    res.adv.assign(a.begin(), a.end());
    res.ret.assign(g.begin(), g.end());
    return res;
}

bool close(double a, double b, double rel) {
    return std::fabs(a - b) <= rel * std::fmax(1.0, std::fmax(std::fabs(a), std::fabs(b)));
}

void compare(const token_result& cpu, const token_result& dev, double rel) {
    CHECK(dev.st.tokens == cpu.st.tokens);
    CHECK(close(dev.st.return_mean, cpu.st.return_mean, rel));
    CHECK(close(dev.st.return_std, cpu.st.return_std, rel));
    CHECK(close(dev.st.advantage_mean, cpu.st.advantage_mean, rel));
    CHECK(close(dev.st.advantage_std, cpu.st.advantage_std, rel));
    CHECK(close(dev.st.advantage_min, cpu.st.advantage_min, rel));
    CHECK(close(dev.st.advantage_max, cpu.st.advantage_max, rel));
    REQUIRE(dev.adv.size() == cpu.adv.size());
    std::size_t bad = 0;
    for (std::size_t c = 0; c < cpu.adv.size(); ++c)
        bad += !close(dev.adv[c], cpu.adv[c], rel) || !close(dev.ret[c], cpu.ret[c], rel);
    CHECK(bad == 0);
}

const grpo::token_estimator all_token_estimators[] = {
    grpo::token_estimator::reinforce_plus_plus, grpo::token_estimator::remax,
    grpo::token_estimator::optimal_token_baseline, grpo::token_estimator::tir_optimal_token_baseline};

template <class T>
void parity_sweep(const token_problem& p, double rel) {
    grpo_test::device_workspace ws; // shared: reuse must not leak state between calls
    for (auto est : all_token_estimators)
        for (auto tail : {grpo::otb_tail::estimator_default, grpo::otb_tail::keep, grpo::otb_tail::zero})
            for (int rho = 0; rho < 2; ++rho) {
                grpo::token_advantage_config cfg;
                cfg.estimator = est;
                cfg.tail = tail;
                cfg.gamma = 0.95;
                const int estimator = int(est), tail_rule = int(tail);
                CAPTURE(estimator, tail_rule, rho);
                compare(run_cpu<T>(p, cfg, rho != 0), run_device<T>(p, cfg, rho != 0, ws), rel);
            }
}

} // namespace

TEST_CASE("cuda token advantages: parity with the CPU backend", "[cuda][token_advantages]") {
    SECTION("contiguous prompt groups of 4, double") {
        parity_sweep<double>(random_problem(12, 9, 4, false, 5), 1e-12);
    }
    SECTION("id-based prompt groups, double") { parity_sweep<double>(random_problem(13, 7, 3, true, 6), 1e-12); }
    SECTION("contiguous prompt groups of 3, float") { parity_sweep<float>(random_problem(9, 11, 3, false, 7), 1e-5); }
    SECTION("a group larger than a block, many chunks, double") {
        parity_sweep<double>(random_problem(300, 40, 150, false, 8), 1e-10);
    }
}

TEST_CASE("cuda token advantages: the batch sums spread over blocks; deterministic", "[cuda][token_advantages]") {
    const token_problem p = random_problem(240, 200, 8, true, 9); // 48000 cells: 12 chunks
    for (auto est : all_token_estimators) {
        grpo::token_advantage_config cfg;
        cfg.estimator = est;
        CAPTURE(int(est));
        grpo_test::device_workspace ws;
#ifdef GRPO_TEST_EMULATED
        ws.record_launches(true);
#endif
        const token_result a = run_device<double>(p, cfg, true, ws);
#ifdef GRPO_TEST_EMULATED
        index_t chunk_blocks = 0;
        for (const auto& l : ws.launches())
            if (l.kernel.find("tok_moments_kernel") != std::string::npos) chunk_blocks = l.blocks;
        CHECK(chunk_blocks == grpo::detail::cuda::adv_chunks(240 * 200));
        CHECK(chunk_blocks > 1);
        ws.record_launches(false);
#endif
        compare(run_cpu<double>(p, cfg, true), a, 1e-10);
        const token_result b = run_device<double>(p, cfg, true, ws);
        CHECK(std::memcmp(&a.st, &b.st, sizeof a.st) == 0);
        CHECK(a.adv == b.adv);
        CHECK(a.ret == b.ret);
    }
}

namespace {

/// The device call throws the CPU's grpo::error message and writes nothing.
template <class T>
void check_same_error(const token_problem& p, const grpo::token_advantage_config& cfg) {
    std::string cpu, dev;
    try {
        run_cpu<T>(p, cfg, true);
    } catch (const grpo::error& e) {
        cpu = e.what();
    }
    REQUIRE(!cpu.empty());
    device_problem<T> d(p);
    grpo_test::device_workspace ws;
    try {
        grpo::token_advantages(grpo_test::default_exec(), d.inputs(true), d.outputs(), cfg, ws);
    } catch (const grpo::error& e) {
        dev = e.what();
    }
    CHECK(dev == cpu);
    CHECK(d.a.get() == std::vector<T>(p.rewards.size(), T(-99)));
    CHECK(d.g.get() == std::vector<T>(p.rewards.size(), T(-99)));
}

} // namespace

TEST_CASE("cuda token advantages: bad values give the CPU backend's error, outputs untouched",
          "[cuda][token_advantages]") {
    const token_problem base = random_problem(8, 6, 4, true, 10);
    grpo::token_advantage_config cfg;
    for (auto est : all_token_estimators) {
        cfg.estimator = est;
        CAPTURE(int(est));
        token_problem p = base;
        p.mask[3] = 0.5;
        check_same_error<double>(p, cfg);
        p = base;
        p.mask[0] = 1, p.rewards[0] = std::nan("");
        check_same_error<double>(p, cfg);
    }
    cfg.estimator = grpo::token_estimator::optimal_token_baseline;
    token_problem p = base;
    p.mask[1] = 1, p.old_logp[1] = 0.5;
    check_same_error<double>(p, cfg);
    p = base;
    p.mask[2] = 1, p.sum_pi_squared[2] = 1.5;
    check_same_error<double>(p, cfg);
    p = base;
    p.mask[2] = 1, p.is_weights[2] = -1;
    check_same_error<double>(p, cfg);
    p = base;
    p.ids[5] = p.num_groups;
    check_same_error<double>(p, cfg);
    cfg.estimator = grpo::token_estimator::remax;
    p = base;
    p.baselines[4] = std::numeric_limits<double>::infinity();
    check_same_error<double>(p, cfg);
    // Returns that do not fit float.
    p = base;
    for (std::size_t c = 0; c < p.rewards.size(); ++c) p.rewards[c] = p.mask[c] != 0 ? 3e38 : 0.0;
    check_same_error<float>(p, cfg);
    // REINFORCE++ needs two unmasked tokens.
    cfg.estimator = grpo::token_estimator::reinforce_plus_plus;
    p = base;
    for (double& m : p.mask) m = 0;
    p.mask[7] = 1;
    check_same_error<double>(p, cfg);
}

TEST_CASE("cuda token advantages: shapes and configuration are checked before any launch", "[cuda][token_advantages]") {
    const token_problem p = random_problem(4, 5, 2, false, 11);
    device_problem<double> d(p);
    grpo_test::device_workspace ws;
    grpo::token_advantage_config cfg;
    cfg.estimator = grpo::token_estimator::optimal_token_baseline;
    auto in = d.inputs(false);
    in.sum_pi_squared = {};
    CHECK_THROWS_AS(grpo::token_advantages(grpo_test::default_exec(), in, d.outputs(), cfg, ws), grpo::error);
    in = d.inputs(false);
    in.prompts = grpo::device_groups::contiguous(3); // does not divide 4 rows
    CHECK_THROWS_AS(grpo::token_advantages(grpo_test::default_exec(), in, d.outputs(), cfg, ws), grpo::error);
    cfg.otb_epsilon = -1;
    CHECK_THROWS_AS(grpo::token_advantages(grpo_test::default_exec(), d.inputs(false), d.outputs(), cfg, ws),
                    grpo::error);
    CHECK(d.a.get() == std::vector<double>(20, -99.0));
    // An empty batch: ReMax and the optimal baseline give zero statistics.
    token_problem e;
    e.group_size = 2;
    device_problem<double> de(e);
    cfg.otb_epsilon = 1e-8;
    const auto st = grpo::token_advantages(grpo_test::default_exec(), de.inputs(false), de.outputs(), cfg, ws);
    CHECK(st.tokens == 0);
    CHECK(st.advantage_std == 0);
}

int main(int argc, char** argv) { return grpo_test::run_device_tests(argc, argv); }
