#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""grpo's fused CUDA loss pass against the same loss written as PyTorch eager CUDA ops, in one run.

    python3 bench/cuda/torch_eager_cuda.py --grpo-bench build-cuda/bench/cuda/grpo_bench_loss_cuda

Runs grpo_bench_loss_cuda (bm_loss and bm_stream_baseline), then times loss + backward in torch on the same
shapes and dtypes with CUDA events: DeepSeekMath's configuration (per-token ratio, symmetric clip 0.2, k3 KL
with beta 0.04, sequence-mean of token-means, 10% padding, one advantage per row), as bench_loss_cuda.cu.
Prints per shape: torch eager ms, grpo ms, speed-up, grpo GB/s, fraction of the device's theoretical peak
and of the stream baseline. Needs torch with CUDA on a GPU machine; without one it says so and exits 0.
"""
import argparse
import json
import os
import re
import subprocess
import sys


def time_torch(torch, loss_fn, rows, cols, dtype, repeats):
    dev = torch.device("cuda")
    g = torch.Generator(device=dev).manual_seed(0)
    logp0 = -4 * torch.rand(rows, cols, generator=g, device=dev)
    old = (logp0 + 0.4 * (torch.rand(rows, cols, generator=g, device=dev) - 0.5)).to(dtype)
    ref = (logp0 + 0.4 * (torch.rand(rows, cols, generator=g, device=dev) - 0.5)).to(dtype)
    mask = (torch.arange(cols, device=dev) < cols * 9 // 10).to(dtype).expand(rows, cols).contiguous()
    adv = (2 * torch.rand(rows, 1, generator=g, device=dev) - 1).to(dtype)
    logp = logp0.to(dtype).clone().requires_grad_(True)
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    best = float("inf")
    for _ in range(repeats + 2):  # the first runs warm the caching allocator and the kernels
        logp.grad = None
        start.record()
        loss = loss_fn(logp, old, ref, adv, mask)
        loss.backward()
        stop.record()
        stop.synchronize()
        best = min(best, start.elapsed_time(stop))
    return best


def grpo_results(binary):
    out = subprocess.run([binary, "--benchmark_format=json", "--benchmark_filter=bm_(loss|stream_baseline)<",
                          "--benchmark_min_time=0.5"], check=True, capture_output=True, text=True).stdout
    results = {}
    for b in json.loads(out)["benchmarks"]:
        m = re.match(r"bm_(loss|stream_baseline)<(\w+)>/(\d+)/(\d+)(/(\d+))?/", b["name"])
        if not m or b.get("error_occurred") or m.group(6) == "1":  # skip validation::full: torch checks nothing
            continue
        scale = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}[b["time_unit"]]
        key = (m.group(2), int(m.group(3)), int(m.group(4)))
        results.setdefault(key, {})[m.group(1)] = (b["real_time"] * scale, b["bytes/s"], b["peak_bytes/s"])
    return results


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--grpo-bench", required=True, help="path to grpo_bench_loss_cuda")
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    try:
        import torch
    except ImportError:
        print("torch is not installed: no eager comparison")
        return 0
    if not torch.cuda.is_available():
        print(f"torch {torch.__version__} has no usable CUDA device: no eager comparison")
        return 0
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    from torch_eager import grpo_loss_torch  # the CPU comparison's loss, op for op
    dtypes = {"float": torch.float32, "__nv_bfloat16": torch.bfloat16, "double": torch.float64}
    print(f"torch {torch.__version__} on {torch.cuda.get_device_name(0)}; loss+grad, DeepSeekMath configuration")
    print(f"{'dtype':>14} {'shape':>12} {'torch ms':>9} {'grpo ms':>8} {'speed-up':>8} {'grpo GB/s':>9} "
          f"{'of peak':>7} {'of stream':>9}")
    for (dtype, rows, cols), r in sorted(grpo_results(args.grpo_bench).items()):
        if "loss" not in r:
            continue
        ms, bps, peak = r["loss"]
        t = time_torch(torch, grpo_loss_torch, rows, cols, dtypes[dtype], args.repeats)
        stream = f"{bps / r['stream_baseline'][1]:>8.0%}" if "stream_baseline" in r else f"{'-':>9}"
        print(f"{dtype:>14} {rows:>5}x{cols:<6} {t:>9.3f} {ms:>8.3f} {t / ms:>7.1f}x {bps / 1e9:>9.0f} "
              f"{bps / peak:>7.0%} {stream}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
