#!/bin/bash
# SPDX-License-Identifier: ISC
# Checks: readiness under systemd (sd_notify). With NOTIFY_SOCKET set, p2pvbd-tracker sends
# READY=1 once it listens, p2pvbd seed once its URI is out and it serves, p2pvbd fetch once it
# listens and has joined the swarm; each sends STOPPING=1 on SIGTERM and exits 0. The datagrams
# are received as systemd receives them (AF_UNIX/SOCK_DGRAM, sender PID from SCM_CREDENTIALS,
# which systemd's NotifyAccess=main checks), by a listener written in Python. A NOTIFY_SOCKET
# nobody listens on does not stop a program from starting.
# fast
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh" "$@"

TRACKER=$(dirname "$P2PVBD")/p2pvbd-tracker
[[ -x $TRACKER ]] || fail "tracker binary not found: $TRACKER"
PY=/usr/bin/python3

# The listener: one line "PID<TAB>FIELD" per field of every datagram, in OUT; exits after
# 300 s at most (the cleanup stops it sooner).
cat >"$T/notify_listen.py" <<'EOF'
import socket, struct, sys, time

path, out = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
s.bind(path)
s.settimeout(1.0)
deadline = time.monotonic() + 300
with open(out, "a") as f:
    while time.monotonic() < deadline:
        try:
            msg, anc, _, _ = s.recvmsg(4096, socket.CMSG_SPACE(12))
        except socket.timeout:
            continue
        pid = "?"
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = struct.unpack("iII", data[:12])[0]
        for field in msg.decode("utf-8", "replace").split("\n"):
            if field:
                f.write("%s\t%s\n" % (pid, field))
        f.flush()
EOF

# start_listener NAME: a listener on $T/NAME.sock writing $T/NAME.notify.
start_listener() {
	local name=$1 i
	: >"$T/$name.notify"
	bg_start "$T/$name-listener.log" "$PY" "$T/notify_listen.py" "$T/$name.sock" "$T/$name.notify"
	for ((i = 0; i < 100; i++)); do
		[[ -S $T/$name.sock ]] && return 0
		sleep 0.1
	done
	fail "notify listener $name did not bind $T/$name.sock"
}

# wait_notify NAME PID FIELD: wait (30 s at most) until PID sent FIELD (a whole line, e.g.
# READY=1) to listener NAME; fails if PID exits first.
wait_notify() {
	local name=$1 pid=$2 field=$3 i
	for ((i = 0; i < 300; i++)); do
		grep -qxF "$pid	$field" "$T/$name.notify" && return 0
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	grep -qxF "$pid	$field" "$T/$name.notify" && return 0
	fail "pid $pid did not send $field to $name; received: $(cat "$T/$name.notify")"
}

# stop_and_check NAME PID WHAT: SIGTERM, STOPPING=1 from PID, exit status 0.
stop_and_check() {
	local name=$1 pid=$2 what=$3
	kill -TERM "$pid"
	wait_notify "$name" "$pid" STOPPING=1
	wait_exit "$pid" 30 || fail "$what still running 30 s after SIGTERM"
	((EXIT_STATUS == 0)) || fail "$what exited $EXIT_STATUS after SIGTERM"
}

# --- the tracker ---------------------------------------------------------------------------
start_listener tracker
bg_start "$T/tracker.log" env NOTIFY_SOCKET="$T/tracker.sock" "$TRACKER" -l 127.0.0.1:0
TPID=$BG_PID
wait_notify tracker "$TPID" READY=1
# READY=1 means listening: the address is printed and the tracker answers, with no retry.
port=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$T/tracker.log")
[[ -n $port ]] || fail "tracker sent READY=1 before printing 'listening on'"
curl -fsS --max-time 10 -o "$T/status.json" "http://127.0.0.1:$port/status" ||
	fail "tracker sent READY=1 but does not answer GET /status"
grep -qxF "$TPID	STATUS=listening on 127.0.0.1:$port" "$T/tracker.notify" ||
	fail "tracker STATUS= does not name its address: $(cat "$T/tracker.notify")"
stop_and_check tracker "$TPID" "p2pvbd-tracker"
note "tracker: READY=1 when listening, STOPPING=1 on SIGTERM"

# --- seed and fetch --------------------------------------------------------------------------
make_image "$T/src.img" 4 12345
keygen "$T/src.key"
start_listener seed
start_listener fetch
rm -f "$T/vol.uri"
bg_start "$T/seed.log" env NOTIFY_SOCKET="$T/seed.sock" \
	"$P2PVBD" seed -k "$T/src.key" -l 127.0.0.1:0 --uri-file "$T/vol.uri" "$T/src.img"
SEED_PID=$BG_PID
wait_notify seed "$SEED_PID" READY=1
# The URI file is written before READY=1: a unit that starts after the seed can use it.
[[ -s $T/vol.uri ]] || fail "seed sent READY=1 before writing its URI file"
URI=$(head -n 1 "$T/vol.uri")
grep -qE "^$SEED_PID	STATUS=serving .*src\.img on port [1-9][0-9]*$" "$T/seed.notify" ||
	fail "seed STATUS= line missing: $(cat "$T/seed.notify")"

bg_start "$T/fetch.log" env NOTIFY_SOCKET="$T/fetch.sock" \
	"$P2PVBD" fetch --mirror --no-progress -l 127.0.0.1:0 "$URI" "$T/out.img"
FETCH_PID=$BG_PID
wait_notify fetch "$FETCH_PID" READY=1
grep -q '^listening on 127\.0\.0\.1:[1-9]' "$T/fetch.log" ||
	fail "fetch sent READY=1 before printing 'listening on'"
# A mirror keeps running once complete; wait until it is, so that SIGTERM stops a finished one.
wait_for_line "$T/fetch.log" 'volume complete and verified' 60 "$FETCH_PID" "fetch --mirror exited" "fetch --mirror did not complete"
cmp "$T/src.img" "$T/out.img" || fail "the mirror's image differs from the source"
stop_and_check fetch "$FETCH_PID" "fetch --mirror"
stop_and_check seed "$SEED_PID" "seed"
# Nothing else was sent from another process (systemd would drop it with NotifyAccess=main).
if grep -qv "^$SEED_PID	" "$T/seed.notify"; then
	fail "seed: a notification from another PID: $(cat "$T/seed.notify")"
fi
note "seed and fetch: READY=1 when serving, STOPPING=1 on SIGTERM"

# --- nobody listening ------------------------------------------------------------------------
bg_start "$T/tracker2.log" env NOTIFY_SOCKET="$T/nobody.sock" "$TRACKER" -l 127.0.0.1:0
TPID=$BG_PID
wait_for_line "$T/tracker2.log" '^listening on ' 10 "$TPID" "tracker exited with a NOTIFY_SOCKET nobody listens on" "tracker did not start (NOTIFY_SOCKET unused)"
stop_pid "$TPID"
note "all good"
