// SPDX-License-Identifier: MIT
// The data-parallel contract over torch.distributed's c10d (Gloo, CPU). `test_c10d --ranks N` starts N copies of
// itself as the ranks of one ProcessGroupGloo over a FileStore and fails unless every rank passes; a rank runs the
// shared cases (every split of each batch gives the one-process bits) and an error-propagation check.
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <limits>
#include <string>
#include <vector>

#include <torch/csrc/distributed/c10d/FileStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>

#include <grpo/adapters/c10d.hpp>

#include "dist/dist_cases.hpp"

extern char** environ;

namespace {

int run_rank(int rank, int size, const std::string& store_path) {
    // snippet-begin dist-c10d
    auto store = c10::make_intrusive<c10d::FileStore>(store_path, size);
    auto options = c10d::ProcessGroupGloo::Options::create();
    options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
    auto group = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, size, options);
    const grpo::dist::c10d_communicator comm(group);
    // snippet-end
    int failures = 0;
    const dist_cases::report rep = dist_cases::run_all(comm);
    for (const std::string& f : rep.failures) std::printf("rank %d: FAILED %s\n", rank, f.c_str());
    failures += static_cast<int>(rep.failures.size()) + (rep.cases < 100 ? 1 : 0);

    // Rank 0's Inf reward reaches every rank as the same grpo::error, every rank's output untouched.
    std::vector<float> rewards = {1, 2}, adv(2, 42.f);
    if (rank == 0) rewards[0] = std::numeric_limits<float>::infinity();
    std::string message = "no error";
    try {
        grpo::dist::compute_advantages(comm, grpo::exec::host{}, grpo::vector_view<const float>(rewards),
                                       grpo::groups::contiguous(2), grpo::vector_view<float>(adv));
    } catch (const grpo::error& e) {
        message = e.what();
    }
    if (message.find("got inf at index 0") == std::string::npos || adv != std::vector<float>(2, 42.f)) {
        std::printf("rank %d: FAILED error propagation: %s\n", rank, message.c_str());
        ++failures;
    }
    std::printf("test_c10d: rank %d of %d, %d cases, %d failures\n", rank, size, rep.cases, failures);
    return failures == 0 ? 0 : 1;
}

int launch(const char* self, int size) {
    const std::string store = "/tmp/grpo_test_c10d_" + std::to_string(getpid()) + "_" + std::to_string(size);
    std::remove(store.c_str());
    std::vector<pid_t> pids;
    for (int r = 0; r < size; ++r) {
        const std::string rank = std::to_string(r), n = std::to_string(size);
        const char* argv[] = {self, "--rank", rank.c_str(), "--size", n.c_str(), "--store", store.c_str(), nullptr};
        pid_t pid = 0;
        if (posix_spawn(&pid, self, nullptr, nullptr, const_cast<char**>(argv), environ) != 0) { // NOLINT
            std::printf("test_c10d: could not start rank %d\n", r);
            return 1;
        }
        pids.push_back(pid);
    }
    int failed = 0;
    for (const pid_t pid : pids) {
        int status = 0;
        waitpid(pid, &status, 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) ++failed;
    }
    std::remove(store.c_str());
    std::printf("test_c10d: %d ranks, %d failed\n", size, failed);
    return failed == 0 ? 0 : 1;
}

} // namespace

int main(int argc, char** argv) {
    const std::vector<std::string> args(argv + 1, argv + argc);
    if (args.size() == 2 && args[0] == "--ranks") return launch(argv[0], std::atoi(args[1].c_str()));
    if (args.size() == 6 && args[0] == "--rank" && args[2] == "--size" && args[4] == "--store")
        return run_rank(std::atoi(args[1].c_str()), std::atoi(args[3].c_str()), args[5]);
    std::printf("usage: test_c10d --ranks N\n");
    return 2;
}
