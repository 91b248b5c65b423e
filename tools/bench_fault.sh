#!/bin/bash
# SPDX-License-Identifier: ISC
# Benchmarks of the NBD export (make bench-fault): tools/bench_fault.sh PATH-TO-p2pvbd
#
# Prints one JSON object per line (also written to bench-out/bench-fault.json).
#
# 1. Fault latency, in the lab (tools/lab.sh): the seed in host h1 with its
#    upload shaped to 100 Mbit/s, fetch -e in host h2. p50/p99 of single 4 KiB
#    reads (tools/faultlat.py, through libnbd) at random offsets of chunks that
#    have not arrived:
#      (a) idle:     fetch --lazy (no background transfer: the link is idle)
#      (b) loaded:   a normal fetch, its background transfer saturating the link
#      (c) no-boost: as (b) with --no-boost (faults wait in the same FIFO)
#    Bar: p99(b) <= 1.5 x p99(a); the ratio p99(c)/p99(b) is printed too.
# 2. Local read speed of a complete export (loopback, no shaping), against
#    nbdkit's file plugin and qemu-nbd serving the same file: nbdcopy of the
#    whole export to null: (time), and fio 4 KiB random reads at queue depth 32
#    with --ioengine=nbd (IOPS). Bar: >= 0.95x both.
#
# FAULT_MIB (default 512) and READ_MIB (default 1024) size the images; FAULT_READS
# (default 60) the samples per case. Work files go under ${TMPDIR:-/var/tmp}; BENCH_OUTDIR
# replaces bench-out/. SKIP_READ_SPEED=1 skips part 2.
#
# The two parts are cases of tools/bench_lib.sh, "fault-latency" and "read-speed", each bounded
# (900 s, or BENCH_TIMEOUT): a part that fails prints a JSON failure line and the other still
# runs; the exit status is 1 if any failed.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
export TMPDIR=${TMPDIR:-/var/tmp}
# shellcheck source=tests/integration/lib.sh
. "$repo/tests/integration/lib.sh" "$@"
# shellcheck source=tools/lab.sh
. "$repo/tools/lab.sh"
# shellcheck source=tools/bench_lib.sh
. "$repo/tools/bench_lib.sh"

FAULT_MIB=${FAULT_MIB:-512}
READ_MIB=${READ_MIB:-1024}
FAULT_READS=${FAULT_READS:-60}
CHUNK=$((256 * 1024))
OUTDIR=${BENCH_OUTDIR:-$repo/bench-out}
mkdir -p "$OUTDIR"
: >"$OUTDIR/bench-fault.json"
bench_init bench-fault "$OUTDIR/bench-fault.json"
CASE_S=$(bench_timeout 900)
PY=/usr/bin/python3
log() { echo "bench-fault: $*" >&2; }

# emit JSON: one result line, printed and kept.
emit() {
	echo "$1"
	echo "$1" >>"$OUTDIR/bench-fault.json"
}

# wait_export LOG PID: wait until fetch says it exports; print the address.
wait_export() {
	local i
	for ((i = 0; i < 600; i++)); do
		if grep -q '^exporting on ' "$1" 2>/dev/null; then
			sed -n 's/^exporting on //p' "$1" | head -n 1
			return 0
		fi
		kill -0 "$2" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}

# ---- 1. fault latency in the lab ------------------------------------------

LAB=bf$$
lab_trap "$LAB"
keygen "$T/key"

# After each case, whatever its end: the lab goes (tools/bench_lib.sh).
bench_case_cleanup() {
	lab_down "$LAB" || true
}

# fault_case NAME FETCH-OPTIONS...: p50/p99 JSON of the reads into $T/NAME.json.
fault_case() {
	local name=$1 out=$T/$1.img sock=$T/$1.sock addr pid
	shift
	rm -f "$out" "$out".p2pvbd-* "$sock"
	bg_start "$T/$name.log" ip netns exec "$NS2" "$P2PVBD" fetch --no-progress \
		-e "unix:$sock" "$@" "$URI" "$out"
	pid=$BG_PID
	addr=$(wait_export "$T/$name.log" "$pid") || fail "$name: fetch did not export"
	# Let the background transfer (if any) fill the link first.
	sleep 3
	# The warm-up read loads the chunk table page of the second half.
	"$PY" "$repo/tools/faultlat.py" "nbd+unix:///?socket=$sock" \
		--offsets-from $((half + CHUNK)) --count "$FAULT_READS" --warm "$half" \
		>"$T/$name.json" || fail "$name: faultlat failed"
	stop_pid "$pid"
	log "$name: $("$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); print("p50 %.1f ms, p99 %.1f ms" % (d["p50_ms"], d["p99_ms"]))' "$T/$name.json")"
}

fault_latency_case() {
	lab_up "$LAB" 2 || fail "cannot make the lab"
	lab_shape "$LAB" h1 100 0 || fail "cannot shape h1"
	H1=$(lab_addr "$LAB" h1)
	NS1=$(lab_ns "$LAB" h1)
	NS2=$(lab_ns "$LAB" h2)

	log "writing a ${FAULT_MIB} MiB random image"
	head -c $((FAULT_MIB * 1048576)) /dev/urandom >"$T/fault.img"
	rm -f "$T/vol.uri"
	bg_start "$T/seed.log" ip netns exec "$NS1" "$P2PVBD" seed -q -k "$T/key" -l "$H1:7001" \
		--uri-file "$T/vol.uri" "$T/fault.img"
	SEED_PID=$BG_PID
	wait_for_file "$T/vol.uri" 120 "$SEED_PID" || fail "seed did not start"
	URI=$(head -n 1 "$T/vol.uri")

	# Faults go to the second half of the image: the background transfer starts at
	# the beginning and cannot get there during the measurement (100 Mbit/s).
	half=$((FAULT_MIB * 1048576 / 2))

	fault_case idle --lazy
	fault_case loaded
	fault_case noboost --no-boost

	emit "$("$PY" - "$T" <<'PY'
import json, sys
t = sys.argv[1]
d = {n: json.load(open("%s/%s.json" % (t, n))) for n in ("idle", "loaded", "noboost")}
print(json.dumps({
    "bench": "fault-latency", "link_mbit": 100, "reads": d["idle"]["count"],
    "idle_p50_ms": d["idle"]["p50_ms"], "idle_p99_ms": d["idle"]["p99_ms"],
    "loaded_p50_ms": d["loaded"]["p50_ms"], "loaded_p99_ms": d["loaded"]["p99_ms"],
    "noboost_p50_ms": d["noboost"]["p50_ms"], "noboost_p99_ms": d["noboost"]["p99_ms"],
    "ratio_loaded_vs_idle_p99": round(d["loaded"]["p99_ms"] / d["idle"]["p99_ms"], 3),
    "bar": 1.5,
    "ratio_noboost_vs_loaded_p99": round(d["noboost"]["p99_ms"] / d["loaded"]["p99_ms"], 3)}))
PY
	)"
	stop_pid "$SEED_PID"
	lab_down "$LAB"
}

# ---- 2. local read speed of a complete export ------------------------------

# copy_time SOCK: best of 3 nbdcopy of the whole export to null:, seconds.
copy_time() {
	local best=999 t0 t i
	for i in 1 2 3; do
		t0=$(date +%s.%N)
		nbdcopy "nbd+unix:///?socket=$1" null: || fail "nbdcopy from $1 failed"
		t=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.4f", b - a }')
		best=$(awk -v a="$best" -v b="$t" 'BEGIN { print (b < a ? b : a) }')
	done
	echo "$best"
}

# fio_iops SOCK: 4 KiB random reads, queue depth 32, 8 s, through fio's nbd engine.
fio_iops() {
	fio --name=rr --ioengine=nbd --uri="nbd+unix:///?socket=$1" --rw=randread --bs=4k \
		--iodepth=32 --runtime=8 --time_based --verify_state_save=0 \
		--output-format=json >"$T/fio.json" 2>"$T/fio.err" || fail "fio on $1 failed: $(tail -3 "$T/fio.err")"
	# fio may print notes before its JSON: parse from the first brace.
	"$PY" -c 'import json,sys; t=open(sys.argv[1]).read(); print(json.loads(t[t.index("{"):])["jobs"][0]["read"]["iops"])' "$T/fio.json"
}

read_speed_case() {
	log "writing a ${READ_MIB} MiB random image"
	head -c $((READ_MIB * 1048576)) /dev/urandom >"$T/read.img"
	start_seed -q -k "$T/key" "$T/read.img"
	out=$T/local.img
	bg_start "$T/local.log" "$P2PVBD" fetch --no-progress -e "unix:$T/p2pvbd.sock" "$URI" "$out"
	FETCH_PID=$BG_PID
	wait_export "$T/local.log" "$FETCH_PID" >/dev/null || fail "fetch did not export"
	for ((i = 0; i < 1200; i++)); do
		grep -q 'volume complete and verified' "$T/local.log" && break
		sleep 0.1
	done
	grep -q 'volume complete and verified' "$T/local.log" || fail "the local fetch did not complete"
	stop_pid "$SEED_PID"
	cat "$out" >/dev/null # the same warm page cache for every server

	bg_start "$T/nbdkit.log" nbdkit -f -U "$T/nbdkit.sock" file "$out"
	# file.locking=off: the fetch above still holds OUT's QEMU lock (it keeps serving it).
	bg_start "$T/qemu-nbd.log" qemu-nbd -t -k "$T/qemu-nbd.sock" \
		--image-opts "driver=raw,file.driver=file,file.filename=$out,file.locking=off"
	for s in nbdkit qemu-nbd; do
		wait_for_file "$T/$s.sock" 30 || [[ -S $T/$s.sock ]] || fail "$s did not start"
	done
	sleep 0.5

	c_p2p=$(copy_time "$T/p2pvbd.sock")
	c_kit=$(copy_time "$T/nbdkit.sock")
	c_qemu=$(copy_time "$T/qemu-nbd.sock")
	log "nbdcopy to null: p2pvbd $c_p2p s, nbdkit $c_kit s, qemu-nbd $c_qemu s"
	i_p2p=$(fio_iops "$T/p2pvbd.sock")
	i_kit=$(fio_iops "$T/nbdkit.sock")
	i_qemu=$(fio_iops "$T/qemu-nbd.sock")
	log "fio 4k randread qd32: p2pvbd $i_p2p, nbdkit $i_kit, qemu-nbd $i_qemu IOPS"

	emit "$("$PY" - "$c_p2p" "$c_kit" "$c_qemu" "$i_p2p" "$i_kit" "$i_qemu" "$READ_MIB" <<'PY'
import json, sys
cp, ck, cq, ip, ik, iq, mib = map(float, sys.argv[1:])
print(json.dumps({"bench": "export-nbdcopy", "mib": int(mib), "figure_s": cp,
                  "nbdkit_s": ck, "qemu_nbd_s": cq, "ratio_vs_nbdkit": round(ck / cp, 3),
                  "ratio_vs_qemu_nbd": round(cq / cp, 3), "bar": 0.95}))
print(json.dumps({"bench": "export-fio-randread-4k-qd32", "figure_iops": round(ip),
                  "nbdkit_iops": round(ik), "qemu_nbd_iops": round(iq),
                  "ratio_vs_nbdkit": round(ip / ik, 3), "ratio_vs_qemu_nbd": round(ip / iq, 3),
                  "bar": 0.95}))
PY
	)"
}

bench_case fault-latency "$CASE_S" fault_latency_case
if [[ -z ${SKIP_READ_SPEED:-} ]]; then
	bench_case read-speed "$CASE_S" read_speed_case
fi
bench_finish
