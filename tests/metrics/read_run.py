#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Runs tests/metrics/write_run.cpp (WRITER) into DIR, reads the run back with TensorBoard's own reader (and
Python's json and csv) and checks every tag, step and value; then checks that the reader notices a corrupted copy
(so the CRCs are read).

  read_run.py WRITER DIR   exit 0: all checks pass; 1: a check failed; 77: tensorboard is not installed (unless
                           GRPO_REQUIRE_PYTHON_TOOLS=1, which CI sets: then 1)
"""
import csv
import glob
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import tempfile

NAMES = ["reward", "kl", "clip_ratio/region_mean", "rewards/exact match/mean", "unicode/\u00fc\u20ac",
         'quote"comma,name']


def value_of(k, s):
    if k == 0 and s == 3:
        return math.nan
    if k == 1 and s == 4:
        return -math.inf
    if k == 2 and s == 5:
        return 1e300
    return (k + 1) * 0.25 * s - 1.0 / (k + 3)


def f32(x):
    """x as float32 (what TensorBoard's simple_value holds); overflow goes to inf, as a C++ cast does."""
    if math.isnan(x) or math.isinf(x):
        return x
    try:
        return struct.unpack("<f", struct.pack("<f", x))[0]
    except OverflowError:
        return math.copysign(math.inf, x)


def expected():
    """{tag: {step: value}} as written."""
    want = {}
    for s in range(1, 13):
        for k, n in enumerate(NAMES):
            want.setdefault(n, {})[s] = value_of(k, s)
        if s % 4 == 0:
            want.setdefault("eval_accuracy", {})[s] = s / 16.0
    return want


def same(a, b):
    return (math.isnan(a) and math.isnan(b)) or a == b


failures = []


def check(ok, what):
    if not ok:
        failures.append(what)


def main(writer, run):
    try:
        from tensorboard.backend.event_processing import event_accumulator
    except ImportError as e:
        print("read_run.py: tensorboard is not installed (%s)" % e)
        return 1 if os.environ.get("GRPO_REQUIRE_PYTHON_TOOLS") == "1" else 77
    shutil.rmtree(run, ignore_errors=True)
    subprocess.run([writer, run], check=True)

    want = expected()
    files = glob.glob(os.path.join(run, "events.out.tfevents.*"))
    check(len(files) == 1, "one event file, found %d" % len(files))

    ea = event_accumulator.EventAccumulator(run, size_guidance={event_accumulator.SCALARS: 0})
    ea.Reload()
    check(ea.file_version == 2.0, "file_version 2, read %r" % ea.file_version)
    tags = set(ea.Tags()["scalars"])
    trainer_tags = {"reward", "kl", "clip_ratio/region_mean"}
    for tag, by_step in want.items():
        check(tag in tags, "tag %r missing (tags: %s)" % (tag, sorted(tags)))
        if tag not in tags:
            continue
        events = ea.Scalars(tag)
        steps = [e.step for e in events]
        extra = [13] if tag in trainer_tags else []
        check(steps == sorted(by_step) + extra, "%s: steps %s" % (tag, steps))
        for e in events:
            if e.step in by_step:
                check(same(e.value, f32(by_step[e.step])), "%s step %d: %r, want %r" %
                      (tag, e.step, e.value, f32(by_step[e.step])))
    # The trainer's step (add_step_metrics under TRL's names) at step 13.
    for tag, v in {"reward": 0.75, "kl": 0.125, "clip_ratio/region_mean": 0.0625, "frac_reward_zero_std": 0.0,
                   "completions/mean_length": 0.0}.items():
        got = [e.value for e in ea.Scalars(tag) if e.step == 13] if tag in tags else []
        check(got == [v], "%s at step 13: %s, want [%r]" % (tag, got, v))

    # JSONL: one object per step, values exact (non-finite as null), the same wall times as the event file.
    lines = [json.loads(l) for l in open(os.path.join(run, "metrics.jsonl"), encoding="utf-8")]
    check([l["step"] for l in lines] == list(range(1, 14)), "jsonl steps %s" % [l["step"] for l in lines])
    tb_wall = {e.step: e.wall_time for e in ea.Scalars("reward")}
    for l in lines:
        s = l["step"]
        check(l["wall_time"] == tb_wall.get(s), "step %d: jsonl wall_time %r, event %r" %
              (s, l["wall_time"], tb_wall.get(s)))
        for tag, by_step in want.items():
            if s in by_step:
                v = by_step[s]
                check(l.get(tag, "absent") == (v if math.isfinite(v) else None),
                      "jsonl step %d %s: %r, want %r" % (s, tag, l.get(tag, "absent"), v))

    # CSV: one table, a cell empty where a step has no value.
    with open(os.path.join(run, "metrics.csv"), newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    check([int(r["step"]) for r in rows] == list(range(1, 14)), "csv steps")
    for r in rows:
        s = int(r["step"])
        check(float(r["wall_time"]) == tb_wall.get(s), "csv step %d wall_time" % s)
        for tag, by_step in want.items():
            cell = r.get(tag)
            if s in by_step:
                check(cell is not None and same(float(cell), by_step[s]), "csv step %d %s: %r" % (s, tag, cell))
            elif s <= 12:
                check(cell == "", "csv step %d %s: %r, want empty" % (s, tag, cell))

    # The reader checks the records' CRCs: a copy with one flipped byte in the middle loses events.
    tmp = tempfile.mkdtemp()
    try:
        data = bytearray(open(files[0], "rb").read())
        data[len(data) // 2] ^= 0x40
        open(os.path.join(tmp, os.path.basename(files[0])), "wb").write(bytes(data))
        bad = event_accumulator.EventAccumulator(tmp, size_guidance={event_accumulator.SCALARS: 0})
        try:
            bad.Reload()
            n = sum(len(bad.Scalars(t)) for t in bad.Tags()["scalars"])
        except Exception:  # a reader that raises on the corrupted record has noticed it too
            n = -1
        total = sum(len(ea.Scalars(t)) for t in tags)
        check(n < total, "a corrupted copy read back all %d scalars" % total)
    finally:
        shutil.rmtree(tmp)

    for f in failures:
        print("read_run.py: " + f)
    print("read_run.py: %d tags, %d steps checked, %d failures" % (len(tags), len(lines), len(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__)
        sys.exit(2)
    sys.exit(main(sys.argv[1], sys.argv[2]))
