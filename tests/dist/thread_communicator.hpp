// SPDX-License-Identifier: MIT
// Threads of one process as the ranks of a communicator: the data-parallel contract tested without a
// transport (and under ThreadSanitizer). thread_group::run(f) calls f(comm) on `size` threads.
#pragma once

#include <condition_variable>
#include <cstring>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace dist_cases {

class thread_group {
public:
    explicit thread_group(int size) : size_(size), slots_(static_cast<std::size_t>(size)) {}

    class communicator {
    public:
        communicator(thread_group& g, int rank) : g_(&g), rank_(rank) {}
        int rank() const noexcept { return rank_; }
        int size() const noexcept { return g_->size_; }
        void all_gather(const void* send, std::size_t bytes, void* recv) const {
            g_->all_gather(rank_, send, bytes, recv);
        }

    private:
        thread_group* g_;
        int rank_;
    };

    /// Runs f(communicator) on every rank's thread; rethrows the first rank's exception, if any, after all joined.
    void run(const std::function<void(const communicator&)>& f) {
        std::vector<std::thread> threads;
        std::vector<std::exception_ptr> errors(static_cast<std::size_t>(size_));
        for (int r = 0; r < size_; ++r)
            threads.emplace_back([&, r] {
                try {
                    f(communicator(*this, r));
                } catch (...) {
                    errors[static_cast<std::size_t>(r)] = std::current_exception();
                }
            });
        for (auto& t : threads) t.join();
        for (auto& e : errors)
            if (e) std::rethrow_exception(e);
    }

private:
    // Two barriers per gather: every rank posts its buffer, every rank copies, then the buffers may go.
    void all_gather(int rank, const void* send, std::size_t bytes, void* recv) {
        slots_[static_cast<std::size_t>(rank)] = send;
        barrier();
        for (int r = 0; r < size_; ++r)
            if (bytes)
                std::memcpy(static_cast<char*>(recv) + static_cast<std::size_t>(r) * bytes,
                            slots_[static_cast<std::size_t>(r)], bytes);
        barrier();
    }
    void barrier() {
        std::unique_lock<std::mutex> lock(m_);
        const unsigned long gen = generation_;
        if (++waiting_ == size_) {
            waiting_ = 0;
            ++generation_;
            cv_.notify_all();
        } else {
            cv_.wait(lock, [&] { return generation_ != gen; });
        }
    }

    int size_;
    std::vector<const void*> slots_;
    std::mutex m_;
    std::condition_variable cv_;
    int waiting_ = 0;
    unsigned long generation_ = 0;
};

} // namespace dist_cases
