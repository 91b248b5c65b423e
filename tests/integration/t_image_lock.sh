#!/bin/bash
# SPDX-License-Identifier: ISC
# Checks: images are locked the way QEMU locks them, against the real QEMU tools. A seed refuses an
# image qemu-nbd has open for writing (exit 1, saying so); a plain seed keeps qemu-io from writing
# its image ('Failed to get "write" lock') but lets read-only qemu-io and another plain seed in;
# seed -e keeps out even read-only qemu-io (no -U) and other seeds; a running fetch keeps qemu-io
# off its OUT; once the p2pvbd process is gone, qemu-io works again. The same on a block device
# (a loop device) when one can be made here.
# fast
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh" "$@"

for tool in qemu-io qemu-nbd qemu-img; do
	command -v "$tool" >/dev/null || fail "$tool missing (tools/install-deps.sh installs qemu-utils)"
done

LOOPDEV=
trap 'cleanup; if [[ -n $LOOPDEV ]]; then losetup -d "$LOOPDEV" 2>/dev/null || true; fi' EXIT

make_image "$T/disk.img" 4
keygen "$T/key"

# wait_sock PATH PID: until the socket exists (10 s at most) and PID still runs.
wait_sock() {
	local i
	for ((i = 0; i < 100; i++)); do
		[[ -S $1 ]] && return 0
		kill -0 "$2" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}

# qio_refused NAME WHY-REGEX ARGS...: qemu-io ARGS must fail, saying why.
qio_refused() {
	local name=$1 why=$2
	shift 2
	run_cmd "$name" qemu-io "$@"
	((RC != 0)) || fail "$name: qemu-io $* succeeded on a locked image"
	grep -q -- "$why" "$T/$name.out" "$T/$name.err" ||
		fail "$name: qemu-io did not say '$why': $(cat "$T/$name.out" "$T/$name.err")"
}

# qio_ok NAME ARGS...: qemu-io ARGS must succeed.
qio_ok() {
	local name=$1
	shift
	run_cmd "$name" qemu-io "$@"
	((RC == 0)) || fail "$name: qemu-io $* exited $RC: $(cat "$T/$name.out" "$T/$name.err")"
}

# seed_refused NAME IMAGE HOLDER-REGEX [SEED-ARGS...]: a seed of IMAGE exits 1, naming it and what holds it.
seed_refused() {
	local name=$1 img=$2 holder=$3
	shift 3
	expect_rc 1 "$name" "$P2PVBD" seed -k "$T/key" -l 127.0.0.1:0 "$@" "$img"
	err_mentions "$name" "$img is in use by another process \\(.*($holder).*\\); stop it first"
}

# ---- qemu-nbd has the image open for writing: a seed refuses it ----------------------------------
note "qemu-nbd holds the image writable"
bg_start "$T/qemu-nbd.log" qemu-nbd -f raw --persistent -k "$T/q.sock" "$T/disk.img"
QNBD=$BG_PID
wait_sock "$T/q.sock" "$QNBD" || fail "qemu-nbd did not start: $(cat "$T/qemu-nbd.log")"
seed_refused seed-vs-qemu-nbd "$T/disk.img" "open for writing"
seed_refused seed-e-vs-qemu-nbd "$T/disk.img" "open for writing" -e "unix:$T/e.sock"
[[ ! -e $T/e.sock ]] || fail "a refused seed -e made its export socket"
stop_pid "$QNBD"

# ---- a plain seed: no QEMU writer, readers welcome ---------------------------------------------
note "plain seed"
start_seed -k "$T/key" "$T/disk.img"
qio_refused write-vs-seed 'Failed to get "write" lock' -f raw -c 'write 0 4k' "$T/disk.img"
qio_ok read-vs-seed -r -f raw -c 'read 0 4k' "$T/disk.img"
run_cmd qemu-nbd-vs-seed qemu-nbd -f raw -k "$T/q2.sock" "$T/disk.img"
((RC != 0)) || fail "qemu-nbd served, writable, an image a plain seed uses"
grep -q 'Failed to get "write" lock' "$T/qemu-nbd-vs-seed.err" ||
	fail "qemu-nbd did not say why: $(cat "$T/qemu-nbd-vs-seed.err")"
# Another plain seed reads too; a seed -e would write it.
expect_rc 0 second-seed "$P2PVBD" seed -k "$T/key" --hash-only "$T/disk.img"
seed_refused seed-e-vs-seed "$T/disk.img" "lets nobody else write it" -e "unix:$T/e.sock"
stop_pid "$SEED_PID"
qio_ok write-after-seed -f raw -c 'write -P 0x5a 0 4k' "$T/disk.img"

# ---- seed -e: it writes the image; nobody else reads it consistently -----------------------------
note "seed -e"
start_seed -k "$T/key" -e "unix:$T/e.sock" "$T/disk.img"
qio_refused read-vs-seed-e 'Failed to get "consistent read" lock' -r -f raw -c 'read 0 4k' \
	"$T/disk.img"
qio_refused write-vs-seed-e 'Failed to get .* lock' -f raw -c 'write 0 4k' "$T/disk.img"
expect_rc 0 info-u-vs-seed-e qemu-img info -U "$T/disk.img"
seed_refused seed-vs-seed-e "$T/disk.img" "is reading it|has it open for writing"
# Reading it through the seed's own export is the way: qemu-io sees what the image holds.
qio_ok read-export -r -f raw -c 'read -P 0x5a 0 4k' "nbd+unix:///?socket=$T/e.sock"
stop_pid "$SEED_PID"
qio_ok read-after-seed-e -r -f raw -c 'read -P 0x5a 0 4k' "$T/disk.img"

# ---- fetch: its OUT is being filled --------------------------------------------------------------
note "fetch"
make_image "$T/src.img" 16
start_seed -k "$T/key" --rate-limit 512K "$T/src.img"
bg_start "$T/fetch.log" "$P2PVBD" fetch --no-progress "$URI" "$T/out.img"
FETCH_PID=$BG_PID
# The lock is taken when OUT is opened, before the state file is made.
wait_for_file "$T/out.img.p2pvbd-state" 30 "$FETCH_PID" ||
	fail "fetch did not open its output: $(tail -n 5 "$T/fetch.log")"
kill -0 "$FETCH_PID" 2>/dev/null || fail "fetch ended before the test (rate limit not applied?)"
qio_refused read-vs-fetch 'Failed to get "consistent read" lock' -r -f raw -c 'read 0 4k' \
	"$T/out.img"
qio_refused write-vs-fetch 'Failed to get .* lock' -f raw -c 'write 0 4k' "$T/out.img"
seed_refused seed-vs-fetch "$T/out.img" "is reading it|has it open for writing"
# A second fetch into the same OUT is refused by the same lock (with an identity of its own: with
# the same one, the source would take it for the first fetch again and keep only one of them).
keygen "$T/key2"
expect_rc 1 fetch-twice "$P2PVBD" fetch --no-progress -k "$T/key2" "$URI" "$T/out.img"
err_mentions fetch-twice "out\\.img is in use by another process"
# With the same identity (OUT's own key) the source would take it for the first fetch and keep
# dropping one of them: the lock must refuse it before it dials anyone.
expect_rc 1 fetch-twice-samekey "$P2PVBD" fetch --no-progress --give-up 30 "$URI" "$T/out.img"
err_mentions fetch-twice-samekey "out\\.img is in use by another process"
! grep -q 'connected' "$T/fetch-twice-samekey.err" || fail "the second fetch dialled a peer before refusing"
stop_pid "$FETCH_PID"
stop_pid "$SEED_PID"
qio_ok read-after-fetch -r -f raw -c 'read 0 4k' "$T/out.img"

# ---- a block device: QEMU locks the device node the same way ------------------------------------
if ((EUID == 0)) && command -v losetup >/dev/null &&
	LOOPDEV=$(losetup -f --show "$T/disk.img" 2>/dev/null) && [[ -b $LOOPDEV ]]; then
	note "block device $LOOPDEV"
	bg_start "$T/qemu-nbd-dev.log" qemu-nbd -f raw --persistent -k "$T/qd.sock" "$LOOPDEV"
	QNBD=$BG_PID
	wait_sock "$T/qd.sock" "$QNBD" || fail "qemu-nbd on $LOOPDEV did not start"
	seed_refused seed-vs-qemu-nbd-dev "$LOOPDEV" "open for writing" --hash-only
	stop_pid "$QNBD"
	start_seed -k "$T/key" "$LOOPDEV"
	qio_refused write-vs-seed-dev 'Failed to get "write" lock' -f raw -c 'write 0 4k' "$LOOPDEV"
	stop_pid "$SEED_PID"
	qio_ok write-after-seed-dev -f raw -c 'write 0 4k' "$LOOPDEV"
else
	LOOPDEV=
	note "no loop device here (needs root and losetup): block devices not checked"
fi
note "ok"
