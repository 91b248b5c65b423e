#!/usr/bin/env python3
# SPDX-License-Identifier: ISC
"""One run of `make bench-vm` (tools/bench_vm.sh): move a running VM from lab host h1 to h2
(and h3), by QEMU's own flow or by p2pvbd's, and print the figures as one JSON line.

usage: bench_vm.py --flow qemu|p2pvbd [--ndst 1|2] [--postcopy] --ns NS1,NS2,NS3
                   --addr A1,A2,A3 --p2pvbd BIN --tracker BIN --guest DIR
                   --template QCOW2 --workdir DIR [--switch auto|ctl|script]

Before the clock starts, the source VM (the tiny TCG guest of tools/vm/, writing records)
is booted in h1's namespace on a copy of --template (a qcow2 file), with no p2pvbd under it,
and writes --min-records records. Then (t = 0):

  qemu     QEMU's own non-shared-storage migration (QEMU's iotest 194, libvirt's
           --copy-storage-all): the destination QEMU starts with -incoming on an empty qcow2
           of its own, `nbd-server-start` + writable `block-export-add` of it; the source
           `blockdev-add`s an nbd node on that export and runs `blockdev-mirror` sync=full
           copy-mode=write-blocking into it; once the job is READY, `migrate` (over the lab
           link); on completion the destination runs (QEMU starts it), the source cancels the
           job (a READY mirror cancelled = completed, no pivot) and the destination stops its
           NBD server. With --ndst 2 the same again from h2 to h3 (QEMU migrates a VM to one
           place at a time; bench_vm.sh says why this is the anchor).
  p2pvbd   `p2pvbd seed --qmp --drive disk0` attaches to the source VM (h1); `fetch -e
           --qmp --drive disk0` at h2 serves the destination QEMU (-incoming) and ends it on its
           own file OUT; the switchover is `p2pvbd ctl SEED migrate` when this p2pvbd can do it
           for an attached seed, else this script's (tools/vm/migrate.py's way: wait until the
           destinations are nearly in sync, QMP migrate with pause-before-switchover, `p2pvbd
           ctl SEED freeze` at pre-switchover, migrate-continue). --postcopy: no wait for the
           disk (`ctl migrate --postcopy`, or the script's migrate at once). With --ndst 2 a
           second `fetch` at h3 (a tracker at h1 lets h2 and h3 serve each other).

Figures: run_s (a) until the VM runs at the (first) destination; discard_s (b) until the
source may be discarded (qemu: the last migration completed; p2pvbd: every fetch ended,
complete at the final generation, h2's after moving its VM onto OUT); downtime_ms (c) as the
source QEMU's query-migrate says (the sum over both hops for qemu --ndst 2); link_bytes (d) the
bytes every lab host sent on its eth0 (each crosses the shaped link once), h1_tx_bytes those
of the source. Afterwards the guest verifies every record at its final place (not timed).
Exit status 0 with the JSON on stdout; 1 on failure (the reason on stderr, last line).
Python 3 standard library only; QMP and console helpers come from tools/vm/migrate.py.
"""

import argparse
import atexit
import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from migrate import Console, Failure, Qmp, _pdeathsig  # noqa: E402

T0 = time.monotonic()
PROCS = []  # (name, Popen) of everything started, stopped at exit
MIB = 1 << 20


def log(msg):
    print("bench-vm: [%7.2fs] %s" % (time.monotonic() - T0, msg), file=sys.stderr, flush=True)


def start(name, ns, cmd, logpath):
    """Start cmd in namespace ns (None: here), output in logpath."""
    full = (["ip", "netns", "exec", ns] if ns else []) + cmd
    with open(logpath, "ab") as f:
        f.write(("# %s\n" % " ".join(full)).encode())
        f.flush()
        p = subprocess.Popen(full, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                             start_new_session=True, preexec_fn=_pdeathsig)
    PROCS.append((name, p))
    return p


def stop(p, grace=10):
    if p.poll() is None:
        try:
            p.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def cleanup():
    for _, p in reversed(PROCS):
        stop(p, grace=5)


def on_signal(signum, _frame):
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, signal.SIG_IGN)
    raise Failure("interrupted by signal %d" % signum)


def wait_for(what, timeout, pred, procs=(), interval=0.05):
    deadline = time.monotonic() + timeout
    while True:
        r = pred()
        if r:
            return r
        for name, p in procs:
            if p.poll() is not None:
                raise Failure("%s exited (status %s) while waiting for %s" % (name, p.returncode, what))
        if time.monotonic() > deadline:
            raise Failure("timed out after %d s waiting for %s" % (timeout, what))
        time.sleep(interval)


def tail(path, n=5):
    try:
        with open(path, "rb") as f:
            return " | ".join(f.read().decode("utf-8", "replace").splitlines()[-n:])
    except FileNotFoundError:
        return "(no log)"


def tx_bytes(ns):
    out = subprocess.run(["ip", "-n", ns, "-s", "-j", "link", "show", "eth0"], check=True,
                         capture_output=True, text=True).stdout
    return int(json.loads(out)[0]["stats64"]["tx"]["bytes"])


def cpu_line():
    with open("/proc/stat") as f:
        return [int(x) for x in f.readline().split()[1:]]


def cpu_busy(a, b):
    d = [y - x for x, y in zip(a, b)]
    tot = sum(d)
    idle = d[3] + d[4]
    return round(100.0 * (tot - idle) / tot) if tot > 0 else 0


class Vm:
    """One QEMU: the guest, its console, a QMP socket for this script (and extra ones)."""

    def __init__(self, a, name, ns, drive, incoming=None, extra_qmp=()):
        self.a, self.name, self.ns = a, name, ns
        w = a.workdir
        self.qmp_path = os.path.join(w, name + ".qmp")
        self.console = Console(os.path.join(w, name + "-console.log"))
        self.log = os.path.join(w, name + "-qemu.log")
        for p in (self.qmp_path, self.console.path, *extra_qmp):
            if os.path.exists(p):
                os.unlink(p)
        append = ("console=ttyS0 panic=-1 quiet p2pvbd.mode=writer p2pvbd.records=%d "
                  "p2pvbd.seed=%d p2pvbd.pause=%s" % (a.records, a.seed, a.pause))
        cmd = [
            "qemu-system-x86_64", "-name", "p2pvbd-bench-" + name,
            "-nodefaults", "-no-user-config", "-no-reboot",
            "-machine", "pc,accel=tcg", "-smp", "1",
            # 8 KiB short of a multiple of 256 KiB: QEMU 7.2's TCG dirty-bitmap bug
            # (tools/vm/migrate.py, ram_size).
            "-m", "%dK" % (a.memory * 1024 - 8),
            "-display", "none", "-kernel", os.path.join(a.guest, "vmlinuz"),
            "-initrd", os.path.join(a.guest, "initrd.gz"), "-append", append,
            "-chardev", "file,id=con0,path=" + self.console.path, "-serial", "chardev:con0",
            "-qmp", "unix:%s,server=on,wait=off" % self.qmp_path,
            "-drive", drive,
            # An explicit geometry: a p2pvbd destination holds reads until the freeze.
            "-device", "virtio-blk-pci,drive=disk0,serial=p2pvbd-data,addr=0x4,"
                       "cyls=1024,heads=16,secs=63",
            "-drive", "if=none,id=ctl0,format=raw,file.locking=off,file=" + a.ctl_img,
            "-device", "virtio-blk-pci,drive=ctl0,serial=p2pvbd-ctl,addr=0x5",
        ]
        for q in extra_qmp:
            cmd += ["-qmp", "unix:%s,server=on,wait=off" % q]
        if incoming:
            cmd += ["-incoming", incoming]
        self.proc = start("QEMU " + name, ns, cmd, self.log)
        self.qmp = Qmp(self.qmp_path, name)
        self.qmp.connect(60, lambda: self.proc.poll() is None)

    def x(self, cmd, args=None, timeout=30):
        return self.qmp.execute(cmd, args, timeout=timeout)

    def status(self):
        return self.x("query-status").get("status")

    def quit(self):
        if self.proc.poll() is None:
            try:
                self.x("quit", timeout=5)
            except Failure:
                pass
        self.qmp.close()
        stop(self.proc)


def boot_source(a):
    """The source VM on its qcow2 at h1, writing; returns it once --min-records are written."""
    vm = Vm(a, "src", a.ns[0], "if=none,id=disk0,format=qcow2,file=" + a.src_disk,
            extra_qmp=(a.seed_qmp,))
    wait_for("%d records at the source" % a.min_records, 180,
             lambda: (vm.console.poll(), vm.console.records >= a.min_records)[1],
             [("source QEMU", vm.proc)], interval=0.2)
    log("source VM writes on its qcow2 (%d records)" % vm.console.records)
    return vm


def note_guest_writes(src, res):
    """The records the guest wrote at the source from t = 0 to its switchover (first hop)."""
    if "guest_records_at_source" in res:
        return
    src.console.poll()
    n = src.console.records - res["_rec0"]
    res["guest_records_at_source"] = n
    res["guest_records_per_s"] = round(n / max(0.001, res["migrated_s1"]), 2)


# ---- QEMU's own flow --------------------------------------------------------------------


def qemu_hop(a, src, hop, dst_ns, dst_addr, res):
    """blockdev-mirror to the destination's NBD server, then migrate. Returns the new VM."""
    w = a.workdir
    disk = os.path.join(w, "qemu-dst%d.qcow2" % hop)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", disk, str(a.size)], check=True)
    port = 4444 + hop
    dst = Vm(a, "qdst%d" % hop, dst_ns, "if=none,id=disk0,format=qcow2,file=" + disk,
             incoming="tcp:%s:%d" % (dst_addr, port))
    dst.x("nbd-server-start", {"addr": {"type": "inet",
                                        "data": {"host": dst_addr, "port": "10809"}}})
    node = [b for b in dst.x("query-block") if b["device"] == "disk0"][0]["inserted"]["node-name"]
    dst.x("block-export-add", {"type": "nbd", "id": "bench-exp", "node-name": node,
                               "name": "disk0", "writable": True})
    src.x("blockdev-add", {"driver": "nbd", "node-name": "bench-tgt%d" % hop,
                           "server": {"type": "inet", "host": dst_addr, "port": "10809"},
                           "export": "disk0"})
    job = "bench-mirror%d" % hop
    src.x("blockdev-mirror", {"job-id": job, "device": "disk0", "target": "bench-tgt%d" % hop,
                              "sync": "full", "copy-mode": "write-blocking"})
    t = time.monotonic()
    last = [t]

    def ready():
        jobs = [j for j in src.x("query-block-jobs") if j["device"] == job]
        if not jobs:
            raise Failure("hop %d: the mirror job went away before READY" % hop)
        if time.monotonic() - last[0] > 10:
            last[0] = time.monotonic()
            log("hop %d: mirror %d of %d MiB" % (hop, jobs[0]["offset"] // MIB, jobs[0]["len"] // MIB))
        return jobs[0]["ready"]
    wait_for("the mirror job to be READY", a.timeout, ready,
             [("source QEMU", src.proc), ("destination QEMU", dst.proc)], interval=0.2)
    res["ready_s%d" % hop] = round(time.monotonic() - res["_t0"], 3)
    log("hop %d: mirror READY after %.1f s; migrating" % (hop, time.monotonic() - t))
    src.x("migrate", {"uri": "tcp:%s:%d" % (dst_addr, port)})
    info = {}
    t_done = t_run = None
    deadline = time.monotonic() + a.timeout
    while t_done is None or t_run is None:
        if t_done is None:
            info = src.x("query-migrate")
            if info.get("status") == "completed":
                t_done = time.monotonic()
            elif info.get("status") in ("failed", "cancelled"):
                raise Failure("hop %d: migration %s: %s" % (hop, info.get("status"),
                                                            info.get("error-desc", "")))
        if t_run is None and dst.status() == "running":
            t_run = time.monotonic()
        if dst.proc.poll() is not None:
            raise Failure("hop %d: the destination QEMU exited: %s" % (hop, tail(dst.log)))
        if time.monotonic() > deadline:
            raise Failure("hop %d: migration not done within %d s" % (hop, a.timeout))
        time.sleep(0.05)
    res["run_s%d" % hop] = round(t_run - res["_t0"], 3)
    res["migrated_s%d" % hop] = round(t_done - res["_t0"], 3)
    res["downtime_ms%d" % hop] = info.get("downtime")
    res["ram_bytes%d" % hop] = info.get("ram", {}).get("transferred")
    src.x("block-job-cancel", {"device": job})
    wait_for("the mirror job to end", 60,
             lambda: not [j for j in src.x("query-block-jobs") if j["device"] == job])
    src.x("blockdev-del", {"node-name": "bench-tgt%d" % hop})
    dst.x("nbd-server-stop")
    res["cleaned_s%d" % hop] = round(time.monotonic() - res["_t0"], 3)
    log("hop %d: migrated after %.2f s (downtime %s ms), VM runs at the destination after "
        "%.2f s" % (hop, t_done - res["_t0"], info.get("downtime"), t_run - res["_t0"]))
    note_guest_writes(src, res)
    src.quit()
    return dst


def flow_qemu(a, src, res):
    vm = qemu_hop(a, src, 1, a.ns[1], a.addr[1], res)
    res["run_s"] = res["run_s1"]
    res["downtime_ms"] = res["downtime_ms1"]
    if a.ndst == 2:
        vm = qemu_hop(a, vm, 2, a.ns[2], a.addr[2], res)
        res["downtime_ms"] += res["downtime_ms2"]
    res["discard_s"] = res["migrated_s%d" % a.ndst]
    res["switch"] = "qemu"
    return vm


# ---- p2pvbd's flow ----------------------------------------------------------------------


def p2p_status(a, ctl):
    r = subprocess.run([a.p2pvbd, "status", "--json", ctl], capture_output=True, text=True,
                       timeout=30)
    if r.returncode != 0:
        raise Failure("p2pvbd status %s: %s" % (ctl, r.stderr.strip()))
    return json.loads(r.stdout)


def ctl_can_migrate(a):
    r = subprocess.run([a.p2pvbd, "ctl", "--help"], capture_output=True, text=True)
    return "migrate" in r.stdout


def flow_p2pvbd(a, src, res):
    w = a.workdir
    seed_ctl = os.path.join(w, "seed.ctl")
    uri_file = os.path.join(w, "vol.uri")
    targs = []
    if a.ndst == 2:
        tr = start("tracker", a.ns[0], [a.tracker, "-l", "%s:6969" % a.addr[0], "--interval", "5"],
                   os.path.join(w, "tracker.log"))
        targs = ["-t", "http://%s:6969/announce" % a.addr[0]]
        time.sleep(0.2)
        if tr.poll() is not None:
            raise Failure("the tracker exited: %s" % tail(os.path.join(w, "tracker.log")))
    seed_log = os.path.join(w, "seed.log")
    seed = start("seed", a.ns[0], [a.p2pvbd, "seed", "-k", a.key, "--qmp", a.seed_qmp,
                                   "--drive", "disk0", "--state-dir", os.path.join(w, "state"),
                                   "-l", "%s:7001" % a.addr[0], "--ctl", seed_ctl,
                                   "--uri-file", uri_file] + targs + a.seed_args.split(),
                 seed_log)
    wait_for("the seed's URI (QEMU's copy into the seed READY)", a.timeout,
             lambda: os.path.exists(uri_file) and os.path.getsize(uri_file) > 0,
             [("seed", seed), ("source QEMU", src.proc)], interval=0.1)
    uri = open(uri_file).read().split()[0]
    res["ready_s1"] = round(time.monotonic() - res["_t0"], 3)
    log("seed attached, its copy READY after %.1f s" % res["ready_s1"])
    fetches = []
    dst_sock = os.path.join(w, "dst.sock")
    fetch_qmp = os.path.join(w, "dst-fetch.qmp")
    for p in (dst_sock,):
        if os.path.exists(p):
            os.unlink(p)
    for i in range(1, a.ndst + 1):
        ctl = os.path.join(w, "fetch%d.ctl" % i)
        out = os.path.join(w, "h%d.img" % (i + 1))
        args = [a.p2pvbd, "fetch", "--no-progress", "--ctl", ctl,
                "--stats", os.path.join(w, "fetch%d.stats" % i)]
        if i == 1:
            args += ["-e", "unix:" + dst_sock, "--qmp", fetch_qmp, "--drive", "disk0"]
        logp = os.path.join(w, "fetch%d.log" % i)
        fetches.append((ctl, logp, start("fetch h%d" % (i + 1), a.ns[i], args + [uri, out], logp)))
    live = [("seed", seed)] + [("fetch", f[2]) for f in fetches]
    wait_for("fetch's export socket", 60, lambda: os.path.exists(dst_sock), live)
    dst = Vm(a, "pdst", a.ns[1], "if=none,id=disk0,format=raw,file=nbd:unix:" + dst_sock,
             incoming="tcp:%s:4445" % a.addr[1], extra_qmp=(fetch_qmp,))
    live.append(("destination QEMU", dst.proc))
    uri_mig = "tcp:%s:4445" % a.addr[1]
    use_ctl = a.switch == "ctl" or (a.switch == "auto" and ctl_can_migrate(a))
    ctl_proc = None
    if use_ctl:
        cmd = [a.p2pvbd, "ctl", "--timeout", str(a.timeout)]
        if a.postcopy:
            cmd.append("--postcopy")
        ctl_out = os.path.join(w, "ctl-migrate.log")
        ctl_proc = start("ctl migrate", None, cmd + [seed_ctl, "migrate", uri_mig], ctl_out)
        time.sleep(0.5)
        if ctl_proc.poll() not in (None, 0) and a.switch == "auto":
            log("ctl migrate refused at once (%s): the script runs the switchover"
                % tail(ctl_out, 1))
            use_ctl, ctl_proc = False, None
    res["switch"] = "ctl migrate" if use_ctl else "script"
    info = {}
    t_run = None
    if not use_ctl:
        if not a.postcopy:
            def in_sync():
                s = p2p_status(a, seed_ctl)
                left = s["dirty_bytes"]
                for ctl, _, _ in fetches:
                    f = p2p_status(a, ctl)
                    if not f.get("volume_known"):
                        return False
                    left += f["image_size"] - f["bytes_done"]
                return left <= a.sync_bytes
            wait_for("the destinations to be nearly in sync", a.timeout, in_sync, live,
                     interval=0.2)
        res["sync_s"] = round(time.monotonic() - res["_t0"], 3)
        log("destinations in sync after %.1f s; migrating" % res["sync_s"])
        src.x("migrate-set-capabilities", {"capabilities": [
            {"capability": "pause-before-switchover", "state": True}]})
        src.x("migrate", {"uri": uri_mig})
        deadline = time.monotonic() + a.timeout
        while True:
            info = src.x("query-migrate")
            st = info.get("status")
            if st == "completed":
                break
            if st in ("failed", "cancelled"):
                raise Failure("migration %s: %s" % (st, info.get("error-desc", "")))
            if st == "pre-switchover":
                r = subprocess.run([a.p2pvbd, "ctl", seed_ctl, "freeze"], capture_output=True,
                                   text=True, timeout=120)
                if r.returncode != 0:
                    raise Failure("ctl freeze: %s" % r.stderr.strip())
                src.x("migrate-continue", {"state": "pre-switchover"})
            if t_run is None and dst.status() == "running":
                t_run = time.monotonic()
            for name, p in live:
                if p.poll() is not None and name != "fetch":
                    raise Failure("%s exited during the migration" % name)
            if time.monotonic() > deadline:
                raise Failure("migration not completed within %d s" % a.timeout)
            time.sleep(0.05)
    else:
        deadline = time.monotonic() + a.timeout + 60
        while ctl_proc.poll() is None:
            if t_run is None and dst.status() == "running":
                t_run = time.monotonic()
            for name, p in live:
                if p.poll() is not None and name != "fetch":
                    raise Failure("%s exited during the migration" % name)
            if time.monotonic() > deadline:
                raise Failure("ctl migrate did not end within %d s" % (a.timeout + 60))
            time.sleep(0.05)
        if ctl_proc.returncode != 0:
            raise Failure("ctl migrate: %s" % tail(os.path.join(w, "ctl-migrate.log")))
        info = src.x("query-migrate")
        try:
            m = p2p_status(a, seed_ctl).get("migration", {})
            res["ctl_migration"] = m
        except Failure:
            pass
    if t_run is None:
        wait_for("the destination VM to run", 60, lambda: dst.status() == "running", live)
        t_run = time.monotonic()
    res["run_s"] = round(t_run - res["_t0"], 3)
    res["migrated_s1"] = round(time.monotonic() - res["_t0"], 3)
    res["downtime_ms"] = info.get("downtime")
    res["ram_bytes1"] = info.get("ram", {}).get("transferred")
    log("migrated (downtime %s ms); the VM runs at h2 after %.2f s" % (res["downtime_ms"],
                                                                      res["run_s"]))
    ends = []
    for i, (ctl, logp, p) in enumerate(fetches, 1):
        wait_for("fetch h%d to end" % (i + 1), a.timeout, lambda: p.poll() is not None,
                 [("seed", seed)], interval=0.05)
        ends.append(time.monotonic())
        if p.returncode != 0:
            raise Failure("fetch h%d exited %d: %s" % (i + 1, p.returncode, tail(logp)))
    res["discard_s"] = round(max(ends) - res["_t0"], 3)
    res["fetch_end_s"] = [round(t - res["_t0"], 3) for t in ends]
    if "now runs on" not in open(fetches[0][1]).read():
        raise Failure("fetch h2 ended without moving its VM onto OUT: %s" % tail(fetches[0][1]))
    for i in range(1, a.ndst + 1):
        try:
            st = json.load(open(os.path.join(w, "fetch%d.stats" % i)))
            res["fetch%d_bytes_from_peers" % i] = st.get("bytes_from_peers")
            res["fetch%d_bytes_fetched" % i] = st.get("bytes_fetched")
        except (OSError, ValueError):
            pass
    log("fetch ended (VM on its own file at h2) after %.2f s" % res["discard_s"])
    stop(seed)
    note_guest_writes(src, res)
    src.quit()
    return dst


# ---- one run ------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--flow", choices=("qemu", "p2pvbd"), required=True)
    ap.add_argument("--ndst", type=int, choices=(1, 2), default=1)
    ap.add_argument("--postcopy", action="store_true")
    ap.add_argument("--switch", choices=("auto", "ctl", "script"), default="auto")
    ap.add_argument("--ns", required=True)
    ap.add_argument("--addr", required=True)
    ap.add_argument("--p2pvbd", required=True)
    ap.add_argument("--tracker", required=True)
    ap.add_argument("--guest", required=True)
    ap.add_argument("--template", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--records", type=int, default=512)
    ap.add_argument("--pause", default="0.05")
    ap.add_argument("--min-records", type=int, default=16)
    ap.add_argument("--memory", type=int, default=128)
    ap.add_argument("--sync-bytes", type=int, default=8 * MIB)
    ap.add_argument("--timeout", type=int, default=900)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--seed-args", default="", help="more options for p2pvbd seed")
    a = ap.parse_args()
    a.ns, a.addr = a.ns.split(","), a.addr.split(",")
    w = a.workdir
    os.makedirs(w, exist_ok=True)
    a.src_disk = os.path.join(w, "src.qcow2")
    a.ctl_img = os.path.join(w, "ctl.img")
    a.seed_qmp = os.path.join(w, "src-seed.qmp")
    subprocess.run(["cp", "--sparse=always", a.template, a.src_disk], check=True)
    a.size = json.loads(subprocess.run(["qemu-img", "info", "--output=json", a.src_disk],
                                       check=True, capture_output=True,
                                       text=True).stdout)["virtual-size"]
    with open(a.ctl_img, "wb") as f:
        f.truncate(MIB)
    atexit.register(cleanup)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    res = {"flow": a.flow, "ndst": a.ndst, "postcopy": a.postcopy}
    try:
        src = boot_source(a)
        hosts = a.ns[:3]
        tx0 = [tx_bytes(ns) for ns in hosts]
        cpu0 = cpu_line()
        src.console.poll()
        res["_rec0"] = src.console.records
        res["_t0"] = time.monotonic()
        vm = (flow_qemu if a.flow == "qemu" else flow_p2pvbd)(a, src, res)
        cpu1 = cpu_line()
        tx1 = [tx_bytes(ns) for ns in hosts]
        res["tx_bytes"] = [y - x for x, y in zip(tx0, tx1)]
        res["link_bytes"] = sum(res["tx_bytes"])
        res["h1_tx_bytes"] = res["tx_bytes"][0]
        res["cpu_busy_pct"] = cpu_busy(cpu0, cpu1)
        del res["_t0"], res["_rec0"]
        # Not timed: the guest, at its final place, stops and checks every record.
        vm.console.poll()
        base = vm.console.records
        wait_for("records written at the destination", 120,
                 lambda: (vm.console.poll(), vm.console.records >= base + 4)[1],
                 [("destination QEMU", vm.proc)], interval=0.2)
        with open(a.ctl_img, "r+b") as f:
            f.write(b"STOP")
            f.flush()
            os.fsync(f.fileno())
        wait_for("the guest's verification", 180,
                 lambda: (vm.console.poll(), vm.console.verify is not None)[1],
                 [("destination QEMU", vm.proc)], interval=0.2)
        res["verify"] = vm.console.verify[0]
        res["records_written"] = vm.console.records
        if vm.console.verify[0] != "OK":
            raise Failure("the guest's check failed at its destination: %s" % vm.console.verify[2])
    except Failure as e:
        print("bench-vm: %s FAILED: %s" % (a.flow, e), file=sys.stderr, flush=True)
        return 1
    print(json.dumps(res), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
