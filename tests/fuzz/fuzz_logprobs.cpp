// SPDX-License-Identifier: MIT
// libFuzzer harness of grpo::logprobs_from_logits and logprobs_from_logits_backward (exec::host, float and
// double): any layout of the logits (only unit column stride is accepted), hostile extents, token ids in and out
// of range, int32 and int64 ids, masks with odd values, NaN / +-inf / extreme logits, any temperature, both
// validation levels, outputs aliasing the logits, in-place backward.
//
// Oracles: success or grpo::error only; on error every buffer unchanged (the backward too, in place); on success
// the inputs unchanged, masked rows 0 (forward and backward), and with validation::full: logp <= 0 and
// entropy in [0, log V] up to rounding, no NaN in any output, the gradient of each row summing to 0 (softmax
// gradients do), bit-identical results on a rerun, with a pool of 2 or 3 threads, with the AVX2 copy off, and
// in place.
#include "fuzz_input.hpp"

namespace {

using namespace fuzz;
using grpo::index_t;

template <class T, class Token>
struct problem {
    layout L;                  // logits
    std::vector<T> logits;     // backs L (1 element when unbacked)
    std::vector<Token> tokens; // [rows] (+ 1 when a size mismatch is drawn)
    std::vector<T> mask;       // [rows] or empty
    bool with_mask = false, with_entropy = false, with_lse = false, lse_aliases_logits = false;
    std::int64_t token_rows = 0; // the size given to the tokens view
    grpo::logprob_config cfg;
};

template <class T, class Token>
void build(fuzz_input& in, problem<T, Token>& pb) {
    const std::int64_t rows = in.size(6, 200), vocab = in.size(9, 3000);
    pb.L = draw_layout(in, rows, vocab, true, in.chance(30));
    if (vocab >= 0 && vocab <= kMaxElems && in.chance(200)) { // mostly row-major, unit column stride: accepted
        pb.L.rs = vocab + (in.chance(40) ? in.range(1, 3) : 0);
        pb.L.cs = 1;
        pb.L.offset = 0;
        pb.L.span = span_of(rows, vocab, pb.L.rs, pb.L.cs, 0);
        pb.L.backed = pb.L.span >= 0 && pb.L.span <= kMaxElems;
    }
    pb.logits.assign(pb.L.backed ? static_cast<std::size_t>(pb.L.span) + 1 : 1, T(0));
    const bool tame = in.chance(180), nonfinite = in.chance(30);
    for (T& x : pb.logits) {
        const std::uint8_t k = in.u8();
        x = k < 12 ? -std::numeric_limits<T>::infinity() : T(in.value(tame, nonfinite, 8.0));
    }
    const std::int64_t backed_rows = rows >= 0 && rows <= 4096 ? rows : 0;
    pb.token_rows = backed_rows + (in.chance(6) ? 1 : 0);
    pb.tokens.assign(static_cast<std::size_t>(pb.token_rows), Token(0));
    for (Token& t : pb.tokens) {
        const std::uint8_t k = in.u8();
        t = k < 240 && vocab > 0 ? Token(in.range(0, std::min<std::int64_t>(vocab, 1 << 30) - 1))
                                 : Token(k % 2 ? -1 : std::min<std::int64_t>(vocab, 1 << 30));
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
    pb.with_lse = in.chance(200);
    pb.lse_aliases_logits = std::is_same<T, double>::value && in.chance(8);
    pb.cfg.temperature = in.config_double({1.0, 1.0, 0.7, 1.3, 0.05});
    pb.cfg.checks = in.enum_value<grpo::validation>(2);
}

template <class T, class Token>
grpo::logits_inputs<T, Token> inputs(const problem<T, Token>& pb) {
    grpo::logits_inputs<T, Token> v;
    v.logits = grpo::matrix_view<const T>(pb.logits.data() + pb.L.offset, pb.L.rows, pb.L.cols, pb.L.rs, pb.L.cs);
    v.tokens = grpo::vector_view<const Token>(pb.tokens.data(), pb.token_rows);
    if (pb.with_mask) v.mask = grpo::vector_view<const T>(pb.mask.data(), static_cast<index_t>(pb.mask.size()));
    return v;
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
bool same_bytes(const std::vector<T>& a, const std::vector<T>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

template <class T, class Token>
outcome forward(problem<T, Token>& pb, forward_out<T>& o, std::int64_t rows, const grpo::exec::host& ex) {
    return call_checked("logprobs_from_logits", [&] {
        grpo::logprob_outputs<T> out;
        out.logp = grpo::vector_view<T>(o.logp.data(), rows);
        if (pb.with_entropy) out.entropy = grpo::vector_view<T>(o.entropy.data(), rows);
        if (pb.lse_aliases_logits)
            out.lse = grpo::vector_view<double>(reinterpret_cast<double*>(pb.logits.data()),
                                                std::min<std::int64_t>(rows, std::int64_t(pb.logits.size())));
        else if (pb.with_lse) out.lse = grpo::vector_view<double>(o.lse.data(), rows);
        grpo::logprobs_from_logits(ex, inputs(pb), out, pb.cfg);
    });
}

template <class T, class Token>
void run_typed(fuzz_input& in) {
    problem<T, Token> pb;
    build(in, pb);
    const std::int64_t rows = pb.L.rows >= 0 && pb.L.rows <= 4096 ? pb.L.rows : 0;
    if (verbose())
        std::fprintf(stderr, "logprobs<%s, %s> %lldx%lld rs %lld cs %lld T %g checks %d mask %d\n",
                     sizeof(T) == 8 ? "double" : "float", sizeof(Token) == 8 ? "int64" : "int32", (long long)pb.L.rows,
                     (long long)pb.L.cols, (long long)pb.L.rs, (long long)pb.L.cs, pb.cfg.temperature,
                     int(pb.cfg.checks), int(pb.with_mask));
    const std::vector<T> logits0 = pb.logits;
    forward_out<T> o(rows);
    const forward_out<T> o0 = o;
    const outcome r = forward(pb, o, rows, grpo::exec::host{});
    if (!r.ok) {
        if (!same_bytes(o.logp, o0.logp) || !same_bytes(o.entropy, o0.entropy) || !same_bytes(o.lse, o0.lse) ||
            !same_bytes(pb.logits, logits0))
            finding("error-wrote-output", "logprobs_from_logits threw (%s) but wrote", r.message.c_str());
        return;
    }
    // The logits' elements unchanged (an accepted lse over the same buffer lies outside the view).
    for (const std::int64_t at : offsets_of(pb.L, [](std::int64_t, std::int64_t) { return true; }))
        if (!bits_equal(pb.logits[static_cast<std::size_t>(at)], logits0[static_cast<std::size_t>(at)]))
            finding("input-written", "logprobs_from_logits wrote its logits");
    const bool full = pb.cfg.checks == grpo::validation::full;
    const bool lse_out = pb.with_lse && !pb.lse_aliases_logits; // o.lse holds the output
    const std::int64_t V = pb.L.cols;
    for (std::int64_t i = 0; i < rows; ++i) {
        const auto k = static_cast<std::size_t>(i);
        const bool masked = pb.with_mask && pb.mask[k] == T(0);
        if (masked) {
            if (o.logp[k] != T(0) || (pb.with_entropy && o.entropy[k] != T(0)) || (lse_out && o.lse[k] != 0))
                finding("masked-row-nonzero", "masked row %lld has a nonzero result", (long long)i);
            continue;
        }
        if (!full) continue;
        const double lp = double(o.logp[k]), h = pb.with_entropy ? double(o.entropy[k]) : 0.0;
        if (std::isnan(lp) || std::isnan(h) || (lse_out && std::isnan(o.lse[k])))
            finding("nan-output", "row %lld: logp %g entropy %g lse %g", (long long)i, lp, h, o.lse[k]);
        const double eps = sizeof(T) == 8 ? 1e-9 : 1e-3;
        if (lp > eps * (1 + std::fabs(lp)) || h < -eps || h > std::log(double(V)) * (1 + eps) + eps)
            finding("out-of-range", "row %lld: logp %.17g entropy %.17g (V %lld)", (long long)i, lp, h, (long long)V);
    }
    // Reruns: the same bits on the calling thread, with a pool, and with the AVX2 copy off.
    for (int variant = 0; variant < 3; ++variant) {
        forward_out<T> again(rows);
        grpo::thread_pool& p = pool(variant == 1 ? 2 : 3);
        if (variant == 2) grpo::detail::cpu::cpu_version_limit() = grpo::detail::cpu::cpu_version::baseline;
        const outcome r2 = forward(pb, again, rows, variant == 0 ? grpo::exec::host{} : grpo::exec::host{&p});
        grpo::detail::cpu::cpu_version_limit() = grpo::detail::cpu::cpu_version::avx512;
        if (!r2.ok || !same_bytes(again.logp, o.logp) || (pb.with_entropy && !same_bytes(again.entropy, o.entropy)) ||
            (lse_out && !same_bytes(again.lse, o.lse)))
            finding("not-deterministic", "forward variant %d differs", variant);
    }
    // Backward, when the forward gave everything it needs and the logits fit a gradient buffer.
    if (!lse_out || !pb.L.backed || rows == 0 || pb.token_rows != rows) return;
    const bool with_entropy_grad = pb.with_entropy && in.flag();
    std::vector<T> g(static_cast<std::size_t>(rows)), ge(g.size());
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
    const std::vector<T> logits_before = pb.logits;
    std::vector<T> grad(pb.logits.size());
    fill_sentinel(grad.data(), grad.size() * sizeof(T));
    const std::vector<T> grad0 = grad;
    const auto view_in = [&](std::vector<T>& buf) {
        return grpo::matrix_view<T>(buf.data() + pb.L.offset, pb.L.rows, pb.L.cols, pb.L.rs, pb.L.cs);
    };
    const outcome rb = call_checked("logprobs_from_logits_backward", [&] {
        grpo::logprobs_from_logits_backward(grpo::exec::host{}, inputs(pb), gi, view_in(grad), pb.cfg);
    });
    if (!rb.ok) {
        if (!same_bytes(grad, grad0))
            finding("error-wrote-output", "backward threw (%s) but wrote", rb.message.c_str());
    }
    // In place on a copy of the logits: the same outcome and, on success, the same bits.
    problem<T, Token> inplace = pb;
    const std::vector<T> copy0 = inplace.logits;
    const outcome ri = call_checked("logprobs_from_logits_backward (in place)", [&] {
        grpo::logprobs_from_logits_backward(grpo::exec::host{&pool(2)}, inputs(inplace), gi, view_in(inplace.logits),
                                            pb.cfg);
    });
    if (ri.ok != rb.ok || ri.code != rb.code)
        finding("inplace-differs", "in place: %s, separate: %s", ri.message.c_str(), rb.message.c_str());
    if (!rb.ok) {
        if (!same_bytes(inplace.logits, copy0)) finding("error-wrote-output", "in-place backward threw but wrote");
        return;
    }
    if (!same_bytes(pb.logits, logits_before)) finding("input-written", "backward wrote its logits");
    for (std::int64_t i = 0; i < rows; ++i) {
        const auto k = static_cast<std::size_t>(i);
        const bool masked = pb.with_mask && pb.mask[k] == T(0);
        double sum = 0, scale = 0;
        for (std::int64_t j = 0; j < V; ++j) {
            const std::size_t at = static_cast<std::size_t>(pb.L.offset + i * pb.L.rs + j * pb.L.cs);
            if (!bits_equal(grad[at], inplace.logits[at]))
                finding("inplace-differs", "grad(%lld, %lld) differs in place", (long long)i, (long long)j);
            if (masked && grad[at] != T(0)) finding("masked-row-nonzero", "masked gradient row %lld", (long long)i);
            if (full && std::isnan(double(grad[at])))
                finding("nan-output", "grad(%lld, %lld) NaN", (long long)i, (long long)j);
            sum += double(grad[at]);
            scale += std::fabs(double(grad[at]));
        }
        // The row's upstream scale: rounding in the token's g (1 - p_y) is relative to g / temperature, not to the
        // (possibly much smaller) gradient itself.
        const double upstream =
            (std::fabs(double(g[k])) +
             (with_entropy_grad ? std::fabs(double(ge[k])) * (1 + std::fabs(double(o.entropy[k]))) : 0)) /
            pb.cfg.temperature;
        // Subnormals: rounding below min() is absolute, both before the division by the temperature and in each
        // stored gradient element (half a denorm_min apiece, however large the temperature).
        const double tol = (sizeof(T) == 8 ? 1e-12 : 1e-5) * (scale + 8 * upstream) +
                           double(std::numeric_limits<T>::min()) * double(V + 8) / pb.cfg.temperature +
                           double(std::numeric_limits<T>::denorm_min()) * double(V + 8);
        if (full && !masked && std::isfinite(scale) && std::isfinite(upstream) && std::fabs(sum) > tol) {
            if (verbose()) {
                std::fprintf(stderr, "token %lld lse %.17g g %.17g logits:", (long long)pb.tokens[k], o.lse[k],
                             double(g[k]));
                for (std::int64_t j = 0; j < V; ++j)
                    std::fprintf(stderr, " %.17g/%.3g",
                                 double(pb.logits[static_cast<std::size_t>(pb.L.offset + i * pb.L.rs + j)]),
                                 double(grad[static_cast<std::size_t>(pb.L.offset + i * pb.L.rs + j)]));
                std::fprintf(stderr, "\n");
            }
            finding("row-sum", "gradient row %lld sums to %.17g (|grad| sum %.17g, upstream %.17g)", (long long)i, sum,
                    scale, upstream);
        }
    }
}

template <class T>
void run(fuzz_input& in) {
    if (in.flag()) run_typed<T, std::int64_t>(in);
    else run_typed<T, std::int32_t>(in);
}

} // namespace

GRPO_FUZZ_ENTRY_FLOAT_AND_DOUBLE()
