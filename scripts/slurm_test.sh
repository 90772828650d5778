#!/usr/bin/env bash
# CI step "SLURM": start a one-node test cluster, run the tests marked `slurm` (cor2vox-bids with the SLURM
# plugins and array mode; a 2-task `srun torchrun` cor2vox-train run), stop the cluster (also on
# failure or interruption). Exit code: pytest's (5, no test collected, counts as a failure).
#
#   bash scripts/slurm_test.sh [extra pytest args]
#
# Needs the project's venv (make install) and root for the first install of slurm/munge (Debian packages).
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
export COR2VOX_SLURM_STATE="${COR2VOX_SLURM_STATE:-${TMPDIR:-/tmp}/cor2vox-slurm-ci-$$}"

cleanup() {
  bash scripts/slurm_down.sh
  rm -rf "$COR2VOX_SLURM_STATE"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

t0=$(date +%s.%N)
if ! up=$(bash scripts/slurm_up.sh); then
  echo "slurm_test: the test cluster did not start" >&2
  exit 1
fi
eval "$up"
t1=$(date +%s.%N)
echo "slurm_test: cluster start $(python3 -c "print(f'{$t1 - $t0:.1f}')") s (SLURM_CONF=$SLURM_CONF)"

COR2VOX_REQUIRE_SLURM=1 "$PY" -m pytest -q -m slurm -p no:cacheprovider tests/slurm "$@"
rc=$?
echo "slurm_test: tests exit $rc after $(python3 -c "import time; print(f'{time.time() - $t0:.1f}')") s in all"
if [ "$rc" -eq 5 ]; then echo "slurm_test: no SLURM test collected: failing"; rc=1; fi
exit "$rc"
