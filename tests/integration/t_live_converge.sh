#!/bin/bash
# SPDX-License-Identifier: ISC
# Checks: the two ways to make a live migration converge when the VM writes faster than the swarm
# carries. --write-through: a VM write at the source is acknowledged only once a destination
# holds it: with no destination it waits (and completes as soon as one has fetched it), and when
# the write returns the destination's image already holds the bytes. --max-dirty-rate: the VM's
# writes are held to the cap (8 MiB at 2 MiB/s take at least (8 MiB - burst) / rate; a lower bound
# only: a slow machine makes it longer, never shorter). --freeze-on-disconnect freezes when the
# VM's last NBD client leaves.
# fast
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh" "$@"
command -v qemu-io >/dev/null || fail "qemu-io missing (tools/install-deps.sh installs qemu-utils)"
CHUNK=$((64 * 1024))

make_image "$T/src.img" 8
keygen "$T/src.key"
start_seed -k "$T/src.key" -e "unix:$T/src.sock" --write-through --ctl "$T/seed.ctl" \
	--chunk-size 64K "$T/src.img"
for ((i = 0; i < 100; i++)); do
	[[ -S $T/src.sock ]] && break
	sleep 0.1
done
NBD="nbd+unix:///?socket=$T/src.sock"

# No destination: the write is not acknowledged.
bg_start "$T/w1.log" qemu-io -f raw "$NBD" -c "write -P 0xa1 $((3 * CHUNK + 512)) 4096"
W1=$BG_PID
sleep 1
kill -0 "$W1" 2>/dev/null || fail "a write-through write was acknowledged with no destination: $(cat "$T/w1.log")"
# A destination joins: the write completes once it holds the chunk.
bg_start "$T/fetch.log" "$P2PVBD" fetch --no-progress --ctl "$T/fetch.ctl" "$URI" "$T/out.img"
FETCH_PID=$BG_PID
wait_exit "$W1" 60 || fail "the write was not acknowledged after a destination joined"
((EXIT_STATUS == 0)) || fail "qemu-io failed: $(cat "$T/w1.log")"
cmp -s <(dd if="$T/out.img" bs=4096 skip=$((3 * CHUNK / 4096)) count=2 status=none) \
	<(dd if="$T/src.img" bs=4096 skip=$((3 * CHUNK / 4096)) count=2 status=none) ||
	fail "the write was acknowledged before the destination held it"

# Each acknowledged write is already at the destination.
for k in 1 2 3 4 5; do
	off=$(((k * 7 + 1) * CHUNK + k * 1000))
	run_cmd "w$k" qemu-io -f raw "$NBD" -c "write -P 0x$((k + 10)) $off 5000"
	((RC == 0)) || fail "write $k failed: $(cat "$T/w$k.out" "$T/w$k.err")"
	python3 -c 'import sys; f = open(sys.argv[1], "rb"); f.seek(int(sys.argv[2]))
sys.exit(f.read(5000) != bytes([int(sys.argv[3], 16)]) * 5000)' "$T/out.img" "$off" "$((k + 10))" ||
		fail "write $k was acknowledged before the destination held it"
done
run_cmd freeze "$P2PVBD" ctl "$T/seed.ctl" freeze
((RC == 0)) || fail "freeze failed: $(cat "$T/freeze.out" "$T/freeze.err")"
wait_exit "$FETCH_PID" 30 || fail "fetch did not end after the freeze"
((EXIT_STATUS == 0)) || fail "fetch exited $EXIT_STATUS"
cmp "$T/src.img" "$T/out.img" || fail "destination differs from the source at the freeze"
# A clean stop exits 0; under the sanitizers that also says nothing leaked (the write-through
# table once did, and LeakSanitizer made the exit status 134).
kill -TERM "$SEED_PID"
wait_exit "$SEED_PID" 30 || fail "seed -e --write-through did not stop on SIGTERM"
((EXIT_STATUS == 0)) || fail "seed -e --write-through exited $EXIT_STATUS: $(tail -5 "$T/seed.log")"

# --max-dirty-rate 2M: 8 MiB in 128 writes (a burst of 256 KiB, and the last write may go into
# debt) take at least (8 MiB - 320 KiB) / 2 MiB/s = 3.84 s.
rm -f "$T/src.sock"
start_seed -k "$T/src.key" -e "unix:$T/src.sock" --max-dirty-rate 2M --chunk-size 64K "$T/src.img"
for ((i = 0; i < 100; i++)); do
	[[ -S $T/src.sock ]] && break
	sleep 0.1
done
t0=$(date +%s%N)
args=()
for ((i = 0; i < 128; i++)); do args+=(-c "write -P 0x77 $((i * 65536)) 64k"); done
run_cmd throttled qemu-io -f raw "$NBD" "${args[@]}"
t1=$(date +%s%N)
((RC == 0)) || fail "throttled writes failed: $(cat "$T/throttled.out" "$T/throttled.err")"
ms=$(((t1 - t0) / 1000000))
note "8 MiB written in $ms ms at --max-dirty-rate 2M"
((ms >= 3700)) || fail "8 MiB written in $ms ms: the 2 MiB/s cap was not applied"
stop_pid "$SEED_PID"

# --freeze-on-disconnect: the VM's last NBD client leaving freezes the source.
rm -f "$T/src.sock"
start_seed -k "$T/src.key" -e "unix:$T/src.sock" --freeze-on-disconnect --ctl "$T/seed2.ctl" \
	--chunk-size 64K "$T/src.img"
for ((i = 0; i < 100; i++)); do
	[[ -S $T/src.sock ]] && break
	sleep 0.1
done
run_cmd st1 "$P2PVBD" status --json "$T/seed2.ctl"
grep -q '"final":false' "$T/st1.out" || fail "a seed with a VM is final before any freeze: $(cat "$T/st1.out")"
run_cmd lastwrite qemu-io -f raw "$NBD" -c "write -P 0x99 0 64k"
((RC == 0)) || fail "write failed: $(cat "$T/lastwrite.out" "$T/lastwrite.err")"
for ((i = 0; i < 50; i++)); do
	"$P2PVBD" status --json "$T/seed2.ctl" >"$T/st2.out" 2>/dev/null || true
	grep -q '"final":true' "$T/st2.out" && break
	sleep 0.1
done
grep -q '"final":true' "$T/st2.out" || fail "no freeze after the last NBD client left: $(cat "$T/st2.out")"
grep -q '"dirty_bytes":0,' "$T/st2.out" || fail "frozen with dirty chunks: $(cat "$T/st2.out")"
note "PASS"
