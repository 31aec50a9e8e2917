// SPDX-License-Identifier: MIT
// Must NOT compile: a host_space view handed to the CUDA backend. The public overloads take device_space views
// only (a host view finds no overload); below, the backend's own check, whose static_assert message the ctest
// (tests/cuda/CMakeLists.txt) expects in the compiler's output.
#include <grpo/cuda.cuh>

int main() {
    float x[4] = {0, 0, 0, 0};
    const grpo::matrix_view<const float> logp(x, 2, 2); // host_space
    grpo::cuda_workspace ws;
    grpo::detail::cuda::cuda_device dev(nullptr, ws);
    grpo::detail::cuda::check_device_view(dev, "main", "logp", logp);
    return 0;
}
