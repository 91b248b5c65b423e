#!/bin/bash
# Checks: misbehaving peers (tests/tools/badpeer) are dropped and never put a bad byte into the
# output: corrupt pieces, a forged manifest root, forged table pages, a stall mid-frame, an
# oversized frame, garbage instead of a handshake; and a seed refuses bad requests.
# fast
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh" "$@"

BADPEER=$(dirname "$P2PVBD")/badpeer
[[ -x $BADPEER ]] || fail "badpeer not built next to $P2PVBD"

make_image "$T/src.img" 24 777
keygen "$T/key"
start_seed -k "$T/key" "$T/src.img"
GOOD=${URI##*&peer=}

# start_bad MODE: start a misbehaving peer for the seed's volume; sets BAD (host:port).
start_bad() {
	rm -f "$T/bad.port"
	bg_start "$T/bad-$1.log" "$BADPEER" --mode "$1" --uri "$URI" -k "$T/key" \
		--port-file "$T/bad.port" "$T/src.img"
	wait_for_file "$T/bad.port" 30 "$BG_PID" || fail "badpeer $1 did not start"
	BAD=127.0.0.1:$(cat "$T/bad.port")
	BAD_PID=$BG_PID
}

# uri_with PEER...: the seed's URI with its peer list replaced.
uri_with() {
	local u=${URI%%&peer=*} p
	for p in "$@"; do
		u="$u&peer=$p"
	done
	echo "$u"
}

# fetch_ok NAME URI: fetch must succeed with an image equal to the source.
fetch_ok() {
	rm -f "$T/$1.img" "$T/$1.img".p2pvbd-*
	expect_rc 0 "$1" "$P2PVBD" fetch --no-progress --timeout 2 --stats "$T/$1.json" "$2" "$T/$1.img"
	cmp "$T/src.img" "$T/$1.img" || fail "$1: output differs from the source"
}

# A peer that corrupts pieces: the fetch discards them, drops it, finishes from the seed.
start_bad corrupt
fetch_ok corrupt "$(uri_with "$BAD" "$GOOD")"
bad=$(stat_get "$T/corrupt.json" bad_pieces)
((bad >= 1)) || fail "corrupt: bad_pieces is $bad; the corrupting peer was never caught"
err_mentions corrupt "does not match its signed hash"
stop_pid "$BAD_PID"

# A forged root alone: refused, nothing written.
start_bad badroot
expect_rc 1 badroot_only "$P2PVBD" fetch --no-progress --timeout 2 "$(uri_with "$BAD")" "$T/br.img"
err_mentions badroot_only "signature"
[[ ! -e $T/br.img ]] || fail "badroot_only: output created from a forged manifest"
# ... and next to the real seed: the seed's root is taken.
fetch_ok badroot "$(uri_with "$BAD" "$GOOD")"
stop_pid "$BAD_PID"

# Forged pages of the chunk table.
start_bad badpage
fetch_ok badpage "$(uri_with "$BAD" "$GOOD")"
err_mentions badpage "does not match the signed root"
stop_pid "$BAD_PID"

# A peer that stalls in the middle of a frame is dropped after --timeout.
start_bad stall
fetch_ok stall "$(uri_with "$BAD" "$GOOD")"
err_mentions stall "silent for 2 s"
# Alone, it makes the fetch give up with a clear message.
expect_rc 1 stall_only "$P2PVBD" fetch --no-progress --timeout 2 --give-up 5 "$(uri_with "$BAD")" "$T/st.img"
err_mentions stall_only "giving up|no usable peer"
stop_pid "$BAD_PID"

# An oversized frame header.
start_bad oversize
fetch_ok oversize "$(uri_with "$BAD" "$GOOD")"
err_mentions oversize "invalid frame length"
stop_pid "$BAD_PID"

# Garbage instead of a handshake.
start_bad garbage
fetch_ok garbage "$(uri_with "$BAD" "$GOOD")"
stop_pid "$BAD_PID"

# The seed refuses requests out of range, for zero chunks and for wrong generations.
expect_rc 0 client "$BADPEER" --mode client --uri "$URI" -k "$T/key" "$T/src.img"
kill -0 "$SEED_PID" 2>/dev/null || fail "the seed died"
