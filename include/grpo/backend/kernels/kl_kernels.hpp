// SPDX-License-Identifier: MIT
// Kernel of the standalone per-token KL (per_token_kl), on the block model of block.hpp (CUDA-free). After
// loss_check_kernel (values, with logp standing in for the advantages), one block per row writes KL_it and
// d KL_it / d logp_it from math::kl_penalty and its row sums; the last block reduces them in a fixed order into
// a loss_record (kl_loss: the sum, kl_mean, token_count).
#pragma once

#include "../../types/kl_types.hpp"
#include "loss_kernels.hpp"

GRPO_NAMESPACE_BEGIN
namespace detail {
namespace cuda {

template <class T>
struct kl_kernel {
    static constexpr int block = loss_block;
    device_loss_views<T> v; ///< logp, ref_logp, mask, lengths; grad and per_token (the KL) are the outputs
    kl_params k;
    loss_scratch s;
    bool counted; ///< loss_check_kernel ran: *s.error is set
    loss_record* record;

    template <class B>
    GRPO_HOST_DEVICE void operator()(B& b) const {
        using C = compute_t<T>;
        const index_t rows = v.logp.rows(), cols = v.logp.cols();
        const bool failed = counted && s.error->code != loss_error::none; // write nothing but the record
        for (index_t i = failed ? rows : b.block(); i < rows; i += b.blocks()) {
            const index_t end = valid_end(v, i);
            double sum = 0, n = 0;
            for (index_t t = b.thread(); t < cols; t += b.threads()) {
                const bool valid = t < end && is_valid(v, i, t);
                const math::kl_term<C> kl =
                    valid ? k.at(C(v.logp(i, t)), C(v.ref_logp(i, t))) : math::kl_term<C>{C(0), C(0)};
                const C value = kl.value, grad = kl.grad;
                sum += static_cast<double>(value);
                n += valid ? 1 : 0;
                if (v.per_token.present()) v.per_token(i, t) = T(value);
                if (v.grad.present()) v.grad(i, t) = T(grad);
            }
            sum = b.sum(sum);
            n = b.sum(n);
            if (b.thread() == 0) {
                loss_partials row = loss_partials::identity();
                row.kl_sum = sum;
                row.tokens = n;
                row.weigh(1.0); // kl = kl_sum: the record's kl_loss is the sum
                s.partials[i] = row;
            }
        }
        if (b.last_block_done(s.counters + 1)) write_loss_record(b, s, failed ? 0 : rows, 1.0, 0.0, counted, record);
    }
};

} // namespace cuda
} // namespace detail
GRPO_NAMESPACE_END
