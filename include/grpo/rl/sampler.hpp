// SPDX-License-Identifier: MIT
// Rollouts: what a host's sampler produces for a batch of prompts (G completions each) and how grpo sees it.
//
// Layout (TRL and verl): rows are completions in prompt-major groups, row = prompt * G + k, k in [0, G);
// columns are completion token positions [0, max_tokens). Only the completion is stored: the prompt stays
// with the host and is handed back to reward functions by reference.
//
// Ownership: rollout_batch is a set of non-owning views; grpo never keeps or frees what a host gives it.
// rollout_buffer is a small owning container a host may use (the training-step helper owns one and lends it
// to the sampler to fill); its views are valid until its next reset().
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "../core/check.hpp"
#include "../core/view.hpp"

GRPO_NAMESPACE_BEGIN

/// Token id type of rollouts (large enough for every tokenizer in use; pad positions hold -1).
using token_id = std::int32_t;

/// One completion as reward functions see it: its tokens up to its length, and where it sits in the batch.
struct completion_view {
    vector_view<const token_id> tokens; ///< the generated tokens, EOS included if one was generated
    bool truncated = false;             ///< hit max_tokens without an end-of-sequence token
    index_t row = 0;                    ///< row in the rollout batch (prompt * group_size + index_in_group)
    index_t prompt = 0;                 ///< index of its prompt in the batch
    index_t index_in_group = 0;         ///< k in [0, group_size)
    index_t length() const noexcept { return tokens.size(); }
};

/// A rollout of num_prompts * group_size completions, as non-owning views of the host's (or a
/// rollout_buffer's) memory. Same content as TRL's completion_ids / completion_mask / old_per_token_logps
/// and verl's responses / response_mask / old_log_probs.
template <class T = float>
struct rollout_batch {
    index_t num_prompts = 0;
    index_t group_size = 0;
    matrix_view<const token_id> tokens;        ///< [rows, max_tokens]; positions >= lengths[i] are padding
    vector_view<const std::int64_t> lengths;   ///< tokens generated per row, in [0, max_tokens]
    matrix_view<const T> old_logp;             ///< [rows, max_tokens] log-probs of the sampling policy
    vector_view<const std::uint8_t> truncated; ///< 1 = no EOS before max_tokens (absent = none truncated)

    index_t rows() const noexcept { return num_prompts * group_size; }
    index_t max_tokens() const noexcept { return tokens.cols(); }
    index_t prompt_of(index_t row) const noexcept { return group_size > 0 ? row / group_size : 0; }
    bool is_truncated(index_t row) const noexcept { return truncated.present() && truncated[row] != 0; }

    /// Row i as reward functions see it (no check: call validate() once per batch first).
    completion_view completion(index_t row) const {
        completion_view c;
        c.tokens =
            vector_view<const token_id>(tokens.row_data(row), static_cast<index_t>(lengths[row]), tokens.col_stride());
        c.truncated = is_truncated(row);
        c.row = row;
        c.prompt = prompt_of(row);
        c.index_in_group = group_size > 0 ? row % group_size : 0;
        return c;
    }

    /// Throws grpo::error naming the first problem: group size < 1, shapes that disagree with
    /// num_prompts * group_size rows, or lengths outside [0, max_tokens].
    void validate(const char* where = "rollout_batch") const {
        if (num_prompts < 0)
            detail::raise_argument(errc::invalid_value, where, "rollout.num_prompts", "a value >= 0",
                                   detail::to_str(num_prompts));
        if (group_size < 1)
            detail::raise_argument(errc::invalid_value, where, "rollout.group_size", "a value >= 1",
                                   detail::to_str(group_size));
        const index_t n =
            detail::checked_mul(where, "rollout.num_prompts * rollout.group_size", num_prompts, group_size);
        const index_t cols = tokens.cols();
        if (tokens.rows() != n)
            detail::raise_argument(errc::shape_mismatch, where, "rollout.tokens",
                                   std::to_string(static_cast<long long>(n)) + " rows (num_prompts * group_size)",
                                   detail::to_str(tokens.rows()) + " rows");
        detail::check_size(where, "rollout.lengths", lengths, n);
        if (old_logp.present()) detail::check_shape(where, "rollout.old_logp", old_logp, n, cols);
        if (truncated.present()) detail::check_size(where, "rollout.truncated", truncated, n);
        for (index_t i = 0; i < n; ++i)
            if (lengths[i] < 0 || lengths[i] > cols)
                detail::raise_argument(
                    errc::invalid_value, where, "rollout.lengths", "values in [0, " + detail::to_str(cols) + "]",
                    std::to_string(static_cast<long long>(lengths[i])) + " at row " + detail::to_str(i));
    }
};

/// Owning storage for one rollout, filled by a sampler. Contiguous row-major [rows, max_tokens] arrays.
template <class T = float>
class rollout_buffer {
public:
    /// Sizes for num_prompts * group_size rows of max_tokens and clears: tokens -1, log-probs 0, lengths 0,
    /// truncated 0. Allocates only when growing.
    void reset(index_t num_prompts, index_t group_size, index_t max_tokens) {
        if (num_prompts < 0 || group_size < 1 || max_tokens < 0)
            detail::raise_argument(
                errc::invalid_value, "rollout_buffer::reset", "num_prompts/group_size/max_tokens",
                "num_prompts >= 0, group_size >= 1, max_tokens >= 0",
                detail::to_str(num_prompts) + "/" + detail::to_str(group_size) + "/" + detail::to_str(max_tokens));
        // Sizes first (a product that overflows is an error), then the storage; the shape changes only once
        // every array has its new size, so a failed reset leaves a consistent (old-shaped) buffer.
        constexpr const char* where = "rollout_buffer::reset";
        const index_t n = detail::checked_mul(where, "num_prompts * group_size", num_prompts, group_size);
        const index_t cells = detail::checked_mul(where, "rows * max_tokens", n, max_tokens);
        (void)detail::checked_bytes(where, "rows * max_tokens", cells,
                                    sizeof(T) > sizeof(token_id) ? sizeof(T) : sizeof(token_id));
        detail::assign_scratch(where, "tokens", tokens_, cells, token_id(-1));
        detail::assign_scratch(where, "old_logp", logp_, cells, T(0));
        detail::assign_scratch(where, "lengths", lengths_, n, std::int64_t(0));
        detail::assign_scratch(where, "truncated", truncated_, n, std::uint8_t(0));
        num_prompts_ = num_prompts;
        group_size_ = group_size;
        cols_ = max_tokens;
    }

    index_t num_prompts() const noexcept { return num_prompts_; }
    index_t group_size() const noexcept { return group_size_; }
    index_t rows() const noexcept { return num_prompts_ * group_size_; }
    index_t max_tokens() const noexcept { return cols_; }

    /// Writable views for the sampler.
    matrix_view<token_id> tokens() { return matrix_view<token_id>(tokens_.data(), rows(), cols_); }
    matrix_view<T> old_logp() { return matrix_view<T>(logp_.data(), rows(), cols_); }
    vector_view<std::int64_t> lengths() { return vector_view<std::int64_t>(lengths_.data(), rows()); }
    vector_view<std::uint8_t> truncated() { return vector_view<std::uint8_t>(truncated_.data(), rows()); }

    /// Read-only view of the whole rollout.
    rollout_batch<T> view() const {
        rollout_batch<T> b;
        b.num_prompts = num_prompts_;
        b.group_size = group_size_;
        b.tokens = matrix_view<const token_id>(tokens_.data(), rows(), cols_);
        b.lengths = vector_view<const std::int64_t>(lengths_.data(), rows());
        b.old_logp = matrix_view<const T>(logp_.data(), rows(), cols_);
        b.truncated = vector_view<const std::uint8_t>(truncated_.data(), rows());
        return b;
    }

private:
    index_t num_prompts_ = 0, group_size_ = 1, cols_ = 0;
    std::vector<token_id> tokens_;
    std::vector<T> logp_;
    std::vector<std::int64_t> lengths_;
    std::vector<std::uint8_t> truncated_;
};

/// The interface a host implements to generate completions (TRL: the vLLM/generate call inside
/// _generate_and_score_completions; verl: the rollout worker's generate_sequences).
///
/// sample() must, for every prompt p in [0, num_prompts) and k in [0, group_size), write row p * G + k of
/// `out` (already reset() to num_prompts x group_size x max_tokens by the caller): the generated token ids,
/// the sampling policy's log-prob of each generated token (after temperature, as every peer computes it),
/// the length (EOS included) and truncated = 1 when no EOS was produced within max_tokens. grpo reads
/// those buffers and owns none of the prompts.
template <class Prompt, class T = float>
class group_sampler {
public:
    virtual ~group_sampler() = default;
    virtual void sample(const Prompt* prompts, index_t num_prompts, index_t group_size, rollout_buffer<T>& out) = 0;
    /// Longest completion the sampler produces (columns of the rollout).
    virtual index_t max_tokens() const = 0;
};

GRPO_NAMESPACE_END
