// SPDX-License-Identifier: MIT
// dist::loss_and_grad on device views, threads as ranks on one device: every split of a batch over 1-3 ranks
// gives the device's one-process dLoss/dlogp bit for bit, and statistics that do not depend on the split (and
// agree with the one-process device call to rounding); errors on one rank throw on every rank, nothing written.
// Built for a GPU (exit 77 without one) and for the host emulator (test_cuda_dist_emulated).
#ifdef GRPO_CATCH3
#include <catch2/catch_session.hpp>
#include <catch2/catch_test_macros.hpp>
#else
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#endif

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "device_harness.hpp"
#include "dist/dist_cases.hpp"
#include "dist/thread_communicator.hpp"

namespace {

template <class T>
struct batch {
    static constexpr grpo::index_t rows = 13, cols = 11;
    std::vector<T> logp, old, ref, samp, mask, entropy, adv;
    batch() {
        std::mt19937 gen(77);
        const std::size_t cells = rows * cols;
        logp = dist_cases::uniform<T>(gen, cells, -3, -0.05);
        const std::vector<T> noise = dist_cases::uniform<T>(gen, cells, -0.4, 0.4);
        ref = dist_cases::uniform<T>(gen, cells, -3, -0.05);
        samp = dist_cases::uniform<T>(gen, cells, -3, -0.05);
        entropy = dist_cases::uniform<T>(gen, cells, 0.1, 3);
        adv = dist_cases::uniform<T>(gen, rows, -1.5, 1.5);
        old.resize(cells);
        mask.resize(cells);
        for (std::size_t k = 0; k < cells; ++k) old[k] = logp[k] + noise[k];
        for (grpo::index_t i = 0; i < rows; ++i)
            for (grpo::index_t t = 0; t < cols; ++t)
                mask[i * cols + t] = (i == 4 || i == 9) ? T(0) : (t < 1 + (i * 5) % cols ? T(1) : T(0));
    }
};

/// The batch on the device, and rank views of rows [first, first + n).
template <class T>
struct device_batch {
    grpo_test::dbuf<T> logp, old, ref, samp, mask, entropy, adv;
    explicit device_batch(const batch<T>& b)
        : logp(b.logp), old(b.old), ref(b.ref), samp(b.samp), mask(b.mask), entropy(b.entropy), adv(b.adv) {}
    grpo::loss_inputs<T, grpo::device_space> inputs(grpo::index_t first, grpo::index_t n) const {
        constexpr grpo::index_t C = batch<T>::cols;
        const auto rows = [&](const grpo_test::dbuf<T>& d) {
            return n == 0 ? grpo::matrix_view<const T, grpo::device_space>{}
                          : grpo::matrix_view<const T, grpo::device_space>(d.p + first * C, n, C);
        };
        grpo::loss_inputs<T, grpo::device_space> in;
        in.logp = rows(logp);
        in.old_logp = rows(old);
        in.ref_logp = rows(ref);
        in.sampling_logp = rows(samp);
        in.mask = rows(mask);
        in.entropy = rows(entropy);
        in.advantages = n == 0 ? grpo::matrix_view<const T, grpo::device_space>{}
                               : grpo::matrix_view<const T, grpo::device_space>(adv.p + first, n, C, 1, 0);
        return in;
    }
};

template <class T>
grpo::matrix_view<T, grpo::device_space> rows_of(const grpo_test::dbuf<T>& d, grpo::index_t first, grpo::index_t n) {
    constexpr grpo::index_t C = batch<T>::cols;
    return n == 0 ? grpo::matrix_view<T, grpo::device_space>{}
                  : grpo::matrix_view<T, grpo::device_space>(d.p + first * C, n, C);
}

bool same_stats(const grpo::loss_stats& a, const grpo::loss_stats& b) {
    dist_cases::report r;
    dist_cases::compare_stats(r, "", a, b);
    return r.failures.empty();
}

bool close_stats(const grpo::loss_stats& a, const grpo::loss_stats& b) {
    const double* x = reinterpret_cast<const double*>(&a);
    const double* y = reinterpret_cast<const double*>(&b);
    for (std::size_t k = 0; k < sizeof(grpo::loss_stats) / sizeof(double); ++k)
        if (std::fabs(x[k] - y[k]) > 1e-12 * std::fmax(1.0, std::fmax(std::fabs(x[k]), std::fabs(y[k])))) return false;
    return true;
}

template <class T>
void check_contract() {
    const batch<T> host;
    const device_batch<T> d(host);
    constexpr grpo::index_t R = batch<T>::rows, C = batch<T>::cols;
    const std::size_t cells = static_cast<std::size_t>(R * C);
    grpo_test::device_workspace ws;
    for (grpo_test::loss_variant variant : grpo_test::loss_catalogue()) {
        if (grpo::math::selects_by_covariance(variant.cfg.objective)) continue;
        grpo::loss_config cfg = variant.cfg;
        if (cfg.top_entropy_quantile < 1) cfg.entropy_threshold = 1.5; // the step's threshold, from the host
        cfg.checks = grpo::validation::full;
        INFO(variant.name);
        grpo_test::dbuf<T> ref_grad(cells, T(0));
        const grpo::loss_stats ref =
            grpo::loss_and_grad(grpo_test::default_exec(), d.inputs(0, R),
                                grpo::loss_outputs<T, grpo::device_space>{rows_of(ref_grad, 0, R), {}}, cfg, ws);
        const std::vector<T> want = ref_grad.get();
        bool first = true;
        grpo::loss_stats agreed{};
        for (int size = 1; size <= 3; ++size)
            for (int pattern = 0; pattern < 3; ++pattern) {
                const std::vector<grpo::index_t> n = dist_cases::split_rows(R, size, pattern);
                grpo_test::dbuf<T> grad(cells, T(-9));
                std::vector<grpo_test::device_workspace> workspaces(static_cast<std::size_t>(size));
                std::vector<grpo::loss_stats> stats(static_cast<std::size_t>(size));
                std::vector<std::string> errors(static_cast<std::size_t>(size));
                dist_cases::thread_group ranks(size);
                ranks.run([&](const dist_cases::thread_group::communicator& comm) {
                    const grpo::dist::row_span s = dist_cases::span_of(n, comm.rank());
                    const grpo::index_t mine = n[static_cast<std::size_t>(comm.rank())];
                    try {
                        stats[comm.rank()] = grpo::dist::loss_and_grad(
                            comm, grpo_test::default_exec(), d.inputs(s.offset, mine),
                            grpo::loss_outputs<T, grpo::device_space>{rows_of(grad, s.offset, mine), {}}, cfg,
                            workspaces[comm.rank()]);
                    } catch (const grpo::error& e) {
                        errors[comm.rank()] = e.what();
                    }
                });
                INFO("ranks " << size << ", split " << pattern);
                for (const std::string& e : errors) CHECK(e.empty());
                CHECK(grad.get() == want); // bit for bit: the same kernels with the same normalizers
                if (first) agreed = stats[0];
                first = false;
                for (const grpo::loss_stats& st : stats) CHECK(same_stats(st, agreed));
                CHECK(close_stats(agreed, ref));
            }
    }
}

} // namespace

TEST_CASE("dist::loss_and_grad on device views: every split gives the one-process gradient", "[cuda][dist]") {
    check_contract<float>();
    check_contract<double>();
}

TEST_CASE("dist::loss_and_grad on device views: an error on one rank throws on every rank", "[cuda][dist]") {
    batch<float> host;
    host.logp[5 * batch<float>::cols + 2] = std::nanf(""); // row 5 (rank 1 of 2), an unmasked token
    const device_batch<float> d(host);
    constexpr grpo::index_t R = batch<float>::rows, C = batch<float>::cols;
    grpo_test::dbuf<float> grad(static_cast<std::size_t>(R * C), -9.f);
    std::vector<grpo_test::device_workspace> workspaces(2);
    std::vector<std::string> errors(2);
    dist_cases::thread_group ranks(2);
    grpo::loss_config cfg;
    cfg.checks = grpo::validation::full;
    ranks.run([&](const dist_cases::thread_group::communicator& comm) {
        const grpo::index_t first = comm.rank() == 0 ? 0 : 4, n = comm.rank() == 0 ? 4 : R - 4;
        try {
            grpo::dist::loss_and_grad(comm, grpo_test::default_exec(), d.inputs(first, n),
                                      grpo::loss_outputs<float, grpo::device_space>{rows_of(grad, first, n), {}}, cfg,
                                      workspaces[comm.rank()]);
        } catch (const grpo::error& e) {
            errors[comm.rank()] = e.what();
        }
    });
    INFO(errors[0] << " / " << errors[1]);
    CHECK(errors[1].find("argument 'logp'") != std::string::npos);
    CHECK(errors[1].find("(1, 2)") != std::string::npos); // rank 1's row 1
    CHECK(errors[0].find("rank 1: ") == 0);
    CHECK(grad.get() == std::vector<float>(static_cast<std::size_t>(R * C), -9.f));

    // The step's entropy quantile is the host's to compute on device views.
    cfg.top_entropy_quantile = 0.5;
    ranks.run([&](const dist_cases::thread_group::communicator& comm) {
        errors[comm.rank()] = grpo::to_string(grpo_test::error_code_of([&] {
            grpo::dist::loss_and_grad(comm, grpo_test::default_exec(), d.inputs(0, 2),
                                      grpo::loss_outputs<float, grpo::device_space>{}, cfg, workspaces[comm.rank()]);
        }));
    });
    CHECK(errors == std::vector<std::string>(2, "unsupported"));
}

int main(int argc, char** argv) { return grpo_test::run_device_tests(argc, argv); }
