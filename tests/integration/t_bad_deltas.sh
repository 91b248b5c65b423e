#!/bin/bash
# SPDX-License-Identifier: ISC
# Checks: generation deltas (PROTOCOL.md §9) that must not move a destination don't, and a peer
# serving an old generation never puts a byte into the output (tests/tools/badpeer):
# - a delta signed with another key, and a signed delta with one byte flipped, are refused
#   ("does not verify", deltas_refused), their sender dropped with E_BAD_DATA; alone it makes
#   the fetch fail with nothing present; next to the real seed, the fetch completes from it;
# - a live source that replays every old delta after each new one: the replays are ignored,
#   each delta applied once, the fetch ends at the final generation with exactly its bytes;
# - a live source whose first delta never arrives (a gap): the destination asks it for its root
#   again, catches up from it and ends at the final generation with exactly its bytes;
# - a peer that answers requests for generation G with pieces of generation G - 1 (the chunk's
#   old bytes): the pieces are dropped; alone the fetch fails with nothing present, next to a
#   correct live source it completes with the final generation's bytes.
# fast
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh" "$@"

need_badpeer

make_image "$T/src.img" 24 777
keygen "$T/key"
start_seed -k "$T/key" "$T/src.img"
GOOD=${URI##*&peer=}

# expect_stat NAME KEY OP VALUE: the fetch NAME's --stats value KEY compares as OP (== > >=).
expect_stat() {
	local v ok
	v=$(stat_get "$T/$1.json" "$2") || fail "$1: no $2 in its stats: $(cat "$T/$1.json")"
	case $3 in
	==) ok=$((v == $4)) ;;
	">") ok=$((v > $4)) ;;
	">=") ok=$((v >= $4)) ;;
	*) fail "expect_stat: bad operator $3" ;;
	esac
	((ok)) || fail "$1: $2 is $v, expected $3 $4"
}

# bad_log_mentions MODE REGEX: the badpeer's log matches REGEX.
bad_log_mentions() {
	grep -Eq -- "$2" "$T/bad-$1.log" ||
		fail "badpeer $1: log does not mention /$2/: $(tail -n 20 "$T/bad-$1.log")"
}

# present_ok OUT EXPECTED: every chunk marked present in OUT's state file holds EXPECTED's bytes
# (256 KiB chunks); prints how many are present.
present_ok() {
	python3 - "$1" "$2" <<'EOF'
import sys
out, want, chunk = sys.argv[1], sys.argv[2], 256 * 1024
with open(out + ".p2pvbd-state", "rb") as f:
    st = f.read()[64:]
st = st[:len(st) // 24 * 8]  # the records, not the content ids after them
n = 0
with open(out, "rb") as a, open(want, "rb") as b:
    for c in range(len(st) // 8):
        if st[8 * c] != 1:
            continue
        n += 1
        a.seek(c * chunk)
        b.seek(c * chunk)
        if a.read(chunk) != b.read(chunk):
            sys.exit("chunk %d is marked present but holds other bytes" % c)
print(n)
EOF
}

# changed_data_chunks MODE: the chunks the badpeer's generations left holding data.
changed_data_chunks() {
	awk '$2 == "generation" { last[$5] = $6 } END { for (c in last) if (last[c] == "data") print c }' \
		"$T/bad-$1.log"
}

# A forged delta: alone, the fetch fails and writes nothing; with the seed, it completes.
for mode in forgedelta flipdelta; do
	start_bad "$mode"
	expect_rc 1 "$mode-alone" "$P2PVBD" fetch --no-progress --timeout 2 --give-up 6 \
		--stats "$T/$mode-alone.json" "$(uri_with "$BAD")" "$T/$mode-alone.img"
	err_mentions "$mode-alone" "delta 0 -> 1 that does not verify"
	(($(state_present "$T/$mode-alone.img") == 0)) || fail "$mode: chunks marked present"
	expect_stat "$mode-alone" deltas_refused == 1
	expect_stat "$mode-alone" deltas == 0
	bad_log_mentions "$mode" "E_BAD_DATA"

	expect_rc 0 "$mode" "$P2PVBD" fetch --no-progress --timeout 2 --stats "$T/$mode.json" \
		"$(uri_with "$BAD" "$GOOD")" "$T/$mode.img"
	cmp "$T/src.img" "$T/$mode.img" || fail "$mode: output differs from the source"
	err_mentions "$mode" "does not verify"
	expect_stat "$mode" deltas_refused == 1
	expect_stat "$mode" deltas == 0
	stop_pid "$BAD_PID"
done

# A live source that replays old deltas: each applied once, the output is the final generation.
cp "$T/src.img" "$T/replay-src.img"
start_bad replaydelta "$T/replay-src.img"
expect_rc 0 replay "$P2PVBD" fetch -v --no-progress --give-up 10 --stats "$T/replay.json" \
	"$(uri_with "$BAD")" "$T/replay.img"
grep -q '^badpeer: generation 3: ' "$T/bad-replaydelta.log" ||
	fail "replaydelta did not reach generation 3"
cmp "$T/replay-src.img" "$T/replay.img" || fail "replay: output differs from the final generation"
cmp -s "$T/src.img" "$T/replay.img" && fail "replay: the output is generation 0"
err_mentions replay "delta 0 -> 1 is not new here"
err_mentions replay "delta 1 -> 2 is not new here"
expect_stat replay deltas == 3
expect_stat replay deltas_refused == 0
expect_stat replay chunks_changed ">=" 5
bad_log_mentions replaydelta "receipt for generation 3: ok"
stop_pid "$BAD_PID"

# A gap: the destination catches up from the sender's root.
cp "$T/src.img" "$T/gap-src.img"
start_bad gapdelta "$T/gap-src.img"
expect_rc 0 gap "$P2PVBD" fetch --no-progress --give-up 10 --stats "$T/gap.json" \
	"$(uri_with "$BAD")" "$T/gap.img"
cmp "$T/gap-src.img" "$T/gap.img" || fail "gap: output differs from the final generation"
err_mentions gap "delta 1 -> 2, we hold 0: asking for its root"
err_mentions gap "holds generation [23], we hold 0: catching up"
expect_stat gap deltas_refused == 0
bad_log_mentions gapdelta "asked for the root again"
bad_log_mentions gapdelta "receipt for generation 3: ok"
stop_pid "$BAD_PID"

# Pieces of the previous generation: dropped, never written.
cp "$T/src.img" "$T/oldgen-src.img"
start_bad oldgen "$T/oldgen-src.img"
OLDGEN=$BAD
OLDGEN_PID=$BAD_PID
expect_rc 1 oldgen-alone "$P2PVBD" fetch -v --no-progress --timeout 2 --give-up 3 \
	--stats "$T/oldgen-alone.json" "$(uri_with "$OLDGEN")" "$T/oldgen-alone.img"
err_mentions oldgen-alone "dropping a piece of chunk [0-9]+ that is no longer wanted"
n=$(present_ok "$T/oldgen-alone.img" "$T/oldgen-src.img") || fail "oldgen: $n"
((n > 0)) || fail "oldgen: not even the unchanged chunks were fetched"
for c in $(changed_data_chunks oldgen); do
	st=$(od -An -v -tu1 -j$((64 + c * 8)) -N1 "$T/oldgen-alone.img.p2pvbd-state" | tr -d ' ')
	((st != 1)) || fail "oldgen: chunk $c, changed, is marked present"
done
expect_stat oldgen-alone bad_pieces == 0
expect_stat oldgen-alone bytes_discarded ">" 0
expect_stat oldgen-alone deltas == 3

cp "$T/src.img" "$T/live-src.img"
start_bad live "$T/live-src.img"
cmp "$T/oldgen-src.img" "$T/live-src.img" || fail "live and oldgen disagree on the final generation"
expect_rc 0 oldgen "$P2PVBD" fetch --no-progress --timeout 2 --give-up 10 --stats "$T/oldgen.json" \
	"$(uri_with "$OLDGEN" "$BAD")" "$T/oldgen.img"
cmp "$T/live-src.img" "$T/oldgen.img" || fail "oldgen: output differs from the final generation"
expect_stat oldgen bad_pieces == 0
expect_stat oldgen bytes_discarded ">" 0
bad_log_mentions live "receipt for generation 3: ok"
stop_pid "$BAD_PID"
stop_pid "$OLDGEN_PID"
kill -0 "$SEED_PID" 2>/dev/null || fail "the seed died"
