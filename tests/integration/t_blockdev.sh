#!/bin/bash
# SPDX-License-Identifier: ISC
# Checks: a fetch into a block device (a loop device here) needs --force, writes the volume to
# the device and keeps its sidecar files (state, key, pages) in /var/lib/p2pvbd, never in /dev;
# --state-dir moves them. Needs root and a free loop device; says "skipped" without them.
# fast
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh" "$@"

LOOP=
cleanup_loop() {
	[[ -n $LOOP ]] || return 0
	rm -f "/var/lib/p2pvbd/$(basename "$LOOP")".p2pvbd-*
	losetup -d "$LOOP" 2>/dev/null || true
}
trap 'cleanup_loop; cleanup' EXIT

if ((EUID != 0)) || ! LOOP=$(losetup --find --show "$(truncate -s 8M "$T/dev.img" && echo "$T/dev.img")" 2>"$T/losetup.err"); then
	note "skipped: no loop device ($(cat "$T/losetup.err" 2>/dev/null))"
	LOOP=
	exit 0
fi
name=$(basename "$LOOP")
rm -f /var/lib/p2pvbd/"$name".p2pvbd-*

make_image "$T/src.img" 6
keygen "$T/key"
start_seed -k "$T/key" "$T/src.img"

expect_rc 1 noforce "$P2PVBD" fetch --no-progress "$URI" "$LOOP"
err_mentions noforce "use --force"
ls /var/lib/p2pvbd/"$name".p2pvbd-* >/dev/null 2>&1 && fail "a refused fetch left sidecar files"

expect_rc 0 fetch "$P2PVBD" fetch --no-progress --force "$URI" "$LOOP"
cmp -n $((6 * 1048576)) "$T/src.img" "$LOOP" || fail "the device does not hold the volume"
ls /dev/"$name".p2pvbd-* >/dev/null 2>&1 && fail "sidecar files in /dev: $(ls /dev/"$name".p2pvbd-*)"
[[ -e /var/lib/p2pvbd/$name.p2pvbd-key ]] || fail "no key in /var/lib/p2pvbd: $(ls /var/lib/p2pvbd)"

mkdir "$T/state"
expect_rc 0 statedir "$P2PVBD" fetch --no-progress --force --state-dir "$T/state" "$URI" "$LOOP"
[[ -e $T/state/$name.p2pvbd-key ]] || fail "--state-dir was not used: $(ls "$T/state")"
