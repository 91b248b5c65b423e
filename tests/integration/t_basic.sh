#!/bin/bash
# SPDX-License-Identifier: ISC
# Checks: seed + fetch of a mixed random/zero image with a short last chunk gives an identical, sparse copy and sane --stats.
# fast
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh" "$@"

MIB=64
TAIL=12345
CHUNK=$((256 * 1024)) # the seed's default chunk size

make_image "$T/src.img" "$MIB" "$TAIL"
keygen "$T/key"
start_seed -k "$T/key" "$T/src.img"

expect_rc 0 fetch "$P2PVBD" fetch -q --stats "$T/stats.json" "$URI" "$T/out.img"
cmp "$T/src.img" "$T/out.img" || fail "fetched image differs from the source"

# A third of the image is zero and must stay a hole in the copy.
app=$(apparent_kib "$T/out.img")
alloc=$(allocated_kib "$T/out.img")
note "copy: apparent ${app} KiB, allocated ${alloc} KiB"
((alloc * 100 < app * 80)) || fail "copy is not sparse: ${alloc} KiB allocated of ${app} KiB"

check_stats "$T/stats.json"
size=$((MIB * 1048576 + TAIL))
nonzero=$(nonzero_bytes "$MIB" "$TAIL" "$CHUNK")
total=$(stat_get "$T/stats.json" chunks_total)
zero=$(stat_get "$T/stats.json" chunks_zero)
fetched=$(stat_get "$T/stats.json" bytes_fetched)
bad=$(stat_get "$T/stats.json" bad_pieces)
note "stats: $(cat "$T/stats.json")"
((total == (size + CHUNK - 1) / CHUNK)) || fail "chunks_total $total, expected $(((size + CHUNK - 1) / CHUNK))"
((zero > 0)) || fail "chunks_zero is $zero; the image has zero chunks"
((fetched <= nonzero + CHUNK)) || fail "bytes_fetched $fetched > non-zero bytes $nonzero + one chunk"
((fetched >= nonzero - CHUNK)) || fail "bytes_fetched $fetched is below the non-zero bytes $nonzero"
((bad == 0)) || fail "bad_pieces $bad from an honest seed"
[[ ! -e $T/out.img.p2pvbd-state ]] || note "state file left next to a complete image (allowed)"
kill -0 "$SEED_PID" 2>/dev/null || fail "seed died during the fetch"
