#!/usr/bin/env bash
# Train and evaluate the three variants of the retrieval-quality table on
# UCM-Captions with the offline default backbone, using the shipped recipe:
#   default        HarMA adapters, MMS shared by both towers
#   text_mms       MMS in the text tower only (the official code's variant)
#   projections    no adapters, only the new projections and the temperature
# Each run selects its epoch on the val split; the test split is reported.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
CONFIG=model/configs/ucm_default.yaml
ANNOTATIONS=data/ucm_captions/annotations.json

declare -A OVERRIDES=(
    [default]=""
    [text_mms]="--set harma.mms_towers=text"
    [projections]="--set use_adapters=false"
)
for name in default text_mms projections; do
    # shellcheck disable=SC2086
    "$PYTHON" -m model.train --config "$CONFIG" --set "output_dir=runs/ucm_$name" ${OVERRIDES[$name]}
    "$PYTHON" -m model.evaluate --checkpoint "runs/ucm_$name/best" --annotations "$ANNOTATIONS" \
        --split test --output "runs/ucm_$name/test_metrics.json"
done
