#!/bin/bash
# SPDX-License-Identifier: ISC
# Checks: 'ctl freeze' on a seed that is already final (no -e, or frozen before) answers at once
# with rc 0 and the generation; the seed keeps running (it used to free the reply twice and
# leave the client waiting 60 s).
# fast
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh" "$@"

make_image "$T/src.img" 4
keygen "$T/key"

# A plain seed: generation 0 is final from the start.
start_seed -k "$T/key" --ctl "$T/seed.ctl" "$T/src.img"
for i in 1 2; do
	expect_rc 0 "freeze$i" "$P2PVBD" ctl --timeout 10 "$T/seed.ctl" freeze
	grep -qx 'frozen at generation 0' "$T/freeze$i.out" ||
		fail "freeze $i answered: $(cat "$T/freeze$i.out")"
done
kill -0 "$SEED_PID" 2>/dev/null || fail "the seed died after a freeze"
expect_rc 0 status "$P2PVBD" status "$T/seed.ctl"
stop_pid "$SEED_PID"

# A live seed: the first freeze publishes the final generation, the second answers at once.
cp "$T/src.img" "$T/live.img"
start_seed -k "$T/key" -e "unix:$T/nbd.sock" --ctl "$T/live.ctl" "$T/live.img"
expect_rc 0 live1 "$P2PVBD" ctl --timeout 10 "$T/live.ctl" freeze
expect_rc 0 live2 "$P2PVBD" ctl --timeout 10 "$T/live.ctl" freeze
g1=$(sed -n 's/^frozen at generation \([0-9]*\)$/\1/p' "$T/live1.out")
g2=$(sed -n 's/^frozen at generation \([0-9]*\)$/\1/p' "$T/live2.out")
[[ -n $g1 && $g1 == "$g2" ]] || fail "freezes answered '$(cat "$T/live1.out")' and '$(cat "$T/live2.out")'"
kill -0 "$SEED_PID" 2>/dev/null || fail "the live seed died after a second freeze"
