// SPDX-License-Identifier: MIT
// grpo's communicator over torch.distributed's C++ core (c10d): data-parallel grpo (<grpo/distributed.hpp>) on
// the ProcessGroup a LibTorch host already runs (Gloo on CPU, NCCL on GPU; MPI where LibTorch was built with it).
// CMake: target grpo::c10d (find_package(grpo COMPONENTS c10d)); needs LibTorch with distributed support.
#pragma once

#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/torch.h>

#include <cstddef>
#include <cstdint>
#include <exception>
#include <string>
#include <utility>
#include <vector>

#include "../distributed.hpp"

GRPO_NAMESPACE_BEGIN
namespace dist {

/// A grpo communicator (see dist::self_communicator for the concept) over a c10d::ProcessGroup: one
/// ProcessGroup::allgather of uint8 CPU tensors per gather, waited for, the received bytes written in place
/// (the tensors wrap the caller's buffers). Holds a reference to the group. For a group whose backend only
/// gathers device tensors (NCCL), pass `device` (e.g. torch::kCUDA): the bytes are staged through it. A failed
/// collective (c10::Error) throws grpo::error (errc::communication) with c10d's message.
class c10d_communicator {
public:
    explicit c10d_communicator(c10::intrusive_ptr<c10d::ProcessGroup> group, torch::Device device = torch::kCPU)
        : group_(std::move(group)), device_(device) {
        if (!group_)
            detail::raise_argument(errc::communication, "dist::c10d_communicator", "group", "a process group",
                                   "a null pointer");
    }
    int rank() const { return group_->getRank(); }
    int size() const { return group_->getSize(); }
    const c10::intrusive_ptr<c10d::ProcessGroup>& group() const noexcept { return group_; }

    /// recv[r * bytes, (r + 1) * bytes) = rank r's send bytes, on every rank.
    void all_gather(const void* send, std::size_t bytes, void* recv) const {
        if (bytes == 0) return;
        try {
            const auto n = static_cast<std::int64_t>(bytes);
            const auto bytes_of = torch::TensorOptions().dtype(torch::kUInt8);
            // (from_blob does not copy; the input is only read)
            at::Tensor in = torch::from_blob(const_cast<void*>(send), {n}, bytes_of); // NOLINT: read-only use
            std::vector<at::Tensor> out;
            out.reserve(static_cast<std::size_t>(size()));
            for (int r = 0; r < size(); ++r)
                out.push_back(
                    torch::from_blob(static_cast<char*>(recv) + static_cast<std::size_t>(r) * bytes, {n}, bytes_of));
            const bool staged = !device_.is_cpu();
            std::vector<std::vector<at::Tensor>> outputs(1);
            std::vector<at::Tensor> inputs = {staged ? in.to(device_) : in};
            for (const at::Tensor& t : out)
                outputs[0].push_back(staged ? torch::empty({n}, bytes_of.device(device_)) : t);
            group_->allgather(outputs, inputs)->wait();
            if (staged)
                for (std::size_t r = 0; r < out.size(); ++r) out[r].copy_(outputs[0][r]);
        } catch (const c10::Error& e) {
            detail::raise(errc::communication, std::string("grpo::dist::c10d_communicator: allgather failed: ") +
                                                   e.what_without_backtrace());
        }
    }

private:
    c10::intrusive_ptr<c10d::ProcessGroup> group_;
    torch::Device device_;
};

} // namespace dist
GRPO_NAMESPACE_END
