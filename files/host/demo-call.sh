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
    (cd "$work" && sipp -sf "$scenarios/$scenario" -s "$number" 127.0.0.1:5060 -i 127.0.0.1 -p 5070 -m 1 \
        -timeout 40s -nostdin "$@" >"$work/sipp.log" 2>&1)
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
        sed 's/^/     /' | head -12
}

# The assistant's side of the last call: its log lines and the call record with the transcript.
assistant_report() {
    local since=$1 call_id
    call_id=$(podman exec "$box" tail -c +"$((since + 1))" /var/log/asterisk/inbound_openai.log |
        grep -o 'call=[0-9.]*' | grep -v 'call=-' | head -1 | cut -d= -f2)
    if [ -z "$call_id" ]; then
        failures=$((failures + 1))
        echo "   The assistant never saw the call: check 'systemctl status openai-inbound-calls' in the box."
        return
    fi
    echo "   What the assistant did (/var/log/asterisk/inbound_openai.log, call=$call_id):"
    podman exec "$box" grep "call=$call_id" /var/log/asterisk/inbound_openai.log | cut -d' ' -f2,3,5- |
        sed 's/^/     /'
    echo "   The call record (SQLite $db):"
    podman exec "$box" /usr/local/asterisk/venv/bin/python -c "
import sys
from centralita.storage.records import CallRecords
with CallRecords(sys.argv[1]) as records:
    call = records.get_call(sys.argv[2])
print(f'     outcome={call[\"outcome\"]} answered={call[\"answered_at\"]} ended={call[\"ended_at\"]}')
for line in call['transcript']:
    print(f'     {line[\"speaker\"]}: {line[\"text\"]}')
for tool in call['tool_calls']:
    print(f'     tool {tool[\"name\"]}({tool[\"arguments\"]}) -> {tool[\"result\"]}')
" "$db" "$call_id" || failures=$((failures + 1))
}

# The web console: the lab box shares this machine's network, so its loopback address is this machine's.
console_login() {
    local password_file="$here/../../.lab/console-password"
    echo
    if ! curl -fs -o /dev/null -m 5 http://127.0.0.1:8090/entrar; then
        echo "The web console does not answer on http://127.0.0.1:8090: podman exec $box systemctl status centralita-web"
        failures=$((failures + 1))
        return
    fi
    echo "Web console of the lab box: http://127.0.0.1:8090 (in a browser on this machine)"
    if [ -r "$password_file" ]; then
        echo "   user operador (administrator), password: $(cat "$password_file")  (kept in .lab/console-password)"
    else
        echo "   no lab login: $password_file is missing; make lab-provision creates it"
    fi
    echo "   From another computer: ssh -L 8090:127.0.0.1:8090 $(id -un)@$(hostname -f 2>/dev/null || hostname),"
    echo "   then open http://127.0.0.1:8090 there (the console listens on loopback only)."
}

db=/var/lib/centralita/centralita.db
cp "$here/../audio/cliente_sin_internet.wav" "$work/"
echo "Centralita demo: SIPp plays the VoIP provider and calls the lab box at 127.0.0.1:5060"
call "1/2 trunk check (echo test extension)" provider_call.xml 6000 -d 3000
assistant_log_size=$(podman exec "$box" stat -c %s /var/log/asterisk/inbound_openai.log)
call "2/2 a customer calls and speaks to the assistant (fake Realtime server)" provider_call_speaking.xml \
    5215550002222 -d 16000
assistant_report "$assistant_log_size"

echo
if [ $failures -eq 0 ]; then
    echo "Both calls were answered; the second one reached the voice assistant."
    console_login
    echo "Look inside: podman exec -it $box bash   |   remove: make lab-down"
else
    echo "$failures call(s) failed. Look inside: podman exec -it $box asterisk -rvvv"
    exit 1
fi
