// SPDX-License-Identifier: MIT
// The data-parallel contract over MPI (ctest runs it under mpirun with 1 to 4 ranks): every split of each
// batch gives, on every rank, the one-process bits; a bad input on one rank throws on every rank.
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include <grpo/adapters/mpi.hpp>

#include "dist/dist_cases.hpp"

namespace {

int run(const grpo::dist::mpi_communicator& comm) {
    int failures = 0;
    const dist_cases::report rep = dist_cases::run_all(comm);
    for (const std::string& f : rep.failures) std::printf("rank %d: FAILED %s\n", comm.rank(), f.c_str());
    failures += static_cast<int>(rep.failures.size());
    if (rep.cases < 100) {
        std::printf("rank %d: FAILED only %d cases ran\n", comm.rank(), rep.cases);
        ++failures;
    }

    // The last rank's NaN reward (nan_rewards::reject) reaches every rank as the same grpo::error.
    std::vector<double> rewards = {1, 2, 3}, adv(3, 42.0);
    if (comm.rank() == comm.size() - 1) rewards[1] = std::numeric_limits<double>::quiet_NaN();
    std::string message = "no error";
    try {
        grpo::dist::compute_advantages(comm, grpo::exec::host{}, grpo::vector_view<const double>(rewards),
                                       grpo::groups::contiguous(comm.size()), grpo::vector_view<double>(adv));
    } catch (const grpo::error& e) {
        message = e.what();
    }
    const std::string index = "at index " + std::to_string(3 * (comm.size() - 1) + 1);
    if (message.find("got nan") == std::string::npos || message.find(index) == std::string::npos ||
        adv != std::vector<double>(3, 42.0)) {
        std::printf("rank %d: FAILED error propagation: %s\n", comm.rank(), message.c_str());
        ++failures;
    }
    int total = 0;
    MPI_Allreduce(&failures, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (comm.rank() == 0)
        std::printf("test_mpi: %d ranks, %d cases per rank, %d failures\n", comm.size(), rep.cases, total);
    return total;
}

} // namespace

int main(int argc, char** argv) {
    // snippet-begin dist-mpi
    MPI_Init(&argc, &argv);
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    const grpo::dist::mpi_communicator comm(MPI_COMM_WORLD);
    // snippet-end
    const int failures = run(comm);
    MPI_Finalize();
    return failures == 0 ? 0 : 1;
}
