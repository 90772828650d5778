#!/usr/bin/env bash
# The real container test: build the image from the wheelhouse and run the BIDS App in it on the demo data,
# as a non-root user on a read-only root file system with no network, then compare with the same run outside.
#
#   scripts/docker_test.sh            (run by .ci/run as its own timed step; needs root for docker_up.sh)
#
# Steps: docker_up → wheelhouse → docker build --network host → image size → --version/--help → demo data
# (built outside with the venv's cor2vox-demo-data, 2 participants) → participant + group level in the
# container → derivatives checked → participant level outside with the same seed → images compared →
# docker_down (trap on EXIT, so also on failure). Environment: VENV (default .venv), TORCH_SPEC, IMAGE,
# CI_DOCKER_STATE, KEEP_WORK=1 (keep the temporary data/output folder), SMOKE_ONLY=1 (stop after --help).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
VENV=${VENV:-$ROOT/.venv}
PY="$VENV/bin/python"
VERSION=$("$PY" -c 'import cor2vox_bids; print(cor2vox_bids.__version__)')
IMAGE=${IMAGE:-cor2vox/cor2vox-bids:$VERSION}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
export TORCH_SPEC
T0=$(date +%s)
last=$T0
step() {  # step NAME: print the time the previous step took
    local now; now=$(date +%s)
    echo "docker_test: [$(( now - T0 )) s, +$(( now - last )) s] $*"
    last=$now
}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/cor2vox-docker-test.XXXXXX")
cleanup() {
    rc=$?
    "$ROOT/scripts/docker_down.sh" || true
    if [ "${KEEP_WORK:-0}" = "1" ]; then echo "docker_test: kept $WORK"; else rm -rf "$WORK"; fi
    echo "docker_test: $([ "$rc" -eq 0 ] && echo passed || echo "FAILED (exit $rc)") in $(( $(date +%s) - T0 )) s"
    exit "$rc"
}
trap cleanup EXIT

step "docker_up"
eval "$("$ROOT/scripts/docker_up.sh" --env)"
export DOCKER_HOST DOCKER_BUILDKIT=1

step "wheelhouse ($TORCH_SPEC)"
PYTHON="$PY" "$ROOT/scripts/build_wheelhouse.sh" "$ROOT/wheelhouse"

step "docker build $IMAGE"
"$DOCKER" build --network host --progress=plain -t "$IMAGE" \
    --build-arg VERSION="$VERSION" --build-arg TORCH_SPEC="$TORCH_SPEC" \
    --build-arg BUILD_DATE="$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    --build-arg VCS_REF="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    "$ROOT" >"$WORK/build.log" 2>&1 || { tail -n 60 "$WORK/build.log"; exit 1; }
"$DOCKER" image prune -f >/dev/null
size=$("$DOCKER" image inspect -f '{{.Size}}' "$IMAGE")
step "image $IMAGE: $(awk -v s="$size" 'BEGIN{printf "%.2f GB (%d bytes)", s/1e9, s}')"
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
if [ "${SMOKE_ONLY:-0}" = "1" ]; then exit 0; fi

chmod 755 "$WORK"
"$VENV/bin/cor2vox-demo-data" "$WORK/data" --participants 2 --no-site2 --seed 0 >"$WORK/demo-data.log" 2>&1 \
    || { cat "$WORK/demo-data.log"; exit 1; }
chmod -R a+rX "$WORK/data"
mkdir -m 777 "$WORK/out-docker"
step "demo data (2 participants)"

"${RUN[@]}" -v "$WORK/data:/data:ro" -v "$WORK/out-docker:/out" "$IMAGE" \
    /data/bids /out participant --nprocs 2 --random-seed 0 >"$WORK/docker-participant.log" 2>&1 \
    || { tail -n 40 "$WORK/docker-participant.log"; exit 1; }
step "participant level in the container"
"${RUN[@]}" -v "$WORK/data:/data:ro" -v "$WORK/out-docker:/out" "$IMAGE" \
    /data/bids /out group >"$WORK/docker-group.log" 2>&1 || { tail -n 40 "$WORK/docker-group.log"; exit 1; }
step "group level in the container"

"$VENV/bin/cor2vox-bids" "$WORK/data/bids" "$WORK/out-host" participant --nprocs 2 --random-seed 0 \
    -w "$WORK/work-host" >"$WORK/host-participant.log" 2>&1 || { tail -n 40 "$WORK/host-participant.log"; exit 1; }
step "participant level outside the container (same seed)"

"$PY" - "$WORK/data/bids" "$WORK/out-docker" "$WORK/out-host" <<'EOF'
"""Derivatives of the container run exist; its synthetic images match the ones made outside."""
import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

from cor2vox_bids.workflows import outputs

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
worst = 0.0
for subject in subjects:
    rel = outputs.synth_path(subject, None, 0, 1)
    inside, outside = docker_out / rel, host_out / rel
    for path in (inside, outside, inside.with_name(inside.name.replace(".nii.gz", ".json"))):
        if not path.is_file():
            problems.append(f"missing {path}")
    if not (inside.is_file() and outside.is_file()):
        continue
    a, b = nib.load(inside), nib.load(outside)
    da, db = np.asarray(a.dataobj), np.asarray(b.dataobj)
    if da.shape != db.shape or not np.allclose(a.affine, b.affine):
        problems.append(f"sub-{subject}: shape/affine differ: {da.shape} {db.shape}")
        continue
    diff = float(np.max(np.abs(da.astype(np.float64) - db.astype(np.float64)))) if da.size else 0.0
    span = float(np.ptp(db)) or 1.0
    same = np.array_equal(da, db)
    print(f"sub-{subject}: container vs outside: {'bit-identical' if same else f'max |diff| {diff:.6g} ({diff / span:.2e} of the range)'}")
    worst = max(worst, diff / span)
if worst > 1e-3:
    problems.append(f"container and outside images differ by {worst:.2e} of the intensity range")
for problem in problems:
    print("docker_test: " + problem)
sys.exit(1 if problems else 0)
EOF
step "derivatives checked, container vs outside compared"
