#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Log-probs + entropy and their backward, PyTorch eager against grpo, on the same shapes and thread counts.

From logits (TRL's formulation: logits / temperature, log_softmax, gather, entropy -sum p log p, an entropy bonus
in the loss, autograd backward) against grpo's logprobs_from_logits + in-place backward (bench_logprobs.cpp),
with the memory baselines of the same grpo run:

    python3 bench/torch_eager_logprobs.py --grpo-bench build/bench/grpo_bench_logprobs [--shapes 4096x32768]

prints per shape and thread count: eager ms and its peak extra memory (VmHWM of a fresh process, above the
logits themselves), grpo's step ms, the speed-up, and grpo's fraction of the stream baseline (one read for the
forward, one read and one write for the backward: BM_stream_read + BM_stream_update over BM_logprobs_step).

From hidden states and the LM head (eager: logits = hidden @ weight.T, then the same; gradients into hidden and
weight, whose .grad buffers exist before the step) against grpo's logprobs_from_hidden (bench_logprobs_hidden.cpp):

    python3 bench/torch_eager_logprobs.py --grpo-hidden-bench build/bench/grpo_bench_logprobs_hidden \
        [--hidden-shapes 4096x32768x1024,4096x151936x1024]

prints eager ms and peak extra memory, grpo ms and peak extra memory (each case in a fresh process), the
speed-up and the memory ratio. One step each (the products dominate; a step takes tens of seconds at V = 151936).
"""
import argparse
import json
import subprocess
import sys
import time


def eager_case(rows, vocab, threads, repeats):
    """Runs in a fresh process: prints "ms extra_bytes"."""
    import torch

    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    logits0 = torch.rand(rows, vocab, generator=g) * 16 - 8
    tokens = torch.randint(0, vocab, (rows,), generator=g)
    g_logp = torch.full((rows,), 1.0 / rows)

    logits = logits0.clone().requires_grad_(True)
    base = status_bytes("VmRSS")
    best = float("inf")
    for _ in range(repeats + 1):  # the first run warms the allocator
        logits.grad = None
        t0 = time.perf_counter()
        ls = torch.log_softmax(logits / 1.0, dim=-1)
        lp = ls.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
        entropy = -(ls.exp() * ls).sum(-1)
        loss = (lp * g_logp).sum() - 0.01 * entropy.sum()
        loss.backward()
        best = min(best, time.perf_counter() - t0)
        del ls, lp, entropy, loss
    print("%f %d" % (best * 1e3, status_bytes("VmHWM") - base))


def eager_hidden_case(rows, vocab, width, threads):
    """Runs in a fresh process: prints "ms extra_bytes" of one step from hidden states."""
    import torch

    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    hidden = (torch.rand(rows, width, generator=g) * 2 - 1).requires_grad_(True)
    weight = ((torch.rand(vocab, width, generator=g) * 2 - 1) * 0.1).requires_grad_(True)
    hidden.grad, weight.grad = torch.zeros_like(hidden), torch.zeros_like(weight)
    tokens = torch.randint(0, vocab, (rows,), generator=g)
    g_logp = torch.full((rows,), 1.0 / rows)
    base = status_bytes("VmRSS")
    t0 = time.perf_counter()
    ls = torch.log_softmax((hidden @ weight.t()) / 1.0, dim=-1)
    lp = ls.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    entropy = -(ls.exp() * ls).sum(-1)
    loss = (lp * g_logp).sum() - 0.01 * entropy.sum()
    loss.backward()
    ms = (time.perf_counter() - t0) * 1e3
    print("%f %d" % (ms, status_bytes("VmHWM") - base))


def status_bytes(key):  # a memory figure of this process from /proc/self/status, in bytes
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def grpo_hidden_case(binary, rows, vocab, width, threads):
    """grpo's step from hidden states in a fresh process: (ms, peak extra bytes)."""
    pattern = "BM_hidden_step/%d/%d/%d/%d/" % (rows, vocab, width, threads)
    out = subprocess.run([binary, "--benchmark_format=json", "--benchmark_filter=" + pattern], check=True,
                         capture_output=True, text=True).stdout
    found = json.loads(out)["benchmarks"] if out.strip() else []
    if len(found) != 1:
        sys.exit("%s has no case %s (its shapes are fixed in bench_logprobs_hidden.cpp)" % (binary, pattern))
    (b,) = found
    assert b["time_unit"] == "ms"
    return b["real_time"], b["peak_extra_bytes"]


def grpo_times(binary, shapes):
    pattern = "BM_(logprobs_step|stream_read|stream_update)/(%s)/" % "|".join("%d/%d" % s for s in shapes)
    out = subprocess.run([binary, "--benchmark_format=json", "--benchmark_filter=" + pattern,
                          "--benchmark_min_time=1"], check=True, capture_output=True, text=True).stdout
    times = {}
    for b in json.loads(out)["benchmarks"]:
        name, rows, vocab, threads = b["name"].split("/")[:4]
        assert b["time_unit"] == "ms"
        times[(name, int(rows), int(vocab), int(threads))] = b["real_time"]
    return times


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--grpo-bench", help="path to grpo_bench_logprobs (the logits form)")
    ap.add_argument("--shapes", default="4096x32768,4096x151936")
    ap.add_argument("--grpo-hidden-bench", help="path to grpo_bench_logprobs_hidden (the hidden-state form)")
    ap.add_argument("--hidden-shapes", default="4096x32768x1024,4096x151936x1024")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--eager-case", nargs=3, type=int, help=argparse.SUPPRESS)
    ap.add_argument("--eager-hidden-case", nargs=4, type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.eager_case:
        eager_case(*args.eager_case, args.repeats)
        return
    if args.eager_hidden_case:
        eager_hidden_case(*args.eager_hidden_case)
        return
    threads = [int(t) for t in args.threads.split(",")]
    if args.grpo_bench:
        shapes = [tuple(int(x) for x in s.split("x")) for s in args.shapes.split(",")]
        grpo = grpo_times(args.grpo_bench, shapes)
        print("%-14s %3s %12s %12s %12s %9s %14s" % ("M x V", "thr", "eager ms", "eager extra", "grpo ms",
                                                   "speed-up", "grpo/stream"))
        for rows, vocab in shapes:
            for t in threads:
                out = subprocess.run([sys.executable, __file__, "--eager-case", str(rows), str(vocab), str(t),
                                      "--repeats", str(args.repeats)], check=True, capture_output=True, text=True)
                eager_ms, extra = out.stdout.split()
                eager_ms, extra = float(eager_ms), int(extra)
                step = grpo[("BM_logprobs_step", rows, vocab, t)]
                stream = grpo[("BM_stream_read", rows, vocab, t)] + grpo[("BM_stream_update", rows, vocab, t)]
                print("%-14s %3d %12.1f %10.2f GB %12.1f %8.2fx %13.0f%%" % (
                    "%dx%d" % (rows, vocab), t, eager_ms, extra / 1e9, step, eager_ms / step, 100 * stream / step))
    if args.grpo_hidden_bench:
        shapes = [tuple(int(x) for x in s.split("x")) for s in args.hidden_shapes.split(",")]
        print("%-20s %3s %10s %12s %10s %12s %9s %11s" % ("M x V x H", "thr", "eager ms", "eager extra", "grpo ms",
                                                        "grpo extra", "speed-up", "memory"))
        for rows, vocab, width in shapes:
            for t in threads:
                out = subprocess.run([sys.executable, __file__, "--eager-hidden-case", str(rows), str(vocab),
                                      str(width), str(t)], check=True, capture_output=True, text=True)
                eager_ms, extra = out.stdout.split()
                eager_ms, extra = float(eager_ms), int(extra)
                grpo_ms, grpo_extra = grpo_hidden_case(args.grpo_hidden_bench, rows, vocab, width, t)
                print("%-20s %3d %10.0f %9.2f GB %10.0f %9.2f GB %8.2fx %10s" % (
                    "%dx%dx%d" % (rows, vocab, width), t, eager_ms, extra / 1e9, grpo_ms, grpo_extra / 1e9,
                    eager_ms / grpo_ms, "1/%.0f" % (extra / max(grpo_extra, 1))))


if __name__ == "__main__":
    main()
