#!/bin/bash
# SPDX-License-Identifier: ISC
# Checks: a fetch killed with SIGKILL mid-transfer resumes from its state file without refetching verified chunks.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh" "$@"

MIB=64
CHUNK=$((256 * 1024))
make_image "$T/src.img" "$MIB"
keygen "$T/key"
nonzero=$(nonzero_bytes "$MIB" 0 "$CHUNK")
# 8 MiB/s: the ~43 MiB of data take ~5 s, long enough to interrupt.
start_seed -k "$T/key" --rate-limit 8M "$T/src.img"

out=$T/out.img
bg_start "$T/fetch1.log" "$P2PVBD" fetch --stats "$T/stats.json" "$URI" "$out"
fpid=$BG_PID

# Wait for at least 3 s and some chunks marked present (60 s at most).
for ((i = 0; i < 600; i++)); do
	kill -0 "$fpid" 2>/dev/null || break
	if ((i >= 30)) && (($(state_present "$out") >= 4)); then
		break
	fi
	sleep 0.1
done
kill -0 "$fpid" 2>/dev/null ||
	fail "first fetch ended before it could be interrupted (rate limit not applied?)"
present=$(state_present "$out")
((present > 0)) || fail "no chunk marked present in $out.p2pvbd-state after $((i / 10)) s"
kill -KILL "$fpid"
wait "$fpid" 2>/dev/null || true
note "killed the first fetch with $present chunks present"
rm -f "$T/stats.json"

expect_rc 0 fetch2 "$P2PVBD" fetch --stats "$T/stats.json" "$URI" "$out"
cmp "$T/src.img" "$out" || fail "resumed image differs from the source"
check_stats "$T/stats.json"
note "stats: $(cat "$T/stats.json")"
resumed=$(stat_get "$T/stats.json" chunks_resumed)
fetched=$(stat_get "$T/stats.json" bytes_fetched)
((resumed > 0)) || fail "chunks_resumed is $resumed after an interrupted fetch"
((fetched < nonzero)) || fail "bytes_fetched $fetched: the resumed fetch refetched everything ($nonzero)"
