#!/usr/bin/env bash
# Make the wheelhouse the container image is installed from (`pip install --no-index --find-links`).
#
#   scripts/build_wheelhouse.sh [WHEELHOUSE]        (default: wheelhouse/ at the repo root, git-ignored)
#
# It holds exactly one wheel per distribution: the PyTorch chosen by TORCH_SPEC and every other dependency
# (sdists are built into wheels here, so the image needs no compiler) pinned in requirements-deps.txt, and in
# app/ the cor2vox-bids wheel built from this tree, named in requirements.txt. The Dockerfile installs the
# two in separate layers, so a change of the package alone reuses the cached dependency layer.
#
# Environment:
#   TORCH_SPEC   the torch requirement (default torch==2.13.0: the CPU build where pip finds it first, as in
#                the Makefile; for a CUDA release e.g. TORCH_SPEC=torch==2.13.0 with PyPI's default Linux
#                wheels, which run on the GPU under `docker run --gpus all` and fall back to the CPU)
#   PYTHON       the Python whose pip builds the wheelhouse (default .venv/bin/python, else python3). It must be
#                CPython 3.11 on Linux x86_64 like the image's Debian bookworm Python.
#   PIN_FROM_ENV 1 (default): pin every dependency to the version installed in PYTHON's environment, so the
#                image computes what the development environment computes; 0: newest versions.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WH=${1:-$ROOT/wheelhouse}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
PIN_FROM_ENV=${PIN_FROM_ENV:-1}
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi
t0=$(date +%s)
mkdir -p "$WH"
WH=$(cd "$WH" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

tag=$("$PYTHON" -c 'import sys, platform; print(f"{sys.implementation.name}{sys.version_info[0]}{sys.version_info[1]}-{platform.machine()}")')
[ "$tag" = "cpython311-x86_64" ] || echo "build_wheelhouse: warning: $PYTHON is $tag, the image has cpython311-x86_64" >&2

# 1. The package itself, built from a clean copy of the tree (no stale build/ or egg-info from the work tree).
mkdir -p "$tmp/src"
(cd "$ROOT" && tar --exclude='__pycache__' --exclude='*.pyc' -cf - pyproject.toml README.md cor2vox_bids \
    $(ls LICENSE* MANIFEST.in setup.py 2>/dev/null || true)) | tar -C "$tmp/src" -xf -
rm -rf "$WH/app" "$WH"/cor2vox_bids-*.whl
"$PYTHON" -m pip wheel -q --no-deps -w "$WH/app" "$tmp/src"
pkg=$(ls "$WH"/app/cor2vox_bids-*.whl)
version=$(basename "$pkg" | cut -d- -f2)

# 2. Pins: what the development environment has installed (not torch: TORCH_SPEC decides it).
: >"$tmp/constraints.txt"
if [ "$PIN_FROM_ENV" = "1" ]; then
    "$PYTHON" -m pip list --format=freeze --exclude-editable 2>/dev/null \
        | grep -viE '^(torch|triton|nvidia-[a-z0-9-]+|cor2vox-bids|cor2vox_bids|pip|setuptools|wheel)==' \
        >"$tmp/constraints.txt" || true
fi

# 3. Dependencies + torch. Offline from the wheelhouse when it already has everything, else from the index.
reqs=("$pkg" "$TORCH_SPEC")
if ! "$PYTHON" -m pip wheel --no-index --find-links "$WH" -w "$tmp/resolved" -c "$tmp/constraints.txt" \
        "${reqs[@]}" >"$tmp/offline.log" 2>&1; then
    rm -rf "$tmp/resolved"
    "$PYTHON" -m pip wheel --find-links "$WH" -w "$tmp/resolved" -c "$tmp/constraints.txt" "${reqs[@]}" \
        >"$tmp/online.log" 2>&1 || { tail -n 40 "$tmp/online.log" >&2; exit 1; }
fi

# 4. Keep exactly the resolved set: move new wheels in, drop those no longer needed.
rm -f "$tmp"/resolved/cor2vox_bids-*.whl
for whl in "$tmp"/resolved/*.whl; do
    name=$(basename "$whl")
    [ -f "$WH/$name" ] && cmp -s "$whl" "$WH/$name" || cp "$whl" "$WH/$name"
done
for whl in "$WH"/*.whl; do
    [ -f "$tmp/resolved/$(basename "$whl")" ] || rm -f "$whl"
done
# Pins of the dependency layer (name==version read from the wheel file names), and the package.
for whl in "$WH"/*.whl; do
    basename "$whl" | awk -F- '{ print $1 "==" $2 }'
done | sort >"$WH/requirements-deps.txt"
printf 'cor2vox-bids==%s\n' "$version" >"$WH/requirements.txt"
echo "build_wheelhouse: $(( $(ls "$WH"/*.whl | wc -l) + 1 )) wheels, $(du -sh "$WH" | cut -f1), $(basename "$pkg"), $(ls "$WH" | grep -E '^torch-' ) in $(( $(date +%s) - t0 )) s -> $WH"
