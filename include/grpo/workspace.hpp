// SPDX-License-Identifier: MIT
// Reusable scratch memory for the CPU backend. Keep one per training loop: it grows to the largest batch it
// has seen and is reused afterwards, so the hot path performs no heap allocation once warm.
#pragma once

#include <cstddef>
#include <vector>

#include "config.hpp"

GRPO_NAMESPACE_BEGIN

class workspace {
public:
    workspace() = default;
    /// Pre-sizes for `doubles` doubles so that even the first call does not allocate.
    explicit workspace(std::size_t doubles) { doubles_.resize(doubles); }

    /// At least `count` doubles of scratch; contents are unspecified. Allocates only when growing.
    double* doubles(std::size_t count) {
        if (doubles_.size() < count) doubles_.resize(count);
        return doubles_.data();
    }
    std::size_t capacity_doubles() const noexcept { return doubles_.size(); }

private:
    std::vector<double> doubles_;
};

GRPO_NAMESPACE_END
