#!/bin/bash
# SPDX-License-Identifier: ISC
# Checks: the model-based randomized live-migration test (tests/model/live_model.py) on a few
# seeds. Each seed draws a volume (random, zero and patterned 64 KiB chunks, sometimes a short last
# chunk), a seed -e with a control socket and sometimes a small --rate-limit, 1-3 fetch -e
# destinations (some joining only through another destination's -l address), random writes,
# zeroes, reads and flushes at the source's NBD export checked against a bytearray model, the
# freeze (p2pvbd ctl CTL freeze, sometimes racing with writes; the export must refuse writes
# after it), reads issued before the freeze that must wait for it, random I/O at every
# destination against its own model, and finally OUT == model byte for byte once each
# destination reports complete and final; in some seeds the seed is killed -9 and restarted,
# and in some a writer rewrites a hot set of 1-3 chunks far faster than the upload cap while
# every destination that lacks other data must keep getting it. Until `p2pvbd --help` lists
# `ctl`, it runs in
# "prefreeze" mode (see the script). `make soak` runs the same over many seeds.
#
# LIVE_MODEL_FIRST (default 3) and LIVE_MODEL_SEEDS (default 8) choose the seeds; a failure
# prints the command that reproduces it. Seeds 3-10 include, with --max-mib 4, a destination
# relayed through another, a chain of two relays, writes racing the freeze, a destination that
# joins after the freeze and a rollback (thaw); `live_model.py --describe` lists what each does.
# Then the seeds listed below that once found a bug.
# fast
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh" "$@"
PY=/usr/bin/python3
MODEL=$(cd "$(dirname "$0")/../model" && pwd)/live_model.py
"$PY" -c 'import nbd' 2>/dev/null || fail "python3-libnbd missing (tools/install-deps.sh installs it)"

# Each seed's processes and files live in a directory under $T, so that nothing outlives the test.
export TMPDIR=$T
# 8 seeds of at most 4 MiB take 20-50 s; --seconds stops starting new ones after 60 s.
rc=0
timeout -k 10 200 "$PY" "$MODEL" --bin "$P2PVBD" --first "${LIVE_MODEL_FIRST:-3}" \
	--count "${LIVE_MODEL_SEEDS:-8}" --max-mib 4 --seconds 60 --seed-timeout 150 ||
	rc=$?
((rc == 0)) || fail "live_model.py exited $rc (the failing seeds and how to reproduce them are above)"

# Seeds that once found a bug, drawn as `make soak` draws them (default --max-mib):
#   626651  a late destination's first write covers chunk 0 whole and waits for chunk 1 (zero):
#           it ran from inside the page load that made chunk 1 available, and the load then
#           overwrote the page's count of missing chunks; the volume never completed.
for seed in 626651; do
	timeout -k 10 150 "$PY" "$MODEL" --bin "$P2PVBD" --seed "$seed" --seed-timeout 120 ||
		fail "regression seed $seed failed (reproduce: $PY $MODEL --bin $P2PVBD --seed $seed -v)"
done
note "PASS"
