#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Every fenced block of README.md, CONTRIBUTING.md and docs/**/*.md is checked or says it is not.

The line right above each fence is an HTML comment (invisible on rendered pages) that says how:
  <!-- snippet: NAME -->   the block equals, word for word, the lines between "snippet-begin NAME" and
                           "snippet-end" in a file that ctest builds or runs (tests/, examples/, packaging/, ...)
  <!-- compiled: NAME -->  the block is extracted to NAME.inc (--extract) and compiled, inside a harness that
                           gives it its context, by tests/docs/ (or tests/cuda/ for CUDA code)
  <!-- checked: PATH -->   each command line of the block (comments after '#' dropped) appears in PATH, a file
                           CI runs (.ci/run) or a test that asserts the text (error messages)
  <!-- illustrative -->    not checked: pseudo-code, formulas, outputs, commands that need a GPU or the network
Also: every snippet-begin in the sources is quoted by some page, and every compiled block is included by a harness.

  check_docs.py ROOT                 check (exit 1 with a list of problems)
  check_docs.py ROOT --extract DIR   write DIR/NAME.inc for every compiled block (only when changed)
"""
import os
import re
import sys

SNIPPET_ROOTS = ["tests", "examples", "packaging", "bench", ".ci", "cmake"]
SNIPPET_EXTS = (".cpp", ".hpp", ".cu", ".cuh", ".txt", ".cmake", ".sh", ".py", "run")
MARKER = re.compile(r"^<!-- (snippet|compiled|checked): (\S+) -->$|^<!-- (illustrative) -->$")


def pages(root):
    out = [os.path.join(root, "README.md"), os.path.join(root, "CONTRIBUTING.md")]
    for d, _, files in os.walk(os.path.join(root, "docs")):
        out += [os.path.join(d, f) for f in sorted(files) if f.endswith(".md")]
    return sorted(out)


def blocks(path):
    """(line number, marker kind, marker argument, body) of each fenced block."""
    lines = open(path, encoding="utf-8").read().split("\n")
    i = 0
    while i < len(lines):
        if lines[i].startswith("```"):
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            m = MARKER.match(lines[i - 1]) if i > 0 else None
            kind = arg = None
            if m:
                kind, arg = (m.group(1), m.group(2)) if m.group(1) else ("illustrative", None)
            yield i + 1, kind, arg, "\n".join(lines[i + 1:j]) + "\n"
            i = j + 1
        else:
            i += 1


def source_snippets(root):
    """name -> (file, body) of every snippet-begin/snippet-end block in the sources."""
    found = {}
    for top in SNIPPET_ROOTS:
        for d, dirs, files in os.walk(os.path.join(root, top)):
            dirs[:] = [x for x in dirs if x not in ("corpus", "build", "docs")]
            for f in files:
                if not f.endswith(SNIPPET_EXTS):
                    continue
                path = os.path.join(d, f)
                try:
                    text = open(path, encoding="utf-8").read()
                except UnicodeDecodeError:
                    continue
                for m in re.finditer(r"snippet-begin ([\w.-]+)[^\n]*\n(.*?)\n[^\n]*snippet-end", text, re.S):
                    found[m.group(1)] = (os.path.relpath(path, root), m.group(2) + "\n")
    return found


def command_lines(body):
    for line in body.split("\n"):
        line = line.split(" #")[0].rstrip() if not line.startswith("#") else ""
        if line:
            yield line


def main():
    root = sys.argv[1]
    extract = sys.argv[3] if len(sys.argv) > 3 and sys.argv[2] == "--extract" else None
    snippets = source_snippets(root)
    harness_text = ""
    for d in ("tests/docs", "tests/cuda"):
        for f in sorted(os.listdir(os.path.join(root, d))):
            if f.endswith((".cpp", ".cu")):
                harness_text += open(os.path.join(root, d, f), encoding="utf-8").read()
    problems, quoted, counts = [], set(), {}
    for page in pages(root):
        rel = os.path.relpath(page, root)
        for line, kind, arg, body in blocks(page):
            where = "%s:%d" % (rel, line)
            counts[kind] = counts.get(kind, 0) + 1
            if kind is None:
                problems.append(where + ": no marker above the block (<!-- snippet|compiled|checked|illustrative -->)")
            elif kind == "snippet":
                quoted.add(arg)
                if arg not in snippets:
                    problems.append("%s: no snippet-begin %s in the sources" % (where, arg))
                elif snippets[arg][1] != body:
                    problems.append("%s: differs from snippet %s in %s" % (where, arg, snippets[arg][0]))
            elif kind == "compiled":
                if '#include "%s.inc"' % arg not in harness_text:
                    problems.append("%s: no harness in tests/docs or tests/cuda includes %s.inc" % (where, arg))
                if extract:
                    os.makedirs(extract, exist_ok=True)
                    out = os.path.join(extract, arg + ".inc")
                    text = "// Extracted from %s (line %d) by tests/docs/check_docs.py\n#line %d \"%s\"\n%s" % (
                        rel, line, line + 1, rel, body)
                    if not os.path.exists(out) or open(out, encoding="utf-8").read() != text:
                        open(out, "w", encoding="utf-8").write(text)
            elif kind == "checked":
                target = os.path.join(root, arg)
                if not os.path.isfile(target):
                    problems.append("%s: %s does not exist" % (where, arg))
                    continue
                text = open(target, encoding="utf-8").read()
                for cmd in command_lines(body):
                    if cmd not in text:
                        problems.append("%s: %r is not in %s" % (where, cmd, arg))
    for name, (path, _) in sorted(snippets.items()):
        if name not in quoted:
            problems.append("%s: snippet %s is quoted by no page" % (path, name))
    if extract:
        return 0
    for p in problems:
        print("check_docs: " + p)
    print("check_docs: %s" % ", ".join("%d %s" % (n, k or "unmarked") for k, n in sorted(counts.items(), key=str)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
