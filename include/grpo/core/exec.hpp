// SPDX-License-Identifier: MIT
// Execution objects, passed first to every public operation (Thrust/MatX style). exec::host runs on the
// calling thread, or on a caller-owned thread_pool; results are bit-identical either way because every
// reduction is done per row and then summed in row order on one thread.
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <thread>
#include <vector>

#include "config.hpp"
#include "view.hpp"

GRPO_NAMESPACE_BEGIN

/// A fixed set of worker threads that grpo's CPU backend can borrow. Create it once and reuse it: starting
/// threads allocates, running tasks on existing ones does not.
///
/// Concurrency: any number of threads may share one pool. Calls to run() from different threads queue: one
/// job has the workers at a time, the others wait for it (no hang, no race; each call's result is the same
/// as alone). A run() from inside a task of the same pool (nested use) runs its tasks on the calling thread.
class thread_pool {
public:
    /// `threads` counts the calling thread too: thread_pool(4) starts 3 workers. 0 means hardware_concurrency.
    explicit thread_pool(unsigned threads = 0) {
        if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
        workers_.reserve(threads - 1);
        for (unsigned i = 0; i + 1 < threads; ++i)
            workers_.emplace_back([this] {
                active_pool() = this; // a nested run() from a task runs inline instead of waiting for itself
                worker_loop();
            });
    }
    thread_pool(const thread_pool&) = delete;
    thread_pool& operator=(const thread_pool&) = delete;
    ~thread_pool() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            stopping_ = true;
        }
        wake_.notify_all();
        for (auto& w : workers_) w.join();
    }

    /// Total threads that take part in run(), the caller included.
    unsigned size() const noexcept { return static_cast<unsigned>(workers_.size()) + 1; }

    /// Calls task(k) for every k in [0, count), spread over the pool and the calling thread; returns when all
    /// are done. Which thread runs which k is unspecified, so task(k) must only write what k owns, and it must
    /// not throw (grpo's tasks never do).
    template <class F>
    void run(std::size_t count, const F& task) {
        if (count == 0) return;
        if (workers_.empty() || count == 1 || active_pool() == this) {
            for (std::size_t k = 0; k < count; ++k) task(k);
            return;
        }
        // One job at a time: concurrent callers wait here for the workers (the job's state below is shared).
        std::lock_guard<std::mutex> job(job_mutex_);
        struct mark {
            thread_pool* previous;
            ~mark() { active_pool() = previous; }
        } marked{active_pool()};
        active_pool() = this;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            task_ = &task;
            invoke_ = [](const void* f, std::size_t k) { (*static_cast<const F*>(f))(k); };
            count_ = count;
            next_.store(0);
            busy_ = workers_.size();
            ++generation_;
        }
        wake_.notify_all();
        drain();
        std::unique_lock<std::mutex> lock(mutex_);
        done_.wait(lock, [this] { return busy_ == 0; });
        task_ = nullptr;
    }

private:
    /// The pool whose job the current thread is running (a worker's own pool, or the pool a caller waits on).
    static thread_pool*& active_pool() {
        static thread_local thread_pool* pool = nullptr;
        return pool;
    }
    void drain() {
        for (std::size_t k = next_.fetch_add(1); k < count_; k = next_.fetch_add(1)) invoke_(task_, k);
    }
    void worker_loop() {
        std::size_t seen = 0;
        for (;;) {
            {
                std::unique_lock<std::mutex> lock(mutex_);
                wake_.wait(lock, [&] { return stopping_ || generation_ != seen; });
                if (stopping_) return;
                seen = generation_;
            }
            drain();
            {
                std::lock_guard<std::mutex> lock(mutex_);
                if (--busy_ == 0) done_.notify_one();
            }
        }
    }

    std::vector<std::thread> workers_;
    std::mutex job_mutex_; // held for a whole run(): serializes callers
    std::mutex mutex_;
    std::condition_variable wake_, done_;
    const void* task_ = nullptr;
    void (*invoke_)(const void*, std::size_t) = nullptr;
    std::size_t count_ = 0;
    std::atomic<std::size_t> next_{0};
    std::size_t busy_ = 0;
    std::size_t generation_ = 0;
    bool stopping_ = false;
};

namespace exec {

/// Run on the CPU: on the calling thread, or spread over `pool` when one is given.
struct host {
    thread_pool* pool = nullptr;
    using memory_space = host_space;
};

} // namespace exec

namespace detail {

/// Calls body(first, last) over [0, n) in chunks of `grain`, on the executor's pool if it has one.
template <class Body>
void parallel_for(const exec::host& ex, index_t n, index_t grain, const Body& body) {
    if (n <= 0) return;
    grain = std::max<index_t>(1, grain);
    const index_t chunks = (n + grain - 1) / grain;
    if (ex.pool == nullptr || chunks == 1) {
        body(index_t(0), n);
        return;
    }
    ex.pool->run(static_cast<std::size_t>(chunks), [&](std::size_t k) {
        const index_t first = static_cast<index_t>(k) * grain;
        body(first, std::min(n, first + grain));
    });
}

} // namespace detail

GRPO_NAMESPACE_END
