#!/usr/bin/env python3
"""Writes the seed corpus of the libFuzzer harnesses: tests/fuzz/corpus/<harness>/seed-NN.

Every harness reads its input as a stream of choice bytes (fuzz_input.hpp): the first bytes pick the element
type / entry point, then sizes, layouts, configuration and values. The seeds are deterministic pseudo-random
streams of several lengths (short ones end early and take the defaults, long ones fill whole buffers), with the
leading selector byte cycled so that every entry point / element type of a harness gets seeds.

  python3 tests/fuzz/make_seeds.py                      # write candidates for every harness
  python3 tests/fuzz/make_seeds.py --keep-passing DIR   # ... then keep only those that DIR/<harness> runs cleanly
                                                        #     (at most --count per harness)
  python3 tests/fuzz/make_seeds.py --only fuzz_dist --keep-passing build-fuzz/tests/fuzz   # one harness
"""
import argparse
import os
import random
import subprocess
import sys

HARNESSES = {  # name: number of values of the leading selector byte
    "fuzz_loss": 2, "fuzz_advantages": 2, "fuzz_process_rewards": 2,
    "fuzz_rewards": 8, "fuzz_trainer": 2, "fuzz_views": 4, "fuzz_logprobs": 2, "fuzz_logprobs_hidden": 2,
    "fuzz_dist": 2,
}
# Selector bytes after the first, cycled with it: fuzz_dist reads its entry point (u8() % 4: compute_advantages,
# token_advantages, loss_and_grad, with_global_counts/all_sum) and its rank count (1 + u8() % 4) next.
MORE_SELECTORS = {"fuzz_dist": [4, 4]}
COUNTS = {"fuzz_dist": 32}  # seeds kept by default (12 for the others): one per combination of the selectors
LENGTHS = [16, 48, 96, 160, 256, 400, 640, 1024]


def candidates(name, n):
    rng = random.Random("grpo-" + name)
    sel = HARNESSES[name]
    for k in range(n):
        length = LENGTHS[k % len(LENGTHS)]
        body = bytearray(rng.getrandbits(8) for _ in range(length))
        # Keep sizes small and choices ordinary in half of the seeds: low bytes mean "usual" everywhere.
        if k % 2 == 0:
            body = bytearray(b % 160 for b in body)
        body[0] = k % sel  # selector (flag() reads bit 0, u8() % sel for the others)
        step = sel
        for i, n in enumerate(MORE_SELECTORS.get(name, [])):  # (k // step) % n: every combination in turn
            body[1 + i] = (k // step) % n
            step *= n
        yield bytes(body)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--keep-passing", metavar="DIR", help="directory with the built harnesses")
    ap.add_argument("--count", type=int, help="seeds kept per harness (default 12, fuzz_dist 32)")
    ap.add_argument("--candidates", type=int, default=64)
    ap.add_argument("--only", metavar="HARNESS", help="write the seeds of this harness only")
    args = ap.parse_args()
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
    for name in HARNESSES:
        if args.only and name != args.only:
            continue
        out = os.path.join(root, name)
        os.makedirs(out, exist_ok=True)
        for f in os.listdir(out):
            os.remove(os.path.join(out, f))
        kept = 0
        for k, data in enumerate(candidates(name, args.candidates)):
            path = os.path.join(out, "seed-%02d" % k)
            with open(path, "wb") as fh:
                fh.write(data)
            if args.keep_passing:
                # (as the seed replay tests and run.sh run them: ASan's allocator fails with std::bad_alloc)
                env = dict(os.environ, ASAN_OPTIONS="allocator_may_return_null=1")
                env.pop("GRPO_FUZZ_SKIP", None)
                rc = subprocess.run([os.path.join(args.keep_passing, name), "-runs=1", path], env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60).returncode
                if rc != 0:
                    os.remove(path)
                    continue
            kept += 1
            if args.keep_passing and kept >= (args.count or COUNTS.get(name, 12)):
                break
        print("%s: %d seeds" % (name, kept), file=sys.stderr)


if __name__ == "__main__":
    main()
