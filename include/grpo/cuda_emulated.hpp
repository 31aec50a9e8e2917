// SPDX-License-Identifier: MIT
// The CUDA backend's kernels, run on the host: exec::cuda_emulated. A plain C++17 header (no CUDA toolkit).
//
//   grpo::emulated_workspace ws;
//   grpo::loss_stats st = grpo::loss_and_grad(grpo::exec::cuda_emulated{}, in, out, cfg, ws);
//   grpo::compute_advantages(grpo::exec::cuda_emulated{}, d_rewards, grpo::groups::contiguous(G), d_adv, acfg, ws);
//
// The same entry points, checks and kernel bodies as exec::cuda (backend/cuda/run.hpp, *_kernels.hpp), launched
// by an emulator instead of a GPU: every simulated thread is a std::thread, a block's threads meet at a barrier
// for each reduction, blocks run four at a time from the last one down, and the radix sort is std::stable_sort.
// "device_space" views here hold host memory. It exists so that machines without a GPU (CI) run the CUDA kernel
// code against the CPU backend; it is slow (a thread per simulated thread) and not meant for training. float and
// double; also __half and __nv_bfloat16 for the loss when <grpo/backend/cuda/half_types.hpp> is included (it
// needs the CUDA toolkit's headers, not a GPU).
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <numeric>
#include <string>
#include <thread>
#include <typeinfo>
#include <utility>
#include <vector>

#include "api/device_entry.hpp"
#include "api/device_logprob.hpp"
#include "grpo.hpp"

GRPO_NAMESPACE_BEGIN

namespace exec {
/// Runs the CUDA backend's kernels on the host (see cuda_emulated.hpp). `threads_per_block` simulated threads
/// per block (the GPU uses each kernel's own block size; results agree to rounding, not bit for bit).
struct cuda_emulated {
    int threads_per_block = 8;
};
} // namespace exec

/// Scratch of exec::cuda_emulated, the counterpart of cuda_workspace (host memory; grows when needed). Serves
/// one call at a time: every entry point holds it (basic_workspace_lease) and throws grpo::error
/// (errc::in_use) when another call holds it.
class emulated_workspace {
public:
    emulated_workspace() = default;
    emulated_workspace(const emulated_workspace&) = delete;
    emulated_workspace& operator=(const emulated_workspace&) = delete;
    /// Moving takes the memory, never the in-use state (a workspace in use must not be moved).
    emulated_workspace(emulated_workspace&& other) noexcept
        : scratch_(std::move(other.scratch_)),
          host_(std::move(other.host_)),
          launches_(std::move(other.launches_)),
          recording_(other.recording_) {}
    emulated_workspace& operator=(emulated_workspace&& other) noexcept {
        scratch_ = std::move(other.scratch_);
        host_ = std::move(other.host_);
        launches_ = std::move(other.launches_);
        recording_ = other.recording_;
        return *this;
    }
    double* doubles(std::size_t count) {
        if (count > scratch_.size())
            detail::assign_scratch(
                "cuda_emulated", "ws", scratch_,
                count > static_cast<std::size_t>(PTRDIFF_MAX) ? std::ptrdiff_t(-1) : static_cast<std::ptrdiff_t>(count),
                0.0);
        return scratch_.data();
    }
    double* host_doubles(std::size_t count) {
        if (count > host_.size()) host_.assign(count, 0.0);
        return host_.data();
    }
    /// Same queries as cuda_workspace (the emulator's sort needs no scratch).
    static std::size_t loss_doubles(index_t rows) { return detail::cuda::loss_scratch_doubles(rows); }
    static std::size_t advantage_doubles(index_t rows, index_t num_groups, bool by_id) {
        return (detail::cuda::adv_layout(rows, num_groups, by_id, 0, nullptr, nullptr) + sizeof(double) - 1) /
               sizeof(double);
    }
    /// True while a call holds this workspace.
    bool in_use() const noexcept { return in_use_.load(std::memory_order_relaxed); }

    /// One kernel launch: the kernel's type name (typeid, implementation-defined spelling) and its grid size.
    struct launch_record {
        std::string kernel;
        index_t blocks;
    };
    /// Opt-in log of the launches made through this workspace (to see how a call spreads its work over blocks);
    /// off by default, cleared when turned on.
    void record_launches(bool on) {
        recording_ = on;
        launches_.clear();
    }
    const std::vector<launch_record>& launches() const noexcept { return launches_; }
    /// Called by the emulator for each launch.
    void note_launch(const char* kernel, index_t blocks) {
        if (recording_) launches_.push_back({kernel, blocks});
    }

private:
    template <class W>
    friend class basic_workspace_lease;
    std::vector<double> scratch_, host_;
    std::vector<launch_record> launches_;
    bool recording_ = false;
    std::atomic<bool> in_use_{false};
};

namespace detail {
namespace cuda {

/// What the simulated threads of one block share: the barrier, the reduction slots, the last-block flag.
class emulated_block_state {
public:
    emulated_block_state(int threads, index_t block, index_t blocks, std::mutex& atomics)
        : threads_(threads),
          block_(block),
          blocks_(blocks),
          slots_(static_cast<std::size_t>(threads)),
          atomics_(atomics) {}

    void barrier() {
        std::unique_lock<std::mutex> lock(mutex_);
        const std::uint64_t generation = generation_;
        if (++arrived_ == threads_) {
            arrived_ = 0;
            ++generation_;
            cv_.notify_all();
        } else {
            cv_.wait(lock, [&] { return generation_ != generation; });
        }
    }

    int threads_;
    index_t block_, blocks_;
    std::vector<double> slots_;
    bool last_ = false;
    std::mutex& atomics_;

private:
    std::mutex mutex_;
    std::condition_variable cv_;
    int arrived_ = 0;
    std::uint64_t generation_ = 0;
};

/// A simulated thread's view of its block (block.hpp).
class emulated_block {
public:
    emulated_block(emulated_block_state& st, int thread) : st_(st), thread_(thread) {}
    index_t thread() const { return thread_; }
    index_t threads() const { return st_.threads_; }
    index_t block() const { return st_.block_; }
    index_t blocks() const { return st_.blocks_; }
    double sum(double x) {
        return reduce(x, [](double a, double b) { return a + b; });
    }
    double min(double x) {
        return reduce(x, [](double a, double b) { return b < a ? b : a; });
    }
    double max(double x) {
        return reduce(x, [](double a, double b) { return b > a ? b : a; });
    }
    double load(const double* p) const { return *p; }
    void atomic_max(unsigned long long* p, unsigned long long v) const {
        std::lock_guard<std::mutex> lock(st_.atomics_);
        if (v > *p) *p = v;
    }
    bool last_block_done(unsigned long long* counter) {
        st_.barrier();
        if (thread_ == 0) {
            std::lock_guard<std::mutex> lock(st_.atomics_);
            st_.last_ = (*counter)++ == static_cast<unsigned long long>(st_.blocks_) - 1;
        }
        st_.barrier();
        return st_.last_;
    }

private:
    template <class Op>
    double reduce(double x, Op op) {
        st_.slots_[static_cast<std::size_t>(thread_)] = x;
        st_.barrier();
        double r = st_.slots_[0];
        for (std::size_t k = 1; k < st_.slots_.size(); ++k) r = op(r, st_.slots_[k]);
        st_.barrier(); // nobody overwrites a slot before every thread has read them all
        return r;
    }
    emulated_block_state& st_;
    int thread_;
};

/// The launch policy of run.hpp for exec::cuda_emulated.
class emulated_device {
public:
    emulated_device(int threads, emulated_workspace& ws) : threads_(threads), ws_(ws) {
        if (threads < 1)
            raise_argument(errc::invalid_value, "exec::cuda_emulated", "threads_per_block", "a value >= 1",
                           std::to_string(threads));
    }

    double* scratch_doubles(std::size_t n) { return ws_.doubles(n); }
    void zero(void* p, std::size_t bytes) {
        if (bytes > 0) std::memset(p, 0, bytes); // p may be null for an empty range (memset's is UB then)
    }

    /// Blocks run in waves of blocks_at_once, each wave concurrently (so that a thread sanitizer sees races
    /// between blocks too), the waves from the last block index down (no kernel may rely on block order).
    template <class K>
    void launch(const K& kernel, index_t blocks) {
        constexpr index_t blocks_at_once = 4;
        ws_.note_launch(typeid(K).name(), blocks);
        std::mutex atomics;
        for (index_t hi = blocks; hi > 0; hi -= blocks_at_once) {
            const index_t lo = hi > blocks_at_once ? hi - blocks_at_once : 0;
            std::vector<std::unique_ptr<emulated_block_state>> states;
            std::vector<std::thread> workers;
            for (index_t blk = hi - 1; blk >= lo; --blk) {
                states.push_back(std::make_unique<emulated_block_state>(threads_, blk, blocks, atomics));
                emulated_block_state* st = states.back().get();
                for (int t = 0; t < threads_; ++t)
                    workers.emplace_back([st, &kernel, t] {
                        emulated_block b(*st, t);
                        kernel(b);
                    });
            }
            for (std::thread& w : workers) w.join();
        }
    }

    std::size_t sort_temp_bytes(index_t, int) const { return 0; }
    void sort_pairs(const std::uint64_t* keys_in, std::uint64_t* keys_out, const std::int64_t* values_in,
                    std::int64_t* values_out, index_t n, int, void*, std::size_t) const {
        std::vector<std::size_t> order(static_cast<std::size_t>(n));
        std::iota(order.begin(), order.end(), std::size_t(0));
        std::stable_sort(order.begin(), order.end(),
                         [&](std::size_t a, std::size_t b) { return keys_in[a] < keys_in[b]; });
        for (std::size_t q = 0; q < order.size(); ++q) {
            keys_out[q] = keys_in[order[q]];
            values_out[q] = values_in[order[q]];
        }
    }

    void check_pointer(const char*, const char*, const void*) const {}
    double* host_doubles(std::size_t n) { return ws_.host_doubles(n); }
    void copy_to_host(void* h, const void* d, std::size_t bytes) const {
        if (bytes > 0) std::memcpy(h, d, bytes);
    }
    void synchronize(const char*) const {}
    void check_launch(const char*) const {}
    /// Row-major C [m, n] = op(A) op(B) + beta C with op(A) [m, k], op(B) [k, n] (cuBLAS's gemm on a GPU): a plain
    /// loop with double sums, enough for the tests' sizes.
    template <class T>
    void gemm(bool trans_a, bool trans_b, index_t m, index_t n, index_t k, const T* a, index_t lda, const T* b,
              index_t ldb, T beta, T* c, index_t ldc) const {
        for (index_t i = 0; i < m; ++i)
            for (index_t j = 0; j < n; ++j) {
                double acc = 0;
                for (index_t p = 0; p < k; ++p)
                    acc += static_cast<double>(trans_a ? a[p * lda + i] : a[i * lda + p]) *
                           static_cast<double>(trans_b ? b[j * ldb + p] : b[p * ldb + j]);
                T& out = c[i * ldc + j];
                out = beta == T(0) ? static_cast<T>(acc) : static_cast<T>(static_cast<double>(beta * out) + acc);
            }
    }

private:
    int threads_;
    emulated_workspace& ws_;
};

} // namespace cuda
} // namespace detail

template <>
struct device_backend_traits<exec::cuda_emulated> {
    static constexpr const char* loss_where = "loss_and_grad(emulated)";
    static constexpr const char* kl_where = "per_token_kl(emulated)";
    static constexpr const char* advantages_where = "compute_advantages(emulated)";
    static constexpr const char* token_advantages_where = "token_advantages(emulated)";
    static constexpr const char* logprobs_where = "logprobs_from_logits(emulated)";
    static constexpr const char* logprobs_backward_where = "logprobs_from_logits_backward(emulated)";
    static constexpr const char* hidden_where = "logprobs_from_hidden(emulated)";
    static constexpr const char* hidden_backward_where = "logprobs_from_hidden_backward(emulated)";
    using workspace = emulated_workspace;
    static detail::cuda::emulated_device device(const exec::cuda_emulated& ex, workspace& ws) {
        return detail::cuda::emulated_device(ex.threads_per_block, ws);
    }
};

GRPO_NAMESPACE_END
