// SPDX-License-Identifier: MIT
// Reusable scratch memory for the CPU backend. Keep one per training loop: it grows to the largest batch it
// has seen and is reused afterwards, so the hot path performs no heap allocation once warm.
//
// Concurrency: a workspace serves one call at a time. Every entry point takes it for the duration of the
// call (workspace_lease); a second call that finds it taken, on any thread, throws grpo::error
// (errc::in_use) before touching anything. Give each thread its own workspace.
#pragma once

#include <atomic>
#include <cstddef>
#include <vector>

#include "config.hpp"
#include "checked.hpp"
#include "error.hpp"

GRPO_NAMESPACE_BEGIN

class workspace {
public:
    workspace() = default;
    /// Pre-sizes for `doubles` doubles so that even the first call does not allocate.
    explicit workspace(std::size_t doubles) { doubles_.resize(doubles); }
    workspace(const workspace&) = delete;
    workspace& operator=(const workspace&) = delete;
    /// Moving takes the memory, never the in-use state (a workspace in use must not be moved).
    workspace(workspace&& other) noexcept : doubles_(std::move(other.doubles_)) {}
    workspace& operator=(workspace&& other) noexcept {
        doubles_ = std::move(other.doubles_);
        return *this;
    }

    /// At least `count` doubles of scratch; contents are unspecified. Allocates only when growing, and frees the
    /// old buffer first (nothing is copied, so the peak is the new size, not old + new); a size the allocator
    /// cannot provide is a grpo::error (errc::out_of_memory) and leaves the workspace empty. `where` names the
    /// calling entry point in that error.
    double* doubles(std::size_t count, const char* where = "workspace::doubles") {
        if (doubles_.size() < count) {
            std::vector<double>().swap(doubles_);
            detail::grow_or_raise<std::vector<double>>(
                where, "ws",
                count > static_cast<std::size_t>(PTRDIFF_MAX) ? std::ptrdiff_t(-1) : static_cast<std::ptrdiff_t>(count),
                [&] { doubles_.resize(count); });
        }
        return doubles_.data();
    }
    std::size_t capacity_doubles() const noexcept { return doubles_.size(); }
    /// True while a call holds this workspace.
    bool in_use() const noexcept { return in_use_.load(std::memory_order_relaxed); }

private:
    template <class W>
    friend class basic_workspace_lease;
    std::vector<double> doubles_;
    std::atomic<bool> in_use_{false};
};

/// Holds a workspace (anything with an `std::atomic<bool> in_use_` reachable by friendship) for one call:
/// throws grpo::error (errc::in_use) naming the call when another call holds it. One atomic exchange per call.
template <class W>
class basic_workspace_lease {
public:
    basic_workspace_lease(W& ws, const char* where) : ws_(ws) {
        if (ws_.in_use_.exchange(true, std::memory_order_acquire))
            detail::raise_argument(errc::in_use, where, "ws",
                                   "a workspace no other call is using (give each thread its own)",
                                   "a workspace in use by another call");
    }
    ~basic_workspace_lease() { ws_.in_use_.store(false, std::memory_order_release); }
    basic_workspace_lease(const basic_workspace_lease&) = delete;
    basic_workspace_lease& operator=(const basic_workspace_lease&) = delete;

private:
    W& ws_;
};
using workspace_lease = basic_workspace_lease<workspace>;

GRPO_NAMESPACE_END
