// SPDX-License-Identifier: MIT
// The demo's policy: a tiny autoregressive MLP over one-hot features, its hand-written backward pass and Adam.
// No ML framework: this is the "host model" that grpo never sees except through log-probs and their gradient.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace grpo_demo {

/// splitmix64: the same stream with every compiler and standard library (std::*_distribution is not).
struct rng {
    std::uint64_t state;
    explicit rng(std::uint64_t seed) : state(seed) {}
    std::uint64_t next() {
        std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
    }
    double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
    /// Approximately standard normal (sum of 4 uniforms, rescaled): deterministic and cheap.
    double normal() {
        double s = 0;
        for (int i = 0; i < 4; ++i) s += uniform();
        return (s - 2.0) * std::sqrt(3.0);
    }
    int below(int n) { return static_cast<int>(next() % static_cast<std::uint64_t>(n)); }
};

/// Two hidden layers: h1 = relu(W1^T x + b1), h = relu(W2^T h1 + b2), logits = W3^T h + b3, with x a sparse
/// 0/1 vector given by its active feature indices (so the first layer is a sum of embedding rows).
struct mlp {
    int inputs = 0, hidden = 0, outputs = 0;
    std::vector<float> w1, b1, w2, b2, w3, b3; // w1 [inputs][hidden], w2 [hidden][hidden], w3 [hidden][outputs]

    mlp() = default;
    mlp(int in, int hid, int out, rng& g, double in_scale, double out_scale)
        : inputs(in),
          hidden(hid),
          outputs(out),
          w1(static_cast<std::size_t>(in) * hid),
          b1(hid, 0.0f),
          w2(static_cast<std::size_t>(hid) * hid),
          b2(hid, 0.0f),
          w3(static_cast<std::size_t>(hid) * out),
          b3(out, 0.0f) {
        for (auto& w : w1) w = static_cast<float>(g.normal() * in_scale);
        for (auto& w : w2) w = static_cast<float>(g.normal() * std::sqrt(2.0 / hid));
        for (auto& w : w3) w = static_cast<float>(g.normal() * out_scale / std::sqrt(double(hid)));
    }

    /// Forward for one position: h1, h (post-ReLU, size hidden each) and logits (size outputs).
    void forward(const int* feats, int nfeats, float* h1, float* h, float* logits) const {
        std::copy(b1.begin(), b1.end(), h1);
        for (int f = 0; f < nfeats; ++f) {
            const float* row = &w1[static_cast<std::size_t>(feats[f]) * hidden];
            for (int j = 0; j < hidden; ++j) h1[j] += row[j];
        }
        for (int j = 0; j < hidden; ++j) h1[j] = h1[j] > 0 ? h1[j] : 0.0f;
        std::copy(b2.begin(), b2.end(), h);
        for (int k = 0; k < hidden; ++k) {
            const float x = h1[k];
            if (x == 0.0f) continue;
            const float* row = &w2[static_cast<std::size_t>(k) * hidden];
            for (int j = 0; j < hidden; ++j) h[j] += x * row[j];
        }
        for (int j = 0; j < hidden; ++j) h[j] = h[j] > 0 ? h[j] : 0.0f;
        std::copy(b3.begin(), b3.end(), logits);
        for (int j = 0; j < hidden; ++j) {
            const float hj = h[j];
            if (hj == 0.0f) continue;
            const float* row = &w3[static_cast<std::size_t>(j) * outputs];
            for (int v = 0; v < outputs; ++v) logits[v] += hj * row[v];
        }
    }
};

/// Gradient buffers with the shape of an mlp.
struct mlp_grad {
    std::vector<float> w1, b1, w2, b2, w3, b3;
    explicit mlp_grad(const mlp& m)
        : w1(m.w1.size()), b1(m.b1.size()), w2(m.w2.size()), b2(m.b2.size()), w3(m.w3.size()), b3(m.b3.size()) {}
    void zero() {
        for (auto* v : {&w1, &b1, &w2, &b2, &w3, &b3}) std::fill(v->begin(), v->end(), 0.0f);
    }
    /// Backward of one position given dL/dlogits; h1, h are the forward's post-ReLU hidden layers.
    /// dh and dh1 are scratch of size hidden.
    void accumulate(const mlp& m, const int* feats, int nfeats, const float* h1, const float* h, const float* dlogits,
                    float* dh, float* dh1) {
        const int H = m.hidden, V = m.outputs;
        for (int v = 0; v < V; ++v) b3[v] += dlogits[v];
        for (int j = 0; j < H; ++j) {
            const float* wrow = &m.w3[static_cast<std::size_t>(j) * V];
            float* grow = &w3[static_cast<std::size_t>(j) * V];
            float d = 0;
            for (int v = 0; v < V; ++v) {
                grow[v] += h[j] * dlogits[v];
                d += wrow[v] * dlogits[v];
            }
            dh[j] = h[j] > 0 ? d : 0.0f;
        }
        for (int j = 0; j < H; ++j) b2[j] += dh[j];
        for (int k = 0; k < H; ++k) {
            const float* wrow = &m.w2[static_cast<std::size_t>(k) * H];
            float* grow = &w2[static_cast<std::size_t>(k) * H];
            const float x = h1[k];
            float d = 0;
            for (int j = 0; j < H; ++j) {
                grow[j] += x * dh[j];
                d += wrow[j] * dh[j];
            }
            dh1[k] = x > 0 ? d : 0.0f;
        }
        for (int j = 0; j < H; ++j) b1[j] += dh1[j];
        for (int f = 0; f < nfeats; ++f) {
            float* grow = &w1[static_cast<std::size_t>(feats[f]) * H];
            for (int j = 0; j < H; ++j) grow[j] += dh1[j];
        }
    }
};

/// Adam (Kingma & Ba) with global-norm gradient clipping.
struct adam {
    double lr = 3e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, clip_norm = 1.0;
    long t = 0;
    mlp_grad m, v; // first and second moments

    explicit adam(const mlp& net) : m(net), v(net) {}

    void step(mlp& p, const mlp_grad& g) {
        double sq = 0;
        for (const auto* vec : {&g.w1, &g.b1, &g.w2, &g.b2, &g.w3, &g.b3})
            for (float x : *vec) sq += double(x) * x;
        const double norm = std::sqrt(sq);
        const double scale = (clip_norm > 0 && norm > clip_norm) ? clip_norm / norm : 1.0;
        ++t;
        const double c1 = 1 - std::pow(beta1, double(t)), c2 = 1 - std::pow(beta2, double(t));
        update(p.w1, g.w1, m.w1, v.w1, scale, c1, c2);
        update(p.b1, g.b1, m.b1, v.b1, scale, c1, c2);
        update(p.w2, g.w2, m.w2, v.w2, scale, c1, c2);
        update(p.b2, g.b2, m.b2, v.b2, scale, c1, c2);
        update(p.w3, g.w3, m.w3, v.w3, scale, c1, c2);
        update(p.b3, g.b3, m.b3, v.b3, scale, c1, c2);
    }

private:
    void update(std::vector<float>& w, const std::vector<float>& g, std::vector<float>& m1, std::vector<float>& v1,
                double scale, double c1, double c2) const {
        const float b1f = float(beta1), b2f = float(beta2), s = float(scale);
        const float step = float(lr / c1), inv_c2 = float(1 / c2), e = float(eps);
        for (std::size_t i = 0; i < w.size(); ++i) {
            const float gi = g[i] * s;
            m1[i] = b1f * m1[i] + (1 - b1f) * gi;
            v1[i] = b2f * v1[i] + (1 - b2f) * gi * gi;
            w[i] -= step * m1[i] / (std::sqrt(v1[i] * inv_c2) + e);
        }
    }
};

/// log-softmax of logits at index y, and the softmax probabilities in probs.
inline float log_softmax_at(const float* logits, int n, int y, float* probs) {
    float mx = logits[0];
    for (int v = 1; v < n; ++v) mx = std::max(mx, logits[v]);
    double z = 0;
    for (int v = 0; v < n; ++v) {
        probs[v] = std::exp(logits[v] - mx);
        z += probs[v];
    }
    const float inv = float(1 / z);
    for (int v = 0; v < n; ++v) probs[v] *= inv;
    return logits[y] - mx - float(std::log(z));
}

} // namespace grpo_demo
