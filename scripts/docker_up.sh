#!/usr/bin/env bash
# Start a private Docker engine for cor2vox-bids' container tests and make the Debian bookworm base image.
#
# Idempotent: installs Debian's docker.io and debootstrap only when missing (one `apt-get update` first),
# reuses a dockerd that already answers on our socket, and builds the base image only when absent.
# The daemon lives entirely under a state folder (data, exec root, pid file, socket, log) and makes no
# container networks (--bridge=none --iptables=false): build with `--network host`, run with `--network none`.
#
#   scripts/docker_up.sh            # start; prints the variables to use the engine
#   eval "$(scripts/docker_up.sh --env)"   # start and export DOCKER_HOST / DOCKER in this shell
#   scripts/docker_down.sh          # stop exactly this daemon (by the pid in its pid file)
#
# Environment: CI_DOCKER_STATE (state folder, default /tmp/cor2vox-docker), BASE_IMAGE (default
# cor2vox-base:bookworm), DEBIAN_MIRROR (default: the machine's own apt source, else debootstrap's default).
set -euo pipefail

STATE=${CI_DOCKER_STATE:-/tmp/cor2vox-docker}
BASE_IMAGE=${BASE_IMAGE:-cor2vox-base:bookworm}
SOCK="$STATE/docker.sock"
PIDFILE="$STATE/dockerd.pid"
LOG="$STATE/dockerd.log"
PRINT_ENV=0
[ "${1:-}" = "--env" ] && PRINT_ENV=1
mkdir -p "$STATE"

say() { if [ "$PRINT_ENV" -eq 1 ]; then echo "docker_up: $*" >&2; else echo "docker_up: $*"; fi; }

# --- packages -------------------------------------------------------------------------------------------
need=()
dpkg -s docker.io >/dev/null 2>&1 || need+=(docker.io)
dpkg -s debootstrap >/dev/null 2>&1 || need+=(debootstrap)
if [ "${#need[@]}" -gt 0 ]; then
    [ "$(id -u)" -eq 0 ] || { echo "docker_up: need root to install ${need[*]}" >&2; exit 1; }
    say "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -qq --no-install-recommends "${need[@]}" >"$STATE/apt.log" 2>&1; then
        apt-get update -qq >/dev/null
        apt-get install -y -qq --no-install-recommends "${need[@]}" >"$STATE/apt.log" 2>&1 \
            || { cat "$STATE/apt.log" >&2; exit 1; }
    fi
fi
# The docker client of the docker.io package speaks the daemon's API (a newer one may be first on PATH).
DOCKER=$(dpkg -L docker.io | grep -E '/bin/docker$' | head -n1)
DOCKERD=$(dpkg -L docker.io | grep -E 'bin/dockerd$' | head -n1)
[ -x "$DOCKER" ] && [ -x "$DOCKERD" ] || { echo "docker_up: docker.io binaries not found" >&2; exit 1; }
export DOCKER_HOST="unix://$SOCK"

answers() { "$DOCKER" version --format '{{.Server.Version}}' >/dev/null 2>&1; }

# --- daemon ---------------------------------------------------------------------------------------------
mkdir -p "$STATE/data" "$STATE/exec"
if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null && answers; then
    say "dockerd already running (pid $(cat "$PIDFILE"))"
else
    if [ -f "$PIDFILE" ] && ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
        rm -f "$PIDFILE"  # stale, from a daemon that died
    fi
    rm -f "$SOCK"
    say "starting dockerd (state in $STATE)"
    # setsid: the daemon gets its own session, so it outlives this script and a Ctrl-C of the caller.
    setsid "$DOCKERD" \
        --data-root "$STATE/data" --exec-root "$STATE/exec" --pidfile "$PIDFILE" \
        --host "unix://$SOCK" --bridge=none --iptables=false --ip-masq=false --ip-forward=false \
        >"$LOG" 2>&1 </dev/null &
    for _ in $(seq 1 120); do
        answers && break
        sleep 0.5
    done
    answers || { echo "docker_up: dockerd did not answer on $SOCK; last log lines:" >&2; tail -n 30 "$LOG" >&2; exit 1; }
    say "dockerd $("$DOCKER" version --format '{{.Server.Version}}') up (pid $(cat "$PIDFILE"), storage $("$DOCKER" info --format '{{.Driver}}'))"
fi

# --- base image: Debian bookworm minbase + Debian's Python 3.11 ------------------------------------------
mirror() {
    # The bookworm mirror the machine's apt uses (deb822 or one-line format); empty → debootstrap's default.
    if [ -n "${DEBIAN_MIRROR:-}" ]; then echo "$DEBIAN_MIRROR"; return; fi
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk 'BEGIN{RS=""} /Suites:[^\n]*bookworm( |\n|$)/ && !/bookworm-security/ {
               if (match($0, /URIs:[ \t]*[^ \t\n]+/)) { s=substr($0,RSTART,RLENGTH); sub(/URIs:[ \t]*/,"",s); print s; exit } }' "$f"
    done | head -n1 | grep . && return
    grep -hE '^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?[a-z]+://[^[:space:]]+[[:space:]]+bookworm[[:space:]]' \
        /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
        | sed -E 's/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?//' | awk '{print $1; exit}'
}

if "$DOCKER" image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    say "base image $BASE_IMAGE present"
else
    t0=$(date +%s)
    root="$STATE/rootfs"
    rm -rf "$root"
    url=$(mirror || true)
    say "debootstrap bookworm (minbase + python3, python3-venv)${url:+ from $url}"
    # shellcheck disable=SC2086
    debootstrap --variant=minbase --include=python3,python3-venv bookworm "$root" $url \
        >"$STATE/debootstrap.log" 2>&1 || { tail -n 30 "$STATE/debootstrap.log" >&2; exit 1; }
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/var/log/* "$root"/tmp/*
    tar -C "$root" -c . | "$DOCKER" import \
        -c 'ENV LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        -c 'CMD ["/bin/bash"]' -m "debootstrap --variant=minbase bookworm + python3 python3-venv" \
        - "$BASE_IMAGE" >/dev/null
    rm -rf "$root"
    say "base image $BASE_IMAGE made in $(( $(date +%s) - t0 )) s ($("$DOCKER" image inspect -f '{{.Size}}' "$BASE_IMAGE" | awk '{printf "%.0f MB", $1/1e6}'))"
fi

if [ "$PRINT_ENV" -eq 1 ]; then
    echo "export DOCKER_HOST='unix://$SOCK' DOCKER='$DOCKER' DOCKER_BUILDKIT=1"
else
    say "use: DOCKER_HOST=unix://$SOCK DOCKER_BUILDKIT=1 $DOCKER ..."
fi
