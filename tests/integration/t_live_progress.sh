#!/bin/bash
# SPDX-License-Identifier: ISC
# Checks: a destination's progress (`p2pvbd status`: bytes_done) counts only chunks it holds at
# its newest generation. A chunk a delta changed is missing until fetched again, even though the
# destination's store still holds its old bytes (what the migration helpers read to decide that
# the disk is nearly in sync). The source's upload is capped at 16 KiB/s, so that the changed
# 64 KiB chunk takes seconds to arrive and the status is seen while it travels.
# fast
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh" "$@"
command -v qemu-io >/dev/null || fail "qemu-io missing (tools/install-deps.sh installs qemu-utils)"
CHUNK=$((64 * 1024))
SIZE=$((2 * CHUNK))

# Chunk 0 random, chunk 1 zero (held at once by the destination, without a transfer).
head -c "$CHUNK" /dev/urandom >"$T/src.img"
truncate -s "$SIZE" "$T/src.img"
keygen "$T/src.key"
start_seed -k "$T/src.key" -e "unix:$T/src.sock" --ctl "$T/seed.ctl" --chunk-size 64K \
	--rate-limit 16K "$T/src.img"
for ((i = 0; i < 100; i++)); do
	[[ -S $T/src.sock ]] && break
	sleep 0.1
done
bg_start "$T/fetch.log" "$P2PVBD" fetch --no-progress --ctl "$T/fetch.ctl" "$URI" "$T/out.img"
FETCH_PID=$BG_PID

status() { "$P2PVBD" status --json "$T/fetch.ctl" 2>/dev/null; }
field() { python3 -c 'import json, sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }

# Generation 0 complete: all of it done.
for ((i = 0; i < 300; i++)); do
	ST=$(status) && [[ $ST == *'"complete":true'* ]] && break
	sleep 0.1
done
[[ $ST == *'"complete":true'* ]] || fail "generation 0 did not complete: $ST"
(($(field "$ST" bytes_done) == SIZE)) || fail "complete, but bytes_done is not the image size: $ST"

# The VM at the source writes into chunk 1: generation 1 changes it.
run_cmd write qemu-io -f raw "nbd+unix:///?socket=$T/src.sock" -c "write -P 0x5a 4096 4096"
((RC == 0)) || fail "qemu-io write failed: $(cat "$T/write.out" "$T/write.err")"

# Until chunk 1 is back, the destination has one chunk of two.
seen=0
for ((i = 0; i < 300; i++)); do
	ST=$(status) || fail "status failed"
	gen=$(field "$ST" generation)
	if ((gen >= 1)); then
		[[ $ST == *'"complete":true'* ]] && break
		done_bytes=$(field "$ST" bytes_done)
		((done_bytes == CHUNK)) ||
			fail "generation $gen changed chunk 1, not yet fetched, but bytes_done is $done_bytes: $ST"
		seen=$((seen + 1))
	fi
	sleep 0.1
done
[[ $ST == *'"complete":true'* ]] || fail "generation 1 did not complete: $ST"
((seen > 0)) || fail "never saw the destination at generation 1 before chunk 1 arrived (16 KiB/s)"
(($(field "$ST" bytes_done) == SIZE)) || fail "complete again, but bytes_done: $ST"

run_cmd freeze "$P2PVBD" ctl "$T/seed.ctl" freeze
((RC == 0)) || fail "freeze failed: $(cat "$T/freeze.out" "$T/freeze.err")"
wait_exit "$FETCH_PID" 30 || fail "fetch did not end after the freeze"
((EXIT_STATUS == 0)) || fail "fetch exited $EXIT_STATUS: $(tail -n 5 "$T/fetch.log")"
cmp "$T/src.img" "$T/out.img" || fail "the destination differs from the source at the freeze"
stop_pid "$SEED_PID"
note "PASS"
