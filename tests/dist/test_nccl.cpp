// SPDX-License-Identifier: MIT
// The data-parallel contract over NCCL: one rank per visible GPU (up to 4, a thread each, ncclCommInitAll), the
// shared cases (every split of each batch gives the one-process bits). Without a GPU it exits 77 (ctest:
// Skipped); CI compiles and links it against the toolkit's NCCL.
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include <grpo/adapters/nccl.hpp>

#include "dist/dist_cases.hpp"

namespace {

/// Rank r of `ranks`, on its own thread and device; returns its failures.
int run_rank(int r, int ranks, ncclComm_t nccl) {
    cudaSetDevice(r);
    cudaStream_t stream = nullptr;
    cudaStreamCreate(&stream);
    int failures = 0;
    {
        // snippet-begin dist-nccl
        const grpo::dist::nccl_communicator comm(nccl, stream);
        // snippet-end
        const dist_cases::report rep = dist_cases::run_all(comm);
        for (const std::string& f : rep.failures) std::printf("rank %d: FAILED %s\n", r, f.c_str());
        failures = static_cast<int>(rep.failures.size()) + (rep.cases < 100 ? 1 : 0);
        std::printf("test_nccl: rank %d of %d, %d cases, %d failures\n", r, ranks, rep.cases, failures);
    }
    cudaStreamDestroy(stream);
    return failures;
}

} // namespace

int main() {
    int devices = 0;
    if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
        std::printf("test_nccl: no CUDA device, skipped\n");
        return 77;
    }
    const int ranks = devices < 4 ? devices : 4;
    std::vector<ncclComm_t> comms(static_cast<std::size_t>(ranks));
    std::vector<int> ids(static_cast<std::size_t>(ranks));
    for (int r = 0; r < ranks; ++r) ids[r] = r;
    if (ncclCommInitAll(comms.data(), ranks, ids.data()) != ncclSuccess) {
        std::printf("test_nccl: FAILED ncclCommInitAll\n");
        return 1;
    }
    std::vector<int> failures(static_cast<std::size_t>(ranks), 0);
    std::vector<std::thread> threads;
    for (int r = 0; r < ranks; ++r) threads.emplace_back([&, r] { failures[r] = run_rank(r, ranks, comms[r]); });
    int failed = 0;
    for (int r = 0; r < ranks; ++r) {
        threads[r].join();
        failed += failures[r];
    }
    for (ncclComm_t c : comms) ncclCommDestroy(c);
    return failed == 0 ? 0 : 1;
}
