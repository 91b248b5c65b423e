#!/bin/bash
# SPDX-License-Identifier: ISC
# Checks: seed --exit-after-receipts 2 exits 0 by itself once two fetches (each with its own key) have sent completion receipts.
# With --receipt-from (a hex key and a .pub file), a receipt from another destination is logged and
# refused (its fetch is told why) and not counted; a count that the named ones can never reach is a
# usage error, a --receipt-from that is neither a key nor a key file an error.
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

# --receipt-from names the destinations that count: a receipt from another one is logged, refused
# (E_BAD_RECEIPT, which its fetch logs) and not counted; the named one's ends the seed.
expect_rc 2 usage "$P2PVBD" seed -k "$T/key" --exit-after-receipts 2 --receipt-from "$T/peer1.pub" "$T/src.img"
err_mentions usage 'can never be reached'
expect_rc 1 badkey "$P2PVBD" seed -k "$T/key" --receipt-from 0123 -l 127.0.0.1:0 "$T/src.img"
err_mentions badkey 'receipt-from 0123'
PK2=$(sed -n 's/^p2pvbd-public-key-v1 //p' "$T/peer2.pub")
start_seed -k "$T/key" -v --exit-after-receipts 2 --receipt-from "$PK2" --receipt-from "$T/peer1.pub" "$T/src.img"
SEED1=$SEED_PID
keygen "$T/peer3"
expect_rc 0 fetch3 "$P2PVBD" fetch -v --no-progress -k "$T/peer3" "$URI" "$T/out3.img"
cmp "$T/src.img" "$T/out3.img" || fail "fetch 3 differs from the source"
grep -q 'receipt refused.*--receipt-from' "$T/seed.log" ||
	fail "the seed did not log that it does not count an unnamed destination's receipt"
grep -q 'the source refused our receipt: .*--receipt-from' "$T/fetch3.err" ||
	fail "the unnamed destination was not told why its receipt does not count"
kill -0 "$SEED1" 2>/dev/null || fail "the seed exited after a receipt from an unnamed destination"
for n in 1 2; do
	rm -f "$T/out$n.img" "$T/out$n.img.p2pvbd-state"
	expect_rc 0 "named$n" "$P2PVBD" fetch -q -k "$T/peer$n" "$URI" "$T/out$n.img"
done
wait_exit "$SEED1" 60 || fail "seed (--receipt-from) still running 60 s after both named receipts"
((EXIT_STATUS == 0)) || fail "seed (--receipt-from) exited $EXIT_STATUS"
grep -q '2 receipts received' "$T/seed.log" || fail "the seed did not count the two named destinations"
