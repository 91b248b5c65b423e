#!/bin/bash
# SPDX-License-Identifier: ISC
# Checks: a seed -e killed -9 and restarted with its volume id and secret (the README's way to
# resume) never makes a destination keep or serve stale data (DESIGN rule 7, PROTOCOL.md §9.4).
#  1. A destination that holds the whole volume at generation 0 is stopped; the VM writes a
#     chunk through the seed (generation 1), the seed is killed -9 and restarted, and the
#     destination restarted: the restarted seed goes on above generation 1 (from its record
#     IMAGE.p2pvbd-seed) and the destination fetches the changed chunk again, because what it
#     holds no longer has the entry's hash (the old code resumed it: same generation number).
#  2. A running destination with the VM's export across a seed kill -9 and restart: it takes the
#     restarted seed's root (newer), the VM writes more, the freeze ends the migration and the
#     destination equals the source (the old code ignored the restarted seed's generation 0 and
#     never saw the final generation).
#  3. A seed whose record is gone starts at generation 0 again: a destination that verified a
#     later generation refuses its root with a clear log, and does not complete.
# fast
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh" "$@"
command -v qemu-io >/dev/null || fail "qemu-io missing (tools/install-deps.sh installs qemu-utils)"
CHUNK=$((64 * 1024))
VOLID=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
SECRET=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
NBD="nbd+unix:///?socket=$T/src.sock"

make_image "$T/src.img" 4
keygen "$T/src.key"

# seed_up [PORT]: start seed -e on the volume (on PORT, or a free one the first time).
seed_up() {
	rm -f "$T/src.sock"
	start_seed -k "$T/src.key" -e "unix:$T/src.sock" --ctl "$T/seed.ctl" --chunk-size 64K \
		--volume-id "$VOLID" --secret "$SECRET" ${1:+-l 127.0.0.1:$1} "$T/src.img"
	wait_for_sock "$T/src.sock" "$SEED_PID" || fail "seed -e did not export"
}

# wait_for_sock PATH PID: wait (30 s at most) until PATH is a socket, while PID runs.
wait_for_sock() {
	local i
	for ((i = 0; i < 300; i++)); do
		[[ -S $1 ]] && return 0
		kill -0 "$2" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}

# write_src OFF LEN BYTE: the VM's write at the source (acknowledged when it returns).
write_src() {
	run_cmd write qemu-io -f raw "$NBD" -c "write -P $3 $1 $2"
	((RC == 0)) || fail "write at $1 failed: $(cat "$T/write.out" "$T/write.err")"
}

# dest_gen CTL: the destination's generation (status --json).
dest_gen() {
	"$P2PVBD" status --json "$1" 2>/dev/null |
		python3 -c 'import json, sys; print(json.load(sys.stdin)["generation"])' 2>/dev/null ||
		echo -1
}

# --- 1. a restarted destination after a seed crash -----------------------------------------
seed_up
PORT=${URI##*peer=127.0.0.1:}
PORT=${PORT%%&*}
[[ $PORT =~ ^[0-9]+$ ]] || fail "no port in $URI"
grep -q 'going on at generation' "$T/seed.log" &&
	fail "a volume never seeded here went on at a later generation: $(cat "$T/seed.log")"
[[ -f $T/src.img.p2pvbd-seed ]] || fail "seed -e left no generation record beside the image"
# Destination 1 completes the final generation 1 (a freeze without changes) and exits; the
# migration is rolled back (thaw) and the VM writes chunk 5.
bg_start "$T/fetch1.log" "$P2PVBD" fetch --no-progress "$URI" "$T/out1.img"
F1=$BG_PID
run_cmd freeze0 "$P2PVBD" ctl "$T/seed.ctl" freeze
((RC == 0)) || fail "freeze failed: $(cat "$T/freeze0.out" "$T/freeze0.err")"
wait_exit "$F1" 60 || fail "destination 1 did not complete: $(tail -5 "$T/fetch1.log")"
((EXIT_STATUS == 0)) || fail "destination 1 exited $EXIT_STATUS: $(tail -5 "$T/fetch1.log")"
run_cmd thaw0 "$P2PVBD" ctl "$T/seed.ctl" thaw
((RC == 0)) || fail "thaw failed: $(cat "$T/thaw0.out" "$T/thaw0.err")"
write_src $((5 * CHUNK + 100)) 3000 0x5c
g=0
for ((i = 0; i < 100 && g < 3; i++)); do
	sleep 0.1
	g=$(dest_gen "$T/seed.ctl")
done
((g >= 3)) || fail "the seed did not publish the write (generation $g)"
{ kill -9 "$SEED_PID" && wait "$SEED_PID"; } 2>/dev/null || true
seed_up "$PORT"
grep -q 'going on at generation' "$T/seed.log" ||
	fail "the restarted seed did not go on above its published generations: $(tail -5 "$T/seed.log")"
# Not final yet (seed -e): it completes at the freeze.
bg_start "$T/fetch1b.log" "$P2PVBD" fetch --no-progress "$URI" "$T/out1.img"
F1=$BG_PID
run_cmd freeze1 "$P2PVBD" ctl "$T/seed.ctl" freeze
((RC == 0)) || fail "freeze failed: $(cat "$T/freeze1.out" "$T/freeze1.err")"
wait_exit "$F1" 60 || fail "restarted destination 1 did not complete: $(tail -5 "$T/fetch1b.log")"
((EXIT_STATUS == 0)) || fail "restarted destination 1 exited $EXIT_STATUS: $(tail -5 "$T/fetch1b.log")"
g=$(sed -n 's/.*volume complete and verified at generation \([0-9]*\).*/\1/p' "$T/fetch1b.log" | tail -n 1)
((${g:-0} > 1)) || fail "destination 1 completed at generation ${g:-?} after the seed's restart (want > 1)"
cmp "$T/src.img" "$T/out1.img" ||
	fail "destination 1 kept a chunk the source changed before its crash (stale data)"
run_cmd thaw "$P2PVBD" ctl "$T/seed.ctl" thaw
((RC == 0)) || fail "thaw failed: $(cat "$T/thaw.out" "$T/thaw.err")"

# --- 2. a running destination across a seed crash, then the freeze -------------------------
rm -f "$T/dst.sock"
bg_start "$T/fetch2.log" "$P2PVBD" fetch --no-progress --ctl "$T/f2.ctl" -e "unix:$T/dst.sock" \
	"$URI" "$T/out2.img"
F2=$BG_PID
wait_for_sock "$T/dst.sock" "$F2" || fail "destination 2 did not export"
for k in 1 2 3 4 5 6; do
	write_src $(((k * 7 % 60) * CHUNK + k * 333)) 5000 0x$((k + 20))
	sleep 0.15
done
g0=-1
for ((i = 0; i < 100; i++)); do
	g0=$(dest_gen "$T/f2.ctl")
	((g0 > 1)) && break
	sleep 0.1
done
{ kill -9 "$SEED_PID" && wait "$SEED_PID"; } 2>/dev/null || true
seed_up "$PORT"
for k in 7 8 9; do write_src $(((k * 11 % 60) * CHUNK + 77)) 4000 0x$((k + 40)); done
run_cmd freeze "$P2PVBD" ctl "$T/seed.ctl" freeze
((RC == 0)) || fail "freeze failed: $(cat "$T/freeze.out" "$T/freeze.err")"
wait_for_line "$T/fetch2.log" 'volume complete and verified' 60 "$F2" \
	"destination 2 exited: $(tail -5 "$T/fetch2.log")" \
	"destination 2 did not complete after the restarted seed froze (it was at generation $g0)"
# What the VM at the destination reads is the source at the freeze.
run_cmd readall qemu-img convert -f raw "nbd+unix:///?socket=$T/dst.sock" -O raw "$T/read2.img"
((RC == 0)) || fail "reading destination 2's export failed: $(cat "$T/readall.err")"
cmp "$T/src.img" "$T/read2.img" || fail "destination 2's VM reads stale data after the seed's restart"
cmp "$T/src.img" "$T/out2.img" || fail "destination 2's image differs from the source"
stop_pid "$F2"

# --- 3. a seed without its record: its generation 0 is refused ----------------------------
stop_pid "$SEED_PID"
rm -f "$T/src.img.p2pvbd-seed"
seed_up "$PORT"
grep -q 'going on at generation' "$T/seed.log" &&
	fail "a seed without its record claimed to go on: $(tail -3 "$T/seed.log")"
bg_start "$T/fetch1c.log" "$P2PVBD" fetch --no-progress "$URI" "$T/out1.img"
F1=$BG_PID
wait_for_line "$T/fetch1c.log" 'older than generation .* verified here' 30 "$F1" \
	"destination 1 exited: $(tail -5 "$T/fetch1c.log")" "destination 1 did not refuse the older root"
grep -q 'volume complete' "$T/fetch1c.log" && fail "destination 1 went back to an older root"
stop_pid "$F1"
note "PASS"
