#!/bin/bash
# SPDX-License-Identifier: ISC
# Checks: a real VM (tools/vm/build-guest.sh: Debian kernel + busybox initramfs, under TCG) is
# live-migrated with its disk by p2pvbd. The source QEMU's disk is `seed -e` (the VM keeps
# writing records while the disk is copied: deltas), the destination QEMU's is `fetch -e`
# (started with -incoming; it holds every request until the final generation). tools/vm/migrate.py
# waits for tools/vm/sync-check.sh to say the disk is nearly in sync, migrates the memory with
# QEMU, and at pre-switchover runs `p2pvbd ctl SEED freeze`. The guest goes on writing on the
# destination, reads every record back (P2PVBD-VERIFY OK), and afterwards the destination image
# must equal the source image at the freeze in every chunk the destination VM did not write, and
# pass tools/vm/check-records.py. The destination's receipt for the final generation reaches the
# source. Then the VM is migrated back the same way, the old host fetching with --basis of its
# old image: only the chunks that changed travel (the 16 MiB of data the VM never touched come
# from the basis).
# Skips (exit 0) only when qemu-system-x86_64 is missing and cannot be installed.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh" "$@"

VM=$(cd "$(dirname "$0")/../../tools/vm" && pwd)

need_qemu_system

GUEST=$(dirname "$P2PVBD")/vm
"$VM/build-guest.sh" "$GUEST" >"$T/build-guest.log" 2>&1 ||
	fail "tools/vm/build-guest.sh $GUEST failed"

SEED=$((RANDOM * 32768 + RANDOM))
RECORDS=32
CHUNK=$((64 * 1024))
truncate -s 64M "$T/disk.img"
head -c 16M /dev/urandom | dd of="$T/disk.img" conv=notrunc status=none
keygen "$T/src.key"

start_seed -k "$T/src.key" -e "unix:$T/src.sock" --ctl "$T/seed.ctl" --chunk-size 64K \
	"$T/disk.img"
for ((i = 0; i < 100; i++)); do
	[[ -S $T/src.sock ]] && break
	sleep 0.1
done
[[ -S $T/src.sock ]] || fail "seed -e made no export socket"
bg_start "$T/fetch.log" "$P2PVBD" fetch --no-progress -e "unix:$T/dst.sock" --ctl "$T/fetch.ctl" \
	"$URI" "$T/out.img"
FETCH_PID=$BG_PID
for ((i = 0; i < 300; i++)); do
	[[ -S $T/dst.sock ]] && break
	kill -0 "$FETCH_PID" 2>/dev/null || fail "fetch exited before exporting: $(tail -n 5 "$T/fetch.log")"
	sleep 0.1
done
[[ -S $T/dst.sock ]] || fail "fetch -e made no export socket within 30 s"

note "migrating (seed $SEED, $RECORDS records)"
rc=0
timeout -k 5 200 python3 "$VM/migrate.py" \
	--src-disk "nbd:unix:$T/src.sock" --dst-disk "nbd:unix:$T/dst.sock" \
	--kernel "$GUEST/vmlinuz" --initrd "$GUEST/initrd.gz" \
	--append "p2pvbd.mode=writer p2pvbd.records=$RECORDS p2pvbd.seed=$SEED" \
	--workdir "$T/mig" --min-records 20 --after-records 8 \
	--wait-sync-cmd "'$VM/sync-check.sh' --p2pvbd '$P2PVBD' '$T/seed.ctl' '$T/fetch.ctl'" \
	--sync-interval 0.2 \
	--freeze-cmd "'$P2PVBD' ctl '$T/seed.ctl' freeze" \
	--resume-cmd "'$P2PVBD' ctl '$T/seed.ctl' thaw" \
	>"$T/migrate.log" 2>&1 || rc=$?
cp "$T/mig/dst-console.log" "$T/dst-console.log" 2>/dev/null || true
((rc == 0)) || fail "migrate.py exited $rc: $(tail -n 5 "$T/migrate.log")"
grep -qx 'P2PVBD-MIGRATE OK' "$T/migrate.log" || fail "migrate.py did not print P2PVBD-MIGRATE OK"
grep -q '^P2PVBD-VERIFY OK ' "$T/mig/dst-console.log" ||
	fail "the guest did not print P2PVBD-VERIFY OK on the destination console"
grep -q '^frozen at generation ' "$T/mig/hook-freeze.log" || fail "the freeze hook did not freeze: $(cat "$T/mig/hook-freeze.log")"
grep -q '^sync-check: ' "$T/mig/hook-wait-sync.log" || fail "the wait-sync hook did not run"

read -r ok epoch next ondst total downtime < <(python3 - "$T/mig/result.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(int(r["ok"]), r["epoch"], r["next"], r["records_on_destination"], r["total_time_ms"],
      r["downtime_ms"])
PY
) || fail "cannot read $T/mig/result.json"
((ok == 1)) || fail "result.json says the run failed"
((ondst >= 8)) || fail "only $ondst records written on the destination"
note "migration ${total} ms, downtime ${downtime} ms; guest stopped at epoch $epoch next $next"

# The VM wrote at the source during the copy: the seed published deltas, the last one final.
grep -q 'frozen: generation [0-9]* is final' "$T/seed.log" || fail "the seed logged no final generation"
grep -q 'generation [0-9]* is final: the source froze' "$T/fetch.log" ||
	fail "the destination logged no final generation"
gen=$(sed -n 's/.*frozen: generation \([0-9]*\) is final.*/\1/p' "$T/seed.log" | tail -n 1)
((gen >= 2)) || fail "only generation $gen: the VM's writes at the source were not republished"
# The destination's receipt names the final generation and the source accepted it.
for ((i = 0; i < 100; i++)); do
	grep -q "holds generation $gen complete" "$T/seed.log" && break
	sleep 0.1
done
grep -q "holds generation $gen complete" "$T/seed.log" ||
	fail "no receipt for the final generation $gen at the source: $(tail -n 5 "$T/seed.log")"

# Both sides stopped: the destination image is the source's at the freeze, plus the destination
# VM's own writes (its LOCAL chunks), and its records check from the host.
stop_pid "$FETCH_PID"
stop_pid "$SEED_PID"
same_but_local() {
	python3 - "$1" "$2" "$2.p2pvbd-state" "$CHUNK" <<'PY'
import sys
src, dst, state, cs = open(sys.argv[1], "rb"), open(sys.argv[2], "rb"), open(sys.argv[3], "rb"), int(sys.argv[4])
st = state.read()[64:]
n = len(st) // 24  # records (8 bytes each), then content ids (16 bytes each)
local = 0
for c in range(n):
    if st[c * 8] == 3:
        local += 1
        continue
    if st[c * 8] not in (1, 2):
        sys.exit(f"chunk {c} is not held at the destination (state {st[c * 8]})")
    src.seek(c * cs); dst.seek(c * cs)
    if src.read(cs) != dst.read(cs):
        sys.exit(f"chunk {c} differs from the source at the freeze")
print(f"{n - local} chunks equal the source, {local} written by the destination VM")
if local == 0:
    sys.exit("the destination VM wrote nothing?")
PY
}
same_but_local "$T/disk.img" "$T/out.img" || fail "destination image differs from the source"
expect_rc 0 check "$VM/check-records.py" "$T/out.img" "$SEED" \
	--records "$RECORDS" --epoch "$epoch" --next "$next"
grep -q '^check-records: OK: ' "$T/check.out" || fail "check-records.py: $(cat "$T/check.out")"

# ---- And back: the destination is the source now; the old host has its old image as basis.
# What has to travel: the chunks that differ now, and those the VM changes while it is copied.
ndiff=$(python3 - "$T/disk.img" "$T/out.img" "$CHUNK" <<'PY'
import sys
a, b, cs = open(sys.argv[1], "rb"), open(sys.argv[2], "rb"), int(sys.argv[3])
n = 0
while True:
    x, y = a.read(cs), b.read(cs)
    if not x and not y:
        break
    n += x != y
print(n)
PY
) || fail "cannot compare the images"
keygen "$T/back.key"
rm -f "$T/src.sock" "$T/dst.sock"
start_seed -k "$T/back.key" -e "unix:$T/src.sock" --ctl "$T/seed.ctl" --chunk-size 64K \
	"$T/out.img"
for ((i = 0; i < 100; i++)); do
	[[ -S $T/src.sock ]] && break
	sleep 0.1
done
[[ -S $T/src.sock ]] || fail "seed -e (back) made no export socket"
bg_start "$T/fetch-back.log" "$P2PVBD" fetch --no-progress -e "unix:$T/dst.sock" --ctl "$T/fetch.ctl" \
	--basis "$T/disk.img" --stats "$T/back.json" "$URI" "$T/back.img"
FETCH_PID=$BG_PID
for ((i = 0; i < 300; i++)); do
	[[ -S $T/dst.sock ]] && break
	sleep 0.1
done
[[ -S $T/dst.sock ]] || fail "fetch -e (back) made no export socket"
SEED2=$((SEED + 1))
rc=0
timeout -k 5 200 python3 "$VM/migrate.py" \
	--src-disk "nbd:unix:$T/src.sock" --dst-disk "nbd:unix:$T/dst.sock" \
	--kernel "$GUEST/vmlinuz" --initrd "$GUEST/initrd.gz" \
	--append "p2pvbd.mode=writer p2pvbd.records=$RECORDS p2pvbd.seed=$SEED2" \
	--workdir "$T/mig2" --min-records 20 --after-records 8 \
	--wait-sync-cmd "'$VM/sync-check.sh' --p2pvbd '$P2PVBD' '$T/seed.ctl' '$T/fetch.ctl'" \
	--sync-interval 0.2 \
	--freeze-cmd "'$P2PVBD' ctl '$T/seed.ctl' freeze" \
	--resume-cmd "'$P2PVBD' ctl '$T/seed.ctl' thaw" \
	>"$T/migrate2.log" 2>&1 || rc=$?
((rc == 0)) || fail "migrating back: migrate.py exited $rc: $(tail -n 5 "$T/migrate2.log")"
grep -q '^P2PVBD-VERIFY OK ' "$T/mig2/dst-console.log" || fail "no P2PVBD-VERIFY OK after migrating back"
read -r epoch next < <(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["epoch"], r["next"])' "$T/mig2/result.json") ||
	fail "cannot read $T/mig2/result.json"
stop_pid "$FETCH_PID"
stop_pid "$SEED_PID"
same_but_local "$T/out.img" "$T/back.img" || fail "migrated back: the image differs from the source"
expect_rc 0 check2 "$VM/check-records.py" "$T/back.img" "$SEED2" \
	--records "$RECORDS" --epoch "$epoch" --next "$next"
grep -q '^check-records: OK: ' "$T/check2.out" || fail "check-records.py (back): $(cat "$T/check2.out")"
basis=$(stat_get "$T/back.json" chunks_basis)
fetched=$(stat_get "$T/back.json" chunks_fetched)
changed=$(stat_get "$T/back.json" chunks_changed)
note "migrated back: $basis chunks from the basis, $fetched fetched ($ndiff differed, $changed changed meanwhile)"
((basis >= 256)) || fail "only $basis chunks came from the basis (the 16 MiB of data are 256)"
((fetched <= ndiff + changed)) ||
	fail "$fetched chunks fetched migrating back: more than the $ndiff that differed and $changed changed"
note "ok"
