#!/usr/bin/env bash
# Place SIPp calls into the lab box as the VoIP provider would, and print what happened.
# The lab box (container centralita-lab) shares this machine's network: Asterisk answers SIP on
# 127.0.0.1:5060 and SIPp plays the provider from 127.0.0.1:5070.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
box=centralita-lab
scenarios="$here/../sipp"
work=$(mktemp -d /tmp/centralita-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT

if [ "$(podman container inspect -f '{{.State.Running}}' "$box" 2>/dev/null)" != true ]; then
    echo "The lab box $box is not running: run 'make demo' (it creates and provisions it)." >&2
    exit 1
fi

log_size() { podman exec "$box" stat -c %s /var/log/asterisk/full; }
log_since() { podman exec "$box" tail -c +"$(($1 + 1))" /var/log/asterisk/full; }

# call NAME SCENARIO NUMBER [SIPP OPTIONS...]: one call, its SIPp verdict and the dialplan it ran.
failures=0
call() {
    local title=$1 scenario=$2 number=$3
    shift 3
    local before rc
    before=$(log_size)
    echo
    echo "== $title: calling $number"
    sipp -sf "$scenarios/$scenario" -s "$number" 127.0.0.1:5060 -i 127.0.0.1 -p 5070 -m 1 \
        -timeout 30s -nostdin "$@" >"$work/sipp.log" 2>&1
    rc=$?
    sleep 0.5
    if [ $rc -eq 0 ]; then
        echo "   SIP: answered by the box (200 OK) and ended cleanly"
    else
        failures=$((failures + 1))
        echo "   SIP: FAILED (sipp exit $rc); SIPp said:"
        grep -E "Successful call|Failed call|Aborting|error" "$work/sipp.log" | sed 's/^/     /' | head -10
    fi
    echo "   What Asterisk did (/var/log/asterisk/full):"
    log_since "$before" | grep -E "Executing \[|WARNING|Centralita" |
        sed -E 's/^\[[^]]+\] //; s/VERBOSE\[[0-9]+\]\[[^]]+\] pbx.c: //; s/ in new stack$//' |
        sed 's/^/     /' | head -25
}

echo "Centralita demo: SIPp plays the VoIP provider and calls the lab box at 127.0.0.1:5060"
call "1/2 trunk check (echo test extension)" provider_call.xml 6000 -d 3000
call "2/2 a customer calls the provider's number" provider_call_box_hangs_up.xml 5215550002222

echo
if [ $failures -eq 0 ]; then
    echo "Both calls were answered. The voice assistant is not installed yet, so the second call"
    echo "reached the operator fallback (Spanish prompt) instead of the assistant."
    echo "Look inside: podman exec -it $box bash   |   remove: make lab-down"
else
    echo "$failures call(s) failed. Look inside: podman exec -it $box asterisk -rvvv"
    exit 1
fi
