#!/bin/bash
# SPDX-License-Identifier: ISC
# Checks: a plain seed (no -e) whose image changes behind its back (the lock is advisory: dd
# ignores it) stops, exit 1, saying "IMAGE changed after it was hashed (chunk N); a changing image
# needs -e", as soon as a destination reports that chunk corrupt; the destination never marks it
# present. A peer that reports a chunk corrupt although it is not (badpeer --mode liar: a data
# chunk that still matches, a zero chunk, a chunk beyond the volume) does not stop the seed: it
# says so and goes on serving, and a fetch then completes byte for byte.
# fast
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh" "$@"

need_badpeer

CHUNK=262144 # the default chunk size
make_image "$T/disk.img" 4
keygen "$T/key"

# ---- a peer lies: the seed checks, finds its chunk intact and goes on ---------------------------
note "a lying peer"
start_seed -k "$T/key" "$T/disk.img"
expect_rc 0 liar "$BADPEER" --mode liar --uri "$URI" -k "$T/key" "$T/disk.img"
grep -c 'reporting chunk' "$T/liar.err" | grep -qx 3 || fail "badpeer told $(cat "$T/liar.err")"
for ((i = 0; i < 100; i++)); do
	grep -q 'chunk 0 still matches its hash' "$T/seed.log" && break
	sleep 0.1
done
grep -q 'chunk 0 still matches its hash' "$T/seed.log" ||
	fail "the seed did not check chunk 0 again (or did not say it still matches)"
n=$(grep -c 'which we never serve: ignored' "$T/seed.log" || true)
((n == 2)) || fail "the seed did not ignore the reports of a zero chunk and a chunk beyond ($n)"
kill -0 "$SEED_PID" 2>/dev/null || fail "a lying peer stopped the seed"
expect_rc 0 fetch-after-liar "$P2PVBD" fetch --no-progress "$URI" "$T/out.img"
cmp "$T/disk.img" "$T/out.img" || fail "the fetch after the lies differs from the image"
stop_pid "$SEED_PID"

# ---- the image changes behind the seed's back ----------------------------------------------------
note "the image changes after it was hashed"
rm -f "$T/out.img" "$T/out.img".p2pvbd-*
start_seed -k "$T/key" "$T/disk.img"
# One byte of chunk 2 (random data): a different byte, whatever it was.
off=$((2 * CHUNK + 1000))
old=$(od -An -tx1 -j "$off" -N1 "$T/disk.img" | tr -d ' ')
new=x
[[ $old == 78 ]] && new=y
printf '%s' "$new" | dd of="$T/disk.img" bs=1 seek="$off" conv=notrunc status=none
[[ $(od -An -tx1 -j "$off" -N1 "$T/disk.img" | tr -d ' ') != "$old" ]] || fail "dd changed nothing"

bg_start "$T/fetch.log" "$P2PVBD" fetch --no-progress --give-up 60 "$URI" "$T/out.img"
FETCH_PID=$BG_PID
wait_exit "$SEED_PID" 60 || fail "the seed went on serving a changed image for 60 s"
((EXIT_STATUS == 1)) || fail "the seed exited $EXIT_STATUS, expected 1"
grep -Fq "$T/disk.img changed after it was hashed (chunk 2); a changing image needs -e" \
	"$T/seed.log" || fail "the seed did not say its image changed (chunk 2)"
grep -q 'chunk 2 failed verification' "$T/fetch.log" ||
	fail "the destination did not report chunk 2 as failing verification"
stop_pid "$FETCH_PID"
[[ $(chunk_state 2) != 1 ]] || fail "the destination marked the changed chunk 2 present"
note "ok"
