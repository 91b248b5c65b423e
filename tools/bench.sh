#!/bin/bash
# SPDX-License-Identifier: ISC
# Benchmarks against anchors measured in the same run: tools/bench.sh PATH-TO-p2pvbd
#
# Prints one JSON object per line (also written to bench-out/bench.json):
#   hash:  seed --hash-only on a 1 GiB random file vs b2sum (best of 3 each,
#          page cache warm); ratio = b2sum time / seed time, bar 1.5.
#   fetch: loopback fetch of that file (best of 2) vs nbdcopy from an
#          nbdkit file export on a Unix socket (best of 2), output on the
#          same file system; ratio = nbdcopy time / fetch time, bar 0.6.
# BENCH_MIB changes the file size; work files go under ${TMPDIR:-/var/tmp}; BENCH_OUTDIR
# replaces bench-out/. Each of the two cases is bounded (600 s + 1 s per MiB, or BENCH_TIMEOUT);
# a case that fails prints a JSON failure line and the other still runs (tools/bench_lib.sh);
# the exit status is 1 if any failed.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
export TMPDIR=${TMPDIR:-/var/tmp}
# shellcheck source=tests/integration/lib.sh
. "$repo/tests/integration/lib.sh" "$@"
# shellcheck source=tools/bench_lib.sh
. "$repo/tools/bench_lib.sh"

MIB=${BENCH_MIB:-1024}
OUTDIR=${BENCH_OUTDIR:-$repo/bench-out}
mkdir -p "$OUTDIR"
: >"$OUTDIR/bench.json"
bench_init bench "$OUTDIR/bench.json"
CASE_S=$(bench_timeout $((600 + MIB)))

need_kib=$((MIB * 1024 * 3 + 65536))
avail_kib=$(df -Pk "$T" | awk 'NR == 2 { print $4 }')
((avail_kib > need_kib)) || fail "need $((need_kib / 1024)) MiB free in $T, have $((avail_kib / 1024)) MiB"

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.4f", b - a }'; }
minof() { printf '%s\n' "$@" | sort -g | head -n 1; }
log() { echo "bench: $*" >&2; }

# emit BENCH FIGURE ANCHOR ANCHOR_S BAR: one result line, ratio = anchor / figure.
emit() {
	local line
	line=$(python3 - "$@" <<'PY'
import json, sys
bench, fig, anchor, anc, bar = sys.argv[1:]
fig, anc, bar = float(fig), float(anc), float(bar)
print(json.dumps({"bench": bench, "figure_s": round(fig, 4), "anchor": anchor,
                  "anchor_s": round(anc, 4), "ratio": round(anc / fig, 3) if fig > 0 else None,
                  "bar": bar}))
PY
	)
	echo "$line"
	echo "$line" >>"$OUTDIR/bench.json"
}

img=$T/bench.img
log "writing a ${MIB} MiB random file"
head -c $((MIB * 1048576)) /dev/urandom >"$img"
keygen "$T/key"
cat "$img" >/dev/null # warm the page cache

# (a) hashing: seed --hash-only vs b2sum.
hash_case() {
	local seed_times=() b2_times=() i out t t0
	for i in 1 2 3; do
		out=$("$P2PVBD" seed -k "$T/key" --hash-only "$img") || fail "seed --hash-only failed"
		t=$(python3 -c '
import json, sys
for line in sys.stdin:
    line = line.strip()
    if line.startswith("{") and "hash_seconds" in line:
        print(json.loads(line)["hash_seconds"]); break
else:
    sys.exit("no hash_seconds in seed --hash-only output")' <<<"$out") || fail "seed --hash-only printed: $out"
		seed_times+=("$t")
		log "seed --hash-only run $i: $t s"
	done
	for i in 1 2 3; do
		t0=$(now)
		b2sum "$img" >/dev/null
		t=$(elapsed "$t0" "$(now)")
		b2_times+=("$t")
		log "b2sum run $i: $t s"
	done
	emit hash "$(minof "${seed_times[@]}")" b2sum "$(minof "${b2_times[@]}")" 1.5
}

# (b) loopback fetch vs nbdkit + nbdcopy.
fetch_case() {
	local fetch_times=() copy_times=() i out t t0
	start_seed -k "$T/key" -q "$img"
	out=$T/fetch.img
	for i in 1 2; do
		rm -f "$out" "$out.p2pvbd-state"
		t0=$(now)
		"$P2PVBD" fetch -q "$URI" "$out" || fail "fetch failed"
		t=$(elapsed "$t0" "$(now)")
		fetch_times+=("$t")
		log "fetch run $i: $t s"
	done
	cmp "$img" "$out" || fail "fetched copy differs from the source"
	rm -f "$out" "$out.p2pvbd-state"
	stop_pid "$SEED_PID"

	bg_start "$T/nbdkit.log" nbdkit -f -U "$T/nbd.sock" -P "$T/nbdkit.pid" file "$img"
	wait_for_file "$T/nbdkit.pid" 30 "$BG_PID" || fail "nbdkit did not start"
	out=$T/nbdcopy.img
	for i in 1 2; do
		rm -f "$out"
		t0=$(now)
		nbdcopy "nbd+unix:///?socket=$T/nbd.sock" "$out" || fail "nbdcopy failed"
		t=$(elapsed "$t0" "$(now)")
		copy_times+=("$t")
		log "nbdcopy run $i: $t s"
	done
	rm -f "$out"
	emit fetch "$(minof "${fetch_times[@]}")" nbdcopy "$(minof "${copy_times[@]}")" 0.6
}

bench_case hash "$CASE_S" hash_case
bench_case fetch "$CASE_S" fetch_case
bench_finish
