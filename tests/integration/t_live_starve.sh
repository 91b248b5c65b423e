#!/bin/bash
# SPDX-License-Identifier: ISC
# Checks: issue 15's case, in the lab: a VM that rewrites its hot set faster than the link
# carries does not starve the rest of the disk (PROTOCOL.md §7.2, cold first, hot last). The seed
# -e (lab host h1, 50 Mbit/s up and down, HTB as on a real link: TCP queues, not a token bucket
# in the program) serves a 32 MiB image while a libnbd writer rewrites an 8 MiB hot set at about
# 8 MB/s (most hot chunks dirty in every 100 ms round); fetch runs on h2. Every cold chunk (the
# other 24 MiB) must arrive before the destination has received 2 x the cold bytes: a measure in
# bytes, not seconds (the policy gets them all after 26-29 MiB). Under the old policy (a changed
# chunk fetched at fault priority as soon as a peer has it; 4e6306a~1) the link carried the hot
# set again and again: 3 and 4 of the 96 cold chunks had arrived after 48 MiB. Then
# the writer stops, the source freezes, and the destination must end with the source's bytes.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh" "$@"
LABSH=$(cd "$(dirname "$0")/../../tools" && pwd)/lab.sh
# shellcheck source=tools/lab.sh
. "$LABSH"
if ((EUID != 0)); then
	note "SKIP: needs root for network namespaces"
	exit 0
fi
PY=/usr/bin/python3
"$PY" -c 'import nbd' 2>/dev/null || fail "python3-libnbd missing (tools/install-deps.sh installs it)"
LAB=tstv$$
lab_trap "$LAB"

CHUNK=$((256 * 1024))
NCHUNKS=128
HOT_CHUNKS=${HOT_CHUNKS:-32}
MBIT=50
lab_up "$LAB" 2 --up-mbit "$MBIT" --down-mbit "$MBIT" || fail "lab_up failed"
NS1=$(lab_ns "$LAB" h1)
NS2=$(lab_ns "$LAB" h2)
H1=$(lab_addr "$LAB" h1)

head -c $((NCHUNKS * CHUNK)) /dev/urandom >"$T/src.img"
keygen "$T/src.key"
bg_start "$T/seed.log" ip netns exec "$NS1" "$P2PVBD" seed -k "$T/src.key" -l "$H1:7001" \
	-e "unix:$T/src.sock" --ctl "$T/seed.ctl" --chunk-size 256K --uri-file "$T/uri" "$T/src.img"
SEED_PID=$BG_PID
wait_for_file "$T/uri" 60 "$SEED_PID" || fail "the seed did not start: $(tail -3 "$T/seed.log")"
URI=$(head -n 1 "$T/uri")

# The VM: writes of 4-32 KiB at random places of the hot set at 8 MB/s until $T/stop exists
# (120 s at most); prints the number of writes when it stops.
cat >"$T/writer.py" <<'PYEOF'
import os, random, sys, time
import nbd
sock, hot, stop = sys.argv[1], int(sys.argv[2]), sys.argv[3]
h = nbd.NBD()
h.connect_unix(sock)
rng = random.Random(15)
n, t0, written = 0, time.monotonic(), 0
while not os.path.exists(stop) and time.monotonic() - t0 < 120:
    size = rng.randrange(4096, 32769, 4096)
    h.pwrite(os.urandom(size), rng.randrange(0, hot - size + 1, 4096))
    n += 1
    written += size
    ahead = written / 8e6 - (time.monotonic() - t0)
    if ahead > 0:
        time.sleep(ahead)
h.flush()
h.shutdown()
print(n)
PYEOF
bg_start "$T/writer.log" "$PY" "$T/writer.py" "$T/src.sock" $((HOT_CHUNKS * CHUNK)) "$T/stop"
WRITER_PID=$BG_PID
sleep 1 # the writer is under way before the destination starts
bg_start "$T/fetch.log" ip netns exec "$NS2" "$P2PVBD" fetch --no-progress --ctl "$T/fetch.ctl" \
	"$URI" "$T/out.img"
FETCH_PID=$BG_PID

# cold_present: chunks outside the hot set that the destination holds (state file records).
cold_present() {
	[[ -f $T/out.img.p2pvbd-state ]] || {
		echo 0
		return
	}
	state_records "$T/out.img" | awk -v hot="$HOT_CHUNKS" 'NR > hot && $1 == 1 { n++ } END { print n + 0 }'
}
# received: chunk bytes the destination has received from its peers so far.
received() {
	"$P2PVBD" status --json "$T/fetch.ctl" 2>/dev/null |
		"$PY" -c 'import json,sys; print(sum(p.get("bytes_fetched", 0) for p in json.load(sys.stdin).get("peers", [])))' 2>/dev/null ||
		echo 0
}
want=$((NCHUNKS - HOT_CHUNKS))
limit=$((2 * want * CHUNK))
got=0 recv=0
for ((i = 0; i < 1200; i++)); do
	got=$(cold_present)
	((got == want)) && break
	recv=$(received)
	((recv > limit)) && break
	kill -0 "$WRITER_PID" 2>/dev/null || break
	kill -0 "$FETCH_PID" 2>/dev/null || fail "fetch exited: $(tail -5 "$T/fetch.log")"
	sleep 0.1
done
((got == want)) ||
	fail "only $got of $want cold chunks arrived while the destination received $((recv / 1048576)) MiB (2 x the cold data is $((limit / 1048576)) MiB): the hot set starves the rest"
recv=$(received)
note "all $want cold chunks ($((want * CHUNK / 1048576)) MiB) arrived after $((recv / 1048576)) MiB received, while the VM wrote"
touch "$T/stop"
wait_exit "$WRITER_PID" 30 || fail "the writer did not stop"
((EXIT_STATUS == 0)) || fail "the writer failed: $(cat "$T/writer.log")"
note "the VM made $(tail -n 1 "$T/writer.log") writes into its hot set"
run_cmd freeze "$P2PVBD" ctl "$T/seed.ctl" freeze
((RC == 0)) || fail "freeze failed: $(cat "$T/freeze.out" "$T/freeze.err")"
wait_exit "$FETCH_PID" 120 || fail "the destination did not complete after the freeze: $(tail -5 "$T/fetch.log")"
((EXIT_STATUS == 0)) || fail "fetch exited $EXIT_STATUS: $(tail -5 "$T/fetch.log")"
cmp "$T/src.img" "$T/out.img" || fail "the destination differs from the source at the freeze"
note "PASS"
