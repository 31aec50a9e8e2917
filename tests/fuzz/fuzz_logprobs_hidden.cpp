// SPDX-License-Identifier: MIT
// libFuzzer harness of grpo::logprobs_from_hidden and logprobs_from_hidden_backward (exec::host, float and double):
// any layout of hidden [M, H] and weight [V, H] (only unit column strides are accepted), hostile extents, a bias
// of any size, token ids in and out of range, masks with odd values, NaN / +-inf / huge values (finite values
// whose products overflow), any temperature and chunk size, both validation levels, gradients overlapping the
// inputs.
//
// Oracles: success or grpo::error only; on error every output unchanged (the accumulated weight and bias
// gradients too); on success the inputs unchanged, masked rows 0 (logp, entropy, dhidden), with
// validation::full no NaN anywhere and logp <= 0, the same bits with a pool of 2 or 3 threads, and the bias
// gradient summing to 0 over the vocabulary (each row's softmax gradient does) up to rounding.
#include <grpo/logprobs_hidden.hpp>

#include "fuzz_input.hpp"

namespace {

using namespace fuzz;
using grpo::index_t;

template <class T>
struct problem {
    layout H, W;                      // hidden [M, width], weight [V, width]
    std::vector<T> hidden, weight;    // back H and W (1 element when unbacked)
    std::vector<T> bias;              // [bias_size]
    std::vector<std::int64_t> tokens; // [token_rows]
    std::vector<T> mask;              // [rows] or empty
    bool with_bias = false, with_mask = false, with_entropy = false, grad_aliases_weight = false;
    std::int64_t token_rows = 0, bias_size = 0;
    grpo::hidden_logprob_config cfg;
};

template <class T>
void build(fuzz_input& in, problem<T>& pb) {
    const std::int64_t rows = in.size(5, 64), vocab = in.size(8, 700), width = in.size(4, 40);
    pb.H = draw_layout(in, rows, width, true, in.chance(30));
    pb.W = draw_layout(in, vocab, width, true, in.chance(30));
    for (layout* L : {&pb.H, &pb.W})
        if (L->cols >= 0 && L->cols <= kMaxElems && in.chance(220)) { // mostly row-major, unit column stride
            L->rs = L->cols + (in.chance(40) ? in.range(1, 3) : 0);
            L->cs = 1;
            L->offset = 0;
            L->span = span_of(L->rows, L->cols, L->rs, L->cs, 0);
            L->backed = L->span >= 0 && L->span <= kMaxElems;
        }
    const bool tame = in.chance(200), nonfinite = in.chance(20);
    pb.hidden.assign(pb.H.backed ? static_cast<std::size_t>(pb.H.span) + 1 : 1, T(0));
    pb.weight.assign(pb.W.backed ? static_cast<std::size_t>(pb.W.span) + 1 : 1, T(0));
    for (T& x : pb.hidden) x = T(in.value(tame, nonfinite, 2.0));
    for (T& x : pb.weight) x = T(in.value(tame, nonfinite, 0.5));
    pb.with_bias = in.chance(100);
    pb.bias_size = vocab >= 0 && vocab <= 4096 ? vocab + (in.chance(6) ? 1 : 0) : 0;
    pb.bias.assign(static_cast<std::size_t>(pb.bias_size) + 1, T(0));
    for (T& b : pb.bias) b = T(in.value(tame, nonfinite, 1.0));
    const std::int64_t backed_rows = rows >= 0 && rows <= 4096 ? rows : 0;
    pb.token_rows = backed_rows + (in.chance(6) ? 1 : 0);
    pb.tokens.assign(static_cast<std::size_t>(pb.token_rows), 0);
    for (std::int64_t& t : pb.tokens) {
        const std::uint8_t k = in.u8();
        t = k < 240 && vocab > 0 ? in.range(0, std::min<std::int64_t>(vocab, 1 << 30) - 1)
                                 : (k % 2 ? -1 : std::min<std::int64_t>(vocab, 1 << 30));
    }
    pb.with_mask = in.chance(100);
    if (pb.with_mask) {
        pb.mask.assign(static_cast<std::size_t>(backed_rows), T(1));
        for (T& m : pb.mask) {
            const std::uint8_t k = in.u8();
            m = k < 80 ? T(0) : k < 250 ? T(1) : T(in.value(false, true));
        }
    }
    pb.with_entropy = in.chance(180);
    pb.grad_aliases_weight = in.chance(8);
    pb.cfg.temperature = in.config_double({1.0, 1.0, 0.7, 1.3, 0.05});
    pb.cfg.checks = in.enum_value<grpo::validation>(2);
    const std::uint8_t c = in.u8();
    pb.cfg.chunk_rows = c < 100 ? 0 : c < 240 ? in.range(1, 9) : (c % 2 ? -1 : in.hostile_size());
}

template <class T>
grpo::hidden_inputs<T> inputs(const problem<T>& pb) {
    grpo::hidden_inputs<T> v;
    v.hidden = grpo::matrix_view<const T>(pb.hidden.data() + pb.H.offset, pb.H.rows, pb.H.cols, pb.H.rs, pb.H.cs);
    v.weight = grpo::matrix_view<const T>(pb.weight.data() + pb.W.offset, pb.W.rows, pb.W.cols, pb.W.rs, pb.W.cs);
    if (pb.with_bias) v.bias = grpo::vector_view<const T>(pb.bias.data(), pb.bias_size);
    v.tokens = grpo::vector_view<const std::int64_t>(pb.tokens.data(), pb.token_rows);
    if (pb.with_mask) v.mask = grpo::vector_view<const T>(pb.mask.data(), static_cast<index_t>(pb.mask.size()));
    return v;
}

template <class T>
bool same_bytes(const std::vector<T>& a, const std::vector<T>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

template <class T>
struct forward_out {
    std::vector<T> logp, entropy;
    std::vector<double> lse;
    explicit forward_out(std::int64_t rows)
        : logp(static_cast<std::size_t>(rows) + 1), entropy(logp.size()), lse(logp.size()) {
        fill_sentinel(logp.data(), logp.size() * sizeof(T));
        fill_sentinel(entropy.data(), entropy.size() * sizeof(T));
        fill_sentinel(lse.data(), lse.size() * sizeof(double));
    }
};

template <class T>
outcome forward(const problem<T>& pb, forward_out<T>& o, std::int64_t rows, const grpo::exec::host& ex) {
    return call_checked("logprobs_from_hidden", [&] {
        grpo::logprob_outputs<T> out;
        out.logp = grpo::vector_view<T>(o.logp.data(), rows);
        if (pb.with_entropy) out.entropy = grpo::vector_view<T>(o.entropy.data(), rows);
        out.lse = grpo::vector_view<double>(o.lse.data(), rows);
        grpo::logprobs_from_hidden(ex, inputs(pb), out, pb.cfg);
    });
}

/// The backward's outputs: dhidden [rows, width] row-major, dweight in the weight's layout, dbias [bias_size].
template <class T>
struct backward_out {
    std::vector<T> hidden, weight, bias;
};

template <class T>
outcome backward(problem<T>& pb, const grpo::logprob_grad_inputs<T>& gi, backward_out<T>& b, std::int64_t rows,
                 const grpo::exec::host& ex) {
    return call_checked("logprobs_from_hidden_backward", [&] {
        grpo::hidden_grads<T> g;
        g.hidden = grpo::matrix_view<T>(b.hidden.data(), rows, pb.H.cols);
        if (pb.grad_aliases_weight) // the weight's own memory: must be rejected
            g.weight = grpo::matrix_view<T>(pb.weight.data() + pb.W.offset, pb.W.rows, pb.W.cols, pb.W.rs, pb.W.cs);
        else g.weight = grpo::matrix_view<T>(b.weight.data() + pb.W.offset, pb.W.rows, pb.W.cols, pb.W.rs, pb.W.cs);
        if (pb.with_bias) g.bias = grpo::vector_view<T>(b.bias.data(), pb.bias_size);
        grpo::logprobs_from_hidden_backward(ex, inputs(pb), gi, g, pb.cfg);
    });
}

template <class T>
void run(fuzz_input& in) {
    problem<T> pb;
    build(in, pb);
    const std::int64_t rows = pb.H.rows >= 0 && pb.H.rows <= 4096 ? pb.H.rows : 0;
    if (verbose())
        std::fprintf(stderr, "hidden<%s> M %lld H %lld V %lld chunk %lld T %g checks %d mask %d bias %d\n",
                     sizeof(T) == 8 ? "double" : "float", (long long)pb.H.rows, (long long)pb.H.cols,
                     (long long)pb.W.rows, (long long)pb.cfg.chunk_rows, pb.cfg.temperature, int(pb.cfg.checks),
                     int(pb.with_mask), int(pb.with_bias));
    const std::vector<T> hidden0 = pb.hidden, weight0 = pb.weight;
    forward_out<T> o(rows);
    const forward_out<T> o0 = o;
    const outcome r = forward(pb, o, rows, grpo::exec::host{});
    if (!r.ok) {
        if (!same_bytes(o.logp, o0.logp) || !same_bytes(o.entropy, o0.entropy) || !same_bytes(o.lse, o0.lse))
            finding("error-wrote-output", "logprobs_from_hidden threw (%s) but wrote", r.message.c_str());
        return;
    }
    if (!same_bytes(pb.hidden, hidden0) || !same_bytes(pb.weight, weight0))
        finding("input-written", "logprobs_from_hidden wrote an input");
    const bool full = pb.cfg.checks == grpo::validation::full;
    for (std::int64_t i = 0; i < rows; ++i) {
        const auto k = static_cast<std::size_t>(i);
        if (pb.with_mask && pb.mask[k] == T(0)) {
            if (o.logp[k] != T(0) || (pb.with_entropy && o.entropy[k] != T(0)) || o.lse[k] != 0)
                finding("masked-row-nonzero", "masked row %lld has a nonzero result", (long long)i);
            continue;
        }
        if (!full) continue;
        const double lp = double(o.logp[k]);
        if (std::isnan(lp) || std::isnan(o.lse[k]) || (pb.with_entropy && std::isnan(double(o.entropy[k]))))
            finding("nan-output", "row %lld: logp %g lse %g", (long long)i, lp, o.lse[k]);
        if (lp > (sizeof(T) == 8 ? 1e-9 : 1e-3) * (1 + std::fabs(lp)))
            finding("out-of-range", "row %lld: logp %.17g", (long long)i, lp);
    }
    for (const unsigned threads : {2u, 3u}) {
        forward_out<T> again(rows);
        const outcome r2 = forward(pb, again, rows, grpo::exec::host{&pool(threads)});
        if (!r2.ok || !same_bytes(again.logp, o.logp) || !same_bytes(again.lse, o.lse) ||
            (pb.with_entropy && !same_bytes(again.entropy, o.entropy)))
            finding("not-deterministic", "forward with %u threads differs", threads);
    }
    if (!pb.W.backed || pb.token_rows != rows || pb.H.cols < 0 || pb.H.cols > 4096) return;
    // Backward, from this forward's lse.
    const bool with_entropy_grad = pb.with_entropy && in.flag();
    std::vector<T> g(static_cast<std::size_t>(rows) + 1), ge(g.size());
    for (std::size_t k = 0; k < g.size(); ++k) {
        g[k] = T(in.value(in.chance(200), in.chance(10), 2.0));
        ge[k] = T(in.value(true, false, 1.0));
    }
    grpo::logprob_grad_inputs<T> gi;
    gi.lse = grpo::vector_view<const double>(o.lse.data(), rows);
    gi.grad_logp = grpo::vector_view<const T>(g.data(), rows);
    if (with_entropy_grad) {
        gi.entropy = grpo::vector_view<const T>(o.entropy.data(), rows);
        gi.grad_entropy = grpo::vector_view<const T>(ge.data(), rows);
    }
    backward_out<T> b;
    b.hidden.assign(static_cast<std::size_t>(rows * pb.H.cols) + 1, T(0));
    fill_sentinel(b.hidden.data(), b.hidden.size() * sizeof(T));
    b.weight.assign(pb.weight.size(), T(0)); // accumulated into: start at 0
    b.bias.assign(pb.bias.size(), T(0));
    const backward_out<T> b0 = b;
    const outcome rb = backward(pb, gi, b, rows, grpo::exec::host{});
    if (!rb.ok) {
        if (!same_bytes(b.hidden, b0.hidden) || !same_bytes(b.weight, b0.weight) || !same_bytes(b.bias, b0.bias) ||
            !same_bytes(pb.weight, weight0))
            finding("error-wrote-output", "backward threw (%s) but wrote", rb.message.c_str());
        return;
    }
    if (pb.grad_aliases_weight && pb.W.rows > 0 && pb.W.cols > 0) // (an empty view overlaps nothing)
        finding("alias-accepted", "a weight gradient over the weight was accepted");
    if (!same_bytes(pb.hidden, hidden0) || !same_bytes(pb.weight, weight0))
        finding("input-written", "backward wrote an input");
    backward_out<T> again = b0;
    const outcome r3 = backward(pb, gi, again, rows, grpo::exec::host{&pool(3)});
    if (!r3.ok || !same_bytes(again.hidden, b.hidden) || !same_bytes(again.weight, b.weight) ||
        !same_bytes(again.bias, b.bias))
        finding("not-deterministic", "backward with 3 threads differs");
    const std::int64_t width = pb.H.cols;
    for (std::int64_t i = 0; i < rows; ++i) {
        const bool masked = pb.with_mask && pb.mask[static_cast<std::size_t>(i)] == T(0);
        for (std::int64_t k = 0; k < width; ++k) {
            const T v = b.hidden[static_cast<std::size_t>(i * width + k)];
            if (masked && v != T(0)) finding("masked-row-nonzero", "dhidden row %lld is not 0", (long long)i);
            if (full && std::isnan(double(v)))
                finding("nan-output", "dhidden(%lld, %lld) NaN", (long long)i, (long long)k);
        }
    }
    if (!pb.with_bias || !full) return;
    // Each row's dLoss/dlogits sums to 0 over the vocabulary, so the bias gradient does.
    double sum = 0, scale = 0, upstream = 0;
    for (std::int64_t v = 0; v < pb.bias_size; ++v) {
        const double x = double(b.bias[static_cast<std::size_t>(v)]);
        if (std::isnan(x)) finding("nan-output", "dbias(%lld) NaN", (long long)v);
        sum += x;
        scale += std::fabs(x);
    }
    for (std::int64_t i = 0; i < rows; ++i) {
        const auto k = static_cast<std::size_t>(i);
        if (pb.with_mask && pb.mask[k] == T(0)) continue;
        upstream += (std::fabs(double(g[k])) +
                     (with_entropy_grad ? std::fabs(double(ge[k])) * (1 + std::fabs(double(o.entropy[k]))) : 0)) /
                    pb.cfg.temperature;
    }
    const double tol =
        (sizeof(T) == 8 ? 1e-11 : 1e-4) * (scale + 8 * upstream) +
        double(std::numeric_limits<T>::min()) * double(pb.bias_size + 8) * double(rows + 1) / pb.cfg.temperature;
    if (std::isfinite(scale) && std::isfinite(upstream) && std::fabs(sum) > tol)
        finding("row-sum", "dbias sums to %.17g (|dbias| sum %.17g, upstream %.17g)", sum, scale, upstream);
}

} // namespace

GRPO_FUZZ_ENTRY_FLOAT_AND_DOUBLE()
