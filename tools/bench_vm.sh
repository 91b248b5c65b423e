#!/bin/bash
# SPDX-License-Identifier: ISC
# VM migration against QEMU's own flow (make bench-vm):
#   tools/bench_vm.sh PATH-TO-p2pvbd [PATH-TO-p2pvbd-tracker]
#
# In the lab (tools/lab.sh): h1 is the source host, h2 the destination, h3 a second
# destination; every host is shaped to RATE (100) Mbit/s up and down. The VM is the tiny TCG
# guest of tools/vm/ (build-guest.sh) on a SIZE_GIB (2) GiB qcow2 data disk holding DATA_MIB
# (512) MiB of random data (qemu-img convert of a raw file), booted at h1 with no p2pvbd under
# it and writing 4 KiB records (O_DIRECT + fsync) steadily, one every GUEST_PAUSE (0.05) s plus
# its own time. Each run (tools/vm/bench_vm.py) boots a fresh copy, then moves the VM:
#
#   qemu     QEMU's own non-shared-storage migration, as libvirt's --copy-storage-all and
#            QEMU's iotest 194 do it: destination QEMU -incoming on an empty qcow2 of its own,
#            nbd-server-start + writable block-export-add; at the source blockdev-add of an nbd
#            node on it, blockdev-mirror sync=full copy-mode=write-blocking, wait READY,
#            migrate (over the lab link); on completion block-job-cancel at the source and
#            nbd-server-stop at the destination (QEMU starts the destination VM itself).
#   p2pvbd   seed --qmp --drive at the source; fetch -e --qmp --drive at the destination, whose
#            QEMU waits with -incoming on fetch's export; the switchover by `p2pvbd ctl SEED
#            migrate` when this p2pvbd can run it for an attached seed, else by the driver
#            (QMP migrate with pause-before-switchover, `ctl freeze` at pre-switchover, as
#            tools/vm/migrate.py); fetch then moves the VM onto its own file OUT and exits.
#   p2pvbd-postcopy (POSTCOPY=1, the default): the same without waiting for the disk
#            (ctl migrate --postcopy; or the driver migrates at once): the VM runs at h2 as
#            soon as its RAM has moved, and the rest of its disk arrives while it runs.
#
# Figures per run: (a) run_s, from the start until the VM runs at the destination; (b)
# discard_s, until the source may be discarded (QEMU: the migration completed, every byte is at
# the destination; p2pvbd: fetch is complete at the final generation and has moved the VM onto
# OUT, i.e. fetch exited); (c) downtime_ms as the source QEMU's query-migrate reports it; (d)
# link_bytes, the bytes all lab hosts sent on their eth0 (/sys statistics through `ip -s -j
# link` in each namespace: every byte that crossed a shaped link, once); and the guest's own
# pace, records written at the source per second until its switchover (p2pvbd's auto-converge
# may slow the guest down where the copy falls behind; QEMU's write-blocking mirror waits for
# each write's round trip to the destination). The clock starts once
# the source VM writes (its boot is not counted). After each run the guest, at its final place,
# stops and verifies every record it wrote (untimed; a failed check fails the run).
#
# Cases (tools/bench_lib.sh; each in a lab of its own, bounded by CASE_TIMEOUT (2400) s or
# BENCH_TIMEOUT; a failed case prints a JSON failure line and the others run on):
#   one-rK   round K of RUNS (3): the flows one after the other, their order alternating from
#            round to round (qemu first in odd rounds). Medians over the rounds that ran.
#            Bars: p2pvbd's (b) <= 1.05 x QEMU's (b), p2pvbd's (c) <= QEMU's (c); and
#            p2pvbd-postcopy's (a) against QEMU's (b) (the VM moves before its disk arrived).
#   two-rK   round K of TWO_RUNS (RUNS): two destinations. p2pvbd: a tracker at h1, fetch -e
#            --qmp at h2 (the VM goes there) and a plain fetch at h3; (b) = both fetches ended.
#            QEMU's anchor: mirror+migrate twice, h1 -> h2, then h2 -> h3; (b) = the second
#            migration completed. Why this anchor: QEMU moves a running VM's disk with one
#            mirror job to one NBD target and the VM with it; to have the disk at two places it
#            runs its flow twice. Mirroring to two NBD targets at once (two write-blocking jobs
#            on one drive) leaves the second copy without a VM and without a defined end (the
#            job must be cancelled at a moment chosen from outside, after which it is stale),
#            and it would still push every byte twice through h1's uplink, so its time is no
#            better than two hops; two full hops is what an operator can actually run.
#            Bar: p2pvbd's (b) below QEMU's.
# The machine's CPU busy % over each run (/proc/stat, as bench_swarm.sh) and the load average
# at the start are printed: TCG guests are CPU-bound, so a busy machine slows both flows.
#
# Output: lines on stderr, one JSON summary on stdout, everything also in
# bench-out/bench-vm.json (BENCH_OUTDIR replaces bench-out/). Work files under VM_DIR
# (/dev/shm if it has 8 GiB free, else /var/tmp). Environment: RUNS, TWO_RUNS, POSTCOPY=0,
# RATE, SIZE_GIB, DATA_MIB, GUEST_PAUSE, GUEST_RECORDS (512), VM_SWITCH=auto|ctl|script,
# P2PVBD_SEED_ARGS (more options for the seed, e.g. "--chunk-size 64K"),
# CASES (default "one,two"), CASE_TIMEOUT, BENCH_TIMEOUT. Exit 1 if any case failed.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)

if [[ ${1:-} == -h || ${1:-} == --help ]]; then
	sed -n '2,/^set -euo/{/^#/!q;s/^# \{0,1\}//p}' "$0"
	exit 0
fi
(($# >= 1 && $# <= 2)) || {
	echo "usage: $0 PATH-TO-p2pvbd [PATH-TO-p2pvbd-tracker]" >&2
	exit 2
}
TRACKER_BIN=${2:-$(dirname "$1")/p2pvbd-tracker}
[[ $TRACKER_BIN == /* ]] || TRACKER_BIN=$PWD/$TRACKER_BIN

MIN_FREE_KIB=$((8 * 1024 * 1024))
VM_DIR=${VM_DIR:-/dev/shm}
if [[ ! -d $VM_DIR ]] || (($(df -Pk "$VM_DIR" | awk 'NR == 2 { print $4 }') < MIN_FREE_KIB)); then
	echo "bench-vm: $VM_DIR missing or under 8 GiB free; using /var/tmp" >&2
	VM_DIR=/var/tmp
fi
export TMPDIR=$VM_DIR
# shellcheck source=tests/integration/lib.sh
. "$repo/tests/integration/lib.sh" "$1"
# shellcheck source=tools/lab.sh
. "$repo/tools/lab.sh"
# shellcheck source=tools/bench_lib.sh
. "$repo/tools/bench_lib.sh"
LAB=bvm$$
lab_trap "$LAB"

RUNS=${RUNS:-3}
TWO_RUNS=${TWO_RUNS:-$RUNS}
POSTCOPY=${POSTCOPY:-1}
RATE=${RATE:-100}
SIZE_GIB=${SIZE_GIB:-2}
DATA_MIB=${DATA_MIB:-512}
GUEST_PAUSE=${GUEST_PAUSE:-0.05}
GUEST_RECORDS=${GUEST_RECORDS:-512}
VM_SWITCH=${VM_SWITCH:-auto}
CASES=${CASES:-one,two}
CASE_TIMEOUT=${CASE_TIMEOUT:-2400}
PY=/usr/bin/python3
OUTDIR=${BENCH_OUTDIR:-$repo/bench-out}
mkdir -p "$OUTDIR"
: >"$OUTDIR/bench-vm.json"
bench_init bench-vm "$OUTDIR/bench-vm.json"
log() { echo "bench-vm: $*" >&2; }

bench_case_cleanup() {
	lab_down "$LAB" || true
}

need_qemu_system
for p in qemu-img "$PY" "$TRACKER_BIN"; do
	command -v "$p" >/dev/null || fail "$p is missing (tools/install-deps.sh)"
done
GUEST=$(dirname "$P2PVBD")/vm
"$repo/tools/vm/build-guest.sh" "$GUEST" >"$T/build-guest.log" 2>&1 ||
	fail "tools/vm/build-guest.sh $GUEST failed: $(tail -n 3 "$T/build-guest.log")"

LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
log "lab: h1 source, h2 (and h3) destinations, every host $RATE Mbit/s up and down; guest: tiny TCG VM on a $SIZE_GIB GiB qcow2 with $DATA_MIB MiB of data, writing a 4 KiB record every ${GUEST_PAUSE} s + its own time; $RUNS rounds (two destinations: $TWO_RUNS); load average at the start $LOAD0 ($(nproc) CPUs)"

# The template: DATA_MIB of random data at the start of a SIZE_GIB raw file, as qcow2.
truncate -s "${SIZE_GIB}G" "$T/data.raw"
dd if=/dev/urandom of="$T/data.raw" bs=1M count="$DATA_MIB" conv=notrunc iflag=fullblock status=none
qemu-img convert -f raw -O qcow2 "$T/data.raw" "$T/template.qcow2"
rm -f "$T/data.raw"
keygen "$T/src.key"

# one_run FLOW NDST TAG [ARGS]: a run of tools/vm/bench_vm.py in the case's lab; its JSON is
# appended to $T/runs.jsonl with the round.
one_run() {
	local flow=$1 ndst=$2 tag=$3 round=$4 rc=0
	shift 4
	log "$tag: $flow, $ndst destination(s)"
	"$PY" "$repo/tools/vm/bench_vm.py" --flow "$flow" --ndst "$ndst" "$@" \
		--ns "$(lab_ns "$LAB" h1),$(lab_ns "$LAB" h2),$(lab_ns "$LAB" h3)" \
		--addr "$(lab_addr "$LAB" h1),$(lab_addr "$LAB" h2),$(lab_addr "$LAB" h3)" \
		--p2pvbd "$P2PVBD" --tracker "$TRACKER_BIN" --guest "$GUEST" \
		--template "$T/template.qcow2" --key "$T/src.key" --workdir "$T/$tag" \
		--records "$GUEST_RECORDS" --pause "$GUEST_PAUSE" --switch "$VM_SWITCH" \
		--seed $((RANDOM * 32768 + RANDOM)) --seed-args "${P2PVBD_SEED_ARGS:-}" --timeout $((CASE_TIMEOUT / 2)) \
		>"$T/$tag.json" 2>"$T/$tag.log" || rc=$?
	((rc == 0)) || fail "$tag: $(tail -n 1 "$T/$tag.log")"
	"$PY" - "$T/$tag.json" "$tag" "$round" >>"$T/runs.jsonl" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
d["tag"], d["round"] = sys.argv[2], int(sys.argv[3])
print(json.dumps(d))
PY
	log "$tag: $("$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); print("(a) runs at the destination %.2f s, (b) source discardable %.2f s, (c) downtime %s ms, (d) %.0f MiB on the links (h1 sent %.0f MiB); switchover: %s; CPU %d%% busy; guest wrote %s records/s at the source; guest check %s" % (d["run_s"], d["discard_s"], d["downtime_ms"], d["link_bytes"] / 1048576, d["h1_tx_bytes"] / 1048576, d["switch"], d["cpu_busy_pct"], d.get("guest_records_per_s"), d["verify"]))' "$T/$tag.json")"
	rm -rf "${T:?}/$tag"
}

lab_round() {
	lab_up "$LAB" 3 --up-mbit "$RATE" --down-mbit "$RATE" || fail "cannot make the lab"
}

case_one() {
	local r=$1 flows f
	lab_round
	flows=(qemu p2pvbd)
	((r % 2 == 0)) && flows=(p2pvbd qemu)
	[[ $POSTCOPY == 1 ]] && flows+=(p2pvbd-postcopy)
	for f in "${flows[@]}"; do
		if [[ $f == p2pvbd-postcopy ]]; then
			one_run p2pvbd 1 "one-r$r-postcopy" "$r" --postcopy
		else
			one_run "$f" 1 "one-r$r-$f" "$r"
		fi
	done
	lab_down "$LAB" || fail "cannot remove the lab"
}

case_two() {
	local r=$1 flows f
	lab_round
	flows=(qemu p2pvbd)
	((r % 2 == 0)) && flows=(p2pvbd qemu)
	for f in "${flows[@]}"; do
		one_run "$f" 2 "two-r$r-$f" "$r"
	done
	lab_down "$LAB" || fail "cannot remove the lab"
}

: >"$T/runs.jsonl"
for ((r = 1; r <= RUNS; r++)); do
	if [[ ,$CASES, == *,one,* ]]; then
		bench_case "one-r$r" "$(bench_timeout "$CASE_TIMEOUT")" case_one "$r"
	fi
done
for ((r = 1; r <= TWO_RUNS; r++)); do
	if [[ ,$CASES, == *,two,* ]]; then
		bench_case "two-r$r" "$(bench_timeout "$CASE_TIMEOUT")" case_two "$r"
	fi
done

json=$("$PY" - "$T/runs.jsonl" "$LOAD0" "$(nproc)" "$RATE" "$SIZE_GIB" "$DATA_MIB" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
load0, ncpu, rate, size, data = sys.argv[2:]

def med(sel, key):
    v = [r[key] for r in runs if sel(r) and r.get(key) is not None]
    return round(statistics.median(v), 3) if v else None

def ratio(x, y):
    return round(x / y, 3) if x is not None and y else None

def group(ndst, flow, postcopy=False):
    sel = lambda r: r["ndst"] == ndst and r["flow"] == flow and r["postcopy"] == postcopy
    n = sum(1 for r in runs if sel(r))
    if not n:
        return None
    g = {k: med(sel, k) for k in ("run_s", "discard_s", "downtime_ms", "link_bytes",
                                  "h1_tx_bytes", "cpu_busy_pct", "guest_records_per_s")}
    g["runs"] = n
    g["switch"] = sorted({r["switch"] for r in runs if sel(r)})
    return g

out = {"bench": "vm", "rate_mbit": float(rate), "disk_gib": int(size), "data_mib": int(data),
       "load_avg_start": load0, "cpus": int(ncpu)}
q, p, pc = group(1, "qemu"), group(1, "p2pvbd"), group(1, "p2pvbd", True)
one = {"qemu": q, "p2pvbd": p, "p2pvbd_postcopy": pc}
if q and p:
    one["b_ratio"] = ratio(p["discard_s"], q["discard_s"])
    one["c_ratio"] = ratio(p["downtime_ms"], q["downtime_ms"])
    one["a_ratio"] = ratio(p["run_s"], q["run_s"])
    one["d_ratio"] = ratio(p["link_bytes"], q["link_bytes"])
    one["bar_b_met"] = one["b_ratio"] is not None and one["b_ratio"] <= 1.05
    one["bar_c_met"] = p["downtime_ms"] is not None and p["downtime_ms"] <= q["downtime_ms"]
if q and pc:
    one["postcopy_a_vs_qemu_b"] = ratio(pc["run_s"], q["discard_s"])
out["one"] = one
q2, p2 = group(2, "qemu"), group(2, "p2pvbd")
two = {"qemu_twice": q2, "p2pvbd": p2}
if q2 and p2:
    two["b_ratio"] = ratio(p2["discard_s"], q2["discard_s"])
    two["d_ratio"] = ratio(p2["link_bytes"], q2["link_bytes"])
out["two"] = two
out["runs"] = runs
print(json.dumps(out))
PY
)
"$PY" - "$json" <<'PY' >&2
import json, sys
d = json.loads(sys.argv[1])
def f(g, k, unit, scale=1.0):
    return "-" if not g or g.get(k) is None else ("%.2f%s" % (g[k] / scale, unit))
o = d["one"]
print("bench-vm: medians; load average at the start %s on %d CPUs" % (d["load_avg_start"], d["cpus"]))
print("bench-vm: %-22s %10s %12s %10s %12s %6s %9s" % ("one destination", "(a) runs", "(b) discard", "(c) down", "(d) link", "CPU", "guest w/s"))
for name, g in (("QEMU mirror+migrate", o["qemu"]), ("p2pvbd", o["p2pvbd"]),
                ("p2pvbd --postcopy", o["p2pvbd_postcopy"])):
    print("bench-vm: %-22s %10s %12s %10s %12s %6s %9s" % (name, f(g, "run_s", " s"), f(g, "discard_s", " s"),
          f(g, "downtime_ms", " ms"), f(g, "link_bytes", " MiB", 1048576.0), f(g, "cpu_busy_pct", "%"),
          f(g, "guest_records_per_s", "")))
if "b_ratio" in o:
    print("bench-vm: p2pvbd / QEMU: (a) %s, (b) %s (bar <= 1.05: %s), (c) %s (bar <= 1: %s), (d) %s"
          % (o["a_ratio"], o["b_ratio"], "met" if o["bar_b_met"] else "NOT met", o["c_ratio"],
             "met" if o["bar_c_met"] else "NOT met", o["d_ratio"]))
if "postcopy_a_vs_qemu_b" in o:
    print("bench-vm: p2pvbd --postcopy (a) / QEMU (b): %s" % o["postcopy_a_vs_qemu_b"])
t = d["two"]
for name, g in (("QEMU twice (h1>h2>h3)", t["qemu_twice"]), ("p2pvbd, h2 + h3", t["p2pvbd"])):
    if g:
        print("bench-vm: two destinations: %-22s (b) %s, (a) %s, (d) %s, CPU %s" % (name, f(g, "discard_s", " s"),
              f(g, "run_s", " s"), f(g, "link_bytes", " MiB", 1048576.0), f(g, "cpu_busy_pct", "%")))
if "b_ratio" in t:
    print("bench-vm: two destinations: p2pvbd (b) / QEMU twice (b): %s" % t["b_ratio"])
PY
echo "$json"
echo "$json" >>"$OUTDIR/bench-vm.json"
bench_finish
