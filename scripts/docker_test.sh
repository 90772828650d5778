#!/usr/bin/env bash
# The real container test: build the image from the wheelhouse and run the BIDS App in it on the demo data,
# as a non-root user on a read-only root file system with no network, then compare with the same run outside.
#
#   scripts/docker_test.sh            (run by .ci/run as its own timed step; needs root for docker_up.sh)
#
# Steps: docker_up (engine + base image) and the demo data (2 participants, built outside with the venv's
# cor2vox-demo-data) run in the background while the wheelhouse is built → docker build --network host →
# image size → --version/--help/exit 66 → kernels loaded from the build-time cache → participant + group level
# in the container → derivatives checked → participant level outside for sub-01 with the same seed → synthetic images compared (bit-identical expected)
# → docker_down (trap on EXIT, so also on failure).
# Environment: VENV (default .venv), TORCH_SPEC, IMAGE, CI_DOCKER_STATE, KEEP_WORK=1 (keep the temporary
# data/output folder), SMOKE_ONLY=1 (stop after the --help checks), MODEL=DIR (a model folder to run with
# --model, mounted read-only, instead of the demo model inside the image).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
VENV=${VENV:-$ROOT/.venv}
PY="$VENV/bin/python"
# The runs outside the container use this tree, like the wheel built into the image.
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
VERSION=$("$PY" -c 'import cor2vox_bids; print(cor2vox_bids.__version__)')
IMAGE=${IMAGE:-cor2vox/cor2vox-bids:$VERSION}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
export TORCH_SPEC
T0=$(date +%s)
last=$T0
step() {  # step TEXT: what just finished, with the time since the start and since the previous step
    local now; now=$(date +%s)
    echo "docker_test: [$(( now - T0 )) s, +$(( now - last )) s] $*"
    last=$now
}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/cor2vox-docker-test.XXXXXX")
chmod 755 "$WORK"
UP_PID=""
DATA_PID=""
cleanup() {
    rc=$?
    [ -n "$DATA_PID" ] && kill "$DATA_PID" 2>/dev/null && wait "$DATA_PID" 2>/dev/null
    [ -n "$UP_PID" ] && wait "$UP_PID" 2>/dev/null  # let a starting daemon write its pid file first
    "$ROOT/scripts/docker_down.sh" || true
    if [ "${KEEP_WORK:-0}" = "1" ]; then echo "docker_test: kept $WORK"; else rm -rf "$WORK"; fi
    echo "docker_test: $([ "$rc" -eq 0 ] && echo passed || echo "FAILED (exit $rc)") in $(( $(date +%s) - T0 )) s"
    exit "$rc"
}
trap cleanup EXIT

# --- in the background: the engine (+ base image) and the demo data -------------------------------------------
"$ROOT/scripts/docker_up.sh" --env >"$WORK/docker.env" 2>"$WORK/docker_up.log" &
UP_PID=$!
if [ "${SMOKE_ONLY:-0}" != "1" ]; then
    "$VENV/bin/cor2vox-demo-data" "$WORK/data" --participants 2 --no-site2 --seed 0 >"$WORK/demo-data.log" 2>&1 &
    DATA_PID=$!
fi

PYTHON="$PY" "$ROOT/scripts/build_wheelhouse.sh" "$ROOT/wheelhouse"
step "wheelhouse ($TORCH_SPEC)"

wait "$UP_PID" || { cat "$WORK/docker_up.log"; UP_PID=""; exit 1; }
UP_PID=""
cat "$WORK/docker_up.log"
# shellcheck disable=SC1091
source "$WORK/docker.env"
export DOCKER_HOST DOCKER_BUILDKIT=1
step "docker_up"

"$DOCKER" build --network host --progress=plain -t "$IMAGE" \
    --build-arg VERSION="$VERSION" --build-arg TORCH_SPEC="$TORCH_SPEC" \
    --build-arg BUILD_DATE="$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    --build-arg VCS_REF="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    "$ROOT" >"$WORK/build.log" 2>&1 || { tail -n 60 "$WORK/build.log"; exit 1; }
"$DOCKER" image prune -f >/dev/null
size=$("$DOCKER" image inspect -f '{{.Size}}' "$IMAGE")
step "docker build: $IMAGE is $(awk -v s="$size" 'BEGIN{printf "%.2f GB (%d bytes)", s/1e9, s}')"
"$DOCKER" image inspect -f '{{json .Config.Labels}}' "$IMAGE" | grep -q "\"org.opencontainers.image.version\":\"$VERSION\"" \
    || { echo "docker_test: the image's version label is not $VERSION"; exit 1; }

RUN=("$DOCKER" run --rm --network none --read-only --user 1000:1000 --tmpfs /tmp)
got=$("${RUN[@]}" "$IMAGE" --version)
[ "$got" = "cor2vox-bids $VERSION" ] || { echo "docker_test: --version printed '$got'"; exit 1; }
"${RUN[@]}" "$IMAGE" --help >"$WORK/help.txt"
grep -q -- "--participant-label" "$WORK/help.txt" || { echo "docker_test: --help lacks --participant-label"; exit 1; }
set +e
"${RUN[@]}" "$IMAGE" /nonexistent /tmp/out participant 2>/dev/null
rc=$?
set -e
[ "$rc" -eq 66 ] || { echo "docker_test: a missing dataset exited $rc, not 66"; exit 1; }
step "--version, --help, exit code 66 as user 1000 on a read-only root: ok"
# The geometry kernels were compiled at build time (Dockerfile: geometry.warmup into /opt/cor2vox/numba-cache): a
# fresh read-only container must load them (cache hits, no misses), not compile them for ~25 s.
probe='import json, time; t = time.perf_counter(); from cor2vox_bids.geometry import _cache, _kernels, _regions; from cor2vox_bids.geometry.warmup import warm_up; warm_up(); ks = [_regions.band_sqdist, _kernels.winding_crossings, _kernels.query_sqdist, _kernels.build_cells]; print(json.dumps({"seconds": round(time.perf_counter() - t, 1), "cache": str(_cache.CACHE_DIR), "hits": sum(sum(k.stats.cache_hits.values()) for k in ks), "misses": sum(sum(k.stats.cache_misses.values()) for k in ks)}))'
got=$("${RUN[@]}" --entrypoint python "$IMAGE" -c "$probe")
echo "docker_test: first geometry call in a fresh read-only container (imports included): $got"
echo "$got" | grep -q '"misses": 0' || { echo "docker_test: the container compiled its kernels (no build-time cache)"; exit 1; }
step "geometry kernels loaded from the image's build-time cache"
if [ "${SMOKE_ONLY:-0}" = "1" ]; then exit 0; fi

wait "$DATA_PID" || { cat "$WORK/demo-data.log"; DATA_PID=""; exit 1; }
DATA_PID=""
chmod -R a+rX "$WORK/data"
mkdir -m 777 "$WORK/out-docker"
step "demo data (2 participants, built while the image was made)"
MOUNT_MODEL=()
MODEL_IN=()
MODEL_OUT=()
if [ -n "${MODEL:-}" ]; then
    MODEL=$(cd "$MODEL" && pwd)
    MOUNT_MODEL=(-v "$MODEL:/model:ro")
    MODEL_IN=(--model /model)
    MODEL_OUT=(--model "$MODEL")
    echo "docker_test: using the model in $MODEL"
fi

"${RUN[@]}" -v "$WORK/data:/data:ro" -v "$WORK/out-docker:/out" "${MOUNT_MODEL[@]}" "$IMAGE" \
    /data/bids /out participant --nprocs 2 --random-seed 0 "${MODEL_IN[@]}" >"$WORK/docker-participant.log" 2>&1 \
    || { tail -n 40 "$WORK/docker-participant.log"; exit 1; }
step "participant level in the container (2 participants)"
"${RUN[@]}" -v "$WORK/data:/data:ro" -v "$WORK/out-docker:/out" "$IMAGE" \
    /data/bids /out group >"$WORK/docker-group.log" 2>&1 || { tail -n 40 "$WORK/docker-group.log"; exit 1; }
step "group level in the container"

"$VENV/bin/cor2vox-bids" "$WORK/data/bids" "$WORK/out-host" participant --participant-label 01 --nprocs 2 \
    --random-seed 0 -w "$WORK/work-host" "${MODEL_OUT[@]}" >"$WORK/host-participant.log" 2>&1 \
    || { tail -n 40 "$WORK/host-participant.log"; exit 1; }
step "participant level outside the container (sub-01, same seed)"

"$PY" - "$WORK/data/bids" "$WORK/out-docker" "$WORK/out-host" <<'EOF'
"""Derivatives of the container run exist; its synthetic images match the ones made outside."""
import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

from cor2vox_bids.bids import naming as outputs

bids, docker_out, host_out = (Path(p) for p in sys.argv[1:])
subjects = sorted(p.name[4:] for p in bids.glob("sub-*") if p.is_dir())
problems = []
description = docker_out / "dataset_description.json"
if not description.is_file():
    problems.append(f"missing {description}")
elif json.loads(description.read_text()).get("DatasetType") != "derivative":
    problems.append("dataset_description.json is not a derivative description")
if not sorted(docker_out.glob(outputs.group_path("*", ".tsv"))):
    problems.append("no group TSV (group_desc-qc_*.tsv)")
compared = 0
for subject in subjects:
    inside = docker_out / outputs.synth_path(subject, None, 0, 1)
    for path in (inside, inside.with_name(inside.name.replace(".nii.gz", ".json")),
                 docker_out / outputs.report_path(subject, None)):
        if not path.is_file():
            problems.append(f"missing {path}")
    outside = host_out / outputs.synth_path(subject, None, 0, 1)
    if not (inside.is_file() and outside.is_file()):
        continue
    a, b = nib.load(inside), nib.load(outside)
    da, db = np.asarray(a.dataobj), np.asarray(b.dataobj)
    compared += 1
    if da.shape != db.shape or not np.array_equal(a.affine, b.affine):
        problems.append(f"sub-{subject}: grids differ: {da.shape} vs {db.shape}")
    elif np.array_equal(da, db):
        print(f"sub-{subject}: the container's synthetic T1w is bit-identical to the one made outside")
    else:
        diff = float(np.max(np.abs(da.astype(np.float64) - db.astype(np.float64))))
        problems.append(f"sub-{subject}: container vs outside: max |diff| {diff:.6g} "
                        f"({np.mean(da != db):.1%} of the voxels differ)")
if compared == 0:
    problems.append("no synthetic image made both inside and outside the container")
for problem in problems:
    print("docker_test: " + problem)
sys.exit(1 if problems else 0)
EOF
step "derivatives checked, container vs outside compared"
