#!/bin/bash
# SPDX-License-Identifier: ISC
# Checks: `p2pvbd ctl SEED migrate --postcopy URI` does not wait for the disk. The seed serves
# at 256 KiB/s (--rate-limit), so the destination (fetch -e) holds only part of the 16 MiB of
# data when the guest has booted at the source; the seed migrates the RAM at once and switches
# over as soon as it has moved (no sync phase). The destination guest then runs while its disk
# is still arriving: it reads every record it wrote at the source (each one fetched when the
# guest faults on it), writes more, and verifies them all (P2PVBD-VERIFY OK). status --json
# says postcopy, and the destination was incomplete after the switchover. Before it, the same
# migration without --postcopy and a 3 s limit fails in its sync phase, with nothing changed.
# Skips (exit 0) only when qemu-system-x86_64 is missing and cannot be installed.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh" "$@"

VM=$(cd "$(dirname "$0")/../../tools/vm" && pwd)

need_qemu_system

GUEST=$(dirname "$P2PVBD")/vm
"$VM/build-guest.sh" "$GUEST" >"$T/build-guest.log" 2>&1 ||
	fail "tools/vm/build-guest.sh $GUEST failed"

RECORDS=32
SEED=$((RANDOM * 32768 + RANDOM))
truncate -s 64M "$T/disk.img"
head -c 16M /dev/urandom | dd of="$T/disk.img" conv=notrunc status=none
keygen "$T/src.key"

start_seed -k "$T/src.key" -e "unix:$T/src.sock" --ctl "$T/seed.ctl" --qmp "$T/seed-qmp.sock" \
	--chunk-size 64K --rate-limit 256K "$T/disk.img"
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

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])') ||
	fail "no free port"
# The hook first tries a migration without --postcopy and a 3 s limit: the destination is far
# from in sync, so it must fail in the sync phase with nothing changed; then --postcopy. After the
# switchover it records what the destination held then.
hook="! '$P2PVBD' ctl --timeout 3 '$T/seed.ctl' migrate \"\$P2PVBD_MIG_URI\" >'$T/nosync.out' 2>&1 &&
	'$P2PVBD' ctl --timeout 150 --postcopy '$T/seed.ctl' migrate \"\$P2PVBD_MIG_URI\" &&
	'$P2PVBD' status --json '$T/fetch.ctl' >'$T/fetch-after.json'"
rc=0
timeout -k 5 200 python3 "$VM/migrate.py" \
	--src-disk "nbd:unix:$T/src.sock" --dst-disk "nbd:unix:$T/dst.sock" \
	--kernel "$GUEST/vmlinuz" --initrd "$GUEST/initrd.gz" \
	--append "p2pvbd.mode=writer p2pvbd.records=$RECORDS p2pvbd.seed=$SEED" \
	--workdir "$T/mig" --src-extra-qmp "$T/seed-qmp.sock" --incoming "tcp:127.0.0.1:$port" \
	--switchover-cmd "$hook" --migrate-timeout 150 --min-records 12 --after-records 8 \
	>"$T/migrate.log" 2>&1 || rc=$?
((rc == 0)) || fail "migrate.py exited $rc: $(tail -n 8 "$T/migrate.log")"
grep -qx 'P2PVBD-MIGRATE OK' "$T/migrate.log" || fail "migrate.py did not print P2PVBD-MIGRATE OK"
grep -q '^error: migration to tcp:127.0.0.1:[0-9]* failed: the destinations did not get nearly in sync within 3 s .*nothing was changed' \
	"$T/nosync.out" || fail "a migration without --postcopy did not wait for the sync: $(cat "$T/nosync.out")"
grep -q '^P2PVBD-VERIFY OK ' "$T/mig/dst-console.log" ||
	fail "the guest did not print P2PVBD-VERIFY OK at the destination"
grep -Eq '^migrated to tcp:127.0.0.1:[0-9]+: sync ' "$T/mig/hook-switchover.log" ||
	fail "ctl migrate --postcopy printed no phases: $(cat "$T/mig/hook-switchover.log")"
python3 - "$T/fetch-after.json" <<'PY' || fail "the destination after the switchover: $(cat "$T/fetch-after.json")"
import json, sys
f = json.load(open(sys.argv[1]))
assert not f["complete"] and f["bytes_done"] < f["image_size"], f
print("destination after the switchover: %d of %d bytes" % (f["bytes_done"], f["image_size"]))
PY
"$P2PVBD" status --json "$T/seed.ctl" >"$T/st.json" || fail "status --json failed"
python3 - "$T/st.json" <<'PY' || fail "status --json: $(cat "$T/st.json")"
import json, sys
m = json.load(open(sys.argv[1]))["migration"]
assert m["phase"] == "completed" and m["postcopy"] is True, m
assert m["sync_s"] < 5, m
PY
grep -q 'postcopy: the RAM goes now' "$T/seed.log" || fail "the seed did not log the postcopy start"
note "$(head -n 1 "$T/mig/hook-switchover.log")"
# The seed first: a seed with --rate-limit stopped while its peer is leaving trips a libevent
# assertion in swarm_free (bufferevent_rate_limit_group_free with members left; not this test's
# subject).
stop_pid "$SEED_PID"
stop_pid "$FETCH_PID"
note "ok"
