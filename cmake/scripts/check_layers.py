#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Fails when a grpo header includes one from a higher layer (docs/architecture.md, "Layers").

The folders under include/grpo/ are the layers, lowest first. A header may include headers of its own layer
and of the layers below; the umbrella and entry headers at the top (grpo.hpp, cuda.cuh, cuda_emulated.hpp,
logprobs_hidden.hpp, distributed.hpp) and the adapters may include anything. Every other header (and any header marked
"// Forwarding header:") is a forwarding header kept at an old path: it must include exactly one header and
contain no code.

Usage: check_layers.py <include/grpo directory>
"""
import os
import re
import sys

# Layer of a header, by the first folders of its path (longest match wins); lower numbers are lower layers.
LAYERS = [
    ("core/", 0),            # views, errors, executors, workspace, checks
    ("math/", 1),            # formulas, host/device
    ("types/", 2),           # configuration, inputs, outputs, records
    ("backend/kernels/", 3), # CUDA-free kernels on the block model (GPU and host emulator)
    ("backend/cpu/", 3),     # the CPU backend
    ("backend/cuda/", 4),    # CUDA-only code: the GPU's block model, 16-bit types
    ("api/", 5),             # public entry points
    ("rl/", 6),              # host-side RL pieces: rewards, sampler, trainer
    ("dist/", 6),            # data parallelism: the communicator concept, entry points across ranks
    ("adapters/", 8),        # framework adapters
]
TOP = {"grpo.hpp": 7, "cuda.cuh": 7, "cuda_emulated.hpp": 7, "logprobs_hidden.hpp": 7, "distributed.hpp": 7}  # umbrella and entry headers
NAMES = {0: "core", 1: "math", 2: "types", 3: "backend", 4: "backend/cuda", 5: "api", 6: "rl", 7: "umbrella",
         8: "adapters"}

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def layer_of(rel):
    for prefix, layer in sorted(LAYERS, key=lambda x: -len(x[0])):
        if rel.startswith(prefix):
            return layer
    return TOP.get(rel)  # None: a forwarding header


def main(root):
    errors = []
    headers = []
    for d, _, files in os.walk(root):
        for f in files:
            if f.endswith((".hpp", ".cuh")):
                headers.append(os.path.relpath(os.path.join(d, f), root).replace(os.sep, "/"))
    for rel in sorted(headers):
        text = open(os.path.join(root, rel), encoding="utf-8").read()
        includes = [os.path.normpath(os.path.join(os.path.dirname(rel), m)).replace(os.sep, "/")
                    for m in INCLUDE.findall(text)]
        mine = layer_of(rel)
        if mine is None or "// Forwarding header:" in text:  # a forwarding header at an old path
            code = [l for l in text.splitlines()
                    if l.strip() and not l.lstrip().startswith(("//", "#pragma", "#include"))]
            if len(includes) != 1 or code:
                errors.append(f"{rel}: not in a layer folder, so it must be a forwarding header "
                              f"(one #include, no code); it has {len(includes)} includes and {len(code)} code lines")
            elif layer_of(includes[0]) is None:
                errors.append(f"{rel}: forwards to {includes[0]}, which is not in a layer folder")
            continue
        for inc in includes:
            if inc not in headers:
                errors.append(f"{rel}: includes {inc}, which does not exist")
                continue
            theirs = layer_of(inc)
            if theirs is None:
                errors.append(f"{rel}: includes the forwarding header {inc}; include its target instead")
            elif theirs > mine and mine != 8:
                errors.append(f"{rel} ({NAMES[mine]}) includes {inc} ({NAMES[theirs]}), a higher layer")
    for e in errors:
        print("layer check: " + e)
    print(f"layer check: {len(headers)} headers, {len(errors)} violations")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "include/grpo"))
