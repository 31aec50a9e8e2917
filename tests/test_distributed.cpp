// SPDX-License-Identifier: MIT
// Data-parallel entry points with threads as ranks: the bit-exact contract for 1 to 4 ranks and every split,
// errors that every rank sees (outputs untouched everywhere), and the communicator helpers.
#include <limits>
#include <string>
#include <vector>

#include "catch.hpp"
#include "dist/dist_cases.hpp"
#include "dist/thread_communicator.hpp"

using dist_cases::thread_group;

TEST_CASE("dist: every split over 1-4 ranks gives the one-process bits", "[dist]") {
    for (int size = 1; size <= 4; ++size) {
        thread_group group(size);
        std::vector<dist_cases::report> reports(static_cast<std::size_t>(size));
        group.run([&](const thread_group::communicator& comm) { reports[comm.rank()] = dist_cases::run_all(comm); });
        for (int r = 0; r < size; ++r) {
            std::string failures; // (an INFO inside a loop would end with its iteration)
            for (const std::string& f : reports[r].failures) failures += f + "\n";
            INFO("ranks " << size << ", rank " << r << "\n" << failures);
            CHECK(reports[r].failures.empty());
            CHECK(reports[r].cases > 100);
        }
    }
}

TEST_CASE("dist: self_communicator is the one-process call", "[dist]") {
    const dist_cases::report rep = dist_cases::run_all(grpo::dist::self_communicator{});
    std::string failures;
    for (const std::string& f : rep.failures) failures += f + "\n";
    INFO(failures);
    CHECK(rep.failures.empty());
}

TEST_CASE("dist: a bad input on one rank throws on every rank, before any rank writes", "[dist]") {
    thread_group group(3);
    std::vector<std::string> messages(3);
    std::vector<std::vector<float>> outputs(3, std::vector<float>(4, 42.f));
    std::vector<int> untouched(3, 0); // (Catch's assertions are not thread-safe: the ranks record, the test checks)
    group.run([&](const thread_group::communicator& comm) {
        std::vector<float> rewards = {1, 2, 3, 4};
        if (comm.rank() == 1) rewards[2] = std::numeric_limits<float>::infinity();
        try {
            grpo::dist::compute_advantages(comm, grpo::exec::host{}, grpo::vector_view<const float>(rewards),
                                           grpo::groups::contiguous(2), grpo::vector_view<float>(outputs[comm.rank()]));
        } catch (const grpo::error& e) {
            messages[comm.rank()] = std::string(e.what()) + " [" + grpo::to_string(e.code()) + "]";
        }
    });
    for (int r = 0; r < 3; ++r) {
        INFO(messages[r]);
        CHECK(messages[r].find("non-finite") != std::string::npos);
        CHECK(outputs[r] == std::vector<float>(4, 42.f));
    }
    // The gathered batch is checked as a whole: the message names the whole-batch index (rank 1, row 2 = 6).
    CHECK(messages[0].find("at index 6") != std::string::npos);

    // A shape error found on one rank before the gathers: the others name that rank.
    group.run([&](const thread_group::communicator& comm) {
        std::vector<double> logp(6, -1.0), adv(6, 0.5), grad(comm.rank() == 2 ? 4 : 6, 9.0);
        grpo::loss_inputs<double> in;
        in.logp = {logp.data(), 2, 3};
        in.advantages = {adv.data(), 2, 3};
        try {
            grpo::dist::loss_and_grad(comm, grpo::exec::host{}, in,
                                      grpo::loss_outputs<double>{{grad.data(), 2, comm.rank() == 2 ? 2 : 3}, {}},
                                      grpo::loss_config{});
            messages[comm.rank()] = "no error";
        } catch (const grpo::error& e) {
            messages[comm.rank()] = e.what();
        }
        untouched[comm.rank()] = grad == std::vector<double>(grad.size(), 9.0);
    });
    CHECK(untouched == std::vector<int>(3, 1));
    CHECK(messages[2].find("grpo::dist::loss_and_grad: argument 'grad_logp'") == 0);
    CHECK(messages[0].find("rank 2: grpo::dist::loss_and_grad") == 0);
    CHECK(messages[1] == messages[0]);

    // A value error (validation::full) on rank 0: found in the pre-pass, before the loss pass writes anywhere.
    group.run([&](const thread_group::communicator& comm) {
        std::vector<float> logp(6, -1.f), adv(6, 0.5f), grad(6, 9.f);
        if (comm.rank() == 0) logp[4] = std::nanf("");
        grpo::loss_inputs<float> in;
        in.logp = {logp.data(), 2, 3};
        in.advantages = {adv.data(), 2, 3};
        grpo::loss_config cfg;
        cfg.checks = grpo::validation::full;
        try {
            grpo::dist::loss_and_grad(comm, grpo::exec::host{}, in, grpo::loss_outputs<float>{{grad.data(), 2, 3}, {}},
                                      cfg);
            messages[comm.rank()] = "no error";
        } catch (const grpo::error& e) {
            messages[comm.rank()] = e.what();
        }
        untouched[comm.rank()] = grad == std::vector<float>(6, 9.f);
    });
    CHECK(untouched == std::vector<int>(3, 1));
    for (int r = 0; r < 3; ++r) {
        INFO(messages[r]);
        CHECK(messages[r].find("argument 'logp'") != std::string::npos);
        CHECK(messages[r].find("(1, 1)") != std::string::npos);
    }
}

TEST_CASE("dist: ranks that disagree on the layout or the options all throw", "[dist]") {
    thread_group group(2);
    std::vector<std::string> messages(2);
    group.run([&](const thread_group::communicator& comm) {
        std::vector<double> r = {1, 2, 3, 4}, a(4);
        try {
            grpo::dist::compute_advantages(comm, grpo::exec::host{}, grpo::vector_view<const double>(r),
                                           grpo::groups::contiguous(comm.rank() == 0 ? 2 : 4),
                                           grpo::vector_view<double>(a));
        } catch (const grpo::error& e) {
            messages[comm.rank()] = e.what();
        }
    });
    for (const std::string& m : messages) CHECK(m.find("'groups.size'") != std::string::npos);
    group.run([&](const thread_group::communicator& comm) {
        grpo::loss_config cfg;
        cfg.global_token_count = comm.rank() == 0 ? 10 : 11;
        try {
            grpo::dist::with_global_counts(comm, cfg, grpo::dist::batch_counts{});
        } catch (const grpo::error& e) {
            messages[comm.rank()] = e.what();
        }
    });
    for (const std::string& m : messages) CHECK(m.find("11/0 on rank 1") != std::string::npos);
}

TEST_CASE("dist: global counts and all_sum in rank order", "[dist]") {
    thread_group group(3);
    std::vector<std::vector<double>> seen(3);
    group.run([&](const thread_group::communicator& comm) {
        grpo::dist::batch_counts c;
        c.tokens = 10.0 * (comm.rank() + 1);
        c.sequences = 2;
        c.nonempty_sequences = comm.rank() == 1 ? 0 : 2;
        grpo::loss_config cfg;
        const grpo::loss_config g = grpo::dist::with_global_counts(comm, cfg, c);
        std::vector<double>& v = seen[comm.rank()];
        v.push_back(g.global_token_count);
        v.push_back(g.global_sequence_count);
        cfg.count_empty_sequences = false;
        v.push_back(grpo::dist::with_global_counts(comm, cfg, c).global_sequence_count);
        cfg.global_token_count = 1000; // set by the host: kept
        v.push_back(grpo::dist::with_global_counts(comm, cfg, c).global_token_count);
        // ((1e16 + 1) + -1e16) in rank order is 0 (the 1 is lost); another order would give 1.
        const double mine[2] = {comm.rank() == 0 ? 1e16 : comm.rank() == 1 ? 1.0 : -1e16, double(comm.rank())};
        double sum[2];
        grpo::dist::all_sum(comm, mine, 2, sum);
        v.push_back(sum[0]);
        v.push_back(sum[1]);
    });
    for (const std::vector<double>& v : seen) CHECK(v == std::vector<double>{60, 6, 4, 1000, 0, 3});
}

TEST_CASE("dist: reduce_stats combines per-rank statistics for logging", "[dist]") {
    // A batch split over 3 ranks (one of them empty), each rank running the one-process loss with the step's
    // normalizers: the reduced statistics agree with the whole batch's to rounding.
    const grpo::index_t rows = 6, cols = 4;
    std::vector<double> logp(rows * cols), old(rows * cols), adv = {1, -1, 0.5, -0.5, 2, -2};
    for (std::size_t k = 0; k < logp.size(); ++k) {
        logp[k] = -0.1 * double(k % 7 + 1);
        old[k] = logp[k] + 0.05 * double(int(k % 5) - 2);
    }
    const auto inputs = [&](grpo::index_t first, grpo::index_t n) {
        grpo::loss_inputs<double> in;
        in.logp = {logp.data() + first * cols, n, cols};
        in.old_logp = {old.data() + first * cols, n, cols};
        in.advantages = grpo::broadcast_to_tokens(grpo::vector_view<const double>(adv.data() + first, n), cols);
        return in;
    };
    grpo::loss_config cfg;
    cfg.beta = 0; // (no reference)
    cfg.epsilon_low = cfg.epsilon_high = 0.05;
    const grpo::loss_stats whole = grpo::loss_and_grad(grpo::exec::host{}, inputs(0, rows), {}, cfg);
    std::vector<grpo::loss_stats> reduced(3);
    thread_group group(3);
    group.run([&](const thread_group::communicator& comm) {
        const grpo::index_t first = comm.rank() == 0 ? 0 : 2, n = comm.rank() == 0 ? 2 : comm.rank() == 1 ? 0 : 4;
        const grpo::loss_inputs<double> in = n > 0 ? inputs(first, n) : grpo::loss_inputs<double>{};
        grpo::dist::batch_counts c;
        if (n > 0) c = grpo::dist::count_tokens(in);
        const grpo::loss_config step = grpo::dist::with_global_counts(comm, cfg, c);
        const grpo::loss_stats mine =
            n > 0 ? grpo::loss_and_grad(grpo::exec::host{}, in, {}, step) : grpo::loss_stats{};
        reduced[comm.rank()] = grpo::dist::reduce_stats(comm, mine);
    });
    for (const grpo::loss_stats& r : reduced) {
        dist_cases::report same; // every rank's figures are the same bits
        dist_cases::compare_stats(same, "reduce_stats", r, reduced[0]);
        CHECK(same.failures.empty());
        CHECK(r.loss == Approx(whole.loss).epsilon(1e-14));
        CHECK(r.token_count == whole.token_count);
        CHECK(r.clip_fraction_region == Approx(whole.clip_fraction_region).epsilon(1e-14));
        CHECK(whole.clip_fraction_region > 0);
        CHECK(r.ratio_mean == Approx(whole.ratio_mean).epsilon(1e-14));
        CHECK(r.ratio_min == whole.ratio_min);
        CHECK(r.ratio_max == whole.ratio_max);
        CHECK(r.approx_kl == Approx(whole.approx_kl).epsilon(1e-12));
    }
}

TEST_CASE("dist: a batch without rows on any rank is judged as the one-process call judges it", "[dist]") {
    // fuzz_dist found these: a gathered view, given but empty (opo's token_weights, token_advantages' outputs),
    // became absent (so the dist call rejected what the one-process call accepts), and ranks without rows
    // skipped the configuration check (so the dist call accepted a configuration the one-process call rejects).
    thread_group group(2);
    std::vector<std::string> messages(2);
    grpo::advantage_config opo;
    opo.estimator = grpo::advantage_estimator::opo;
    group.run([&](const thread_group::communicator& comm) {
        const double no_weight = 0;
        const float no_float = 0;
        float no_output = 0;
        try {
            grpo::dist::compute_advantages(comm, grpo::exec::host{}, grpo::vector_view<const float>(&no_float, 0),
                                           grpo::groups::contiguous(2), grpo::vector_view<float>(&no_output, 0), opo,
                                           grpo::group_outputs{}, grpo::vector_view<const double>(&no_weight, 0));
            messages[comm.rank()] = "ok";
        } catch (const grpo::error& e) {
            messages[comm.rank()] = e.what();
        }
    });
    CHECK(messages == std::vector<std::string>(2, "ok"));
    const double none = 0;
    float none_out = 0;
    CHECK_NOTHROW(grpo::compute_advantages(grpo::exec::host{}, grpo::vector_view<const float>(&none_out, 0),
                                           grpo::groups::contiguous(2), grpo::vector_view<float>(&none_out, 0), opo,
                                           grpo::group_outputs{}, grpo::vector_view<const double>(&none, 0)));

    // token_advantages (remax: reinforce_plus_plus needs 2 tokens to whiten): rows 0 of 3 tokens on both ranks,
    // every view given (empty), returns too.
    grpo::token_advantage_config remax;
    remax.estimator = grpo::token_estimator::remax;
    const auto token_call = [](auto&& call) {
        float none_in = 0, none_adv = 0, none_ret = 0;
        grpo::token_advantage_inputs<float> in;
        in.rewards = {&none_in, 0, 3};
        in.mask = {&none_in, 0, 3};
        in.baselines = {&none_in, 0};
        grpo::token_advantage_outputs<float> out;
        out.advantages = {&none_adv, 0, 3};
        out.returns = {&none_ret, 0, 3};
        call(in, out);
    };
    group.run([&](const thread_group::communicator& comm) {
        try {
            token_call([&](const auto& in, const auto& out) {
                grpo::dist::token_advantages(comm, grpo::exec::host{}, in, out, remax);
            });
            messages[comm.rank()] = "ok";
        } catch (const grpo::error& e) {
            messages[comm.rank()] = e.what();
        }
    });
    CHECK(messages == std::vector<std::string>(2, "ok"));
    CHECK_NOTHROW(token_call(
        [&](const auto& in, const auto& out) { grpo::token_advantages(grpo::exec::host{}, in, out, remax); }));

    grpo::loss_config bad = grpo::loss_config::sapo();
    bad.sapo_temperature_neg = 0;
    CHECK_THROWS_AS(
        grpo::loss_and_grad(grpo::exec::host{}, grpo::loss_inputs<float>{}, grpo::loss_outputs<float>{}, bad),
        grpo::error);
    group.run([&](const thread_group::communicator& comm) {
        try {
            grpo::dist::loss_and_grad(comm, grpo::exec::host{}, grpo::loss_inputs<float>{}, grpo::loss_outputs<float>{},
                                      bad);
            messages[comm.rank()] = "no error";
        } catch (const grpo::error& e) {
            messages[comm.rank()] = e.what();
        }
    });
    for (const std::string& m : messages) CHECK(m.find("'config.sapo_temperature_neg'") != std::string::npos);

    // A rank whose logp has no rows but whose lengths do: rejected, as the one-process call rejects it.
    group.run([&](const thread_group::communicator& comm) {
        const std::int64_t lengths[3] = {1, 1, 1};
        grpo::loss_inputs<float> in;
        if (comm.rank() == 1) in.lengths = {lengths, 3};
        try {
            grpo::dist::loss_and_grad(comm, grpo::exec::host{}, in, grpo::loss_outputs<float>{}, grpo::loss_config{});
            messages[comm.rank()] = "no error";
        } catch (const grpo::error& e) {
            messages[comm.rank()] = e.what();
        }
    });
    for (const std::string& m : messages) CHECK(m.find("argument 'logp'") != std::string::npos);

    // The same for token_advantages: a rank whose rewards have no rows but whose advantages do.
    group.run([&](const thread_group::communicator& comm) {
        std::vector<float> rewards(6, 1.f), mask(6, 1.f), adv(6);
        grpo::token_advantage_inputs<float> in;
        grpo::token_advantage_outputs<float> out;
        if (comm.rank() == 0) {
            in.rewards = {rewards.data(), 1, 6};
            in.mask = {mask.data(), 1, 6};
        }
        out.advantages = {adv.data(), 1, 6};
        grpo::token_advantage_config cfg;
        cfg.estimator = grpo::token_estimator::remax;
        const float baseline = 0;
        if (comm.rank() == 0) in.baselines = {&baseline, 1};
        try {
            grpo::dist::token_advantages(comm, grpo::exec::host{}, in, out, cfg);
            messages[comm.rank()] = "no error";
        } catch (const grpo::error& e) {
            messages[comm.rank()] = e.what();
        }
    });
    for (const std::string& m : messages) CHECK(m.find("argument 'rewards'") != std::string::npos);

    // Ranks on different element types, the double rank without rows: its gathers would send other byte counts
    // (fuzz_dist found it), so the element type is agreed by every rank, rows or not.
    group.run([&](const thread_group::communicator& comm) {
        try {
            if (comm.rank() == 0) {
                std::vector<float> r = {1, 2}, a(2);
                grpo::dist::compute_advantages(comm, grpo::exec::host{}, grpo::vector_view<const float>(r),
                                               grpo::groups::contiguous(2), grpo::vector_view<float>(a));
            } else {
                grpo::dist::compute_advantages(comm, grpo::exec::host{}, grpo::vector_view<const double>{},
                                               grpo::groups::contiguous(2), grpo::vector_view<double>{});
            }
            messages[comm.rank()] = "no error";
        } catch (const grpo::error& e) {
            messages[comm.rank()] = e.what();
        }
    });
    for (const std::string& m : messages) CHECK(m.find("the element type's size") != std::string::npos);
}

TEST_CASE("dist: the step's top-entropy quantile is used even when it is NaN", "[dist]") {
    // fuzz_dist found it: NaN entropies (unchecked under shapes_only) make the step's quantile NaN, and a NaN
    // threshold used to mean "compute it": every rank then took the quantile of its own entropies.
    const grpo::index_t rows = 4, cols = 3;
    std::vector<double> logp(12), old(12), adv(12), entropy(12);
    for (std::size_t k = 0; k < 12; ++k) {
        logp[k] = -0.1 * static_cast<double>(k + 1);
        old[k] = logp[k] + 0.05 * static_cast<double>(k % 3);
        adv[k] = k % 2 == 0 ? 1.0 : -0.5;
        entropy[k] = 0.2 * static_cast<double>(12 - k);
    }
    // The step's median is NaN (NaN orders last); rank 0's own would be a number.
    for (std::size_t k : {1, 3, 6, 8, 9, 10, 11}) entropy[k] = std::numeric_limits<double>::quiet_NaN();
    grpo::loss_config cfg;
    cfg.top_entropy_quantile = 0.5;
    cfg.checks = grpo::validation::shapes_only;
    const auto inputs = [&](grpo::index_t first, grpo::index_t n) {
        grpo::loss_inputs<double> in;
        in.logp = {logp.data() + first * cols, n, cols};
        in.old_logp = {old.data() + first * cols, n, cols};
        in.advantages = {adv.data() + first * cols, n, cols};
        in.entropy = {entropy.data() + first * cols, n, cols};
        return in;
    };
    std::vector<double> grad(12);
    const grpo::loss_stats one = grpo::loss_and_grad(grpo::exec::host{}, inputs(0, rows),
                                                     grpo::loss_outputs<double>{{grad.data(), rows, cols}, {}}, cfg);
    thread_group group(2);
    std::vector<double> dgrad(12, 42.0);
    std::vector<grpo::loss_stats> stats(2);
    group.run([&](const thread_group::communicator& comm) {
        const grpo::index_t first = static_cast<grpo::index_t>(comm.rank()) * 2;
        stats[comm.rank()] =
            grpo::dist::loss_and_grad(comm, grpo::exec::host{}, inputs(first, 2),
                                      grpo::loss_outputs<double>{{dgrad.data() + first * cols, 2, cols}, {}}, cfg);
    });
    for (std::size_t k = 0; k < 12; ++k) {
        INFO("token " << k);
        CHECK(dist_cases::same_bits(dgrad[k], grad[k]));
    }
    for (const grpo::loss_stats& s : stats) {
        CHECK(dist_cases::same_bits(s.policy_loss, one.policy_loss));
        CHECK(dist_cases::same_bits(s.entropy_mask_fraction, one.entropy_mask_fraction));
    }
}
