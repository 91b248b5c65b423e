#!/bin/bash
# SPDX-License-Identifier: ISC
# Checks: seed --exit-after-receipts 2 exits 0 by itself once two fetches (each with its own key) have sent completion receipts.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh" "$@"

make_image "$T/src.img" 8 777
keygen "$T/key"
start_seed -k "$T/key" -v --exit-after-receipts 2 "$T/src.img"

for n in 1 2; do
	keygen "$T/peer$n"
	expect_rc 0 "fetch$n" "$P2PVBD" fetch -q -k "$T/peer$n" "$URI" "$T/out$n.img"
	cmp "$T/src.img" "$T/out$n.img" || fail "fetch $n differs from the source"
	if ((n == 1)); then
		sleep 0.5
		kill -0 "$SEED_PID" 2>/dev/null || fail "seed exited after one receipt"
	fi
done

wait_exit "$SEED_PID" 60 || fail "seed still running 60 s after the second receipt"
((EXIT_STATUS == 0)) || fail "seed exited $EXIT_STATUS after the receipts"
n=$(grep -ci 'receipt' "$T/seed.log" || true)
if ((n < 2)) && ! grep -Eqi '\b2 receipts?' "$T/seed.log"; then
	fail "seed log does not mention two receipts"
fi
