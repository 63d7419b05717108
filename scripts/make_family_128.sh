#!/usr/bin/env bash
# The SkA(6-k) family at 2x128x128 (docs/results/README.md, "2x128x128"), k = 0..6 x I = 2, 4, 8,
# with the shortened recipe the results say (440 training samples, 1 epoch, batch 8), run as two
# processes (ks 0-3 and 4-6, one core each) whose tables are then merged into OUT.
#
# Usage: scripts/make_family_128.sh OUT [extra hsnn-compare arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:?usage: scripts/make_family_128.sh OUT [hsnn-compare arguments]}"
PY="${PYTHON:-python}"
if [ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ]; then PY=.venv/bin/python; fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" OMP_NUM_THREADS=1
RECIPE=(--intervals 2,4,8 --n-train 440 --n-test 110 --data-seed 0 --height 128 --width 128
  --epochs 1 --batch-size 8 --threads 1 --final-eval-only --no-progress "${@:2}")
mkdir -p "$OUT"
"$PY" -m hsnn_perception.training.cli compare --out "$OUT/a" --ks 0,1,2,3 "${RECIPE[@]}" &
A=$!
"$PY" -m hsnn_perception.training.cli compare --out "$OUT/b" --ks 4,5,6 "${RECIPE[@]}" &
B=$!
wait "$A"
wait "$B"
"$PY" - "$OUT" <<'PY'
import json, sys
from pathlib import Path
from hsnn_perception.training.compare import write_plots, write_table
out = Path(sys.argv[1])
rows = [r for part in ("a", "b") for r in json.loads((out / part / "results.json").read_text())]
write_table(rows, out)
write_plots(rows, out)
print(f"merged {len(rows)} models into {out}/results.md")
PY
