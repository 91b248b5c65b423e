#!/bin/bash
# SPDX-License-Identifier: ISC
# sync-check.sh [--p2pvbd BIN] SEED_CTL FETCH_CTL [MAX_BYTES]
#
# The wait-sync hook of a live migration with p2pvbd (tools/vm/migrate.py
# --wait-sync-cmd): exit 0 when the destination's disk is nearly in sync with
# the source's, so that the switchover has little left to carry; 1 when not
# yet; 2 when it cannot tell (a control socket does not answer).
#
# "Nearly in sync": the seed's dirty bytes (written by the VM, not yet
# published) plus what the destination still misses of the current generation
# are at most MAX_BYTES (default 8 MiB: well under a second on a 100 Mbit/s
# link).
set -euo pipefail
bin=${P2PVBD:-p2pvbd}
if [[ ${1:-} == --p2pvbd ]]; then
	bin=$2
	shift 2
fi
if (($# < 2 || $# > 3)); then
	echo "usage: $0 [--p2pvbd BIN] SEED_CTL FETCH_CTL [MAX_BYTES]" >&2
	exit 2
fi
max=${3:-$((8 * 1024 * 1024))}
seed=$("$bin" status --json "$1") || exit 2
fetch=$("$bin" status --json "$2") || exit 2
/usr/bin/python3 - "$seed" "$fetch" "$max" <<'PY' || exit $?
import json, sys
s, f, limit = json.loads(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3])
if not f.get("volume_known"):
    sys.exit(1)
left = s["dirty_bytes"] + (f["image_size"] - f["bytes_done"])
print(f"sync-check: dirty {s['dirty_bytes']} B at the source, "
      f"{f['image_size'] - f['bytes_done']} B missing at the destination "
      f"(generation {s['generation']} / {f['generation']})")
sys.exit(0 if left <= limit else 1)
PY
