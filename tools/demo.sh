#!/bin/bash
# SPDX-License-Identifier: ISC
# Local migration demo: tools/demo.sh PATH-TO-p2pvbd
#
# Makes a 256 MiB disk image of mixed random and zero chunks (DEMO_MIB to
# change), a source key, starts a seed on a free loopback port, fetches the
# image in the foreground (progress shows), checks the copy with cmp and
# prints a summary. Everything is removed on exit.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/../tests/integration/lib.sh" "$@"

MIB=${DEMO_MIB:-256}
TAIL=4321

say() { printf '\033[1mdemo:\033[0m %s\n' "$*"; }

say "making a ${MIB} MiB source image (every third MiB zero) in $T"
make_image "$T/source.img" "$MIB" "$TAIL"
size=$(stat -c %s "$T/source.img")
nonzero=$(nonzero_bytes "$MIB" "$TAIL" $((256 * 1024)))

say "p2pvbd keygen -o source.key"
keygen "$T/source.key"

say "p2pvbd seed -k source.key -l 127.0.0.1:0 source.img   (hashing, then serving)"
t0=$(date +%s.%N)
start_seed -k "$T/source.key" "$T/source.img"
t1=$(date +%s.%N)
say "seed ready after $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }') s; volume URI:"
echo "    $URI"

say "p2pvbd fetch URI dest.img"
t0=$(date +%s.%N)
if ! "$P2PVBD" fetch --stats "$T/stats.json" "$URI" "$T/dest.img"; then
	fail "fetch failed"
fi
t1=$(date +%s.%N)

say "checking: cmp source.img dest.img"
cmp "$T/source.img" "$T/dest.img" || fail "the copy differs from the source"

secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
echo
say "migrated and verified, byte for byte"
printf '    image size        %d bytes (%.1f MiB)\n' "$size" "$(awk -v s="$size" 'BEGIN { print s / 1048576 }')"
printf '    non-zero data     %.1f MiB (zero chunks are not sent)\n' "$(awk -v s="$nonzero" 'BEGIN { print s / 1048576 }')"
printf '    copy allocated    %d KiB (sparse)\n' "$(allocated_kib "$T/dest.img")"
printf '    fetch time        %s s (%.0f MiB/s of data)\n' "$secs" \
	"$(awk -v s="$nonzero" -v t="$secs" 'BEGIN { print (t > 0 ? s / 1048576 / t : 0) }')"
printf '    fetch stats       %s\n' "$(cat "$T/stats.json")"
