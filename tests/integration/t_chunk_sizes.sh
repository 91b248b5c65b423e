#!/bin/bash
# SPDX-License-Identifier: ISC
# Checks: fetch is byte-exact and its chunk counts are right with the smallest (64K) and largest (4M) --chunk-size.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh" "$@"

MIB=20
make_image "$T/src.img" "$MIB"
keygen "$T/key"
size=$((MIB * 1048576))

for cs in 64K 4M; do
	chunk=$(parse_size "$cs")
	start_seed -k "$T/key" --chunk-size "$cs" "$T/src.img"
	out=$T/out-$cs.img
	expect_rc 0 "fetch-$cs" "$P2PVBD" fetch -q --stats "$T/stats-$cs.json" "$URI" "$out"
	cmp "$T/src.img" "$out" || fail "chunk size $cs: fetched image differs from the source"
	check_stats "$T/stats-$cs.json"
	total=$(stat_get "$T/stats-$cs.json" chunks_total)
	zero=$(stat_get "$T/stats-$cs.json" chunks_zero)
	fetched=$(stat_get "$T/stats-$cs.json" bytes_fetched)
	nonzero=$(nonzero_bytes "$MIB" 0 "$chunk")
	note "chunk size $cs: $(cat "$T/stats-$cs.json")"
	((total == (size + chunk - 1) / chunk)) ||
		fail "chunk size $cs: chunks_total $total, expected $(((size + chunk - 1) / chunk))"
	((fetched <= nonzero + chunk)) ||
		fail "chunk size $cs: bytes_fetched $fetched > non-zero bytes $nonzero + one chunk"
	if ((nonzero < size)); then
		((zero > 0)) || fail "chunk size $cs: chunks_zero is 0 but the image has zero chunks"
	else
		# Every 4 MiB chunk holds some random MiB, so none may be called zero.
		((zero == 0)) || fail "chunk size $cs: chunks_zero $zero but no chunk is all zero"
	fi
	stop_pid "$SEED_PID"
done
