#!/usr/bin/env bash
# Stop the test cluster started by scripts/slurm_up.sh: exactly the daemons whose pids it recorded
# (slurmd, slurmctld, munged), never by name. Idempotent: nothing recorded or already gone is fine.
# Jobs still running on the node are cancelled first (their steps belong to slurmd).
set -uo pipefail

STATE="${COR2VOX_SLURM_STATE:-${TMPDIR:-/tmp}/cor2vox-slurm}"
log() { echo "slurm_down: $*" >&2; }

[ -d "$STATE" ] || { log "nothing to stop ($STATE does not exist)"; exit 0; }

alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

if [ -f "$STATE/slurm.conf" ] && alive "$STATE/slurmctld.pid" && command -v scancel >/dev/null; then
  SLURM_CONF="$STATE/slurm.conf" timeout 10 scancel --full --user="$(id -un)" >/dev/null 2>&1 || true
fi

stop() {  # stop PIDFILE NAME: TERM, wait up to 10 s, then KILL; only the recorded pid
  local pidfile="$1" name="$2" pid
  [ -s "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      log "$name ($pid) did not stop after 10 s: KILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    log "stopped $name ($pid)"
  fi
  rm -f "$pidfile"
}

stop "$STATE/slurmd.pid" slurmd
stop "$STATE/slurmctld.pid" slurmctld
stop "$STATE/munged.pid" munged
exit 0
