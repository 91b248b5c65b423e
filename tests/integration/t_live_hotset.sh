#!/bin/bash
# SPDX-License-Identifier: ISC
# Checks: the writable working set goes last (PROTOCOL.md §7.2). A seed -e whose upload is
# capped at 2 MiB/s (the link) serves a 16 MiB image while its VM (a libnbd writer) rewrites a
# 2 MiB hot set at about 4 times the link rate. The destination must get every cold chunk (the
# other 14 MiB) while the writer goes on; then the writer stops, the source freezes, and the
# destination ends with the source's bytes. The wait for the cold data is bounded (60 s; about
# 7 s of transfer at the link rate): a bound on a hang, not a speed threshold.
# On loopback the old policy (changed chunks fetched at fault priority) still let the cold data
# through, more slowly: this checks the new policy end to end; it does not reproduce the lab
# case of issue 15 (200 Mbit/s, TCP queues), which starved.
# fast
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh" "$@"
PY=/usr/bin/python3
"$PY" -c 'import nbd' 2>/dev/null || fail "python3-libnbd missing (tools/install-deps.sh installs it)"
CHUNK=$((256 * 1024))
HOT_CHUNKS=8
NCHUNKS=64

head -c $((NCHUNKS * CHUNK)) /dev/urandom >"$T/src.img"
keygen "$T/src.key"
start_seed -k "$T/src.key" -e "unix:$T/src.sock" --ctl "$T/seed.ctl" --chunk-size 256K \
	--rate-limit 2M "$T/src.img"
for ((i = 0; i < 100; i++)); do
	[[ -S $T/src.sock ]] && break
	sleep 0.1
done
[[ -S $T/src.sock ]] || fail "seed -e did not export"

# The VM: writes of 4-32 KiB at random places of the hot set, about 4 MiB/s, until $T/stop
# exists (60 s at most); prints the number of writes when it stops.
cat >"$T/writer.py" <<'EOF'
import os, random, sys, time
import nbd
sock, hot, stop = sys.argv[1], int(sys.argv[2]), sys.argv[3]
h = nbd.NBD()
h.connect_unix(sock)
rng = random.Random(7)
n, t0, written = 0, time.monotonic(), 0
while not os.path.exists(stop) and time.monotonic() - t0 < 60:
    size = rng.randrange(4096, 32769, 4096)
    off = rng.randrange(0, hot - size + 1, 4096)
    h.pwrite(os.urandom(size), off)
    n += 1
    written += size
    ahead = written / (8 << 20) - (time.monotonic() - t0)
    if ahead > 0:
        time.sleep(ahead)
h.flush()
h.shutdown()
print(n)
EOF
bg_start "$T/fetch.log" "$P2PVBD" fetch --no-progress --ctl "$T/fetch.ctl" "$URI" "$T/out.img"
FETCH_PID=$BG_PID
bg_start "$T/writer.log" "$PY" "$T/writer.py" "$T/src.sock" $((HOT_CHUNKS * CHUNK)) "$T/stop"
WRITER_PID=$BG_PID

# cold_present: chunks outside the hot set that the destination holds (state file records).
cold_present() {
	[[ -f $T/out.img.p2pvbd-state ]] || {
		echo 0
		return
	}
	state_records "$T/out.img" | awk -v hot="$HOT_CHUNKS" 'NR > hot && $1 == 1 { n++ } END { print n + 0 }'
}
want=$((NCHUNKS - HOT_CHUNKS))
got=0
for ((i = 0; i < 600; i++)); do
	got=$(cold_present)
	((got == want)) && break
	kill -0 "$WRITER_PID" 2>/dev/null || break
	sleep 0.1
done
kill -0 "$WRITER_PID" 2>/dev/null ||
	fail "the writer stopped before the cold data arrived ($got of $want cold chunks): $(cat "$T/writer.log")"
((got == want)) ||
	fail "only $got of $want cold chunks arrived while the VM rewrote its hot set (the hot set starves the rest)"
note "all $want cold chunks arrived while the VM wrote (after $((i / 10)).$((i % 10)) s)"
touch "$T/stop"
wait_exit "$WRITER_PID" 30 || fail "the writer did not stop"
((EXIT_STATUS == 0)) || fail "the writer failed: $(cat "$T/writer.log")"
note "the VM made $(tail -n 1 "$T/writer.log") writes into its hot set"
run_cmd freeze "$P2PVBD" ctl "$T/seed.ctl" freeze
((RC == 0)) || fail "freeze failed: $(cat "$T/freeze.out" "$T/freeze.err")"
wait_exit "$FETCH_PID" 60 || fail "the destination did not complete after the freeze: $(tail -5 "$T/fetch.log")"
((EXIT_STATUS == 0)) || fail "fetch exited $EXIT_STATUS: $(tail -5 "$T/fetch.log")"
cmp "$T/src.img" "$T/out.img" || fail "the destination differs from the source at the freeze"
note "PASS"
