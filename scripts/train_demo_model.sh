#!/usr/bin/env bash
# Retrain the shipped DEMO model with cor2vox-train, measure it, and install it as package data.
# By default it fine-tunes (--init-from) the demo model that is installed now, on a freshly built demo world
# (images rendered from each pseudo-participant's own surfaces); INIT= (empty) trains from scratch.
# Deterministic for the seed on CPU (same weights on the same kind of CPU). Resumable: rerun after an interruption;
# STEPS=<the step reached> finishes a resumed run early with the weights it has.
#   bash scripts/train_demo_model.sh            # defaults below; ROOT, N, STEPS, BASE, INIT may be overridden
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
ROOT=${ROOT:-work/demo_model}
N=${N:-22}              # pseudo-participants; the last two are held out (make demo runs on them)
STEPS=${STEPS:-4500}
EMA_START=${EMA_START:-500}
INIT=${INIT-cor2vox_bids/data/demo_model}
BASE=${BASE:-16}
SHAPE=${SHAPE:-"80 96 80"}
SPACING=${SPACING:-2}
VAL_A=$(printf "%02d" $((N - 1))); VAL_B=$(printf "%02d" "$N")

if [ ! -f "$ROOT/data/bids/sub-$VAL_B/anat/sub-${VAL_B}_T1w.nii.gz" ]; then
  rm -rf "$ROOT/data"
  "$PY" -m cor2vox_bids.cli.demo_data "$ROOT/data" --participants "$N" --seed 0 --no-site2
fi
"$PY" -m cor2vox_bids.cli.train "$ROOT/data/bids" "$ROOT/model" --demo --name cor2vox-demo-fsaverage5 \
  --architecture demo --base-channels "$BASE" --grid-shape $SHAPE --spacing "$SPACING" --steps "$STEPS" \
  ${INIT:+--init-from "$INIT"} \
  --lr 2e-4 --ema-decay 0.97 --ema-every 8 --ema-start "$EMA_START" --val-every 250 --random-seed 0 \
  --validation-label "$VAL_A" "$VAL_B" -w "$ROOT/work" --nthreads 2
"$PY" scripts/model_card.py "$ROOT/model" "$ROOT/data/bids" --participant-label "$VAL_A" "$VAL_B" --work "$ROOT/card"
DEST=cor2vox_bids/data/demo_model
mkdir -p "$DEST"
for f in model.safetensors config.json model_card.md model_card.json loss_curve.png train_log.tsv; do
  cp "$ROOT/model/$f" "$DEST/$f"
done
cp "$ROOT/data/bids/LICENSE" "$DEST/LICENSE.FreeSurfer.txt"
echo "demo model installed in $DEST"
