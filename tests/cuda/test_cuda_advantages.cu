// SPDX-License-Identifier: MIT
// CPU-vs-CUDA parity of compute_advantages: every estimator, both std conventions, both singleton rules,
// NaN-ignoring, contiguous and id-based groups (variable sizes, singletons, empty and constant groups),
// per-group outputs, statistics, determinism, the no-sync record, and the errors of bad inputs.
// Built twice (device_harness.hpp): for a GPU (without one the executable prints a message and exits 77,
// SKIP_RETURN_CODE in tests/cuda/CMakeLists.txt) and for the host emulator (test_cuda_advantages_emulated).
#ifdef GRPO_CATCH3
#include <catch2/catch_session.hpp>
#include <catch2/catch_test_macros.hpp>
#else
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#endif

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "device_harness.hpp"
#include "test_helpers.hpp"

namespace {

using grpo::index_t;

using grpo_test::dbuf;

bool close(double a, double b, double rel) {
    if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
    return std::fabs(a - b) <= rel * std::fmax(1.0, std::fmax(std::fabs(a), std::fabs(b)));
}

/// A batch of rewards with its grouping. Contiguous (size G) when ids is empty.
struct problem {
    std::vector<double> rewards;
    index_t group_size = 0;
    std::vector<std::int64_t> ids;
    index_t num_groups = 0;
    std::vector<double> weights; // token weights (whitening); empty = none
    bool by_id = false;          // id-based even when there are no rows
    bool contiguous() const { return ids.empty() && !by_id; }
    index_t k() const { return contiguous() ? static_cast<index_t>(rewards.size()) / group_size : num_groups; }
};

/// Random rewards in contiguous groups of G; group 1 constant (0.1 repeated), some binary groups,
/// optionally some NaN rewards (one group fully NaN).
problem contiguous_problem(index_t groups, index_t G, std::uint64_t seed, bool with_nan) {
    grpo_test::rng g(seed);
    problem p;
    p.group_size = G;
    p.rewards.resize(static_cast<std::size_t>(groups * G));
    for (index_t j = 0; j < groups; ++j)
        for (index_t q = 0; q < G; ++q) {
            double r = j % 3 == 0 ? double(g.next() % 2) : g.uniform(-1, 2);
            if (j == 1) r = 0.1; // constant group: std exactly 0, advantages exactly 0
            p.rewards[static_cast<std::size_t>(j * G + q)] = r;
        }
    if (with_nan) {
        for (std::size_t i = 0; i < p.rewards.size(); ++i)
            if (g.uniform() < 0.1) p.rewards[i] = std::numeric_limits<double>::quiet_NaN();
        if (groups > 2)
            for (index_t q = 0; q < G; ++q) p.rewards[static_cast<std::size_t>(2 * G + q)] = std::nan("");
    }
    p.weights.resize(p.rewards.size());
    for (double& w : p.weights) w = double(1 + g.next() % 50);
    return p;
}

/// Id-based groups with the given sizes (0 = an empty group), rows shuffled; group 0 constant.
problem id_problem(const std::vector<index_t>& sizes, std::uint64_t seed, bool with_nan) {
    grpo_test::rng g(seed);
    problem p;
    p.num_groups = static_cast<index_t>(sizes.size());
    for (index_t j = 0; j < p.num_groups; ++j)
        for (index_t q = 0; q < sizes[static_cast<std::size_t>(j)]; ++q) {
            p.ids.push_back(j);
            p.rewards.push_back(j == 0 ? 0.7 : (j % 2 ? double(g.next() % 2) : g.uniform(-3, 1)));
        }
    for (std::size_t i = p.ids.size(); i > 1; --i) { // Fisher-Yates with the fixed rng
        const std::size_t s = static_cast<std::size_t>(g.next() % i);
        std::swap(p.ids[i - 1], p.ids[s]);
        std::swap(p.rewards[i - 1], p.rewards[s]);
    }
    if (with_nan)
        for (double& r : p.rewards)
            if (g.uniform() < 0.1) r = std::numeric_limits<double>::quiet_NaN();
    p.weights.resize(p.rewards.size());
    for (double& w : p.weights) w = double(1 + g.next() % 50);
    return p;
}

struct result {
    grpo::advantage_stats st;
    std::vector<double> adv, mean, std;
    std::vector<std::uint8_t> zero;
    std::vector<std::int64_t> count;
};

template <class T>
result run_cpu(const problem& pb, const grpo::advantage_config& cfg, bool weights) {
    const index_t n = static_cast<index_t>(pb.rewards.size()), k = pb.k();
    std::vector<T> r(pb.rewards.begin(), pb.rewards.end()), a(pb.rewards.size(), T(-99));
    result out;
    out.mean.assign(static_cast<std::size_t>(k), -1);
    out.std.assign(static_cast<std::size_t>(k), -1);
    out.zero.assign(static_cast<std::size_t>(k), 7);
    out.count.assign(static_cast<std::size_t>(k), -1);
    grpo::group_outputs go{grpo::vector_view<double>(out.mean.data(), k), grpo::vector_view<double>(out.std.data(), k),
                           grpo::vector_view<std::uint8_t>(out.zero.data(), k),
                           grpo::vector_view<std::int64_t>(out.count.data(), k)};
    const grpo::groups g = pb.contiguous() ? grpo::groups::contiguous(pb.group_size)
                                           : grpo::groups::by_id({pb.ids.data(), n}, pb.num_groups);
    out.st = grpo::compute_advantages(
        grpo::exec::host{}, grpo::vector_view<const T>(r.data(), n), g, grpo::vector_view<T>(a.data(), n), cfg, go,
        weights ? grpo::vector_view<const double>(pb.weights.data(), n) : grpo::vector_view<const double>());
    out.adv.assign(a.begin(), a.end());
    return out;
}

/// One CUDA call (syncing overload); `ws` may be shared between calls to exercise reuse.
template <class T>
result run_cuda(const problem& pb, const grpo::advantage_config& cfg, bool weights, grpo_test::device_workspace& ws,
                bool no_sync = false) {
    const index_t k = pb.k();
    dbuf<T> r(std::vector<T>(pb.rewards.begin(), pb.rewards.end()));
    dbuf<T> a(pb.rewards.size(), T(-99));
    dbuf<std::int64_t> ids(pb.ids);
    dbuf<double> w(pb.weights), mean(static_cast<std::size_t>(k), -1.0), sd(static_cast<std::size_t>(k), -1.0);
    dbuf<std::uint8_t> zero(static_cast<std::size_t>(k), std::uint8_t(7));
    dbuf<std::int64_t> count(static_cast<std::size_t>(k), std::int64_t(-1));
    const grpo::device_group_outputs go{mean.view(), sd.view(), zero.view(), count.view()};
    const grpo::device_groups g = pb.contiguous() ? grpo::device_groups::contiguous(pb.group_size)
                                                  : grpo::device_groups::by_id(ids.cview(), pb.num_groups);
    const auto tw = weights ? w.cview() : grpo::vector_view<const double, grpo::device_space>();
    result out;
    if (no_sync) {
        dbuf<double> rec(grpo::advantage_stats_doubles, -5.0);
        grpo_test::test_stream s;
        grpo::compute_advantages(s.exec(), r.cview(), g, a.view(), cfg, ws, rec.p, go, tw);
        REQUIRE(s.synchronize());
        const std::vector<double> h = rec.get();
        REQUIRE(h[10] == 0);
        out.st = grpo::unpack_advantage_stats(h.data());
    } else {
        out.st = grpo::compute_advantages(grpo_test::default_exec(), r.cview(), g, a.view(), cfg, ws, go, tw);
    }
    const std::vector<T> av = a.get();
    out.adv.assign(av.begin(), av.end());
    out.mean = mean.get();
    out.std = sd.get();
    out.zero = zero.get();
    out.count = count.get();
    return out;
}

void compare(const result& cpu, const result& gpu, double rel) {
    CHECK(gpu.st.num_groups == cpu.st.num_groups);
    CHECK(gpu.st.zero_variance_groups == cpu.st.zero_variance_groups);
    CHECK(gpu.st.zero_variance_fraction == cpu.st.zero_variance_fraction);
    CHECK(gpu.st.scored == cpu.st.scored);
    CHECK(close(gpu.st.reward_mean, cpu.st.reward_mean, rel));
    CHECK(close(gpu.st.reward_std, cpu.st.reward_std, rel));
    CHECK(close(gpu.st.advantage_mean, cpu.st.advantage_mean, rel));
    CHECK(close(gpu.st.advantage_std, cpu.st.advantage_std, rel));
    CHECK(close(gpu.st.advantage_min, cpu.st.advantage_min, rel));
    CHECK(close(gpu.st.advantage_max, cpu.st.advantage_max, rel));
    std::size_t bad = 0;
    REQUIRE(gpu.adv.size() == cpu.adv.size());
    for (std::size_t i = 0; i < cpu.adv.size(); ++i) bad += !close(gpu.adv[i], cpu.adv[i], rel);
    for (std::size_t j = 0; j < cpu.mean.size(); ++j) {
        bad += !close(gpu.mean[j], cpu.mean[j], rel);
        bad += !close(gpu.std[j], cpu.std[j], rel);
        bad += gpu.zero[j] != cpu.zero[j];
        bad += gpu.count[j] != cpu.count[j];
    }
    CHECK(bad == 0);
}

const grpo::advantage_estimator all_estimators[] = {grpo::advantage_estimator::group_zscore,
                                                    grpo::advantage_estimator::group_centered,
                                                    grpo::advantage_estimator::group_centered_batch_std,
                                                    grpo::advantage_estimator::rloo,
                                                    grpo::advantage_estimator::group_centered_batch_whitened,
                                                    grpo::advantage_estimator::passk,
                                                    grpo::advantage_estimator::opo,
                                                    grpo::advantage_estimator::gpg};

/// Every estimator x std x singleton rule x NaN policy on one problem, both element types' tolerance.
template <class T>
void parity_sweep(const problem& clean, const problem& nanny, double rel) {
    grpo_test::device_workspace ws; // shared by every call: reuse must not leak state between calls
    for (auto est : all_estimators)
        for (auto sd : {grpo::std_estimator::unbiased, grpo::std_estimator::biased})
            for (auto single : {grpo::singleton_group::zero, grpo::singleton_group::raw_reward})
                for (int nan = 0; nan < 2; ++nan)
                    for (int weights = est == grpo::advantage_estimator::opo ? 1 : 0;
                         weights < (est == grpo::advantage_estimator::group_centered_batch_whitened ||
                                            est == grpo::advantage_estimator::opo
                                        ? 2
                                        : 1);
                         ++weights) {
                        grpo::advantage_config cfg;
                        cfg.estimator = est;
                        cfg.std = sd;
                        cfg.singleton = single;
                        cfg.nan = nan ? grpo::nan_rewards::ignore : grpo::nan_rewards::reject;
                        const problem& pb = nan ? nanny : clean;
                        const int estimator = int(est), std_kind = int(sd), singleton = int(single);
                        CAPTURE(estimator, std_kind, singleton, nan, weights);
                        compare(run_cpu<T>(pb, cfg, weights != 0), run_cuda<T>(pb, cfg, weights != 0, ws), rel);
                        // The variance floor (verl grpo_vectorized) and passk without std scaling.
                        cfg.variance_floor = 1e-6;
                        cfg.passk_scale_by_std = false;
                        compare(run_cpu<T>(pb, cfg, weights != 0), run_cuda<T>(pb, cfg, weights != 0, ws), rel);
                    }
}

/// Advantages of constant groups are exactly 0 on device too (when the estimator only centers/scales).
template <class T>
void check_constant_group_exact(const problem& pb, index_t constant_group) {
    grpo_test::device_workspace ws;
    for (auto est : {grpo::advantage_estimator::group_zscore, grpo::advantage_estimator::group_centered,
                     grpo::advantage_estimator::group_centered_batch_std, grpo::advantage_estimator::rloo}) {
        grpo::advantage_config cfg;
        cfg.estimator = est;
        const result r = run_cuda<T>(pb, cfg, false, ws);
        const std::size_t j = static_cast<std::size_t>(constant_group);
        CHECK(r.std[j] == 0);
        CHECK(r.zero[j] == 1);
        for (std::size_t i = 0; i < pb.rewards.size(); ++i) {
            const bool member =
                pb.contiguous() ? index_t(i) / pb.group_size == constant_group : pb.ids[i] == constant_group;
            if (member) CHECK(r.adv[i] == 0);
        }
    }
}

std::vector<index_t> variable_sizes() {
    // Singletons (1), empty groups (0), a group larger than one CUDA block of the group kernel (300).
    return {6, 1, 4, 0, 9, 1, 2, 16, 3, 300, 5, 0, 1, 7, 8, 2};
}

} // namespace

TEST_CASE("cuda advantages: parity with the CPU backend, contiguous groups", "[cuda][advantages]") {
    SECTION("G = 8, double") {
        parity_sweep<double>(contiguous_problem(40, 8, 1, false), contiguous_problem(40, 8, 2, true), 1e-12);
    }
    SECTION("G = 8, float") {
        parity_sweep<float>(contiguous_problem(40, 8, 3, false), contiguous_problem(40, 8, 4, true), 1e-6);
    }
    SECTION("G = 1: every group a singleton") {
        parity_sweep<double>(contiguous_problem(33, 1, 5, false), contiguous_problem(33, 1, 6, true), 1e-12);
    }
    SECTION("G = 512 (groups wider than the 128-thread group block), many rows for the 1024-thread batch block") {
        parity_sweep<double>(contiguous_problem(9, 512, 7, false), contiguous_problem(9, 512, 8, true), 1e-12);
    }
}

TEST_CASE("cuda advantages: parity with the CPU backend, id-based groups", "[cuda][advantages]") {
    SECTION("variable sizes, singletons, empty groups, double") {
        parity_sweep<double>(id_problem(variable_sizes(), 11, false), id_problem(variable_sizes(), 12, true), 1e-12);
    }
    SECTION("variable sizes, float") {
        parity_sweep<float>(id_problem(variable_sizes(), 13, false), id_problem(variable_sizes(), 14, true), 1e-6);
    }
    SECTION("many groups") {
        std::vector<index_t> sizes;
        for (int j = 0; j < 700; ++j) sizes.push_back(index_t(j % 11));
        parity_sweep<double>(id_problem(sizes, 15, false), id_problem(sizes, 16, true), 1e-12);
    }
}

TEST_CASE("cuda advantages: constant groups are exactly 0 with std exactly 0", "[cuda][advantages]") {
    check_constant_group_exact<double>(contiguous_problem(12, 6, 21, false), 1);
    check_constant_group_exact<float>(contiguous_problem(12, 6, 22, false), 1);
    check_constant_group_exact<double>(id_problem(variable_sizes(), 23, false), 0);
}

TEST_CASE("cuda advantages: empty batch", "[cuda][advantages]") {
    problem pb;
    pb.group_size = 4;
    grpo_test::device_workspace ws;
    compare(run_cpu<double>(pb, {}, false), run_cuda<double>(pb, {}, false, ws), 1e-12);
    // id-based grouping with groups but no rows: every group empty (begin = end = 0 on device).
    problem ids;
    ids.num_groups = 3;
    ids.by_id = true;
    compare(run_cpu<double>(ids, {}, true), run_cuda<double>(ids, {}, true, ws), 1e-12);
}

TEST_CASE("cuda advantages: the no-sync record equals the syncing result", "[cuda][advantages]") {
    grpo_test::device_workspace ws;
    const problem pb = id_problem(variable_sizes(), 31, true);
    grpo::advantage_config cfg = grpo::advantage_config::trl();
    const result a = run_cuda<double>(pb, cfg, false, ws);
    const result b = run_cuda<double>(pb, cfg, false, ws, true);
    CHECK(std::memcmp(&a.st, &b.st, sizeof a.st) == 0);
    CHECK(a.adv == b.adv);
}

namespace {

/// One estimator on a batch of `groups` contiguous groups of G: the batch kernel's grid (from the emulator's
/// launch log), CPU parity and a bit-identical second run.
void check_chunked_batch(index_t groups, index_t G, grpo::advantage_estimator est, bool weights) {
    problem pb = contiguous_problem(groups, G, 77, false);
    pb.weights.resize(pb.rewards.size());
    for (std::size_t i = 0; i < pb.weights.size(); ++i) pb.weights[i] = double(1 + i % 7);
    grpo::advantage_config cfg;
    cfg.estimator = est;
    CAPTURE(int(est), groups * G);
    grpo_test::device_workspace ws;
#ifdef GRPO_TEST_EMULATED
    ws.record_launches(true);
#endif
    const result gpu = run_cuda<double>(pb, cfg, weights, ws);
#ifdef GRPO_TEST_EMULATED
    index_t batch_blocks = 0, stats_blocks = 0;
    for (const auto& l : ws.launches()) {
        if (l.kernel.find("adv_batch_kernel") != std::string::npos) batch_blocks = l.blocks;
        if (l.kernel.find("adv_stats_kernel") != std::string::npos) stats_blocks = l.blocks;
    }
    CHECK(batch_blocks == grpo::detail::cuda::adv_chunks(G * groups));
    CHECK(batch_blocks > 1);
    CHECK(stats_blocks > 1);
    ws.record_launches(false);
#endif
    compare(run_cpu<double>(pb, cfg, weights), gpu, 1e-9);
    const result again = run_cuda<double>(pb, cfg, weights, ws);
    CHECK(std::memcmp(&gpu.st, &again.st, sizeof gpu.st) == 0);
    CHECK(gpu.adv == again.adv);
}

} // namespace

TEST_CASE("cuda advantages: 10^6 completions spread the batch statistics over many blocks", "[cuda][advantages]") {
    // The batch-level reductions (batch moments, whitening, gpg's non-zero count, the stats) run over chunks of
    // rows, one partial per chunk, combined in chunk order: many blocks, deterministic and equal to the CPU.
    // Whitening with token weights uses every partial field of the batch kernel (both pivots, both moments).
    check_chunked_batch(1000, 1000, grpo::advantage_estimator::group_centered_batch_whitened, true);
#ifdef GRPO_TEST_EMULATED
    // 245 batch blocks, as the docs say.
    CHECK(grpo::detail::cuda::adv_chunks(1000000) == 245);
#endif
}

TEST_CASE("cuda advantages: batch std and gpg over several chunks", "[cuda][advantages]") {
    for (auto est : {grpo::advantage_estimator::group_centered_batch_std, grpo::advantage_estimator::gpg})
        check_chunked_batch(300, 64, est, false); // 19200 rows: 5 chunks
}

TEST_CASE("cuda advantages: deterministic across runs", "[cuda][advantages]") {
    std::vector<index_t> sizes;
    for (int j = 0; j < 300; ++j) sizes.push_back(index_t(1 + j % 37));
    for (const problem& pb : {contiguous_problem(256, 16, 41, true), id_problem(sizes, 42, true)})
        for (auto est : all_estimators) {
            grpo::advantage_config cfg = grpo::advantage_config::trl();
            cfg.estimator = est;
            grpo_test::device_workspace ws1, ws2;
            const result a = run_cuda<float>(pb, cfg, true, ws1);
            for (int run = 0; run < 3; ++run) {
                const result b = run_cuda<float>(pb, cfg, true, run == 0 ? ws2 : ws1);
                CHECK(std::memcmp(&a.st, &b.st, sizeof a.st) == 0);
                CHECK(a.adv == b.adv); // advantages are stored as double copies of the floats: exact compare
                CHECK(a.mean == b.mean);
                CHECK(a.std == b.std);
            }
        }
}

namespace {

/// The CPU message for `pb` under `cfg` (which must throw), or "" when it does not.
std::string cpu_error(const problem& pb, const grpo::advantage_config& cfg, bool weights) {
    try {
        run_cpu<double>(pb, cfg, weights);
    } catch (const grpo::error& e) {
        return e.what();
    }
    return "";
}

/// The CUDA call throws grpo::error with the CPU's message and writes nothing.
void check_same_error(const problem& pb, const grpo::advantage_config& cfg, bool weights = false) {
    const std::string expected = cpu_error(pb, cfg, weights);
    REQUIRE(!expected.empty());
    const index_t n = static_cast<index_t>(pb.rewards.size()), k = pb.k();
    dbuf<double> r(pb.rewards), a(pb.rewards.size(), -99.0), mean(static_cast<std::size_t>(k), -1.0), w(pb.weights);
    dbuf<std::int64_t> ids(pb.ids);
    const grpo::device_groups g = pb.contiguous() ? grpo::device_groups::contiguous(pb.group_size)
                                                  : grpo::device_groups::by_id(ids.cview(), pb.num_groups);
    grpo::device_group_outputs go;
    go.mean = mean.view();
    grpo_test::device_workspace ws;
    std::string got;
    try {
        grpo::compute_advantages(grpo_test::default_exec(), r.cview(), g, a.view(), cfg, ws, go,
                                 weights ? w.cview() : grpo::vector_view<const double, grpo::device_space>());
    } catch (const grpo::error& e) {
        got = e.what();
    }
    CHECK(got == expected);
    CHECK(a.get() == std::vector<double>(static_cast<std::size_t>(n), -99.0));
    CHECK(mean.get() == std::vector<double>(static_cast<std::size_t>(k), -1.0));

    // The no-sync overload reports an error code in the record and writes nothing either.
    dbuf<double> rec(grpo::advantage_stats_doubles, 0.0);
    grpo::compute_advantages(grpo_test::default_exec(), r.cview(), g, a.view(), cfg, ws, rec.p, go,
                             weights ? w.cview() : grpo::vector_view<const double, grpo::device_space>());
    const std::vector<double> h = rec.get(); // cudaMemcpy waits for the default stream
    CHECK(h[10] != 0);
    CHECK_THROWS_AS(grpo::unpack_advantage_stats(h.data()), grpo::error);
    CHECK(a.get() == std::vector<double>(static_cast<std::size_t>(n), -99.0));
}

} // namespace

TEST_CASE("cuda advantages: bad values give the CPU backend's error, outputs untouched", "[cuda][advantages]") {
    SECTION("id out of range") {
        problem pb = id_problem(variable_sizes(), 51, false);
        pb.ids[17] = pb.num_groups;
        pb.ids[40] = -1;
        check_same_error(pb, {});
    }
    SECTION("Inf reward") {
        problem pb = contiguous_problem(5, 4, 52, false);
        pb.rewards[9] = std::numeric_limits<double>::infinity();
        check_same_error(pb, grpo::advantage_config::trl());
    }
    SECTION("NaN reward with nan_rewards::reject") {
        problem pb = contiguous_problem(5, 4, 53, false);
        pb.rewards[3] = std::nan("");
        pb.rewards[11] = std::nan("");
        check_same_error(pb, {});
    }
    SECTION("negative token weight") {
        problem pb = contiguous_problem(5, 4, 54, false);
        pb.weights[6] = -1;
        grpo::advantage_config cfg;
        cfg.estimator = grpo::advantage_estimator::group_centered_batch_whitened;
        check_same_error(pb, cfg, true);
    }
    SECTION("whitening with a single scored reward") {
        problem pb = contiguous_problem(1, 3, 55, false);
        pb.rewards[0] = std::nan("");
        pb.rewards[2] = std::nan("");
        grpo::advantage_config cfg;
        cfg.estimator = grpo::advantage_estimator::group_centered_batch_whitened;
        cfg.nan = grpo::nan_rewards::ignore;
        check_same_error(pb, cfg);
    }
}

namespace {

/// Every advantage exactly 0 on the CPU and on the device, and the two results equal.
template <class T>
void check_all_zero(const problem& pb, const grpo::advantage_config& cfg, bool weights) {
    grpo_test::device_workspace ws;
    const result cpu = run_cpu<T>(pb, cfg, weights), dev = run_cuda<T>(pb, cfg, weights, ws);
    std::size_t nonzero_cpu = 0, nonzero_dev = 0;
    for (double a : cpu.adv) nonzero_cpu += a != 0;
    for (double a : dev.adv) nonzero_dev += a != 0;
    CHECK(nonzero_cpu == 0);
    CHECK(nonzero_dev == 0);
    CHECK(dev.adv == cpu.adv);
    CHECK(dev.st.advantage_mean == 0);
    CHECK(dev.st.advantage_std == 0);
    CHECK(dev.st.advantage_min == 0);
    CHECK(dev.st.advantage_max == 0);
    compare(cpu, dev, std::is_same<T, float>::value ? 1e-6 : 1e-12);
}

template <class T>
void constant_batches_whiten_to_zero() {
    using grpo::advantage_estimator;
    // The whole batch constant; every group constant at its own value (centered values all 0); id-based.
    problem same_value = contiguous_problem(6, 4, 81, false);
    for (double& r : same_value.rewards) r = 0.1;
    problem per_group = contiguous_problem(6, 4, 82, false);
    for (std::size_t i = 0; i < per_group.rewards.size(); ++i) per_group.rewards[i] = 0.3 * double(i / 4) - 0.7;
    problem ids = id_problem({3, 5, 0, 2, 7}, 83, false);
    for (std::size_t i = 0; i < ids.rewards.size(); ++i) ids.rewards[i] = 1.9 * double(ids.ids[i]) + 0.1;
    // Rows of weight 0 come first and are not constant after centering; every weighted row is: the CPU's
    // pivot (first row of non-zero weight) must be the device's too for the weighted m2 to be exactly 0.
    // (Inexact weights and many rows, so that a shift by another pivot would not cancel exactly.)
    problem zero_weights = contiguous_problem(40, 4, 84, false);
    for (std::size_t i = 0; i < zero_weights.rewards.size(); ++i) {
        const bool first_group = i < 4;
        const double w[] = {0.1, 0.3, 0.7, 1.3};
        zero_weights.rewards[i] = first_group ? 0.37 * double(i) + 0.05 : 0.1;
        zero_weights.weights[i] = first_group ? 0.0 : w[(i * i + 3 * i) % 4];
    }
    for (double eps : {0.0, 1e-300, 1e-8}) {
        CAPTURE(eps);
        grpo::advantage_config cfg;
        cfg.estimator = advantage_estimator::group_centered_batch_whitened;
        cfg.whiten_epsilon = eps;
        for (int w = 0; w < 2; ++w) {
            CAPTURE(w);
            check_all_zero<T>(same_value, cfg, w != 0);
            check_all_zero<T>(per_group, cfg, w != 0);
            check_all_zero<T>(ids, cfg, w != 0);
        }
        check_all_zero<T>(zero_weights, cfg, true);
    }
    // z-score (and batch std) with epsilon 0: std + epsilon == 0 on a constant group gives 0, not 0/0.
    grpo::advantage_config z;
    z.epsilon = 0;
    for (auto est : {advantage_estimator::group_zscore, advantage_estimator::group_centered_batch_std}) {
        z.estimator = est;
        check_all_zero<T>(same_value, z, false);
        check_all_zero<T>(ids, z, false);
    }
    z.estimator = advantage_estimator::group_zscore;
    check_all_zero<T>(per_group, z, false);
    // Mixed batch: constant groups exactly 0, the others as on the CPU (group 1 of contiguous_problem is
    // constant; id_problem's group 0 is).
    for (const problem& pb : {contiguous_problem(12, 6, 85, false), id_problem(variable_sizes(), 86, false)}) {
        grpo_test::device_workspace ws;
        const result cpu = run_cpu<T>(pb, z, false), dev = run_cuda<T>(pb, z, false, ws);
        compare(cpu, dev, std::is_same<T, float>::value ? 1e-6 : 1e-12);
        const index_t constant = pb.contiguous() ? 1 : 0;
        for (std::size_t i = 0; i < pb.rewards.size(); ++i) {
            const index_t j = pb.contiguous() ? index_t(i) / pb.group_size : pb.ids[i];
            if (j != constant) continue;
            CHECK(cpu.adv[i] == 0);
            CHECK(dev.adv[i] == 0);
        }
    }
}

} // namespace

TEST_CASE("cuda advantages: constant batches give exactly 0 for any epsilon >= 0, as on the CPU",
          "[cuda][advantages]") {
    SECTION("double") { constant_batches_whiten_to_zero<double>(); }
    SECTION("float") { constant_batches_whiten_to_zero<float>(); }
}

TEST_CASE("cuda advantages: error records carry exact int64 rows and ids", "[cuda][advantages]") {
    problem pb = id_problem(variable_sizes(), 87, false);
    pb.ids[5] = std::numeric_limits<std::int64_t>::max();
    check_same_error(pb, {}); // the syncing overload: the CPU's message
    const std::string cpu = cpu_error(pb, {}, false);
    CHECK(cpu.find("9223372036854775807 at index 5") != std::string::npos);
    const index_t n = static_cast<index_t>(pb.rewards.size());
    dbuf<double> r(pb.rewards), a(pb.rewards.size(), -99.0), rec(grpo::advantage_stats_doubles, 0.0);
    dbuf<std::int64_t> ids(pb.ids);
    grpo_test::device_workspace ws;
    grpo::compute_advantages(grpo_test::default_exec(), r.cview(),
                             grpo::device_groups::by_id(ids.cview(), pb.num_groups), a.view(), grpo::advantage_config{},
                             ws, rec.p);
    const std::vector<double> h = rec.get();
    CHECK(h[10] == 1);
    CHECK(grpo::detail::cuda::double_bits_as_int64(h[11]) == 5);
    CHECK(grpo::detail::cuda::double_bits_as_int64(h[12]) == std::numeric_limits<std::int64_t>::max());
    std::string unpacked;
    try {
        grpo::unpack_advantage_stats(h.data());
    } catch (const grpo::error& e) {
        unpacked = e.what();
    }
    CHECK(unpacked.find("at index 5") != std::string::npos);
    CHECK(a.get() == std::vector<double>(static_cast<std::size_t>(n), -99.0));
}

TEST_CASE("cuda advantages: a workspace held by another call is refused (errc::in_use)", "[cuda][advantages]") {
    const problem pb = contiguous_problem(4, 4, 88, false);
    dbuf<double> r(pb.rewards), a(pb.rewards.size(), -99.0), rec(grpo::advantage_stats_doubles, 0.0);
    const grpo::device_groups g = grpo::device_groups::contiguous(4);
    grpo_test::device_workspace ws;
    auto code_of = [](auto&& call) { return grpo_test::error_code_of(call); };
    {
        grpo::basic_workspace_lease<grpo_test::device_workspace> held(ws, "another call");
        CHECK(code_of([&] { grpo::compute_advantages(grpo_test::default_exec(), r.cview(), g, a.view(), {}, ws); }) ==
              grpo::errc::in_use);
        CHECK(code_of([&] {
                  grpo::compute_advantages(grpo_test::default_exec(), r.cview(), g, a.view(), {}, ws, rec.p);
              }) == grpo::errc::in_use);
        CHECK(a.get() == std::vector<double>(pb.rewards.size(), -99.0));
        CHECK(ws.in_use());
    }
    CHECK(!ws.in_use());
    CHECK(code_of([&] { grpo::compute_advantages(grpo_test::default_exec(), r.cview(), g, a.view(), {}, ws); }) ==
          grpo::errc::ok);
    CHECK(!ws.in_use());
}

TEST_CASE("cuda advantages: bad shapes and configuration throw before any launch", "[cuda][advantages]") {
    const problem pb = contiguous_problem(4, 4, 61, false);
    dbuf<double> r(pb.rewards), a(pb.rewards.size(), 0.0), small(3, 0.0);
    dbuf<std::int64_t> ids(std::vector<std::int64_t>(pb.rewards.size(), 0));
    grpo_test::device_workspace ws;
    grpo::advantage_config cfg;
    using grpo::device_groups;
    CHECK_THROWS_AS(
        grpo::compute_advantages(grpo_test::default_exec(), r.cview(), device_groups::contiguous(3), a.view(), cfg, ws),
        grpo::error);
    CHECK_THROWS_AS(
        grpo::compute_advantages(grpo_test::default_exec(), r.cview(), device_groups::contiguous(0), a.view(), cfg, ws),
        grpo::error);
    CHECK_THROWS_AS(grpo::compute_advantages(grpo_test::default_exec(), r.cview(), device_groups::contiguous(4),
                                             small.view(), cfg, ws),
                    grpo::error);
    CHECK_THROWS_AS(grpo::compute_advantages(grpo_test::default_exec(), r.cview(), device_groups::by_id({ids.p, 3}, 1),
                                             a.view(), cfg, ws),
                    grpo::error);
    CHECK_THROWS_AS(grpo::compute_advantages(grpo_test::default_exec(), r.cview(), device_groups::by_id(ids.cview(), 0),
                                             a.view(), cfg, ws),
                    grpo::error);
    grpo::device_group_outputs go;
    go.std = small.view(); // 3 != 4 groups
    CHECK_THROWS_AS(grpo::compute_advantages(grpo_test::default_exec(), r.cview(), device_groups::contiguous(4),
                                             a.view(), cfg, ws, go),
                    grpo::error);
    cfg.epsilon = -1;
    CHECK_THROWS_AS(
        grpo::compute_advantages(grpo_test::default_exec(), r.cview(), device_groups::contiguous(4), a.view(), cfg, ws),
        grpo::error);
    cfg = {};
    // Host groups::by_id cannot reach the device.
    std::vector<std::int64_t> host_ids(pb.rewards.size(), 0);
    CHECK_THROWS_AS(grpo::compute_advantages(grpo_test::default_exec(), r.cview(),
                                             grpo::groups::by_id({host_ids.data(), index_t(host_ids.size())}, 1),
                                             a.view(), cfg, ws),
                    grpo::error);
#ifndef GRPO_TEST_EMULATED
    // A host pointer in a device_space view: caught by the debug-mode runtime check.
    std::vector<double> host_r(pb.rewards);
    CHECK_THROWS_AS(grpo::compute_advantages(grpo_test::default_exec(),
                                             grpo::vector_view<const double, grpo::device_space>(host_r.data(), 16),
                                             device_groups::contiguous(4), a.view(), cfg, ws),
                    grpo::error);
#endif
    // The no-sync overload needs a stats buffer.
    CHECK_THROWS_AS(grpo::compute_advantages(grpo_test::default_exec(), r.cview(), device_groups::contiguous(4),
                                             a.view(), cfg, ws, static_cast<double*>(nullptr)),
                    grpo::error);
    // Nothing was written by any of these calls.
    CHECK(a.get() == std::vector<double>(pb.rewards.size(), 0.0));
}

int main(int argc, char** argv) { return grpo_test::run_device_tests(argc, argv); }

TEST_CASE("cuda advantages: advantages that do not fit the element type are an error, as on the CPU",
          "[cuda][advantages]") {
    // fp32 RLOO of rewards near +-3e38: (r - mean) * n / (n - 1) overflows float (the CPU throws before writing).
    const std::vector<float> rewards = {3e38f, -3e38f, 3e38f, -3e38f};
    grpo::advantage_config cfg;
    cfg.estimator = grpo::advantage_estimator::rloo;
    std::vector<float> cpu_adv(4, -99.f);
    std::string cpu;
    try {
        grpo::compute_advantages(grpo::exec::host{}, grpo::vector_view<const float>(rewards.data(), 4),
                                 grpo::groups::contiguous(2), grpo::vector_view<float>(cpu_adv.data(), 4), cfg);
    } catch (const grpo::error& e) {
        cpu = e.what();
    }
    REQUIRE(cpu.find("fit the output type") != std::string::npos);
    dbuf<float> r(rewards), a(rewards.size(), -99.f);
    dbuf<double> rec(grpo::advantage_stats_doubles, 0.0);
    grpo_test::device_workspace ws;
    const grpo::device_groups g = grpo::device_groups::contiguous(2);
    std::string device;
    try {
        grpo::compute_advantages(grpo_test::default_exec(), r.cview(), g, a.view(), cfg, ws);
    } catch (const grpo::error& e) {
        device = e.what();
    }
    CHECK(device == cpu); // the syncing overload reruns the CPU on the inputs: the same message
    grpo::compute_advantages(grpo_test::default_exec(), r.cview(), g, a.view(), cfg, ws, rec.p);
    const std::vector<double> h = rec.get();
    CHECK(h[10] == 5);
    CHECK(grpo::detail::cuda::double_bits_as_int64(h[11]) == 0);
    CHECK(grpo_test::error_code_of([&] { grpo::unpack_advantage_stats(h.data()); }) == grpo::errc::invalid_value);
    CHECK(a.get() == std::vector<float>(4, -99.f));
}
