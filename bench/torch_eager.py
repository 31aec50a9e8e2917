#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The same GRPO loss+gradient as bench_loss.cpp, written as PyTorch eager ops (TRL's formulation:
per-token ratio, symmetric clip, k3 KL with beta 0.04, sequence-mean of token-means), timed on the same
shapes and thread counts, and compared with grpo's fused CPU pass measured in the same run.

    python3 bench/torch_eager.py --grpo-bench build-rel/bench/grpo_bench_loss
    python3 bench/torch_eager.py --grpo-bench build-rel/bench/grpo_bench_loss --peer-configs

Prints one line per shape: torch eager ms, grpo ms, speed-up. With --peer-configs: TRL's, verl's and
DeepSeekMath's defaults, each in eager PyTorch (trl_loss_torch, verl_loss_torch, grpo_loss_torch) and through grpo,
with the stream baseline of the same run and grpo's fraction of it. Uses Debian's python3-torch (CPU).
"""
import argparse
import json
import subprocess
import time

import torch


def grpo_loss_torch(logp, old, ref, adv, mask, eps=0.2, beta=0.04):
    ratio = torch.exp(logp - old)
    clipped = torch.clamp(ratio, 1 - eps, 1 + eps)
    per_token = -torch.min(ratio * adv, clipped * adv)
    kl = torch.exp(ref - logp) - (ref - logp) - 1
    per_token = per_token + beta * kl
    per_seq = (per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1)
    return per_seq.mean()


def trl_loss_torch(logp, old, ref, adv, mask, eps=0.2):
    """TRL GRPOTrainer's default (loss_type "dapo" without KL): clipped surrogate, mean over every unmasked token."""
    ratio = torch.exp(logp - old)
    per_token = -torch.min(ratio * adv, torch.clamp(ratio, 1 - eps, 1 + eps) * adv)
    return (per_token * mask).sum() / mask.sum().clamp(min=1)


def verl_loss_torch(logp, old, ref, adv, mask, eps=0.2, clip_c=3.0, beta=0.001):
    """verl's actor defaults: compute_policy_loss_vanilla (log-ratio clamped to +-20, dual clip c = 3, token mean)
    plus kl_loss_coef 0.001 times low_var_kl (ref - logp clamped to +-20, the estimate clamped to +-10)."""
    neg_kl = torch.clamp(logp - old, -20.0, 20.0)
    ratio = torch.exp(neg_kl)
    pg1 = -adv * ratio
    pg2 = -adv * torch.clamp(ratio, 1 - eps, 1 + eps)
    clip1 = torch.maximum(pg1, pg2)
    clip2 = torch.min(-adv * clip_c, clip1)
    pg = torch.where(adv < 0, clip2, clip1)
    kl = torch.clamp(ref - logp, -20.0, 20.0)
    kld = torch.clamp(torch.exp(kl) - kl - 1, -10.0, 10.0)
    n = mask.sum().clamp(min=1)
    return (pg * mask).sum() / n + beta * (kld * mask).sum() / n


PEER_LOSSES = {0: ("TRL", trl_loss_torch), 1: ("verl", verl_loss_torch), 2: ("DeepSeekMath", grpo_loss_torch)}


def time_torch(rows, cols, threads, repeats, loss_fn=grpo_loss_torch):
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    logp0 = -4 * torch.rand(rows, cols, generator=g)
    old = logp0 + 0.4 * (torch.rand(rows, cols, generator=g) - 0.5)
    ref = logp0 + 0.4 * (torch.rand(rows, cols, generator=g) - 0.5)
    mask = (torch.arange(cols) < cols * 9 // 10).float().expand(rows, cols).contiguous()
    adv = (2 * torch.rand(rows, 1, generator=g) - 1)
    logp = logp0.clone().requires_grad_(True)
    best = float("inf")
    for _ in range(repeats + 1):  # first run warms the allocator
        logp.grad = None
        t0 = time.perf_counter()
        loss = loss_fn(logp, old, ref, adv, mask)
        loss.backward()
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


def grpo_times(binary):
    out = subprocess.run([binary, "--benchmark_format=json", "--benchmark_filter=BM_loss_and_grad/.*/0/",
                          "--benchmark_min_time=0.5"], check=True, capture_output=True, text=True).stdout
    times = {}
    for b in json.loads(out)["benchmarks"]:
        rows, cols, threads, _ = (int(x) for x in b["name"].split("/")[1:5])
        assert b["time_unit"] == "ms"
        times[(rows, cols, threads)] = b["real_time"]
    return times


def peer_times(binary, min_time):
    """grpo's BM_peer_config and BM_stream_baseline from one run of the binary: {(config, rows, cols, threads): ms}
    and {(rows, cols, threads): ms}."""
    out = subprocess.run([binary, "--benchmark_format=json", "--benchmark_filter=BM_peer_config|BM_stream_baseline",
                          "--benchmark_min_time=%g" % min_time], check=True, capture_output=True, text=True).stdout
    peers, stream = {}, {}
    for b in json.loads(out)["benchmarks"]:
        assert b["time_unit"] == "ms"
        args = tuple(int(x) for x in b["name"].split("/")[1:] if x.isdigit())
        if b["name"].startswith("BM_peer_config/"):
            peers[args[:4]] = b["real_time"]
        else:
            stream[args[:3]] = b["real_time"]
    return peers, stream


def peer_report(args):
    peers, stream = peer_times(args.grpo_bench, args.min_time)
    print(f"torch {torch.__version__}; loss+grad, fp32, 10% padding; grpo and the stream baseline (reads logp,")
    print("old_logp, ref_logp and mask, writes one array: the bytes grpo's pass moves) from one run of the binary")
    print(f"{'config':>12} {'shape':>12} {'threads':>7} {'eager ms':>9} {'grpo ms':>8} {'speed-up':>8} "
          f"{'stream ms':>9} {'of stream':>9}")
    for (config, rows, cols, threads), ms in sorted(peers.items()):
        name, fn = PEER_LOSSES[config]
        t = time_torch(rows, cols, threads, args.repeats, fn)
        s = stream[(rows, cols, threads)]
        print(f"{name:>12} {rows:>5}x{cols:<6} {threads:>7} {t:>9.2f} {ms:>8.2f} {t / ms:>7.1f}x "
              f"{s:>9.2f} {100 * s / ms:>8.0f}%")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--grpo-bench", required=True, help="path to grpo_bench_loss")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--peer-configs", action="store_true",
                    help="TRL's, verl's and DeepSeekMath's defaults on both shapes and thread counts, with the "
                         "fraction of the stream baseline (BM_peer_config, BM_stream_baseline)")
    ap.add_argument("--min-time", type=float, default=0.5, help="Google Benchmark's --benchmark_min_time")
    args = ap.parse_args()
    if args.peer_configs:
        peer_report(args)
        return
    grpo = grpo_times(args.grpo_bench)
    print(f"torch {torch.__version__}; loss+grad, fp32, beta 0.04, seq-mean-token-mean, 10% padding")
    print(f"{'shape':>12} {'threads':>7} {'torch eager ms':>15} {'grpo ms':>9} {'speed-up':>9}")
    for (rows, cols, threads), ms in sorted(grpo.items()):
        t = time_torch(rows, cols, threads, args.repeats)
        print(f"{rows:>5}x{cols:<6} {threads:>7} {t:>15.2f} {ms:>9.2f} {t / ms:>8.1f}x")


if __name__ == "__main__":
    main()
