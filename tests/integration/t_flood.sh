#!/bin/bash
# SPDX-License-Identifier: ISC
# Checks: a peer that asks for chunk-table pages again and again without reading the replies
# (about 100 MB of them) cannot make the seed's memory grow without bound: the seed stops
# reading its requests while 4 MiB of replies wait, and keeps serving others.
# fast
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh" "$@"

need_badpeer

# 1 GiB, sparse: 4096 chunks, so page 0 holds 1024 entries (48 KiB per reply).
truncate -s 1G "$T/src.img"
keygen "$T/key"
start_seed -k "$T/key" "$T/src.img"

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
before=$(rss_kib "$SEED_PID")
expect_rc 0 flood "$BADPEER" --mode flood --uri "$URI" -k "$T/key" "$T/src.img"
after=$(rss_kib "$SEED_PID")
note "seed RSS: $before KiB before the flood, $after KiB after"
((after - before < 32 * 1024)) ||
	fail "the seed grew by $(((after - before) / 1024)) MiB under a reply flood"

# It still serves.
expect_rc 0 fetch "$P2PVBD" fetch -q "$URI" "$T/out.img"
cmp "$T/src.img" "$T/out.img" || fail "fetched image differs after the flood"
