#!/bin/bash
# SPDX-License-Identifier: ISC
# Checks: a real VM (tools/vm/build-guest.sh: Debian kernel + busybox initramfs, under TCG) is
# live-migrated between two QEMU processes (tools/vm/migrate.py) while it writes records to its
# virtio disk, which each QEMU reaches over NBD (two qemu-nbd servers of the same image file:
# shared-storage migration, the stand-in for p2pvbd's seed and fetch exports). The migration
# pauses before the switchover and runs the freeze hook; the wait-sync hook is polled until it
# says yes. The guest goes on writing on the destination, then reads every record back from the
# disk and checks it (P2PVBD-VERIFY OK), and the image is checked again from the host
# (tools/vm/check-records.py), which must also catch a damaged record.
# Skips (exit 0) only when qemu-system-x86_64 is missing and cannot be installed.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh" "$@"

VM=$(cd "$(dirname "$0")/../../tools/vm" && pwd)

need_qemu_system
for tool in qemu-nbd python3; do
	command -v "$tool" >/dev/null || fail "$tool not installed (tools/install-deps.sh)"
done

# The guest, cached beside the binary under test (build/vm).
GUEST=$(dirname "$P2PVBD")/vm
"$VM/build-guest.sh" "$GUEST" >"$T/build-guest.log" 2>&1 ||
	fail "tools/vm/build-guest.sh $GUEST failed"

SEED=$((RANDOM * 32768 + RANDOM))
RECORDS=32
truncate -s 64M "$T/disk.img"

# Two NBD servers of the same file, one per QEMU. Locking off: both open the file for writing.
nbd_server() {
	bg_start "$T/nbd-$1.log" qemu-nbd --socket="$T/$1.sock" --persistent --shared=4 \
		--image-opts "driver=raw,file.driver=file,file.filename=$T/disk.img,file.locking=off"
}
nbd_server src
NBD_SRC_PID=$BG_PID
nbd_server dst
NBD_DST_PID=$BG_PID
for side in src dst; do
	for ((i = 0; i < 100; i++)); do
		[[ -S $T/$side.sock ]] && break
		sleep 0.1
	done
	[[ -S $T/$side.sock ]] || fail "qemu-nbd did not create $T/$side.sock within 10 s"
done

# Hooks: wait-sync says "not yet" once, then yes; freeze and resume leave a trace.
note "migrating (seed $SEED, $RECORDS records)"
rc=0
timeout -k 5 150 python3 "$VM/migrate.py" \
	--src-disk "nbd:unix:$T/src.sock" --dst-disk "nbd:unix:$T/dst.sock" \
	--kernel "$GUEST/vmlinuz" --initrd "$GUEST/initrd.gz" \
	--append "p2pvbd.mode=writer p2pvbd.records=$RECORDS p2pvbd.seed=$SEED" \
	--workdir "$T/mig" --min-records 20 --after-records 8 \
	--wait-sync-cmd "if [ -e '$T/sync-asked' ]; then exit 0; fi; touch '$T/sync-asked'; exit 1" \
	--sync-interval 0.2 \
	--freeze-cmd "date +%s.%N >'$T/frozen'" \
	--resume-cmd "touch '$T/resumed'" \
	>"$T/migrate.log" 2>&1 || rc=$?
cp "$T/mig/dst-console.log" "$T/dst-console.log" 2>/dev/null || true
((rc == 0)) || fail "migrate.py exited $rc"
grep -qx 'P2PVBD-MIGRATE OK' "$T/migrate.log" || fail "migrate.py did not print P2PVBD-MIGRATE OK"
grep -q '^P2PVBD-VERIFY OK ' "$T/mig/dst-console.log" ||
	fail "the guest did not print P2PVBD-VERIFY OK on the destination console"
[[ -s $T/frozen ]] || fail "the freeze hook did not run"
[[ ! -e $T/resumed ]] || fail "the resume hook ran although the migration succeeded"
[[ -e $T/sync-asked ]] || fail "the wait-sync hook did not run"

# result.json: the guest's final state and the timings.
read -r ok epoch next records seed ondst boot total downtime < <(python3 - "$T/mig/result.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
print(int(r["ok"]), r["epoch"], r["next"], r["records"], r["seed"], r["records_on_destination"],
      r["boot_s"], r["total_time_ms"], r["downtime_ms"])
EOF
) || fail "cannot read $T/mig/result.json"
((ok == 1)) || fail "result.json says the run failed"
((records == RECORDS && seed == SEED)) || fail "guest used records=$records seed=$seed"
((ondst >= 8)) || fail "only $ondst records written on the destination"
((epoch >= 1)) || fail "guest stopped at epoch $epoch"
note "boot ${boot}s, migration ${total} ms, downtime ${downtime} ms; guest stopped at epoch $epoch next $next"

# The image, checked from the host once both servers are gone.
stop_pid "$NBD_SRC_PID"
stop_pid "$NBD_DST_PID"
expect_rc 0 check "$VM/check-records.py" "$T/disk.img" "$SEED" \
	--records "$RECORDS" --epoch "$epoch" --next "$next"
grep -q '^check-records: OK: ' "$T/check.out" || fail "check-records.py: $(cat "$T/check.out")"

# ... and the checker must notice a lost write: zero record 4 (the disk's last 4 KiB block).
cp "$T/disk.img" "$T/bad.img"
dd if=/dev/zero of="$T/bad.img" bs=4096 seek=$((64 * 256 - 1)) count=1 conv=notrunc status=none
expect_rc 1 check-bad "$VM/check-records.py" "$T/bad.img" "$SEED" \
	--records "$RECORDS" --epoch "$epoch" --next "$next"
grep -q '^BAD i=4 .*all zero' "$T/check-bad.out" ||
	fail "check-records.py did not report record 4 as lost: $(cat "$T/check-bad.out")"

note "ok"
