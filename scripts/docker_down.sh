#!/usr/bin/env bash
# Stop the dockerd started by scripts/docker_up.sh: exactly the process named in its pid file, never by name.
# Idempotent: nothing to do when the pid file is missing or its process is gone. Images stay in the state
# folder for the next docker_up.sh (remove CI_DOCKER_STATE by hand to start from scratch).
set -uo pipefail

STATE=${CI_DOCKER_STATE:-/tmp/cor2vox-docker}
PIDFILE="$STATE/dockerd.pid"

if [ ! -f "$PIDFILE" ]; then
    echo "docker_down: no pid file in $STATE: nothing to stop"
    exit 0
fi
pid=$(cat "$PIDFILE")
if ! [[ "$pid" =~ ^[0-9]+$ ]] || ! kill -0 "$pid" 2>/dev/null; then
    echo "docker_down: dockerd (pid ${pid:-?}) is not running"
    rm -f "$PIDFILE"
    exit 0
fi
# Make sure the pid is a dockerd (a recycled pid must not be killed).
if ! tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "dockerd"; then
    echo "docker_down: pid $pid is not a dockerd; removing the stale pid file"
    rm -f "$PIDFILE"
    exit 0
fi
kill -TERM "$pid"
for _ in $(seq 1 60); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
done
if kill -0 "$pid" 2>/dev/null; then
    echo "docker_down: dockerd (pid $pid) still running after 30 s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
fi
rm -f "$PIDFILE" "$STATE/docker.sock"
# dockerd leaves its network-namespace mount (exec/netns/default) behind: unmount what is under our exec root,
# so that the state folder can be deleted.
awk -v root="$STATE/exec/" 'index($2, root) == 1 { print $2 }' /proc/self/mounts | sort -r | while read -r mnt; do
    umount "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true
done
echo "docker_down: dockerd (pid $pid) stopped"
