#!/bin/bash
# SPDX-License-Identifier: ISC
# Checks: `p2pvbd ctl SEED migrate tcp:127.0.0.1:PORT` runs a QEMU live migration from the seed
# (seed -e ... --qmp: the source QEMU's second QMP socket). The setup is t_vm_migrate_live.sh's
# (tools/vm/build-guest.sh's guest under TCG writing records; the source QEMU on seed -e, the
# destination QEMU with -incoming on fetch -e), but tools/vm/migrate.py hands steps 3-4 to the
# seed (--switchover-cmd): it waits for the disk sync, migrates the RAM with
# pause-before-switchover, freezes at pre-switchover, lets QEMU finish, and prints the phases.
#  1. A migration that fails after the freeze: the destination QEMU lacks a device
#     (--dst-fault incompatible), so it fails to load the device state after pre-switchover and
#     exits. ctl migrate reports the failure, the seed has thawed, the source VM runs (QEMU
#     restarts it; the seed, told to thaw 2 s late, refuses the guest's next write with ENOSPC,
#     QEMU pauses the VM, and the seed resumes it with cont), the guest goes on writing there and
#     verifies every record (P2PVBD-ROLLBACK OK: the refused write was retried, not lost), and
#     the records check from the host.
#     Before it, a migration to a port where nobody listens fails in the RAM phase.
#  2. The same seed and fetch migrate the VM for good: the guest verifies its records at the
#     destination, `status --json` has the phases (a "migration" object), and the destination
#     image's records check from the host.
# Skips (exit 0) only when qemu-system-x86_64 is missing and cannot be installed.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh" "$@"

VM=$(cd "$(dirname "$0")/../../tools/vm" && pwd)

need_qemu_system

GUEST=$(dirname "$P2PVBD")/vm
"$VM/build-guest.sh" "$GUEST" >"$T/build-guest.log" 2>&1 ||
	fail "tools/vm/build-guest.sh $GUEST failed"

RECORDS=32
truncate -s 64M "$T/disk.img"
head -c 16M /dev/urandom | dd of="$T/disk.img" conv=notrunc status=none
keygen "$T/src.key"

# The seed thaws 2 s late after a failure past the freeze (a knob for the tests): QEMU has
# restarted the VM by then, the guest's next write is refused (ENOSPC), QEMU pauses the VM
# (werror=enospc, its default), and the seed's recovery must resume it with `cont`.
export P2PVBD_TEST_ROLLBACK_DELAY_MS=2000
start_seed -k "$T/src.key" -e "unix:$T/src.sock" --ctl "$T/seed.ctl" --qmp "$T/seed-qmp.sock" \
	--chunk-size 64K "$T/disk.img"
unset P2PVBD_TEST_ROLLBACK_DELAY_MS
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

# Before any migration, status --json has an idle one; ctl migrate refuses a URI that is not a
# migration transport (exec: would have QEMU run a command).
"$P2PVBD" status --json "$T/seed.ctl" >"$T/st0.json" || fail "status --json failed"
python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); sys.exit(j["migration"]["phase"] != "idle")' \
	"$T/st0.json" || fail "no idle migration object in status --json: $(cat "$T/st0.json")"
expect_rc 2 badur "$P2PVBD" ctl "$T/seed.ctl" migrate "exec:true"
err_mentions badur "not a migration URI"

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# migrate_vm NAME SEED ARGS...: tools/vm/migrate.py with the seed doing the switchover (after
# PRE_HOOK, a shell command ending in && if set).
PRE_HOOK=
migrate_vm() {
	local name=$1 seed=$2 port
	shift 2
	port=$(free_port) || fail "no free port"
	rc=0
	timeout -k 5 200 python3 "$VM/migrate.py" \
		--src-disk "nbd:unix:$T/src.sock" --dst-disk "nbd:unix:$T/dst.sock" \
		--kernel "$GUEST/vmlinuz" --initrd "$GUEST/initrd.gz" \
		--append "p2pvbd.mode=writer p2pvbd.records=$RECORDS p2pvbd.seed=$seed" \
		--workdir "$T/$name" --src-extra-qmp "$T/seed-qmp.sock" \
		--incoming "tcp:127.0.0.1:$port" \
		--switchover-cmd "$PRE_HOOK'$P2PVBD' ctl --timeout 150 '$T/seed.ctl' migrate \"\$P2PVBD_MIG_URI\"" \
		--sync-timeout 30 --migrate-timeout 150 --min-records 12 "$@" \
		>"$T/$name.log" 2>&1 || rc=$?
	((rc == 0)) || fail "migrate.py ($name) exited $rc: $(tail -n 8 "$T/$name.log")"
}

# epoch_next DIR: the guest's final epoch and next record, from DIR/result.json.
epoch_next() {
	python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["epoch"], r["next"])' \
		"$1/result.json"
}

# ---- 1. The destination fails after pre-switchover: roll back. Before that, in the same hook, a
# migration to a port where nobody listens fails in the RAM phase (nothing to undo).
SEED1=$((RANDOM * 32768 + RANDOM))
note "a migration that fails after the freeze (seed $SEED1)"
dead=$(free_port) || fail "no free port"
PRE_HOOK="! '$P2PVBD' ctl '$T/seed.ctl' migrate tcp:127.0.0.1:$dead >'$T/dead.out' 2>&1 && "
migrate_vm mig1 "$SEED1" --dst-fault incompatible --expect-failure --after-records 6
PRE_HOOK=
grep -q "^error: migration to tcp:127.0.0.1:$dead failed: in the RAM phase: QEMU says failed.*the source VM runs on" \
	"$T/dead.out" || fail "a migration to a dead port did not fail in the RAM phase: $(cat "$T/dead.out")"
grep -qx 'P2PVBD-ROLLBACK OK' "$T/mig1.log" || fail "migrate.py did not print P2PVBD-ROLLBACK OK"
grep -q '^P2PVBD-VERIFY OK ' "$T/mig1/src-console.log" ||
	fail "the guest did not print P2PVBD-VERIFY OK at the source"
hook=$T/mig1/hook-switchover.log
grep -q '^error: migration to tcp:127.0.0.1:[0-9]* failed: after the freeze: ' "$hook" ||
	fail "ctl migrate did not report a failure after the freeze: $(cat "$hook")"
grep -q 'the seed thawed and the source VM runs again' "$hook" ||
	fail "ctl migrate did not say the source VM runs again: $(cat "$hook")"
grep -q 'frozen: generation [0-9]* is final' "$T/seed.log" || fail "the seed did not freeze"
grep -q 'thawed: the VM may write again' "$T/seed.log" || fail "the seed did not thaw"
grep -q "refusing the VM's write of" "$T/seed.log" ||
	fail "no write of the restarted VM met the frozen seed: the recovery's cont was not exercised"
grep -q 'runs again (resumed with cont)' "$hook" ||
	fail "the seed did not resume the VM that QEMU paused: $(cat "$hook")"
"$P2PVBD" status --json "$T/seed.ctl" >"$T/st1.json" || fail "status --json failed"
python3 - "$T/st1.json" <<'PY' || fail "status --json after the failure: $(cat "$T/st1.json")"
import json, sys
m = json.load(open(sys.argv[1]))["migration"]
assert m["phase"] == "failed", m
assert "after the freeze" in m["error"], m
assert m["ram_s"] is not None and m["freeze_ms"] is not None, m
PY
read -r epoch next < <(epoch_next "$T/mig1") || fail "cannot read $T/mig1/result.json"
expect_rc 0 check1 "$VM/check-records.py" "$T/disk.img" "$SEED1" \
	--records "$RECORDS" --epoch "$epoch" --next "$next"
grep -q '^check-records: OK: ' "$T/check1.out" || fail "check-records.py: $(cat "$T/check1.out")"
note "rolled back: $(grep -o 'after the freeze: .*' "$hook" | head -c 300)"

# ---- 2. The same seed and fetch migrate the VM for good.
SEED2=$((SEED1 + 1))
note "a migration by ctl migrate (seed $SEED2)"
migrate_vm mig2 "$SEED2" --after-records 8
grep -qx 'P2PVBD-MIGRATE OK' "$T/mig2.log" || fail "migrate.py did not print P2PVBD-MIGRATE OK"
grep -q '^P2PVBD-VERIFY OK ' "$T/mig2/dst-console.log" ||
	fail "the guest did not print P2PVBD-VERIFY OK at the destination"
hook=$T/mig2/hook-switchover.log
grep -Eq '^migrated to tcp:127.0.0.1:[0-9]+: sync [0-9.]+ s, RAM [0-9.]+ s, freeze [0-9.]+ ms, downtime [0-9]+ ms' "$hook" ||
	fail "ctl migrate printed no phases: $(cat "$hook")"
"$P2PVBD" status --json "$T/seed.ctl" >"$T/st2.json" || fail "status --json failed"
python3 - "$T/st2.json" <<'PY' || fail "status --json after the migration: $(cat "$T/st2.json")"
import json, sys
j = json.load(open(sys.argv[1]))
m = j["migration"]
assert j["final"] is True, j
assert m["phase"] == "completed" and m["postcopy"] is False, m
for k in ("sync_s", "ram_s", "freeze_ms", "downtime_ms", "total_s"):
    assert isinstance(m[k], (int, float)) and m[k] >= 0, (k, m)
assert m["total_s"] >= m["sync_s"] + m["ram_s"], m
assert "error" not in m, m
print("phases: sync %.2f s, RAM %.2f s, freeze %.0f ms, downtime %.0f ms, total %.2f s"
      % (m["sync_s"], m["ram_s"], m["freeze_ms"], m["downtime_ms"], m["total_s"]))
PY
note "$(cat "$hook")"
stop_pid "$FETCH_PID"
stop_pid "$SEED_PID"
read -r epoch next < <(epoch_next "$T/mig2") || fail "cannot read $T/mig2/result.json"
expect_rc 0 check2 "$VM/check-records.py" "$T/out.img" "$SEED2" \
	--records "$RECORDS" --epoch "$epoch" --next "$next"
grep -q '^check-records: OK: ' "$T/check2.out" || fail "check-records.py: $(cat "$T/check2.out")"
note "ok"
