#!/bin/bash
# SPDX-License-Identifier: ISC
# Checks: a destination serves the chunks it holds (fetch -l --mirror): a second destination
# given both the source and the first destination fetches a share of its chunks from the
# first (by its own counters), and both end with images equal to the source.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh" "$@"

make_image "$T/src.img" 32 999
keygen "$T/key"
# A slow source, so that the first destination is well ahead when the second starts.
start_seed -k "$T/key" --rate-limit 4M "$T/src.img"

bg_start "$T/a.log" "$P2PVBD" fetch --no-progress --mirror -l 127.0.0.1:0 "$URI" "$T/a.img"
A_PID=$BG_PID
for ((i = 0; i < 300; i++)); do
	grep -q '^listening on ' "$T/a.log" && break
	sleep 0.1
done
A_ADDR=$(sed -n 's/^listening on //p' "$T/a.log" | head -n 1)
[[ -n $A_ADDR ]] || fail "the first destination did not print 'listening on'"
# Let it get ahead (bounded: about a quarter of the data at 4 MiB/s).
sleep 2

expect_rc 0 b "$P2PVBD" fetch --no-progress --stats "$T/b.json" "$URI&peer=$A_ADDR" "$T/b.img"
cmp "$T/src.img" "$T/b.img" || fail "the second destination's image differs from the source"
from_peers=$(stat_get "$T/b.json" bytes_from_peers)
note "second destination: $(cat "$T/b.json")"
((from_peers > 0)) || fail "the second destination fetched nothing from the first"

# The first one finishes too, keeps serving (--mirror) until told to stop.
for ((i = 0; i < 600; i++)); do
	grep -q 'volume complete and verified' "$T/a.log" && break
	sleep 0.1
done
grep -q 'volume complete and verified' "$T/a.log" || fail "the first destination did not complete"
kill -0 "$A_PID" 2>/dev/null || fail "--mirror exited after completion"
stop_pid "$A_PID"
cmp "$T/src.img" "$T/a.img" || fail "the first destination's image differs from the source"
