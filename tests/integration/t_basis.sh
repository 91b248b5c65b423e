#!/bin/bash
# SPDX-License-Identifier: ISC
# Checks: fetch --basis takes every chunk whose hash matches from an older copy and fetches only
# the changed ones (3 changed chunks, a shorter basis, a missing basis); and a receipt reaches the
# source through the tracker: a seed restarted with --exit-after-receipts counts a receipt that was
# posted to the tracker while it was down, plus a direct one.
# fast
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh" "$@"
TRACKER=$(dirname "$P2PVBD")/p2pvbd-tracker
[[ -x $TRACKER ]] || fail "tracker binary not found: $TRACKER"
CHUNK=$((256 * 1024))

make_image "$T/old.img" 12 777
cp "$T/old.img" "$T/new.img"
for c in 2 17 40; do # a random MiB, a zero MiB turned random, and the tail chunk
	dd if=/dev/urandom of="$T/new.img" bs=$CHUNK seek=$c count=1 conv=notrunc status=none
done
keygen "$T/src.key"
start_seed -k "$T/src.key" "$T/new.img"

# basis_fetch NAME BASIS: fetch into $T/NAME with --basis BASIS; check the image.
basis_fetch() {
	run_cmd "$1" "$P2PVBD" fetch --no-progress --basis "$2" --stats "$T/$1.json" "$URI" "$T/$1"
	((RC == 0)) || fail "fetch --basis $2 failed (rc $RC): $(tail -n 5 "$T/$1.err")"
	cmp -s "$T/new.img" "$T/$1" || fail "$1: the image differs from the source"
	check_stats "$T/$1.json"
}
basis_fetch b1 "$T/old.img"
fetched=$(stat_get "$T/b1.json" chunks_fetched)
from_basis=$(stat_get "$T/b1.json" chunks_basis)
total=$(stat_get "$T/b1.json" chunks_total)
zero=$(stat_get "$T/b1.json" chunks_zero)
((fetched == 3)) || fail "fetched $fetched chunks, expected exactly the 3 that changed"
((from_basis + fetched + zero == total)) ||
	fail "basis $from_basis + fetched $fetched + zero $zero != $total chunks"
((from_basis > 20)) || fail "only $from_basis chunks came from the basis"

# A basis shorter than the image: its chunks still count, the rest is fetched.
head -c $((6 * 1048576)) "$T/old.img" >"$T/short.img"
basis_fetch b2 "$T/short.img"
(($(stat_get "$T/b2.json" chunks_basis) > 0)) || fail "nothing taken from a shorter basis"
(($(stat_get "$T/b2.json" chunks_fetched) > fetched)) || fail "a shorter basis should leave more to fetch"

# A basis that does not exist: a warning, and everything is fetched.
basis_fetch b3 "$T/no-such-file"
grep -q 'cannot open the basis' "$T/b3.err" || fail "no warning about the missing basis"
(($(stat_get "$T/b3.json" chunks_basis) == 0)) || fail "chunks from a basis that does not exist"
stop_pid "$SEED_PID"

# ---- receipts through the tracker ------------------------------------------
bg_start "$T/tracker.log" "$TRACKER" -l 127.0.0.1:0 --interval 2
TPID=$BG_PID
wait_for_file "$T/tracker.log" 10 "$TPID" || fail "the tracker did not start"
for ((i = 0; i < 50; i++)); do
	TPORT=$(sed -n 's/^listening on 127.0.0.1:\([0-9]*\)$/\1/p' "$T/tracker.log")
	[[ -n $TPORT ]] && break
	sleep 0.1
done
[[ -n $TPORT ]] || fail "the tracker did not say its port: $(cat "$T/tracker.log")"
VOL=0123456789abcdef0123456789abcdef
SECRET=$(printf '%064d' 7)
start_seed -k "$T/src.key" -t "http://127.0.0.1:$TPORT/announce" --volume-id $VOL --secret "$SECRET" "$T/new.img"
URI1=$URI
run_cmd r1 "$P2PVBD" fetch --no-progress "$URI1" "$T/r1"
((RC == 0)) || fail "fetch r1 failed: $(tail -n 5 "$T/r1.err")"
grep -q 'tracker .*accepted our receipt' "$T/r1.err" || fail "r1 did not post its receipt to the tracker"
stop_pid "$SEED_PID"

# The same volume again (same key, id and secret), now waiting for 2 receipts: r1's comes
# through the tracker (r1 never talks to this seed), r2's directly.
start_seed -k "$T/src.key" -t "http://127.0.0.1:$TPORT/announce" --volume-id $VOL --secret "$SECRET" \
	--exit-after-receipts 2 "$T/new.img"
for ((i = 0; i < 100; i++)); do
	grep -q 'receipt from .*via a tracker' "$T/seed.log" && break
	sleep 0.1
done
grep -q 'receipt from .*via a tracker' "$T/seed.log" || fail "the seed did not get r1's receipt from the tracker"
kill -0 "$SEED_PID" 2>/dev/null || fail "the seed exited after one receipt"
run_cmd r2 "$P2PVBD" fetch --no-progress "$URI" "$T/r2"
((RC == 0)) || fail "fetch r2 failed: $(tail -n 5 "$T/r2.err")"
wait_exit "$SEED_PID" 30 || fail "the seed did not exit after 2 receipts"
((EXIT_STATUS == 0)) || fail "the seed exited with $EXIT_STATUS"
grep -q '2 receipts received' "$T/seed.log" || fail "the seed did not count 2 receipts"
note "PASS"
