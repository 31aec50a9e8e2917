// SPDX-License-Identifier: MIT
// Must NOT compile: a host_space view passed to the CUDA backend (registered as a WILL_FAIL ctest).
#include <grpo/cuda.cuh>

int main() {
    float x[4] = {0, 0, 0, 0};
    grpo::loss_inputs<float, grpo::host_space> in;
    in.logp = grpo::matrix_view<const float>(x, 2, 2);
    grpo::loss_outputs<float, grpo::host_space> out;
    grpo::cuda_workspace ws;
    grpo::loss_and_grad(grpo::exec::cuda{}, in, out, grpo::loss_config{}, ws);
    grpo::detail::check_device_view("main", "logp", in.logp); // the static_assert itself
    return 0;
}
