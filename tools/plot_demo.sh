#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Runs grpo_demo with outcome rewards and with process rewards (--logdir each) and draws both runs' curves on one
# figure with tools/plot_metrics.py. README's figure is this script's output:
#   tools/plot_demo.sh build/examples/grpo_demo docs/images/demo_curves.png
# Usage: plot_demo.sh DEMO FIGURE.png|.svg [grpo_demo flags, e.g. --steps 20]
# Needs matplotlib; without it exits 77 (1 when GRPO_REQUIRE_PYTHON_TOOLS=1). PYTHON picks the interpreter.
set -euo pipefail
if [ $# -lt 2 ]; then
    sed -n '3,7p' "$0" >&2
    exit 2
fi
demo=$1 figure=$2
shift 2
python=${PYTHON:-python3}
if ! "$python" -c "import matplotlib" 2>/dev/null; then
    echo "plot_demo.sh: matplotlib is not installed for $python (apt install python3-matplotlib, or pip install matplotlib)" >&2
    [ "${GRPO_REQUIRE_PYTHON_TOOLS:-0}" = 1 ] && exit 1
    exit 77
fi
runs=$(mktemp -d)
trap 'rm -rf "$runs"' EXIT
"$demo" --quiet --logdir "$runs/outcome" "$@"
"$demo" --quiet --process-rewards --logdir "$runs/process" "$@"
"$python" "$(dirname "$0")/plot_metrics.py" "outcome rewards=$runs/outcome" "process rewards=$runs/process" \
    -o "$figure" --title "grpo_demo: 2-digit addition, outcome vs process rewards"
# (a PNG starts with \x89PNG, an SVG is XML: a figure that is neither fails here)
head -c 4 "$figure" | grep -q -e PNG -e '<?xm'
