#!/bin/bash
# SPDX-License-Identifier: ISC
# Checks: auto-converge (PROTOCOL.md §9.2). A seed -e with its upload capped at 1 MiB/s (the
# link) and --downtime-target 200 serves an 8 MiB image while its VM (a libnbd writer) rewrites a
# 4 MiB hot set at about 6 MiB/s: the copy cannot converge. The seed must say so in its log and
# cap the VM's writes by itself (status: auto_converge_rate > 0), and the writer must see its
# writes slowed; then the freeze, and the destination ends with the source's bytes. With
# --no-auto-converge the same writer is never capped. Waits are bounded (60 s): bounds on a
# hang, not speed thresholds.
# fast
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh" "$@"
PY=/usr/bin/python3
"$PY" -c 'import nbd' 2>/dev/null || fail "python3-libnbd missing (tools/install-deps.sh installs it)"

head -c $((8 << 20)) /dev/urandom >"$T/src.img"
keygen "$T/src.key"

# The VM: 4-32 KiB writes at random places of the first 4 MiB at up to 6 MiB/s until $T/stop
# exists (90 s at most); each second it prints the bytes it wrote in that second.
cat >"$T/writer.py" <<'PY'
import os, random, sys, time
import nbd
sock, stop = sys.argv[1], sys.argv[2]
h = nbd.NBD()
h.connect_unix(sock)
rng = random.Random(11)
t0 = time.monotonic()
written, sec, in_sec = 0, 0, 0
while not os.path.exists(stop) and time.monotonic() - t0 < 90:
    size = rng.randrange(4096, 32769, 4096)
    h.pwrite(os.urandom(size), rng.randrange(0, (4 << 20) - size + 1, 4096))
    written += size
    in_sec += size
    now = time.monotonic() - t0
    if int(now) > sec:
        print(in_sec, flush=True)
        sec, in_sec = int(now), 0
    ahead = written / (6 << 20) - now
    if ahead > 0:
        time.sleep(ahead)
h.flush()
h.shutdown()
PY

# run_case NAME SEED-OPTIONS...: seed, writer, destination; waits for auto-converge's cap (or
# 12 s of writes without one, with --no-auto-converge); then the freeze and the check.
run_case() {
	local name=$1 i capped=0 first last
	shift
	rm -f "$T/src.sock" "$T/stop" "$T/out.img" "$T/out.img".p2pvbd-*
	start_seed -k "$T/src.key" -e "unix:$T/src.sock" --ctl "$T/seed.ctl" --rate-limit 1M \
		"$@" "$T/src.img"
	for ((i = 0; i < 100; i++)); do
		[[ -S $T/src.sock ]] && break
		sleep 0.1
	done
	bg_start "$T/$name-writer.log" "$PY" "$T/writer.py" "$T/src.sock" "$T/stop"
	WRITER_PID=$BG_PID
	bg_start "$T/$name-fetch.log" "$P2PVBD" fetch --no-progress "$URI" "$T/out.img"
	FETCH_PID=$BG_PID
	for ((i = 0; i < 600; i++)); do
		grep -q 'auto-converge: the copy does not converge' "$T/seed.log" && capped=1 && break
		[[ $name == off ]] && ((i >= 120)) && break
		kill -0 "$WRITER_PID" 2>/dev/null || break
		sleep 0.1
	done
	STATUS=$("$P2PVBD" status --json "$T/seed.ctl")
	[[ $STATUS == *'"downtime_target_ms":'* && $STATUS == *'"lag_bytes":'* ]] ||
		fail "$name: status lacks the downtime target or the lag: $STATUS"
	if [[ $name == on ]]; then
		((capped)) || fail "on: no auto-converge in 60 s: $(tail -3 "$T/seed.log")"
		# The cap goes down window after window until the copy converges: wait (30 s at
		# most) until the writer's last two seconds are under half its first three.
		first=$(head -n 3 "$T/$name-writer.log" | awk '{ s += $1 } END { print int(s / NR) }')
		for ((i = 0; i < 300; i++)); do
			last=$(tail -n 2 "$T/$name-writer.log" | awk '{ s += $1 } END { print int(s / NR) }')
			((last * 2 < first)) && break
			kill -0 "$WRITER_PID" 2>/dev/null || break
			sleep 0.1
		done
		note "the VM wrote $((first / 1024)) KiB/s at first, $((last / 1024)) KiB/s under auto-converge"
		((last * 2 < first)) || fail "on: the VM's writes were not slowed ($first then $last bytes/s)"
		STATUS=$("$P2PVBD" status --json "$T/seed.ctl")
		[[ $STATUS =~ \"auto_converge_rate\":([0-9]+) ]] && ((BASH_REMATCH[1] > 0)) ||
			fail "on: status shows no cap: $STATUS"
		"$P2PVBD" status "$T/seed.ctl" | grep -q 'auto-converge caps the VM' ||
			fail "on: the text status does not say that writes are capped"
	else
		((capped == 0)) || fail "off: --no-auto-converge capped the VM's writes"
	fi
	touch "$T/stop"
	wait_exit "$WRITER_PID" 30 || fail "$name: the writer did not stop"
	((EXIT_STATUS == 0)) || fail "$name: the writer failed: $(tail -3 "$T/$name-writer.log")"
	run_cmd freeze "$P2PVBD" ctl "$T/seed.ctl" freeze
	((RC == 0)) || fail "$name: freeze failed: $(cat "$T/freeze.out" "$T/freeze.err")"
	wait_exit "$FETCH_PID" 60 || fail "$name: the destination did not complete after the freeze"
	((EXIT_STATUS == 0)) || fail "$name: fetch exited $EXIT_STATUS: $(tail -3 "$T/$name-fetch.log")"
	cmp "$T/src.img" "$T/out.img" || fail "$name: the destination differs from the source"
	stop_pid "$SEED_PID"
}

run_case on --downtime-target 200
run_case off --downtime-target 200 --no-auto-converge
note "PASS"
