#!/bin/bash
# SPDX-License-Identifier: ISC
# Live migration benchmarks (make bench-live):
#   tools/bench_live.sh PATH-TO-p2pvbd [--only write,downtime,total]
#
# Prints a few lines on stderr and one JSON object on stdout (also written to
# bench-out/bench-live.json). Every ratio is against an anchor measured in the
# same run. Work files (images, sockets) go under LIVE_DIR, default /dev/shm
# (tmpfs): holes read as the shared zero page there, so hashing a sparse 16 GiB
# image takes a second rather than the ~20 s of page-cache zeroing it costs on
# ext4, and the source's writes cost memory copies, not disk time (fdatasync is
# free: the numbers are the servers' own cost, not a disk's). LIVE_DIR=/var/tmp
# measures on the disk instead.
#
# 1. write: the write overhead at the source. fio --ioengine=nbd, 4 KiB random
#    writes, queue depth 16, WRITE_SECONDS (6) each, on one fully allocated
#    WRITE_MIB (1024) MiB file, served in turn by `p2pvbd seed -e`, by qemu-nbd
#    and by nbdkit's file plugin, all with the caching of seed -e: buffered
#    pwrite, no O_DIRECT, fdatasync on FLUSH (qemu-nbd --cache=writeback
#    --aio=threads; nbdkit file cache=default). WRITE_REPS (5) rounds in rotating
#    order; medians. Bar: p2pvbd >= 0.9 x qemu-nbd and >= 0.9 x nbdkit.
# 2. downtime (loopback): seed -e on a sparse image (DATA_MIB (256) MiB of random
#    data at the start, holes after) of each size in DT_SIZES (GiB, default
#    "1 16"); a writer (tools/live_switch.py, libnbd) does WRITE_RATE (10e6)
#    bytes/s of 4-64 KiB random writes into a hot set of SPAN_MIB (16) MiB of
#    the source's export; one fetch -e. Once the destination has caught up
#    (it lacks at most what the seed has not published, and the seed has at
#    most DIRTY_LIMIT_MIB (4) MiB dirty), the writer stops and flushes, two
#    reads wait at the destination's export (one in the chunk written last,
#    one in a chunk never written; both are held until the final generation),
#    and `p2pvbd ctl SEED-CTL freeze` runs. Downtime = freeze until both reads
#    are answered (their data checked against the source). DT_REPS (5)
#    migrations per size, alternating sizes; medians.
#    Bar: < 50 ms for every size, and the largest size within 1.25 x the
#    smallest (or 5 ms of it).
# 3. total: migration time against the link. In the lab (tools/lab.sh) h1 runs
#    seed -e with the writer, h2 fetch -e, every host shaped to TOTAL_MBIT (200)
#    Mbit/s up and down, a 1 GiB sparse image as in 2. Time from the start of
#    the fetch until the destination is complete after the freeze, against the
#    bytes that crossed the link (fetch --stats bytes_fetched) at the link rate.
#    The destination's image must equal the source's. TOTAL_REPS (5) migrations,
#    each printed. Bar (issue 15): every run completes and is <= TOTAL_BAR (1.10)
#    x the link bound (the writer's hot set must go last, not starve the rest).
# 4. overrun: as 3, once, with the writer at OVERRUN_FACTOR (2) x the link rate:
#    the copy can catch up only if the source's writes are capped (auto-converge,
#    PROTOCOL.md §9.2). Bar: the migration ends, the images are identical; the
#    lowest cap and how long it held are printed.
#
# Catch-up (2, 3 and 4): the freeze waits until the destination lacks at most
# what the seed has not published and the seed has at most DIRTY_LIMIT_MIB
# dirty ("strict"), or, when the first has held CATCHUP_TIMEOUT (10) s without
# the second, on the first alone ("loose"; counted in the JSON).
#
# Parts 2, 3 and 4 need `p2pvbd ctl` (the freeze); without it they are skipped
# with a message (LIVE_FORCE=1 runs them anyway, to test the script itself).
#
# Each part is a case of tools/bench_lib.sh (write, downtime, total, overrun),
# bounded in time (write 300 s + 3 x WRITE_REPS x (WRITE_SECONDS + 60 s);
# downtime 300 s + 300 s per migration; total 300 s + 400 s per migration;
# overrun 900 s; or BENCH_TIMEOUT for each): a part that
# fails prints a JSON failure line (also in bench-live.json) and the others
# still run, with null in the summary line for the failed part; the exit
# status is 1 if any failed. BENCH_OUTDIR replaces bench-out/.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)

usage() {
	sed -n '2,/^set -euo/{/^#/!q;s/^# \{0,1\}//p}' "$0"
}
if [[ ${1:-} == -h || ${1:-} == --help ]]; then
	usage
	exit 0
fi
PARTS=write,downtime,total,overrun
if (($# == 3)) && [[ $2 == --only ]]; then
	PARTS=$3
elif (($# != 1)); then
	echo "usage: $0 PATH-TO-p2pvbd [--only write,downtime,total,overrun]" >&2
	exit 2
fi
want() { [[ ,$PARTS, == *,$1,* ]]; }
for p in ${PARTS//,/ }; do
	case $p in
	write | downtime | total | overrun) ;;
	*)
		echo "bench-live: unknown part '$p' (write, downtime, total, overrun)" >&2
		exit 2
		;;
	esac
done

# The work directory: tmpfs if it has room, else the disk.
MIN_FREE_KIB=$((4 * 1024 * 1024))
LIVE_DIR=${LIVE_DIR:-/dev/shm}
if [[ ! -d $LIVE_DIR ]] || (($(df -Pk "$LIVE_DIR" | awk 'NR == 2 { print $4 }') < MIN_FREE_KIB)); then
	echo "bench-live: $LIVE_DIR missing or under 4 GiB free; using /var/tmp" >&2
	LIVE_DIR=/var/tmp
fi
FS=$(stat -f -c %T "$LIVE_DIR")
export TMPDIR=$LIVE_DIR
# shellcheck source=tests/integration/lib.sh
. "$repo/tests/integration/lib.sh" "$1"
# shellcheck source=tools/lab.sh
. "$repo/tools/lab.sh"
# shellcheck source=tools/bench_lib.sh
. "$repo/tools/bench_lib.sh"
LAB=bl$$
lab_trap "$LAB"

WRITE_MIB=${WRITE_MIB:-1024}
WRITE_SECONDS=${WRITE_SECONDS:-6}
WRITE_REPS=${WRITE_REPS:-5}
DT_SIZES=${DT_SIZES:-"1 16"}
DT_REPS=${DT_REPS:-5}
DATA_MIB=${DATA_MIB:-256}
SPAN_MIB=${SPAN_MIB:-16}
WRITE_RATE=${WRITE_RATE:-10e6}
DIRTY_LIMIT_MIB=${DIRTY_LIMIT_MIB:-4}
CATCHUP_TIMEOUT=${CATCHUP_TIMEOUT:-10}
TOTAL_MBIT=${TOTAL_MBIT:-200}
TOTAL_REPS=${TOTAL_REPS:-5}
TOTAL_BAR=${TOTAL_BAR:-1.10}
OVERRUN_FACTOR=${OVERRUN_FACTOR:-2}
OVERRUN_RATE=$(awk -v m="$TOTAL_MBIT" -v f="$OVERRUN_FACTOR" 'BEGIN { printf "%.0f", m * 1e6 / 8 * f }')
MIB=1048576
PY=/usr/bin/python3
OUTDIR=${BENCH_OUTDIR:-$repo/bench-out}
mkdir -p "$OUTDIR"
: >"$OUTDIR/bench-live.json"
bench_init bench-live "$OUTDIR/bench-live.json"
log() { echo "bench-live: $*" >&2; }

# After each case, whatever its end: the lab of part 3 goes (tools/bench_lib.sh).
bench_case_cleanup() {
	lab_down "$LAB" || true
}

((SPAN_MIB * 2 <= DATA_MIB && SPAN_MIB >= 1)) || fail "SPAN_MIB must be 1 .. DATA_MIB/2"
for p in fio qemu-nbd nbdkit "$PY"; do
	command -v "$p" >/dev/null || fail "$p is missing (tools/install-deps.sh)"
done
"$PY" -c 'import nbd' 2>/dev/null || fail "python3-libnbd is missing (tools/install-deps.sh)"

# forget_pid PID: drop a waited-for PID from cleanup's list (it may be reused).
forget_pid() {
	local p keep=()
	for p in "${PIDS[@]}"; do
		[[ $p == "$1" ]] || keep+=("$p")
	done
	PIDS=("${keep[@]}")
}

# stop_bg PID: stop a background process and forget it.
stop_bg() {
	stop_pid "$1"
	forget_pid "$1"
}

# run_wait OUT ERR CMD...: run CMD with stdout in OUT and stderr in ERR and
# wait for it. In the background, so that a signal runs the traps at once.
run_wait() {
	local out=$1 err=$2 pid rc=0
	shift 2
	"$@" >"$out" 2>"$err" &
	pid=$!
	PIDS+=("$pid")
	wait "$pid" || rc=$?
	forget_pid "$pid"
	return "$rc"
}

# wait_sock PATH PID: wait (60 s at most) for a Unix socket while PID lives.
wait_sock() {
	local i
	for ((i = 0; i < 600; i++)); do
		[[ -S $1 ]] && return 0
		kill -0 "$2" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}

# jget FILE KEY: one field of a JSON object in FILE.
jget() {
	"$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"
}

# make_sparse PATH GIB: a sparse image of GIB GiB, DATA_MIB MiB of random data first.
make_sparse() {
	rm -f "$1"
	truncate -s "$2G" "$1"
	dd if=/dev/urandom of="$1" bs=1M count="$DATA_MIB" conv=notrunc iflag=fullblock status=none
}

# A fetch that waits for the GO file (made by live_switch.py once the writer runs).
# shellcheck disable=SC2016
GATE='i=0; while [ ! -e "$0" ]; do i=$((i + 1)); [ $i -gt 12000 ] && exit 1; sleep 0.01; done; exec "$@"'

HAVE_CTL=1
"$P2PVBD" ctl --help >/dev/null 2>&1 || HAVE_CTL=
keygen "$T/key"
SKIPPED=()

# ---- 1. write overhead at the source ----------------------------------------

# fio_write_iops SOCK OUT: 4 KiB random writes at queue depth 16; IOPS to stdout.
fio_write_iops() {
	run_wait "$2" "$2.err" timeout $((WRITE_SECONDS + 120)) \
		fio --name=w --ioengine=nbd --uri="nbd+unix:///?socket=$1" --rw=randwrite --bs=4k \
		--iodepth=16 --direct=1 --ramp_time=1 --runtime="$WRITE_SECONDS" --time_based \
		--randrepeat=0 --norandommap --output-format=json ||
		fail "fio on $1 failed: $(tail -n 3 "$2.err")"
	# fio may print notes before its JSON: parse from the first brace.
	"$PY" -c 'import json,sys; t=open(sys.argv[1]).read(); print(round(json.loads(t[t.index("{"):])["jobs"][0]["write"]["iops"]))' "$2"
}

write_part() {
	local img=$T/w.img pids=() names=(p2pvbd qemu-nbd nbdkit) r i n name
	log "write: ${WRITE_MIB} MiB file on $LIVE_DIR ($FS); fio 4 KiB random writes, qd 16, ${WRITE_SECONDS} s x $WRITE_REPS per server"
	head -c $((WRITE_MIB * MIB)) /dev/urandom >"$img"
	bg_start "$T/w.seed.log" "$P2PVBD" seed -k "$T/key" -l 127.0.0.1:0 --ctl "$T/w.seed.ctl" \
		-e "unix:$T/w.p2pvbd.sock" "$img"
	pids+=("$BG_PID")
	# file.locking=off: the seed -e above holds the image's QEMU lock (it writes it).
	bg_start "$T/w.qemu-nbd.log" qemu-nbd --cache=writeback --aio=threads -t -e 4 \
		-k "$T/w.qemu-nbd.sock" \
		--image-opts "driver=raw,file.driver=file,file.filename=$img,file.locking=off"
	pids+=("$BG_PID")
	bg_start "$T/w.nbdkit.log" nbdkit -f -U "$T/w.nbdkit.sock" file "$img"
	pids+=("$BG_PID")
	for i in 0 1 2; do
		wait_sock "$T/w.${names[i]}.sock" "${pids[i]}" || fail "${names[i]} did not start"
	done
	for ((r = 0; r < WRITE_REPS; r++)); do
		for ((i = 0; i < 3; i++)); do
			n=$(((i + r) % 3)) # rotate the order: no server always goes first
			name=${names[n]}
			fio_write_iops "$T/w.$name.sock" "$T/w.fio.json" >>"$T/w.$name.iops"
		done
	done
	for i in "${pids[@]}"; do
		stop_bg "$i"
	done
	rm -f "$img"
	local WRITE_JSON
	WRITE_JSON=$("$PY" - "$T" "$WRITE_SECONDS" "$WRITE_REPS" "$WRITE_MIB" "$FS" <<'PY'
import json, statistics, sys
t, secs, reps, mib, fs = sys.argv[1:]
runs = {n: [int(x) for x in open("%s/w.%s.iops" % (t, n)).read().split()]
        for n in ("p2pvbd", "qemu-nbd", "nbdkit")}
med = {n: statistics.median(v) for n, v in runs.items()}
print(json.dumps({"fs": fs, "mib": int(mib), "seconds": int(secs), "reps": int(reps),
                  "iodepth": 16, "bs": 4096, "p2pvbd_iops": round(med["p2pvbd"]),
                  "qemu_nbd_iops": round(med["qemu-nbd"]), "nbdkit_iops": round(med["nbdkit"]),
                  "ratio_vs_qemu_nbd": round(med["p2pvbd"] / med["qemu-nbd"], 3),
                  "ratio_vs_nbdkit": round(med["p2pvbd"] / med["nbdkit"], 3), "bar": 0.9,
                  "runs": runs}))
PY
)
	log "write: $("$PY" -c 'import json,sys; d=json.loads(sys.argv[1]); print("p2pvbd %d, qemu-nbd %d, nbdkit %d IOPS (medians): %.3f x qemu-nbd, %.3f x nbdkit; bar >= 0.9 x both: %s" % (d["p2pvbd_iops"], d["qemu_nbd_iops"], d["nbdkit_iops"], d["ratio_vs_qemu_nbd"], d["ratio_vs_nbdkit"], "met" if min(d["ratio_vs_qemu_nbd"], d["ratio_vs_nbdkit"]) >= 0.9 else "NOT met"))' "$WRITE_JSON")"
	# The case runs in a subshell (tools/bench_lib.sh): its result goes through a file.
	echo "$WRITE_JSON" >"$T/write.result"
}

# ---- common to 2 and 3: one migration driven by tools/live_switch.py --------

# migrate MODE TAG IMG SEED-LISTEN NS-SEED NS-FETCH: seed -e on IMG, a gated
# fetch -e, live_switch.py MODE; the driver's JSON in $T/TAG.json, the fetch's
# stats in $T/TAG.stats, its image in $T/TAG.out. NS-*: "" or a namespace.
migrate() {
	local mode=$1 tag=$2 img=$3 listen=$4 ns_s=$5 ns_f=$6 seed fetch uri
	local pre_s=() pre_f=()
	[[ -n $ns_s ]] && pre_s=(ip netns exec "$ns_s")
	[[ -n $ns_f ]] && pre_f=(ip netns exec "$ns_f")
	rm -f "$T/$tag".{uri,go,out,stats} "$T/$tag".out.p2pvbd-* "$T/$tag".{src,dst}.sock
	bg_start "$T/$tag.seed.log" "${pre_s[@]}" "$P2PVBD" seed -k "$T/key" -l "$listen" \
		--ctl "$T/$tag.seed.ctl" -e "unix:$T/$tag.src.sock" --uri-file "$T/$tag.uri" "$img"
	seed=$BG_PID
	wait_for_file "$T/$tag.uri" 120 "$seed" || fail "$tag: the seed did not start"
	uri=$(head -n 1 "$T/$tag.uri")
	bg_start "$T/$tag.fetch.log" "${pre_f[@]}" sh -c "$GATE" "$T/$tag.go" \
		"$P2PVBD" fetch --no-progress -e "unix:$T/$tag.dst.sock" --ctl "$T/$tag.dst.ctl" \
		--stats "$T/$tag.stats" "$uri" "$T/$tag.out"
	fetch=$BG_PID
	local span_off=$((DATA_MIB * MIB / 2)) clean_off=$((DATA_MIB * MIB / 4 + 12288))
	run_wait "$T/$tag.json" "$T/$tag.err" timeout 400 "$PY" "$repo/tools/live_switch.py" "$mode" \
		--p2pvbd "$P2PVBD" --src-sock "$T/$tag.src.sock" --src-image "$img" \
		--seed-ctl "$T/$tag.seed.ctl" --dst-ctl "$T/$tag.dst.ctl" --dst-sock "$T/$tag.dst.sock" \
		--go "$T/$tag.go" --rate "$WRITE_RATE" --span-off "$span_off" \
		--span-len $((SPAN_MIB * MIB)) --clean-off "$clean_off" \
		--dirty-limit $((DIRTY_LIMIT_MIB * MIB)) --catchup-timeout "$CATCHUP_TIMEOUT" ||
		fail "$tag: $(tail -n 5 "$T/$tag.err")"
	stop_bg "$fetch" # writes its --stats
	stop_bg "$seed"
}

# ---- 2. downtime ----------------------------------------------------------------

downtime_part() {
	local g r tag sizes
	read -ra sizes <<<"$DT_SIZES"
	log "downtime: sparse images of ${DT_SIZES// / and } GiB ($DATA_MIB MiB of data) on $LIVE_DIR ($FS), writer $WRITE_RATE B/s into a $SPAN_MIB MiB hot set, loopback, $DT_REPS migrations each"
	for g in "${sizes[@]}"; do
		make_sparse "$T/dt$g.img" "$g"
	done
	for ((r = 1; r <= DT_REPS; r++)); do
		for g in "${sizes[@]}"; do
			tag=dt$g.$r
			migrate downtime "$tag" "$T/dt$g.img" 127.0.0.1:0 "" ""
			rm -f "$T/$tag.out" "$T/$tag".out.p2pvbd-*
			log "downtime $g GiB #$r: $("$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); print("reads answered %.1f ms (first %.1f, final status %.1f, freeze returned %.1f) after the freeze; %.0f MiB dirty at the freeze (%s); reads held %s, data %s" % (d["all_reads_ms"], d["first_read_ms"], d["final_status_ms"], d["freeze_ms"], d["dirty_at_freeze"] / 1048576, d["caught_up"], d["held_before_freeze"], "ok" if d["dirty_read_matches_source"] and d["clean_read_matches_source"] else "STALE"))' "$T/$tag.json")"
		done
	done
	rm -f "$T"/dt*.img
	local DT_JSON
	DT_JSON=$("$PY" - "$T" "$DT_REPS" "${sizes[@]}" <<'PY'
import json, statistics, sys
t, reps, sizes = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
out = {"reps": reps, "sizes_gib": [int(g) for g in sizes], "bar_ms": 50}
med = {}
for g in sizes:
    runs = [json.load(open("%s/dt%s.%d.json" % (t, g, r))) for r in range(1, reps + 1)]
    m = lambda k: round(statistics.median(x[k] for x in runs), 3)
    med[g] = m("all_reads_ms")
    out["gib%s" % g] = {
        "downtime_ms": med[g], "max_ms": max(x["all_reads_ms"] for x in runs),
        "first_read_ms": m("first_read_ms"), "final_status_ms": m("final_status_ms"),
        "freeze_ms": m("freeze_ms"), "dirty_at_freeze": m("dirty_at_freeze"),
        "reads_held": all(x["held_before_freeze"] for x in runs),
        "data_ok": all(x["dirty_read_matches_source"] and x["clean_read_matches_source"]
                       for x in runs),
        "caught_up_strict": sum(x["caught_up"] == "strict" for x in runs),
        "runs_ms": [x["all_reads_ms"] for x in runs]}
lo, hi = sizes[0], sizes[-1]
out["ratio_largest_vs_smallest"] = round(med[hi] / med[lo], 3) if med[lo] > 0 else None
out["met"] = (all(v < 50 for v in med.values()) and
              (med[hi] <= 1.25 * med[lo] or med[hi] - med[lo] < 5) and
              all(out["gib%s" % g]["data_ok"] and out["gib%s" % g]["reads_held"] for g in sizes))
print(json.dumps(out))
PY
)
	log "downtime: $("$PY" -c 'import json,sys; d=json.loads(sys.argv[1]); g=d["sizes_gib"]; print(", ".join("%d GiB %.1f ms" % (x, d["gib%d" % x]["downtime_ms"]) for x in g) + " (medians); %d GiB / %d GiB = %s; bar < 50 ms and about equal: %s" % (g[-1], g[0], d["ratio_largest_vs_smallest"], "met" if d["met"] else "NOT met"))' "$DT_JSON")"
	echo "$DT_JSON" >"$T/downtime.result"
}

# ---- 3. total migration time against the link; 4. a writer that outruns it ---

# lab_migration TAG IMG: one migration across the lab (h1 seed -e and the writer, h2 fetch -e,
# every host TOTAL_MBIT up and down), the writer at WRITE_RATE; the run's JSON in $T/TAG.run
# (a file, not stdout: a command substitution would run it in a subshell without the traps).
lab_migration() {
	local tag=$1 img=$2 ns1 ns2 h1 identical=false
	lab_up "$LAB" 2 --up-mbit "$TOTAL_MBIT" --down-mbit "$TOTAL_MBIT" || fail "cannot make the lab"
	ns1=$(lab_ns "$LAB" h1)
	ns2=$(lab_ns "$LAB" h2)
	h1=$(lab_addr "$LAB" h1)
	migrate total "$tag" "$img" "$h1:7001" "$ns1" "$ns2"
	lab_down "$LAB" || fail "cannot remove the lab"
	check_stats "$T/$tag.stats"
	cmp -s "$img" "$T/$tag.out" && identical=true
	[[ $identical == true ]] || log "$tag: the destination's image DIFFERS from the source's"
	rm -f "$T/$tag.out" "$T/$tag".out.p2pvbd-*
	"$PY" - "$T/$tag.json" "$T/$tag.stats" "$TOTAL_MBIT" "$identical" >"$T/$tag.run" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
st = json.load(open(sys.argv[2]))
mbit = float(sys.argv[3])
bound = st["bytes_fetched"] * 8 / (mbit * 1e6)
print(json.dumps({"total_s": d["total_s"], "bytes_fetched": st["bytes_fetched"],
                  "link_bound_s": round(bound, 3), "ratio_to_link_bound": round(d["total_s"] / bound, 3),
                  "catchup_s": d["catchup_s"], "caught_up": d["caught_up"],
                  "complete_after_freeze_s": d["complete_after_freeze_s"],
                  "dirty_at_freeze": d["dirty_at_freeze"], "write_bytes": d["write_bytes"],
                  "write_rate": d["write_rate"], "throttle_min_rate": d["throttle_min_rate"],
                  "throttle_capped_s": d["throttle_capped_s"], "image_size": d["image_size"],
                  "identical": sys.argv[4] == "true"}))
PY
}

total_part() {
	local img=$T/tot.img r run
	log "total: lab, every host $TOTAL_MBIT Mbit/s up and down; 1 GiB sparse image ($DATA_MIB MiB of data), writer $WRITE_RATE B/s into a $SPAN_MIB MiB hot set; $TOTAL_REPS migrations"
	make_sparse "$img" 1
	: >"$T/tot.runs"
	for ((r = 1; r <= TOTAL_REPS; r++)); do
		lab_migration "tot$r" "$img"
		run=$(cat "$T/tot$r.run")
		echo "$run" >>"$T/tot.runs"
		log "total: run $r: $("$PY" -c 'import json,sys; d=json.loads(sys.argv[1]); print("%.2f s; %.0f MiB crossed the link = %.2f s at the link rate: %.3f x; writer %.1f MB/s%s; identical: %s" % (d["total_s"], d["bytes_fetched"] / 1048576, d["link_bound_s"], d["ratio_to_link_bound"], d["write_rate"] / 1e6, (", capped down to %.1f MB/s for %.1f s" % (d["throttle_min_rate"] / 1e6, d["throttle_capped_s"])) if d["throttle_min_rate"] else ", never capped", d["identical"]))' "$run")"
	done
	rm -f "$img"
	local TOTAL_JSON
	TOTAL_JSON=$("$PY" - "$T/tot.runs" "$TOTAL_MBIT" "$TOTAL_BAR" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
bar = float(sys.argv[3])
ratios = [r["ratio_to_link_bound"] for r in runs]
print(json.dumps({"mbit": float(sys.argv[2]), "runs": len(runs), "bar": bar,
                  "total_s": [r["total_s"] for r in runs], "ratios": ratios,
                  "median_ratio": statistics.median(ratios), "worst_ratio": max(ratios),
                  "all_identical": all(r["identical"] for r in runs),
                  "met": all(x <= bar for x in ratios) and all(r["identical"] for r in runs),
                  "detail": runs}))
PY
)
	log "total: $("$PY" -c 'import json,sys; d=json.loads(sys.argv[1]); print("%d runs: %s x the link bound (worst %.3f; bar <= %.2f in every run: %s); images identical: %s" % (d["runs"], ", ".join("%.3f" % x for x in d["ratios"]), d["worst_ratio"], d["bar"], "met" if d["met"] else "NOT met", d["all_identical"]))' "$TOTAL_JSON")"
	echo "$TOTAL_JSON" >"$T/total.result"
}

# A writer at OVERRUN_FACTOR x the link rate: without throttling the copy never catches up.
overrun_part() {
	local img=$T/over.img run
	local WRITE_RATE=$OVERRUN_RATE
	log "overrun: lab as in total; writer $WRITE_RATE B/s ($OVERRUN_FACTOR x the $TOTAL_MBIT Mbit/s link) into the $SPAN_MIB MiB hot set: the migration must still end (auto-converge)"
	make_sparse "$img" 1
	lab_migration over "$img"
	run=$(cat "$T/over.run")
	rm -f "$img"
	local OVER_JSON
	OVER_JSON=$("$PY" -c 'import json,sys; d=json.loads(sys.argv[1]); d["writer_asked"]=float(sys.argv[2]); d["factor"]=float(sys.argv[3]); d["met"]=d["identical"]; print(json.dumps(d))' "$run" "$WRITE_RATE" "$OVERRUN_FACTOR")
	log "overrun: $("$PY" -c 'import json,sys; d=json.loads(sys.argv[1]); print("ended after %.2f s (%.3f x the link bound for the %.0f MiB that crossed); the writer asked %.1f MB/s and got %.1f MB/s: %s; image identical: %s" % (d["total_s"], d["ratio_to_link_bound"], d["bytes_fetched"] / 1048576, d["writer_asked"] / 1e6, d["write_rate"] / 1e6, ("auto-converge capped it down to %.2f MB/s, capped for %.1f s of the catch-up" % (d["throttle_min_rate"] / 1e6, d["throttle_capped_s"])) if d["throttle_min_rate"] else "never capped", d["identical"]))' "$OVER_JSON")"
	echo "$OVER_JSON" >"$T/overrun.result"
}

# ---- run ------------------------------------------------------------------------

# The limit of each case (BENCH_TIMEOUT replaces them all): generous beside a normal run;
# every migration is bounded by its own timeouts as well (120 s to start, 400 s to switch).
read -ra DT_SIZES_A <<<"$DT_SIZES"
declare -A LIMIT=(
	[write]=$(bench_timeout $((300 + 3 * WRITE_REPS * (WRITE_SECONDS + 60))))
	[downtime]=$(bench_timeout $((300 + 300 * DT_REPS * ${#DT_SIZES_A[@]})))
	[total]=$(bench_timeout $((300 + 400 * TOTAL_REPS)))
	[overrun]=$(bench_timeout 900)
)
for p in write downtime total overrun; do
	want "$p" || continue
	if [[ $p != write && -z $HAVE_CTL && -z ${LIVE_FORCE:-} ]]; then
		log "$p: SKIPPED: this p2pvbd has no 'ctl' command (the freeze); LIVE_FORCE=1 runs it anyway"
		SKIPPED+=("$p")
		continue
	fi
	bench_case "$p" "${LIMIT[$p]}" "${p}_part"
done

# result PART: the JSON a part left, or null (not run, or failed).
result() {
	if [[ -s $T/$1.result ]]; then cat "$T/$1.result"; else echo null; fi
}
json=$("$PY" - "$(result write)" "$(result downtime)" "$(result total)" "$(result overrun)" "${SKIPPED[*]}" <<'PY'
import json, sys
w, dt, tot, over, skipped = sys.argv[1:]
print(json.dumps({"bench": "live", "write": json.loads(w), "downtime": json.loads(dt),
                  "total": json.loads(tot), "overrun": json.loads(over),
                  "skipped": skipped.split()}))
PY
)
echo "$json"
echo "$json" >>"$OUTDIR/bench-live.json"
bench_finish
