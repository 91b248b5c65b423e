#!/bin/bash
# SPDX-License-Identifier: ISC
# The stock-BitTorrent anchor of the swarm benchmark, in a network lab:
#
#   tools/bt_lab.sh P2PVBD_TRACKER IMAGE N OUTDIR
#
# Makes a lab (tools/lab.sh) of N+2 hosts, each shaped to 100 Mbit/s up and
# 100 Mbit/s down: h1 runs P2PVBD_TRACKER (the repo's BitTorrent tracker), h2
# seeds IMAGE with libtorrent, h3..h(N+2) fetch it with libtorrent
# (tools/bt_swarm.py, run with /usr/bin/python3; needs root). The fetchers
# share one clock: they are started together and each adds the torrent at
# the same instant t0 (a few seconds after launch, so that interpreter
# start-up is not timed). When all N have completed (and each has checked
# its file against the torrent's piece hashes) everything is stopped, every
# downloaded file is compared with IMAGE (cmp), and OUTDIR gets:
#   bt.json          {"n": N, "bytes": F, "all_complete_s": X,
#                     "per_peer_s": [...], ...}  times in seconds since t0;
#                     per_peer_s in host order h3..h(N+2); also "names",
#                     "mbit", "piece_kib", "t_min_s" (Kumar-Ross bound for
#                     equal rates: max(F/u, N*F/((N+1)*u)) = F/u),
#                     "ratio_to_t_min", "cpu_busy_pct": the whole machine's
#                     CPU use (100 = every CPU busy) from t0 to the last
#                     completion, since a saturated CPU, not the links, can
#                     be what limits a run; "cpu_busy_before_pct": the same
#                     over 1 s before the lab is made (other load on the
#                     machine skews the result); "stock": false if
#                     BT_LAB_SEED_ARGS/BT_LAB_FETCH_ARGS changed libtorrent's
#                     configuration.
#   bt-progress.csv  every fetcher's samples "time_s,name,fraction", merged
#                     and sorted by time, one header line.
#   bt-logs/         each process's log, tc.txt (shaping queue statistics:
#                     drops, overlimits); kept also on failure.
# Fetchers keep seeding to each other until all are done, like real peers.
#
# Environment: BT_LAB_MBIT (default 100) rate of every host;
# BT_LAB_TIMEOUT (default 300) seconds to wait for all fetchers;
# BT_LAB_PIECE_KIB (default 256) torrent piece size; BT_LAB_SEED_ARGS and
# BT_LAB_FETCH_ARGS (default empty; split on blanks) extra bt_swarm.py
# arguments for the seed / every fetcher, for experiments only (e.g.
# "--super-seed", "--set enable_outgoing_utp=1"); TMPDIR for the N
# downloaded copies (N x size of IMAGE, removed at exit).
# The lab (named btb<pid>) is removed and every process in it killed on any
# exit, including failures and Ctrl-C. Exit 0 on success, 1 on failure.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=tools/lab.sh
. "$repo/tools/lab.sh"

PY=/usr/bin/python3
SWARM=$repo/tools/bt_swarm.py
MBIT=${BT_LAB_MBIT:-100}
WAIT_S=${BT_LAB_TIMEOUT:-300}
PIECE_KIB=${BT_LAB_PIECE_KIB:-256}
read -r -a SEED_ARGS <<<"${BT_LAB_SEED_ARGS:-}"
read -r -a FETCH_ARGS <<<"${BT_LAB_FETCH_ARGS:-}"
START_DELAY_S=3 # fetchers launch, then all add the torrent at t0 = launch + this

log() { echo "bt_lab: $*" >&2; }
fail() {
	log "FAIL: $*"
	exit 1
}

if (($# != 4)); then
	echo "usage: $0 P2PVBD_TRACKER IMAGE N OUTDIR" >&2
	exit 2
fi
TRACKER_BIN=$1
IMAGE=$2
N=$3
OUTDIR=$4
[[ $N =~ ^[1-9][0-9]{0,2}$ ]] && ((N + 2 <= 200)) || fail "N must be 1..198"
[[ $WAIT_S =~ ^[1-9][0-9]*$ ]] || fail "BT_LAB_TIMEOUT must be a positive integer"
((EUID == 0)) || fail "must be root (network namespaces)"
[[ -x $TRACKER_BIN ]] || fail "no tracker executable at $TRACKER_BIN"
[[ -f $IMAGE ]] || fail "no image file $IMAGE"
[[ -x $PY ]] && "$PY" -c 'import libtorrent' 2>/dev/null || fail "$PY cannot import libtorrent"
TRACKER_BIN=$(realpath "$TRACKER_BIN")
IMAGE=$(realpath "$IMAGE")
BYTES=$(stat -c %s "$IMAGE")
((BYTES > 0)) || fail "$IMAGE is empty"
mkdir -p "$OUTDIR"
OUTDIR=$(realpath "$OUTDIR")

W=$(mktemp -d "${TMPDIR:-/tmp}/btb-work.XXXXXX")
need_kib=$((BYTES / 1024 * (N + 1) + 65536))
avail_kib=$(df -Pk "$W" | awk 'NR == 2 { print $4 }')
if ((avail_kib < need_kib)); then
	rm -rf "$W"
	fail "need $((need_kib / 1024)) MiB free in $W, have $((avail_kib / 1024)) MiB"
fi

# cpu_ticks: "busy total" jiffies of the whole machine (/proc/stat; busy =
# all but idle and iowait).
cpu_ticks() {
	awk '$1 == "cpu" { t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t; exit }' /proc/stat
}
# cpu_pct: percent busy between the samples cpu_busy0/cpu_total0 and
# cpu_busy1/cpu_total1.
cpu_pct() {
	awk -v b="$((cpu_busy1 - cpu_busy0))" -v t="$((cpu_total1 - cpu_total0))" \
		'BEGIN { printf "%.1f", (t > 0 ? 100 * b / t : 0) }'
}

LAB=btb$$
# Our cleanup runs on every exit; lab_trap puts "lab_down $LAB" in front of
# it (and of the INT/TERM exits), so the lab and everything in it goes first.
# (lab_trap runs lab_down before it, so $? here is not the exit status.)
SUCCESS=0
cleanup() {
	if [[ -d $W/logs ]]; then
		rm -rf "$OUTDIR/bt-logs"
		cp -r "$W/logs" "$OUTDIR/bt-logs" 2>/dev/null || true
	fi
	rm -rf "$W"
	if ((SUCCESS == 0)); then log "failed or interrupted; logs in $OUTDIR/bt-logs"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
lab_trap "$LAB"

mkdir -p "$W/logs" "$W/seed" "$W/done"
rm -f "$OUTDIR/bt.json" "$OUTDIR/bt-progress.csv"

# Machine CPU use over one second before the run: other work on the machine
# (another benchmark) skews the result; reported, not refused.
read -r cpu_busy0 cpu_total0 < <(cpu_ticks)
sleep 1
read -r cpu_busy1 cpu_total1 < <(cpu_ticks)
CPU_BEFORE_PCT=$(cpu_pct)
if awk -v p="$CPU_BEFORE_PCT" 'BEGIN { exit !(p > 10) }'; then
	log "WARNING: the machine is already ${CPU_BEFORE_PCT}% busy; the result will be skewed"
fi

log "lab $LAB: $((N + 2)) hosts at $MBIT Mbit/s up and down"
if ((${#SEED_ARGS[@]} + ${#FETCH_ARGS[@]} > 0)); then
	log "NOT the stock anchor: seed args '${SEED_ARGS[*]}', fetch args '${FETCH_ARGS[*]}'"
fi
lab_up "$LAB" $((N + 2)) --up-mbit "$MBIT" --down-mbit "$MBIT" || fail "lab_up failed"
ADDR=()
for ((i = 1; i <= N + 2; i++)); do
	ADDR[i]=$(lab_addr "$LAB" "h$i") || fail "no address for h$i"
done

# wait_for FILE SECS PID WHAT: until FILE is non-empty; fail if PID dies.
wait_for() {
	local f=$1 secs=$2 pid=$3 what=$4 i
	for ((i = 0; i < secs * 10; i++)); do
		[[ -s $f ]] && return 0
		kill -0 "$pid" 2>/dev/null || fail "$what exited early (see $OUTDIR/bt-logs)"
		sleep 0.1
	done
	fail "$what not ready after $secs s"
}

# Tracker on h1.
ip netns exec "$(lab_ns "$LAB" h1)" "$TRACKER_BIN" -l "${ADDR[1]}:6969" -q \
	</dev/null >"$W/logs/tracker.out" 2>"$W/logs/tracker.err" &
TRACKER_PID=$!
wait_for "$W/logs/tracker.out" 10 "$TRACKER_PID" "tracker"
URL=http://${ADDR[1]}:6969/announce

# The torrent (no network needed: made in the root namespace).
"$PY" "$SWARM" make-torrent "$IMAGE" "$URL" "$W/image.torrent" --piece-kib "$PIECE_KIB" \
	>"$W/logs/make-torrent.out" 2>&1 || fail "make-torrent failed: $(cat "$W/logs/make-torrent.out")"
log "$(cat "$W/logs/make-torrent.out")"

# Seed on h2, from a directory where the torrent's name points at IMAGE.
NAME_IN_TORRENT=$(basename "$IMAGE")
ln -s "$IMAGE" "$W/seed/$NAME_IN_TORRENT"
PEER_TIMEOUT=$((WAIT_S + 120))
ip netns exec "$(lab_ns "$LAB" h2)" "$PY" "$SWARM" seed "$W/image.torrent" "$W/seed" \
	--listen "${ADDR[2]}:6881" --stop-file "$W/stop" --ready-file "$W/seed.ready" \
	--timeout "$PEER_TIMEOUT" "${SEED_ARGS[@]}" </dev/null >"$W/logs/seed.out" 2>"$W/logs/seed.err" &
SEED_PID=$!
wait_for "$W/seed.ready" 120 "$SEED_PID" "seed"
log "seed ready"

# Fetchers on h3..h(N+2), all adding the torrent at the same t0.
T0=$(awk -v d="$START_DELAY_S" -v now="$(date +%s.%N)" 'BEGIN { printf "%.3f", now + d }')
FPIDS=()
NAMES=()
for ((k = 1; k <= N; k++)); do
	i=$((k + 2))
	name=h$i
	NAMES[k]=$name
	mkdir -p "$W/$name"
	ip netns exec "$(lab_ns "$LAB" "h$i")" "$PY" "$SWARM" fetch "$W/image.torrent" "$W/$name" \
		--listen "${ADDR[i]}:6881" --name "$name" --t0 "$T0" \
		--progress-csv "$W/$name.csv" --done-file "$W/done/$name" \
		--stop-file "$W/stop" --timeout "$PEER_TIMEOUT" "${FETCH_ARGS[@]}" \
		</dev/null >"$W/logs/$name.out" 2>"$W/logs/$name.err" &
	FPIDS[k]=$!
done
log "$N fetchers launched; t0 = $T0"
sleep "$(awk -v t0="$T0" -v now="$(date +%s.%N)" 'BEGIN { d = t0 - now; printf "%.3f", (d > 0 ? d : 0) }')"
read -r cpu_busy0 cpu_total0 < <(cpu_ticks)

# Wait (bounded) for every fetcher's done line.
deadline=$(($(date +%s) + START_DELAY_S + WAIT_S))
while :; do
	ndone=0
	for ((k = 1; k <= N; k++)); do
		if [[ -s $W/done/${NAMES[k]} ]]; then
			ndone=$((ndone + 1))
		elif ! kill -0 "${FPIDS[k]}" 2>/dev/null; then
			fail "fetcher ${NAMES[k]} exited before completing (see $OUTDIR/bt-logs/${NAMES[k]}.err)"
		fi
	done
	((ndone == N)) && break
	kill -0 "$SEED_PID" 2>/dev/null || fail "seed exited early"
	(($(date +%s) < deadline)) || fail "only $ndone of $N fetchers complete after $WAIT_S s"
	sleep 0.2
done
read -r cpu_busy1 cpu_total1 < <(cpu_ticks)
CPU_PCT=$(cpu_pct)
log "all $N fetchers complete; machine CPU busy ${CPU_PCT}% of $(nproc) CPUs meanwhile"
# Queue statistics of the shaping (drops, overlimits), for the record.
for ((i = 1; i <= N + 2; i++)); do
	echo "== h$i upload (eth0 egress)"
	tc -n "$(lab_ns "$LAB" "h$i")" -s qdisc show dev eth0
	echo "== h$i download (bridge port h$i egress)"
	tc -n "$LAB-br" -s qdisc show dev "h$i"
done >"$W/logs/tc.txt" 2>&1 || true

# Stop everyone (stop file), wait a bounded time for clean exits.
touch "$W/stop"
stop_rc=0
for pid in "${FPIDS[@]}" "$SEED_PID"; do
	for ((j = 0; j < 150; j++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	rc=0
	if kill -0 "$pid" 2>/dev/null; then
		log "pid $pid did not stop in 15 s; the lab teardown will kill it"
		stop_rc=1
	else
		wait "$pid" || rc=$?
		((rc == 0)) || {
			log "pid $pid exited $rc"
			stop_rc=1
		}
	fi
done
kill -TERM "$TRACKER_PID" 2>/dev/null || true
wait "$TRACKER_PID" 2>/dev/null || true
for ((k = 1; k <= N; k++)); do
	grep -h '^bt_swarm: summary' "$W/logs/${NAMES[k]}.err" >&2 || true
done
grep -h '^bt_swarm: summary' "$W/logs/seed.err" >&2 || true
((stop_rc == 0)) || fail "a peer did not exit cleanly"

# Every copy must equal the image.
for ((k = 1; k <= N; k++)); do
	f=$W/${NAMES[k]}/$NAME_IN_TORRENT
	cmp "$IMAGE" "$f" || fail "${NAMES[k]}'s copy differs from $IMAGE"
done
log "all $N copies equal the image"

# Results.
{
	echo "time_s,name,fraction"
	for ((k = 1; k <= N; k++)); do
		tail -n +2 "$W/${NAMES[k]}.csv"
	done | sort -t, -k1,1g -s
} >"$OUTDIR/bt-progress.csv"

times=()
for ((k = 1; k <= N; k++)); do
	read -r word t <"$W/done/${NAMES[k]}"
	[[ $word == complete && $t =~ ^-?[0-9]+(\.[0-9]+)?$ ]] || fail "bad done line from ${NAMES[k]}"
	times[k]=$t
done
json=$(printf '%s\n' "${times[@]}" | awk -v n="$N" -v bytes="$BYTES" -v mbit="$MBIT" \
	-v piece="$PIECE_KIB" -v names="${NAMES[*]}" -v cpu="$CPU_PCT" -v cpu0="$CPU_BEFORE_PCT" \
	-v stock="$( ((${#SEED_ARGS[@]} + ${#FETCH_ARGS[@]} == 0)) && echo true || echo false)" '
	{ t[NR] = $1; if (NR == 1 || $1 > max) max = $1 }
	END {
		split(names, nm, " ")
		u = mbit * 1e6
		tmin = bytes * 8 / u
		alt = n * bytes * 8 / ((n + 1) * u)
		if (alt > tmin) tmin = alt
		printf "{\"n\": %d, \"bytes\": %d, \"all_complete_s\": %.3f, \"per_peer_s\": [", n, bytes, max
		for (i = 1; i <= n; i++) printf "%s%.3f", (i > 1 ? ", " : ""), t[i]
		printf "], \"names\": ["
		for (i = 1; i <= n; i++) printf "%s\"%s\"", (i > 1 ? ", " : ""), nm[i]
		printf "], \"mbit\": %s, \"piece_kib\": %d, \"t_min_s\": %.3f, \"ratio_to_t_min\": %.3f, \"cpu_busy_pct\": %s, \"cpu_busy_before_pct\": %s, \"stock\": %s}\n", mbit, piece, tmin, max / tmin, cpu, cpu0, stock
	}')
echo "$json" >"$OUTDIR/bt.json"
echo "$json"
SUCCESS=1
