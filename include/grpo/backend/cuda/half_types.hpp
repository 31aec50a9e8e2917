// SPDX-License-Identifier: MIT
// The 16-bit element types of the CUDA loss pass, __half and __nv_bfloat16 (CUDA toolkit headers): loaded into
// float, math in float, stored back in the input type. device.cuh includes this; a host program using the
// emulator (cuda_emulated.hpp) may include it too, with the CUDA toolkit's include directory on its path,
// to run the 16-bit kernels on the host (the tests do).
#pragma once

#include <type_traits>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "../kernels/loss_kernels.hpp"

GRPO_NAMESPACE_BEGIN
namespace detail {
namespace cuda {

template <>
struct compute_type<__half> {
    using type = float;
};
template <>
struct compute_type<__nv_bfloat16> {
    using type = float;
};

template <>
struct is_loss_element<__half> : std::true_type {};
template <>
struct is_loss_element<__nv_bfloat16> : std::true_type {};

} // namespace cuda
} // namespace detail
GRPO_NAMESPACE_END
