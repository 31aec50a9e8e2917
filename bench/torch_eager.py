#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The same GRPO loss+gradient as bench_loss.cpp, written as PyTorch eager ops (TRL's formulation:
per-token ratio, symmetric clip, k3 KL with beta 0.04, sequence-mean of token-means), timed on the same
shapes and thread counts, and compared with grpo's fused CPU pass measured in the same run.

    python3 bench/torch_eager.py --grpo-bench build-rel/bench/grpo_bench_loss

Prints one line per shape: torch eager ms, grpo ms, speed-up. Uses Debian's python3-torch (CPU).
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


def time_torch(rows, cols, threads, repeats):
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
        loss = grpo_loss_torch(logp, old, ref, adv, mask)
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--grpo-bench", required=True, help="path to grpo_bench_loss")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    grpo = grpo_times(args.grpo_bench)
    print(f"torch {torch.__version__}; loss+grad, fp32, beta 0.04, seq-mean-token-mean, 10% padding")
    print(f"{'shape':>12} {'threads':>7} {'torch eager ms':>15} {'grpo ms':>9} {'speed-up':>9}")
    for (rows, cols, threads), ms in sorted(grpo.items()):
        t = time_torch(rows, cols, threads, args.repeats)
        print(f"{rows:>5}x{cols:<6} {threads:>7} {t:>15.2f} {ms:>9.2f} {t / ms:>8.1f}x")


if __name__ == "__main__":
    main()
