// SPDX-License-Identifier: MIT
// grpo's communicator over NCCL: data-parallel grpo (<grpo/distributed.hpp>) on the ncclComm_t and stream a GPU
// host already runs. CMake: target grpo::nccl (find_package(grpo COMPONENTS nccl)); host code, no nvcc needed.
#pragma once

#include <cuda_runtime.h>
#include <nccl.h>

#include <cstddef>
#include <string>

#include "../distributed.hpp"

GRPO_NAMESPACE_BEGIN
namespace dist {

/// A grpo communicator (see dist::self_communicator for the concept) over a host-supplied NCCL communicator and
/// stream (both kept alive by the host; the current device must be the communicator's). grpo's collectives gather
/// small host buffers (counts, rewards, per-row partial sums): each gather copies the bytes to device memory,
/// runs ncclAllGather on `stream`, copies back and synchronizes the stream. The device buffers are kept and grown
/// (so one object serves one thread at a time, like the NCCL communicator itself). A failed CUDA or NCCL call
/// throws grpo::error (errc::communication, or errc::cuda) with the library's message.
class nccl_communicator {
public:
    nccl_communicator(ncclComm_t comm, cudaStream_t stream) : comm_(comm), stream_(stream) {
        if (comm == nullptr)
            detail::raise_argument(errc::communication, "dist::nccl_communicator", "comm", "an NCCL communicator",
                                   "a null pointer");
        check(ncclCommUserRank(comm_, &rank_), "ncclCommUserRank");
        check(ncclCommCount(comm_, &size_), "ncclCommCount");
    }
    nccl_communicator(const nccl_communicator&) = delete;
    nccl_communicator& operator=(const nccl_communicator&) = delete;
    ~nccl_communicator() {
        if (buffer_ != nullptr) cudaFree(buffer_);
    }
    int rank() const noexcept { return rank_; }
    int size() const noexcept { return size_; }
    ncclComm_t native() const noexcept { return comm_; }

    /// recv[r * bytes, (r + 1) * bytes) = rank r's send bytes, on every rank (send and recv in host memory).
    void all_gather(const void* send, std::size_t bytes, void* recv) const {
        if (bytes == 0) return;
        const auto total = static_cast<std::size_t>(
            grpo::detail::checked_mul("dist::nccl_communicator", "bytes", static_cast<index_t>(bytes), size_ + 1));
        if (total > capacity_) {
            if (buffer_ != nullptr) cuda(cudaFree(buffer_), "cudaFree");
            buffer_ = nullptr;
            capacity_ = 0;
            cuda(cudaMalloc(&buffer_, total), "cudaMalloc");
            capacity_ = total;
        }
        char* device_send = static_cast<char*>(buffer_);
        char* device_recv = device_send + bytes;
        cuda(cudaMemcpyAsync(device_send, send, bytes, cudaMemcpyHostToDevice, stream_), "cudaMemcpyAsync");
        check(ncclAllGather(device_send, device_recv, bytes, ncclUint8, comm_, stream_), "ncclAllGather");
        cuda(cudaMemcpyAsync(recv, device_recv, bytes * static_cast<std::size_t>(size_), cudaMemcpyDeviceToHost,
                             stream_),
             "cudaMemcpyAsync");
        cuda(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
    }

private:
    static void check(ncclResult_t rc, const char* call) {
        if (rc != ncclSuccess)
            detail::raise(errc::communication,
                          std::string("grpo::dist::nccl_communicator: ") + call + " failed: " + ncclGetErrorString(rc));
    }
    static void cuda(cudaError_t rc, const char* call) {
        if (rc != cudaSuccess)
            detail::raise(errc::cuda,
                          std::string("grpo::dist::nccl_communicator: ") + call + " failed: " + cudaGetErrorString(rc));
    }
    ncclComm_t comm_;
    cudaStream_t stream_;
    int rank_ = 0, size_ = 1;
    mutable void* buffer_ = nullptr;
    mutable std::size_t capacity_ = 0;
};

} // namespace dist
GRPO_NAMESPACE_END
