#!/usr/bin/env bash
# Reproduce the shipped default model (models/default): an S2A4 hybrid, accumulator interval I=4,
# trained on the built-in synthetic DVS gestures (128x128 sensor downsampled to 32x32, 10 ms bins,
# T=16). See docs/training.md for why this model and how long it takes.
#
# Usage: scripts/make_default_model.sh [OUT_DIR]   (default: models/default)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-models/default}"
PY="${PYTHON:-python}"
if [ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ]; then PY=.venv/bin/python; fi
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" "$PY" -m hsnn_perception.training.cli train \
  --out "$OUT" --name synthetic-S2A4-I4 \
  --dataset synthetic --data-seed 0 --n-train 3300 --n-test 1100 \
  --height 32 --width 32 --bin-us 10000 --timesteps 16 \
  --k 2 --interval 4 --channels 16,32,32,32 --hidden 64 \
  --epochs 12 --batch-size 32 --lr 3e-3 --seed 0 --threads 2 \
  --qat-epochs 2 \
  "${@:2}"
