#!/bin/bash
# SPDX-License-Identifier: ISC
# Checks: misbehaving peers (tests/tools/badpeer) never put a bad byte into the output and are
# dropped: corrupt pieces, a forged manifest root, forged table pages, a stall mid-frame, an
# oversized frame, garbage instead of a handshake. Each alone makes the fetch fail with a message
# saying why and nothing marked present; next to the real seed, the fetch completes from the seed.
# Finally, a seed refuses requests out of range, for zero chunks and for wrong generations.
# fast
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh" "$@"

need_badpeer

make_image "$T/src.img" 24 777
keygen "$T/key"
start_seed -k "$T/key" "$T/src.img"
GOOD=${URI##*&peer=}

# alone MODE MESSAGE: the bad peer alone makes the fetch fail, saying MESSAGE, with no chunk
# marked present (zero chunks are no data and may be).
alone() {
	local out=$T/$1-alone.img
	expect_rc 1 "$1_alone" "$P2PVBD" fetch --no-progress --timeout 2 --give-up 6 \
		"$(uri_with "$BAD")" "$out"
	err_mentions "$1_alone" "$2"
	(($(state_present "$out") == 0)) || fail "$1: chunks marked present from a bad peer"
}

# mixed MODE: the bad peer first, the real seed second: the fetch completes, equal to the source.
mixed() {
	local out=$T/$1.img
	expect_rc 0 "$1" "$P2PVBD" fetch --no-progress --timeout 2 --stats "$T/$1.json" \
		"$(uri_with "$BAD" "$GOOD")" "$out"
	cmp "$T/src.img" "$out" || fail "$1: output differs from the source"
}

start_bad corrupt
alone corrupt "does not match its signed hash"
mixed corrupt
stop_pid "$BAD_PID"

start_bad badroot
alone badroot "signature"
[[ ! -e $T/badroot-alone.img ]] || fail "badroot: output created from a forged manifest"
mixed badroot
stop_pid "$BAD_PID"

start_bad badpage
alone badpage "does not match the signed root"
mixed badpage
stop_pid "$BAD_PID"

start_bad stall
alone stall "silent for 2 s"
mixed stall
stop_pid "$BAD_PID"

start_bad oversize
alone oversize "invalid frame length"
mixed oversize
stop_pid "$BAD_PID"

start_bad garbage
alone garbage "magic"
mixed garbage
stop_pid "$BAD_PID"

expect_rc 0 client "$BADPEER" --mode client --uri "$URI" -k "$T/key" "$T/src.img"
kill -0 "$SEED_PID" 2>/dev/null || fail "the seed died"
