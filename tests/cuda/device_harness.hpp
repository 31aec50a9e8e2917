// SPDX-License-Identifier: MIT
// What the CUDA tests need of "the device", in two builds of the same test sources:
//   *.cu compiled by nvcc      exec::cuda on a GPU (cudaMalloc, cudaMemcpy, streams); exits 77 (SKIPPED)
//                              when the machine has no GPU;
//   *_emulated.cpp (g++)       GRPO_TEST_EMULATED: exec::cuda_emulated, the same kernels run by the host
//                              emulator on host memory, so that CI without a GPU runs them; with
//                              GRPO_TEST_EMULATED_HALF (CUDA toolkit headers found) the bf16/fp16 cases too.
#pragma once

#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#ifdef GRPO_TEST_EMULATED
#include <grpo/cuda_emulated.hpp>
#ifdef GRPO_TEST_EMULATED_HALF // the CUDA toolkit's headers are on the include path: 16-bit types too
#include <grpo/backend/cuda/half_types.hpp>
#endif
#else
#include <grpo/cuda.cuh>
#endif

namespace grpo_test {

#ifdef GRPO_TEST_EMULATED
using device_exec = grpo::exec::cuda_emulated;
using device_workspace = grpo::emulated_workspace;
/// Simulated threads per block: 5 by default (not a power of two, fewer than most rows, so that every strided
/// loop and reduction of the kernels runs with threads that see different numbers of elements); a test may
/// change it to run a whole suite at another block size.
inline int& emulated_threads() {
    static int threads = 5;
    return threads;
}
inline device_exec default_exec() { return device_exec{emulated_threads()}; }
inline void* device_alloc(std::size_t bytes) { return std::malloc(bytes ? bytes : 1); }
inline void device_free(void* p) { std::free(p); }
inline bool to_device(void* dst, const void* src, std::size_t bytes) {
    if (bytes > 0) std::memcpy(dst, src, bytes); // an empty std::vector's data() may be null
    return true;
}
inline bool to_host(void* dst, const void* src, std::size_t bytes) {
    if (bytes > 0) std::memcpy(dst, src, bytes);
    return true;
}
/// A stream of its own (the emulator runs everything in order at the call).
struct test_stream {
    device_exec exec() const { return default_exec(); }
    bool synchronize() const { return true; }
};
inline int run_device_tests(int argc, char** argv) { return Catch::Session().run(argc, argv); }
#else
using device_exec = grpo::exec::cuda;
using device_workspace = grpo::cuda_workspace;
inline device_exec default_exec() { return device_exec{}; }
inline void* device_alloc(std::size_t bytes) {
    void* p = nullptr;
    return cudaMalloc(&p, bytes ? bytes : 1) == cudaSuccess ? p : nullptr;
}
inline void device_free(void* p) { cudaFree(p); }
inline bool to_device(void* dst, const void* src, std::size_t bytes) {
    return bytes == 0 || cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice) == cudaSuccess;
}
inline bool to_host(void* dst, const void* src, std::size_t bytes) {
    return bytes == 0 || cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost) == cudaSuccess;
}
struct test_stream {
    cudaStream_t stream = nullptr;
    test_stream() { cudaStreamCreate(&stream); }
    ~test_stream() { cudaStreamDestroy(stream); }
    test_stream(const test_stream&) = delete;
    test_stream& operator=(const test_stream&) = delete;
    device_exec exec() const { return device_exec{stream}; }
    bool synchronize() const { return cudaStreamSynchronize(stream) == cudaSuccess; }
};
inline int run_device_tests(int argc, char** argv) {
    int devices = 0;
    const cudaError_t e = cudaGetDeviceCount(&devices);
    if (e != cudaSuccess || devices == 0) {
        std::printf("SKIPPED: no CUDA device available (%s); CUDA tests compiled but not run\n",
                    e != cudaSuccess ? cudaGetErrorString(e) : "0 devices");
        return 77;
    }
    return Catch::Session().run(argc, argv);
}
#endif

/// A device copy of a host vector, freed at scope exit (uses Catch's REQUIRE: include Catch first).
template <class T>
struct dbuf {
    T* p = nullptr;
    std::size_t n = 0;
    explicit dbuf(const std::vector<T>& h) : n(h.size()) {
        p = static_cast<T*>(device_alloc((n + 1) * sizeof(T)));
        REQUIRE(p != nullptr);
        REQUIRE(to_device(p, h.data(), n * sizeof(T)));
    }
    explicit dbuf(std::size_t count, T fill) : dbuf(std::vector<T>(count, fill)) {}
    ~dbuf() { device_free(p); }
    dbuf(const dbuf&) = delete;
    dbuf& operator=(const dbuf&) = delete;
    std::vector<T> get() const {
        std::vector<T> h(n);
        REQUIRE(to_host(h.data(), p, n * sizeof(T)));
        return h;
    }
    grpo::vector_view<T, grpo::device_space> view() const { return {p, static_cast<grpo::index_t>(n)}; }
    grpo::vector_view<const T, grpo::device_space> cview() const { return {p, static_cast<grpo::index_t>(n)}; }
    /// The buffer as a rows x cols row-major device matrix.
    grpo::matrix_view<T, grpo::device_space> mview(grpo::index_t rows, grpo::index_t cols) const {
        return {p, rows, cols};
    }
    grpo::matrix_view<const T, grpo::device_space> cmview(grpo::index_t rows, grpo::index_t cols) const {
        return {p, rows, cols};
    }
};

/// The grpo::errc a call throws, or errc::ok when it returns.
template <class F>
grpo::errc error_code_of(F&& call) {
    try {
        call();
    } catch (const grpo::error& e) {
        return e.code();
    }
    return grpo::errc::ok;
}

} // namespace grpo_test
