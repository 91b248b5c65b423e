#!/bin/bash
# SPDX-License-Identifier: ISC
# The swarm benchmark (make bench-swarm):
#   tools/bench_swarm.sh PATH-TO-p2pvbd PATH-TO-p2pvbd-tracker
#
# In the lab (tools/lab.sh): h1 runs p2pvbd-tracker, h2 the seed, h3..h(N+2)
# the N fetchers; every host is shaped to RATE Mbit/s up and down. A random
# image of MIB MiB is distributed
#   1. by p2pvbd as a swarm (the fetchers find each other through the
#      tracker and keep serving until all are complete: fetch --mirror),
#   2. by p2pvbd from the seed alone (unicast: no tracker, no listening), and
#   3. by stock BitTorrent (python3-libtorrent, tools/bt_lab.sh) in the same
#      kind of lab, with the same tracker,
# and each "time until all N are complete" is compared with the Kumar-Ross
# minimum distribution time T_min = max(F/u_s, F/d_min, N*F/(u_s + sum u_i)).
# Bars: swarm <= 1.15 x T_min, and faster than libtorrent.
#
# Writes bench-out/bench-swarm.json, the peers' progress as CSV
# (time_s,name,fraction) and a plot bench-out/bench-swarm.png.
# Environment: N (default 8), MIB (256), RATE (100), SKIP_UNICAST=1, SKIP_BT=1,
# BENCH_OUTDIR (instead of bench-out/).
#
# The runs are cases of tools/bench_lib.sh (swarm, unicast, libtorrent, plot), each
# bounded in time (swarm and unicast: 600 s + 3 x N x T_min + 120 s; libtorrent:
# BT_LAB_TIMEOUT + 600 s; plot 300 s; or BENCH_TIMEOUT for each): one that fails
# prints a JSON failure line (also in bench-swarm.json) and the others still run
# (a failed unicast or libtorrent run is null in the summary line; without the
# swarm run there is no summary line nor plot; without the plot, "plot" is null);
# the exit status is 1 if any failed.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
export TMPDIR=${TMPDIR:-/var/tmp}
TRACKER_BIN=${2:?usage: $0 PATH-TO-p2pvbd PATH-TO-p2pvbd-tracker}
[[ $TRACKER_BIN == /* ]] || TRACKER_BIN=$PWD/$TRACKER_BIN
# shellcheck source=tests/integration/lib.sh
. "$repo/tests/integration/lib.sh" "$1"
# shellcheck source=tools/lab.sh
. "$repo/tools/lab.sh"
# shellcheck source=tools/bench_lib.sh
. "$repo/tools/bench_lib.sh"

N=${N:-8}
MIB=${MIB:-256}
RATE=${RATE:-100}
OUTDIR=${BENCH_OUTDIR:-$repo/bench-out}
mkdir -p "$OUTDIR"
: >"$OUTDIR/bench-swarm.json"
bench_init bench-swarm "$OUTDIR/bench-swarm.json"
log() { echo "bench-swarm: $*" >&2; }

F=$((MIB * 1024 * 1024))
# Kumar-Ross with every host at RATE up and down (bits/s).
T_MIN=$(awk -v f="$F" -v n="$N" -v r="$RATE" 'BEGIN {
	u = r * 1e6; fs = f * 8
	a = fs / u; b = fs / u; c = n * fs / (u + n * u)
	m = a; if (b > m) m = b; if (c > m) m = c; printf "%.3f", m }')

img=$T/image
head -c "$F" /dev/urandom >"$img"
"$P2PVBD" keygen -o "$T/src.key" >/dev/null

LAB=bsw$$
lab_trap "$LAB"

# After each case, whatever its end: the lab goes (tools/bench_lib.sh).
bench_case_cleanup() {
	lab_down "$LAB" || true
}

# cpu_busy BEFORE AFTER: percent of the machine's CPU time that was busy
# between two "cpu" lines of /proc/stat.
cpu_busy() {
	awk -v a="$1" -v b="$2" 'BEGIN {
		n = split(a, x, " "); split(b, y, " ")
		for (i = 2; i <= n; i++) { d = y[i] - x[i]; tot += d; if (i == 5 || i == 6) idle += d }
		printf "%.0f", (tot > 0 ? 100 * (tot - idle) / tot : 0) }'
}

# stop_started: stop every process this script started so far (mirrors write
# their stats on SIGTERM), and forget them.
stop_started() {
	local pid
	for pid in "${PIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${PIDS[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	PIDS=()
}

# run_p2pvbd MODE: MODE swarm or unicast. Sets ALL_S (time until all N are
# complete, seconds) and leaves $T/MODE.csv (progress) and $T/MODE.stats*.
run_p2pvbd() {
	local mode=$1 i h addr uri t0 hosts=$((N + 2)) tr_addr seed_addr
	lab_up "$LAB" "$hosts" --up-mbit "$RATE" --down-mbit "$RATE" >/dev/null
	tr_addr=$(lab_addr "$LAB" h1)
	seed_addr=$(lab_addr "$LAB" h2)
	local targs=()
	if [[ $mode == swarm ]]; then
		bg_start "$T/$mode.tracker.log" ip netns exec "$(lab_ns "$LAB" h1)" \
			"$TRACKER_BIN" -l "$tr_addr:6969" --interval 5
		targs=(-t "http://$tr_addr:6969/announce")
	fi
	rm -f "$T/$mode.uri"
	bg_start "$T/$mode.seed.log" ip netns exec "$(lab_ns "$LAB" h2)" \
		"$P2PVBD" seed -k "$T/src.key" -l "$seed_addr:7001" "${targs[@]}" \
		--uri-file "$T/$mode.uri" "$img"
	for ((i = 0; i < 600; i++)); do
		[[ -s $T/$mode.uri ]] && break
		sleep 0.1
	done
	[[ -s $T/$mode.uri ]] || fail "the seed did not start"
	uri=$(cat "$T/$mode.uri")
	# Every fetcher waits in its namespace for one start signal, so that all
	# start together (forking under full load is slow; a staggered start
	# would be counted against the swarm).
	rm -f "$T/$mode.go"
	for ((i = 1; i <= N; i++)); do
		h=h$((i + 2))
		addr=$(lab_addr "$LAB" "$h")
		rm -f "$T/$mode.out$i" "$T/$mode.out$i".p2pvbd-* "$T/$mode.prog$i"
		local fargs=(--no-listen)
		[[ $mode == swarm ]] && fargs=(--mirror -l "$addr:7002")
		# shellcheck disable=SC2016
		bg_start "$T/$mode.fetch$i.log" ip netns exec "$(lab_ns "$LAB" "$h")" \
			sh -c 'while [ ! -e "$0" ]; do sleep 0.01; done; exec "$@"' "$T/$mode.go" \
			"$P2PVBD" fetch --no-progress "${fargs[@]}" --stats "$T/$mode.stats$i" \
			--progress-log "$T/$mode.prog$i" "$uri" "$T/$mode.out$i"
	done
	sleep 1
	cpu_before=$(head -n 1 /proc/stat)
	t0=$(date +%s.%N)
	touch "$T/$mode.go"
	# Wait (bounded) until every fetcher logged completion.
	local limit deadline done_n
	limit=$(awk -v t="$T_MIN" -v n="$N" 'BEGIN { printf "%d", 3 * n * t + 120 }')
	deadline=$(($(date +%s) + limit))
	while :; do
		done_n=0
		for ((i = 1; i <= N; i++)); do
			awk '$2 == $3 && $3 > 0 { f = 1 } END { exit !f }' "$T/$mode.prog$i" 2>/dev/null &&
				done_n=$((done_n + 1))
		done
		((done_n == N)) && break
		(($(date +%s) < deadline)) || fail "$mode: only $done_n of $N fetchers complete after $limit s"
		sleep 0.5
	done
	CPU_BUSY=$(cpu_busy "$cpu_before" "$(head -n 1 /proc/stat)")
	stop_started
	lab_down "$LAB"
	: >"$T/$mode.csv"
	for ((i = 1; i <= N; i++)); do
		cmp -s "$img" "$T/$mode.out$i" || fail "$mode: fetcher $i's image differs from the source"
		awk -v t0="$t0" -v name="p$i" '$3 > 0 { printf "%.3f,%s,%.5f\n", $1 - t0, name, $2 / $3 }' \
			"$T/$mode.prog$i" >>"$T/$mode.csv"
	done
	ALL_S=$(awk -F, '$3 >= 1 { if (!($2 in d) || $1 < d[$2]) d[$2] = $1 }
		END { m = 0; for (k in d) if (d[k] > m) m = d[k]; printf "%.3f\n", m }' "$T/$mode.csv")
}

# Sum of a --stats counter over the N fetchers of MODE.
stats_sum() {
	local mode=$1 key=$2 i sum=0 v
	for ((i = 1; i <= N; i++)); do
		v=$(stat_get "$T/$mode.stats$i" "$key")
		sum=$((sum + v))
	done
	echo "$sum"
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }

log "N=$N, $MIB MiB, every host $RATE Mbit/s up and down: T_min = $T_MIN s"

# Each case runs in a subshell (tools/bench_lib.sh): its results go through $T/CASE.result.
swarm_case() {
	local from_peers fetched discarded
	run_p2pvbd swarm
	from_peers=$(stats_sum swarm bytes_from_peers)
	fetched=$(stats_sum swarm bytes_fetched)
	discarded=$(stats_sum swarm bytes_discarded)
	log "p2pvbd swarm: all complete after $ALL_S s ($(ratio "$ALL_S" "$T_MIN") x T_min); $((from_peers * 100 / fetched))% of the bytes came from other destinations; $((discarded / 1048576)) MiB of pieces arrived twice (endgame); CPU ${CPU_BUSY}% busy"
	cp "$T/swarm.csv" "$OUTDIR/bench-swarm-p2pvbd.csv"
	printf 'SWARM_S=%s\nFROM_PEERS=%s\nFETCHED=%s\nSWARM_CPU=%s\n' \
		"$ALL_S" "$from_peers" "$fetched" "$CPU_BUSY" >"$T/swarm.result"
}

unicast_case() {
	run_p2pvbd unicast
	log "p2pvbd unicast (each fetcher from the seed alone): all complete after $ALL_S s ($(ratio "$ALL_S" "$T_MIN") x T_min)"
	echo "$ALL_S" >"$T/unicast.result"
}

libtorrent_case() {
	local bt_s
	log "stock BitTorrent (python3-libtorrent, tools/bt_lab.sh) in the same kind of lab ..."
	BT_LAB_MBIT=$RATE "$repo/tools/bt_lab.sh" "$TRACKER_BIN" "$img" "$N" "$T/bt" >"$T/bt.log" 2>&1 ||
		fail "tools/bt_lab.sh failed: $(tail -n 20 "$T/bt.log")"
	bt_s=$(python3 -c 'import json,sys; print("%.3f" % json.load(open(sys.argv[1]))["all_complete_s"])' "$T/bt/bt.json")
	cp "$T/bt/bt.json" "$OUTDIR/bench-swarm-libtorrent.json"
	tail -n +2 "$T/bt/bt-progress.csv" | sed 's/,/,bt-/' >"$OUTDIR/bench-swarm-libtorrent.csv"
	log "libtorrent: all complete after $bt_s s ($(ratio "$bt_s" "$T_MIN") x T_min)"
	echo "$bt_s" >"$T/libtorrent.result"
}

# The plot: every peer's progress, p2pvbd's (p1..pN) and libtorrent's (bt-h3..), if measured.
plot_case() {
	cat "$OUTDIR/bench-swarm-p2pvbd.csv" >"$T/all.csv"
	[[ $BT_S == null ]] || cat "$OUTDIR/bench-swarm-libtorrent.csv" >>"$T/all.csv"
	"$repo/tools/plot_progress.sh" "$T/all.csv" "$OUTDIR/bench-swarm.png" \
		"N=$N destinations, $MIB MiB, $RATE Mbit/s per host: p2pvbd (p*) and libtorrent (bt-*)" \
		"$T_MIN" >"$T/plot.log" 2>&1 ||
		fail "plotting failed: $(cat "$T/plot.log")"
	: >"$T/plot.result"
}

# result CASE: what a case left, or null (not run, or failed).
result() {
	if [[ -s $T/$1.result ]]; then cat "$T/$1.result"; else echo null; fi
}

# The limits of the cases: run_p2pvbd waits 3 x N x T_min + 120 s for the fetchers, after
# making the lab and starting the seed.
P2P_LIMIT=$(bench_timeout "$(awk -v t="$T_MIN" -v n="$N" 'BEGIN { printf "%d", 600 + 3 * n * t + 120 }')")
bench_case swarm "$P2P_LIMIT" swarm_case
if [[ -z ${SKIP_UNICAST:-} ]]; then
	bench_case unicast "$P2P_LIMIT" unicast_case
fi
if [[ -z ${SKIP_BT:-} ]]; then
	bench_case libtorrent "$(bench_timeout $((${BT_LAB_TIMEOUT:-300} + 600)))" libtorrent_case
fi
UNICAST_S=$(result unicast)
BT_S=$(result libtorrent)

if [[ ! -s $T/swarm.result ]]; then
	log "no summary line and no plot: the swarm run failed"
	bench_finish
fi
# shellcheck source=/dev/null # SWARM_S, FROM_PEERS, FETCHED, SWARM_CPU
. "$T/swarm.result"
bench_case plot "$(bench_timeout 300)" plot_case
PLOT=null
[[ -e $T/plot.result ]] && PLOT='"bench-out/bench-swarm.png"'

json=$(printf '{"bench":"swarm","n":%d,"bytes":%d,"mbit":%d,"t_min_s":%s,"p2pvbd_s":%s,"ratio_to_t_min":%s,"bar_ratio":1.15,"bytes_from_peers_pct":%d,"cpu_busy_pct":%s,"unicast_s":%s,"libtorrent_s":%s,"p2pvbd_vs_libtorrent":%s,"plot":%s}' \
	"$N" "$F" "$RATE" "$T_MIN" "$SWARM_S" "$(ratio "$SWARM_S" "$T_MIN")" $((FROM_PEERS * 100 / FETCHED)) \
	"${SWARM_CPU:-null}" "$UNICAST_S" "$BT_S" \
	"$([[ $BT_S == null ]] && echo null || ratio "$BT_S" "$SWARM_S")" "$PLOT")
echo "$json"
echo "$json" >>"$OUTDIR/bench-swarm.json"
verdict=met
awk -v r="$(ratio "$SWARM_S" "$T_MIN")" 'BEGIN { exit !(r <= 1.15) }' || verdict="NOT met"
log "bar <= 1.15 x T_min: $verdict"
if [[ $BT_S != null ]]; then
	verdict=met
	awk -v a="$SWARM_S" -v b="$BT_S" 'BEGIN { exit !(a < b) }' || verdict="NOT met"
	log "bar faster than libtorrent ($(ratio "$BT_S" "$SWARM_S") x): $verdict"
fi
[[ $PLOT == null ]] || log "plot: bench-out/bench-swarm.png"
bench_finish
