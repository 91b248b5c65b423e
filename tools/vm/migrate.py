#!/usr/bin/env python3
# SPDX-License-Identifier: ISC
"""Live-migrate the p2pvbd test guest between two QEMU processes on this host.

The guest (tools/vm/build-guest.sh, tools/vm/guest-init) writes records to
its data disk while it runs. This script:

  1. starts the source QEMU on --src-disk and waits until the guest has
     written --min-records records (its console: WORKDIR/src-console.log);
  2. runs --before-destination-cmd if given (it must exit 0), then starts
     the destination QEMU on --dst-disk with -incoming (console:
     WORKDIR/dst-console.log);
  3. runs --wait-sync-cmd until it says the destination disk is (nearly) in
     sync: exit 0 = go, exit 1 = not yet (run again after --sync-interval),
     any other exit = give up;
  4. migrates with QMP "migrate" and the pause-before-switchover capability:
     when the source has stopped the guest and flushed its disk (status
     "pre-switchover"), runs --freeze-cmd, then "migrate-continue". If the
     migration does not complete after the freeze hook ran, --resume-cmd runs
     (to undo the freeze) and the source guest goes on running until cleanup;
  5. runs --after-switchover-cmd once the destination guest runs (it must
     exit 0; the --after-records are then counted from its end), checks that
     the guest goes on writing on the destination (--after-records
     more records), quits the source QEMU, tells the guest to stop (writes
     "STOP" to sector 0 of the control disk WORKDIR/ctl.img that both QEMUs
     attach), waits for "P2PVBD-VERIFY OK" on the destination console and for
     the guest to power off.

With --switchover-cmd, steps 3 and 4 are the hook's (e.g. `p2pvbd ctl SEED
migrate "$P2PVBD_MIG_URI"`: the seed, told the source's QMP socket with
--src-extra-qmp, waits for the disk sync and runs the switchover itself);
with --expect-failure too (a migration made to fail, e.g. by --dst-fault),
the hook must fail, the source VM must be running, and the guest must go on
writing there and verify its records there (P2PVBD-ROLLBACK OK).

It prints timings (boot, migration total time and downtime as reported by
query-migrate, the freeze hook's time) and writes them, with the guest's final
state (epoch, next, records, seed: what tools/vm/check-records.py needs), to
WORKDIR/result.json.

Hooks run with /bin/sh -c in WORKDIR, their output in WORKDIR/hook-NAME.log,
with P2PVBD_MIG_WORKDIR, P2PVBD_MIG_SRC_QMP and P2PVBD_MIG_DST_QMP set.
This script stays connected to both QMP sockets; --src-extra-qmp and
--dst-extra-qmp PATH give a QEMU a second one for another client (seed --qmp,
fetch --qmp).

Disks are anything QEMU's -drive file= accepts as a raw image:
nbd:unix:/path/to.sock, nbd+unix:///?socket=/path/to.sock,
nbd://127.0.0.1:10809/name, or a file.

Exit status: 0 the guest verified all its records on the destination (with
--expect-failure: at the source, after the failed migration); 1 anything failed (the reason is printed last); 2 bad usage or missing
prerequisites (nothing was started). Every wait is bounded; both QEMUs are
stopped on every exit path (and die with this script if it is killed).
Python 3 standard library only.
"""

import argparse
import atexit
import ctypes
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time

T0 = time.monotonic()


def log(msg):
    print("migrate: [%6.2fs] %s" % (time.monotonic() - T0, msg), flush=True)


class Failure(Exception):
    """Something went wrong: exit 1 with this message."""


class Interrupted(Failure):
    pass


class QmpError(Failure):
    def __init__(self, cmd, err):
        super().__init__("QMP %s failed: %s: %s" % (cmd, err.get("class"), err.get("desc")))
        self.err = err


def _pdeathsig():
    """In the child: die with SIGKILL when the parent (this script) dies."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:  # best effort only
        pass


class Qmp:
    """A minimal QMP client: JSON lines over a unix socket."""

    def __init__(self, path, name):
        self.path = path
        self.name = name
        self.sock = None
        self.buf = b""
        self.events = []

    def connect(self, timeout, alive):
        deadline = time.monotonic() + timeout
        while True:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(self.path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                s.close()
            if not alive():
                raise Failure("%s QEMU exited before its QMP socket was up" % self.name)
            if time.monotonic() > deadline:
                raise Failure("%s QMP socket %s not up within %d s" % (self.name, self.path, timeout))
            time.sleep(0.05)
        self.sock = s
        greeting = self._read(deadline)
        if "QMP" not in greeting:
            raise Failure("%s QMP: unexpected greeting %r" % (self.name, greeting))
        self.execute("qmp_capabilities", timeout=timeout)

    def _read(self, deadline):
        while True:
            while b"\n" not in self.buf:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Failure("%s QMP: no answer in time" % self.name)
                self.sock.settimeout(left)
                try:
                    data = self.sock.recv(65536)
                except socket.timeout:
                    raise Failure("%s QMP: no answer in time" % self.name) from None
                except OSError as e:
                    raise Failure("%s QMP: %s" % (self.name, e)) from None
                if not data:
                    raise Failure("%s QMP: connection closed (QEMU exited?)" % self.name)
                self.buf += data
            line, self.buf = self.buf.split(b"\n", 1)
            if line.strip():
                return json.loads(line)

    def execute(self, cmd, args=None, timeout=10):
        if self.sock is None:
            raise Failure("%s QMP: not connected" % self.name)
        msg = {"execute": cmd}
        if args:
            msg["arguments"] = args
        try:
            self.sock.sendall(json.dumps(msg).encode() + b"\n")
        except OSError as e:
            raise Failure("%s QMP %s: %s" % (self.name, cmd, e)) from None
        deadline = time.monotonic() + timeout
        while True:
            m = self._read(deadline)
            if "event" in m:
                self.events.append(m)
                continue
            if "error" in m:
                raise QmpError(cmd, m["error"])
            if "return" in m:
                return m["return"]

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None


REC_RE = re.compile(r"^P2PVBD-REC (\d+) (\d+)\s*$")
STOP_RE = re.compile(r"P2PVBD-STOP epoch=(\d+) next=(\d+) records=(\d+) seed=(\d+)")
VERIFY_RE = re.compile(r"P2PVBD-VERIFY (OK|FAIL)\b(.*)")
ERROR_RE = re.compile(r"P2PVBD-ERROR .*")
BAD_RE = re.compile(r"P2PVBD-BAD .*")
# The guest kernel's own trouble: fail at once rather than wait for records.
KERNEL_RE = re.compile(r"\b(BUG: |Oops: |Kernel panic|general protection fault)")


class Console:
    """Follows a guest console log file and counts its P2PVBD- lines."""

    def __init__(self, path):
        self.path = path
        self.pos = 0
        self.partial = b""
        self.records = 0
        self.last_rec = None
        self.first_rec_time = None
        self.stop = None
        self.verify = None
        self.errors = []
        self.bad = []

    def poll(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.pos)
                data = f.read()
        except FileNotFoundError:
            return
        self.pos += len(data)
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()
        for raw in lines:
            line = raw.decode("utf-8", "replace").strip("\r")
            m = REC_RE.match(line)
            if m:
                self.records += 1
                self.last_rec = (int(m.group(1)), int(m.group(2)))
                if self.first_rec_time is None:
                    self.first_rec_time = time.monotonic()
                continue
            m = STOP_RE.search(line)
            if m:
                self.stop = dict(zip(("epoch", "next", "records", "seed"),
                                     (int(g) for g in m.groups())))
                continue
            m = VERIFY_RE.search(line)
            if m:
                self.verify = (m.group(1), m.group(2).strip(), line)
                continue
            if ERROR_RE.search(line) or KERNEL_RE.search(line):
                self.errors.append(line)
            elif BAD_RE.search(line):
                self.bad.append(line)

    def tail(self, n=15):
        try:
            with open(self.path, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
        except FileNotFoundError:
            return "(no console log)"
        return "\n".join(lines[-n:])


class Vm:
    def __init__(self, name, workdir):
        self.name = name
        self.qmp_path = os.path.join(workdir, name + "-qmp.sock")
        self.console = Console(os.path.join(workdir, name + "-console.log"))
        self.log_path = os.path.join(workdir, name + "-qemu.log")
        self.proc = None
        self.qmp = Qmp(self.qmp_path, name)
        self.start_time = None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def start(self, cmd):
        for p in (self.qmp_path, self.console.path):
            if os.path.exists(p):
                os.unlink(p)
        with open(self.log_path, "wb") as logf:
            logf.write(("# " + shlex.join(cmd) + "\n").encode())
            logf.flush()
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf,
                                         stderr=subprocess.STDOUT, start_new_session=True,
                                         preexec_fn=_pdeathsig)
        self.start_time = time.monotonic()

    def qemu_log_tail(self, n=10):
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
        except FileNotFoundError:
            return ""
        return "\n".join(lines[-n:])

    def stop(self, grace=5):
        """Stop QEMU: QMP quit, else SIGTERM, else SIGKILL."""
        if self.proc is None:
            return
        if self.alive() and self.qmp.sock is not None:
            try:
                self.qmp.execute("quit", timeout=2)
            except Failure:
                pass
        self.qmp.close()
        for sig in (None, signal.SIGTERM, signal.SIGKILL):
            if sig is not None and self.proc.poll() is None:
                try:
                    self.proc.send_signal(sig)
                except ProcessLookupError:
                    pass
            try:
                self.proc.wait(timeout=grace)
                break
            except subprocess.TimeoutExpired:
                continue


VMS = []
HOOK_PROCS = []


def cleanup():
    for p in list(HOOK_PROCS):
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                pass
            p.wait()
    HOOK_PROCS.clear()
    for vm in VMS:
        if vm.alive():
            log("stopping the %s QEMU (pid %d)" % (vm.name, vm.proc.pid))
        vm.stop()


def on_signal(signum, _frame):
    # Further signals must not interrupt the cleanup.
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, signal.SIG_IGN)
    raise Interrupted("interrupted by signal %d" % signum)


def escape_opt(v):
    """A value inside a QEMU -drive/-chardev option list: commas are doubled."""
    return v.replace(",", ",,")


def ram_size(a):
    """QEMU's -m value.

    QEMU before 9.0 loses guest writes when it migrates a TCG guest (fixed
    upstream by commit 03bfc2188f06, "physmem: Fix migration dirty bitmap
    coherency with TCG memory access"; Debian 12 has 7.2 without it): the fast
    path of the dirty bitmap sync, taken for RAM blocks whose size is a
    multiple of 64 pages, forgets to reset the TCG TLB, so stores through TLB
    entries filled before the sync no longer mark their pages dirty, and the
    destination gets stale pages: the guest kernel oopses right after the
    switchover. A RAM size 8 KiB short of a multiple of 256 KiB (QEMU rounds
    -m up to 8 KiB) forces the slow path, which does reset the TLB.
    """
    if a.accel == "tcg" and not a.aligned_ram:
        return "%dK" % (a.memory * 1024 - 8)
    return "%dM" % a.memory


def qemu_cmd(a, vm, disk, ctl, incoming=None, extra_qmp=None, ctl_device=True, fmt="raw"):
    append = "console=ttyS0 panic=-1 quiet " + a.append
    cmd = [
        a.qemu, "-name", "p2pvbd-" + vm.name,
        "-nodefaults", "-no-user-config", "-no-reboot",
        "-machine", "pc,accel=" + a.accel, "-smp", "1", "-m", ram_size(a),
        "-display", "none",
        "-kernel", a.kernel, "-initrd", a.initrd, "-append", append,
        "-chardev", "file,id=con0,path=" + escape_opt(vm.console.path),
        "-serial", "chardev:con0",
        "-qmp", "unix:%s,server=on,wait=off" % escape_opt(vm.qmp_path),
        "-drive", "if=none,id=disk0,format=%s,file=%s" % (fmt, escape_opt(disk)),
        # An explicit geometry: without one QEMU reads sector 0 at start-up to
        # guess it, and a p2pvbd destination holds every read until the
        # source froze, which is only after the migration began.
        "-device", "virtio-blk-pci,drive=disk0,serial=p2pvbd-data,addr=0x4,"
                   "cyls=1024,heads=16,secs=63",
        "-drive", "if=none,id=ctl0,format=raw,file.locking=off,file=" + escape_opt(ctl),
    ]
    if ctl_device:
        cmd += ["-device", "virtio-blk-pci,drive=ctl0,serial=p2pvbd-ctl,addr=0x5"]
    if extra_qmp:
        cmd += ["-qmp", "unix:%s,server=on,wait=off" % escape_opt(extra_qmp)]
    if incoming:
        cmd += ["-incoming", incoming]
    return cmd


def wait_until(what, timeout, pred, vms, interval=0.1):
    """Wait until pred() is true; fail on timeout or if a QEMU in vms exits."""
    deadline = time.monotonic() + timeout
    while True:
        for vm in vms:
            vm.console.poll()
        if pred():
            return
        for vm in vms:
            if not vm.alive():
                raise Failure("the %s QEMU exited (status %s) while waiting for %s"
                              % (vm.name, vm.proc.returncode, what))
            if vm.console.errors:
                raise Failure("the guest on the %s reported: %s" % (vm.name, vm.console.errors[0]))
        if time.monotonic() > deadline:
            raise Failure("timed out after %d s waiting for %s" % (timeout, what))
        time.sleep(interval)


def stop_and_verify(a, vm, ctl, result, result_path, where, records_key):
    """Tell the guest to stop and verify (STOP in sector 0 of the control disk), wait for its
    verdict on vm's console and for it to power off, and write result.json. Returns (verdict,
    the verify line, the guest's final state from its P2PVBD-STOP line, or {})."""
    log("telling the guest to stop and verify (%s)" % where)
    with open(ctl, "r+b") as f:
        f.write(b"STOP")
        f.flush()
        os.fsync(f.fileno())
    deadline = time.monotonic() + a.verify_timeout
    wait_until("the guest's verification %s" % where, a.verify_timeout,
               lambda: vm.console.verify is not None, [vm])
    verdict, _, line = vm.console.verify
    stop = vm.console.stop or {}
    result.update(stop)
    result[records_key] = vm.console.records
    result["verify"] = line
    try:
        vm.proc.wait(timeout=max(1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        raise Failure("the guest did not power off after verifying") from None
    result["ok"] = verdict == "OK" and bool(stop)
    with open(result_path, "w") as f:
        json.dump(result, f, indent=1, sort_keys=True)
        f.write("\n")
    return verdict, line, stop


def run_hook(a, name, cmd, timeout, env):
    """Run a hook; returns (exit status, seconds). Fails on timeout."""
    path = os.path.join(a.workdir, "hook-%s.log" % name)
    t = time.monotonic()
    with open(path, "ab") as out:
        p = subprocess.Popen(["/bin/sh", "-c", cmd], cwd=a.workdir, env=env,
                             stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                             start_new_session=True, preexec_fn=_pdeathsig)
        HOOK_PROCS.append(p)
        rc = None
        try:
            rc = p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise Failure("%s hook did not finish within %d s: %s (output in %s)"
                          % (name, timeout, cmd, path)) from None
        finally:
            if rc is None:
                # Timed out or interrupted: the hook and all its children go.
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except OSError:
                    pass
                p.wait()
            HOOK_PROCS.remove(p)
    return rc, time.monotonic() - t


def hook_output(a, name, n=10):
    try:
        with open(os.path.join(a.workdir, "hook-%s.log" % name), "rb") as f:
            return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-n:])
    except FileNotFoundError:
        return ""


def parse_args():
    ap = argparse.ArgumentParser(
        usage="%(prog)s --src-disk URI --dst-disk URI --kernel FILE --initrd FILE --workdir DIR\n"
              "       [--append CMDLINE] [--wait-sync-cmd CMD] [--freeze-cmd CMD] [--resume-cmd CMD]\n"
              "       [options]",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src-disk", required=True, metavar="URI", help="the source QEMU's data disk (e.g. nbd:unix:/path/src.sock)")
    ap.add_argument("--dst-disk", required=True, metavar="URI", help="the destination QEMU's data disk")
    ap.add_argument("--kernel", required=True, metavar="FILE", help="guest kernel (build-guest.sh OUTDIR/vmlinuz)")
    ap.add_argument("--initrd", required=True, metavar="FILE", help="guest initramfs (OUTDIR/initrd.gz)")
    ap.add_argument("--append", default="", metavar="CMDLINE",
                    help="extra kernel command line, e.g. 'p2pvbd.records=64 p2pvbd.seed=7'")
    ap.add_argument("--workdir", required=True, metavar="DIR", help="directory for sockets, logs, ctl.img, result.json")
    ap.add_argument("--wait-sync-cmd", metavar="CMD", help="shell command: exit 0 when the destination disk is nearly in sync, 1 not yet")
    ap.add_argument("--freeze-cmd", metavar="CMD", help="shell command run at pre-switchover (source guest stopped, disk flushed)")
    ap.add_argument("--resume-cmd", metavar="CMD", help="shell command run if the migration fails after --freeze-cmd ran")
    ap.add_argument("--switchover-cmd", metavar="CMD",
                    help="shell command that does steps 3 and 4 itself (e.g. p2pvbd ctl SEED migrate "
                         "\"$P2PVBD_MIG_URI\"): exit 0 once the migration completed")
    ap.add_argument("--expect-failure", action="store_true",
                    help="with --switchover-cmd: it must fail, and the guest must go on at the source "
                         "and verify its records there (prints P2PVBD-ROLLBACK OK)")
    ap.add_argument("--dst-fault", choices=["incompatible"],
                    help="incompatible: the destination QEMU lacks the control disk's device, so it "
                         "fails to load the device state after pre-switchover and exits")
    ap.add_argument("--incoming", metavar="URI",
                    help="the destination's -incoming (default unix:WORKDIR/mig.sock); hooks get it "
                         "in P2PVBD_MIG_URI")
    ap.add_argument("--src-format", default="raw", choices=["raw", "qcow2"],
                    help="the source disk's format (default raw; qcow2: a VM on its own "
                         "qcow2 file, as seed --qmp attaches to)")
    ap.add_argument("--before-destination-cmd", metavar="CMD",
                    help="shell command run once the source guest wrote --min-records, before "
                         "the destination QEMU starts; must exit 0 (e.g. wait for the "
                         "destination's export)")
    ap.add_argument("--after-switchover-cmd", metavar="CMD",
                    help="shell command run once the destination guest runs; must exit 0 "
                         "(--after-records then counts the records written after it)")
    ap.add_argument("--dst-extra-qmp", metavar="PATH",
                    help="a second QMP socket on the destination QEMU, for another client "
                         "(e.g. fetch --qmp)")
    ap.add_argument("--src-extra-qmp", metavar="PATH",
                    help="a second QMP socket on the source QEMU (for p2pvbd seed --qmp)")
    ap.add_argument("--qemu", metavar="BINARY", default="qemu-system-x86_64", help="QEMU binary (default %(default)s)")
    ap.add_argument("--accel", metavar="NAME", default="tcg", help="QEMU accelerator (default %(default)s)")
    ap.add_argument("--memory", type=int, metavar="MIB", default=256, help="guest RAM in MiB (default %(default)s; 8 KiB less under TCG, see --aligned-ram)")
    ap.add_argument("--aligned-ram", action="store_true",
                    help="give the guest exactly --memory MiB even under TCG (by default 8 KiB "
                         "less, to dodge a QEMU < 9.0 TCG migration bug: see ram_size())")
    ap.add_argument("--min-records", type=int, metavar="N", default=10,
                    help="records the guest writes on the source before the migration (default %(default)s)")
    ap.add_argument("--after-records", type=int, metavar="N", default=5,
                    help="records it must write on the destination before it is stopped (default %(default)s)")
    ap.add_argument("--max-bandwidth", type=int, metavar="MIBPS", default=1024,
                    help="migration bandwidth limit in MiB/s (default %(default)s)")
    ap.add_argument("--downtime-limit", type=int, metavar="MS", default=300,
                    help="migration downtime limit in ms (default %(default)s)")
    ap.add_argument("--boot-timeout", type=float, metavar="S", default=60, help="seconds (default %(default)s)")
    ap.add_argument("--sync-timeout", type=float, metavar="S", default=300, help="seconds for --wait-sync-cmd (default %(default)s)")
    ap.add_argument("--sync-interval", type=float, metavar="S", default=1, help="seconds between --wait-sync-cmd runs (default %(default)s)")
    ap.add_argument("--hook-timeout", type=float, metavar="S", default=60, help="seconds for each other hook (default %(default)s)")
    ap.add_argument("--migrate-timeout", type=float, metavar="S", default=120, help="seconds for the migration (default %(default)s)")
    ap.add_argument("--verify-timeout", type=float, metavar="S", default=120,
                    help="seconds for the guest's records on the destination and its check (default %(default)s)")
    a = ap.parse_args()

    def usage(msg):
        ap.print_usage(sys.stderr)
        print("migrate.py: error: %s" % msg, file=sys.stderr)
        sys.exit(2)

    for f in (a.kernel, a.initrd):
        if not os.path.isfile(f):
            usage("no such file: %s" % f)
    a.kernel = os.path.abspath(a.kernel)
    a.initrd = os.path.abspath(a.initrd)
    if shutil.which(a.qemu) is None:
        usage("QEMU not found: %s (Debian package qemu-system-x86)" % a.qemu)
    if a.expect_failure and not a.switchover_cmd:
        usage("--expect-failure needs --switchover-cmd")
    if a.min_records < 1 or a.after_records < 1 or a.memory < 64:
        usage("need --min-records >= 1, --after-records >= 1, --memory >= 64")
    try:
        os.makedirs(a.workdir, exist_ok=True)
    except OSError as e:
        usage("cannot create %s: %s" % (a.workdir, e))
    a.workdir = os.path.abspath(a.workdir)
    longest = os.path.join(a.workdir, "dst-qmp.sock")
    if len(longest.encode()) > 100:
        usage("--workdir path too long for unix sockets: %s" % a.workdir)
    return a


def main():
    a = parse_args()
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)
    atexit.register(cleanup)
    err = None
    try:
        return migrate(a)
    except Failure as e:
        err = e
    finally:
        cleanup()
    sys.stdout.flush()
    for vm in VMS:
        print("--- %s console (last lines of %s) ---\n%s"
              % (vm.name, vm.console.path, vm.console.tail()), file=sys.stderr)
        q = vm.qemu_log_tail()
        if q.count("\n") > 0:
            print("--- %s QEMU log (%s) ---\n%s" % (vm.name, vm.log_path, q), file=sys.stderr)
    print("migrate: FAIL: %s" % err, file=sys.stderr, flush=True)
    return 1


def own_switchover(a, src, dst, env, result, incoming):
    """Steps 3 and 4 by this script: returns (query-migrate's last answer, start time)."""
    # 3. Wait for the destination disk.
    if a.wait_sync_cmd:
        log("waiting for the destination disk: %s" % a.wait_sync_cmd)
        t = time.monotonic()
        deadline = t + a.sync_timeout
        while True:
            rc, _ = run_hook(a, "wait-sync", a.wait_sync_cmd, max(1, deadline - time.monotonic()), env)
            if rc == 0:
                break
            if rc != 1:
                raise Failure("--wait-sync-cmd exited %d: %s" % (rc, hook_output(a, "wait-sync")))
            for vm in (src, dst):
                if not vm.alive():
                    raise Failure("the %s QEMU exited while waiting for the disk sync" % vm.name)
            if time.monotonic() + a.sync_interval > deadline:
                raise Failure("destination disk not in sync within %d s (--wait-sync-cmd kept exiting 1): %s"
                              % (a.sync_timeout, hook_output(a, "wait-sync")))
            time.sleep(a.sync_interval)
        result["wait_sync_s"] = round(time.monotonic() - t, 3)
        log("destination disk in sync after %.2f s" % result["wait_sync_s"])

    # 4. Migrate, pausing before the switchover for the freeze hook.
    src.qmp.execute("migrate-set-capabilities", {"capabilities": [
        {"capability": "pause-before-switchover", "state": True}]})
    src.qmp.execute("migrate-set-parameters", {
        "max-bandwidth": a.max_bandwidth << 20, "downtime-limit": a.downtime_limit})
    src_records_at_migrate = src.console.records
    log("migrating (%d records written so far)" % src_records_at_migrate)
    t_mig = time.monotonic()
    src.qmp.execute("migrate", {"uri": incoming})
    froze = False
    info = {}
    try:
        deadline = t_mig + a.migrate_timeout
        while True:
            info = src.qmp.execute("query-migrate")
            status = info.get("status")
            if status == "completed":
                break
            if status in ("failed", "cancelled"):
                raise Failure("migration %s: %s" % (status, info.get("error-desc", "no reason given")))
            if status == "pre-switchover":
                t_pre = time.monotonic()
                result["pre_switchover_after_s"] = round(t_pre - t_mig, 3)
                log("pre-switchover after %.2f s: source guest stopped, its disk flushed" % (t_pre - t_mig))
                if a.freeze_cmd:
                    froze = True
                    rc, secs = run_hook(a, "freeze", a.freeze_cmd, a.hook_timeout, env)
                    result["freeze_hook_s"] = round(secs, 3)
                    if rc != 0:
                        raise Failure("--freeze-cmd exited %d: %s" % (rc, hook_output(a, "freeze")))
                    log("freeze hook done in %.3f s" % secs)
                src.qmp.execute("migrate-continue", {"state": "pre-switchover"})
            for vm in (src, dst):
                if not vm.alive():
                    raise Failure("the %s QEMU exited during the migration" % vm.name)
            if time.monotonic() > deadline:
                raise Failure("migration not completed within %d s (status %s)" % (a.migrate_timeout, status))
            time.sleep(0.05)
    except Failure:
        if src.alive():
            try:
                src.qmp.execute("migrate_cancel")
                wait_until("the migration to be cancelled", 10,
                           lambda: src.qmp.execute("query-migrate").get("status")
                           in ("cancelled", "failed", "completed"), [src])
                log("migration cancelled; source QEMU is %s"
                    % src.qmp.execute("query-status").get("status"))
            except Failure as e:
                log("cancelling the migration: %s" % e)
        if froze and a.resume_cmd:
            log("migration failed after the freeze: running the resume hook")
            rc, _ = run_hook(a, "resume", a.resume_cmd, a.hook_timeout, env)
            if rc != 0:
                log("--resume-cmd exited %d: %s" % (rc, hook_output(a, "resume")))
        raise
    return info, t_mig


def hooked_switchover(a, src, env, result):
    """Steps 3 and 4 by --switchover-cmd: query-migrate's answer, or None if
    the hook failed and --expect-failure says it should."""
    log("switchover by --switchover-cmd: %s" % a.switchover_cmd)
    rc, secs = run_hook(a, "switchover", a.switchover_cmd, a.sync_timeout + a.migrate_timeout, env)
    result["switchover_hook_s"] = round(secs, 3)
    out = hook_output(a, "switchover")
    if rc != 0:
        if not a.expect_failure:
            raise Failure("--switchover-cmd exited %d: %s" % (rc, out))
        log("the switchover failed, as expected (exit %d): %s" % (rc, out))
        return None
    if a.expect_failure:
        raise Failure("--switchover-cmd succeeded, but --expect-failure: %s" % out)
    log("switchover hook done in %.2f s: %s" % (secs, out))
    info = src.qmp.execute("query-migrate")
    if info.get("status") != "completed":
        raise Failure("--switchover-cmd exited 0, but the source QEMU says the migration is %s"
                      % info.get("status"))
    return info


def rollback(a, src, dst, ctl, result, result_path):
    """After a switchover that failed (--expect-failure): the guest must go on
    writing at the source and verify every record there."""
    status = src.qmp.execute("query-status").get("status")
    result["source_status_after_failure"] = status
    if status != "running":
        raise Failure("source QEMU is %r after the failed migration, not running" % status)
    src.console.poll()
    before = src.console.records
    wait_until("%d more records on the source" % a.after_records, a.verify_timeout,
               lambda: src.console.records >= before + a.after_records, [src])
    log("guest goes on at the source: %d records written there (last: record %d of epoch %d)"
        % ((src.console.records,) + src.console.last_rec))
    dst.stop()
    verdict, line, stop = stop_and_verify(a, src, ctl, result, result_path, "at the source",
                                          "records_on_source")
    if verdict != "OK":
        raise Failure("the guest's check failed at the source: %s\n%s"
                      % (line, "\n".join(src.console.bad[:10])))
    if not stop:
        raise Failure("no P2PVBD-STOP line on the source console")
    log("guest verified its records at the source: %s" % line)
    print("P2PVBD-ROLLBACK OK", flush=True)
    return 0


def migrate(a):
    wd = a.workdir
    result = {"ok": False}
    result_path = os.path.join(wd, "result.json")
    if os.path.exists(result_path):
        os.unlink(result_path)
    ctl = os.path.join(wd, "ctl.img")
    with open(ctl, "wb") as f:
        f.truncate(1 << 20)
    mig_sock = os.path.join(wd, "mig.sock")
    if os.path.exists(mig_sock):
        os.unlink(mig_sock)

    src = Vm("src", wd)
    dst = Vm("dst", wd)
    VMS.extend([src, dst])
    env = dict(os.environ, P2PVBD_MIG_WORKDIR=wd, P2PVBD_MIG_SRC_QMP=src.qmp_path,
               P2PVBD_MIG_DST_QMP=dst.qmp_path)

    # 1. The source.
    log("starting the source QEMU on %s" % a.src_disk)
    if a.src_extra_qmp and os.path.exists(a.src_extra_qmp):
        os.unlink(a.src_extra_qmp)
    src.start(qemu_cmd(a, src, a.src_disk, ctl, extra_qmp=a.src_extra_qmp, fmt=a.src_format))
    src.qmp.connect(30, src.alive)
    blocks = src.qmp.execute("human-monitor-command", {"command-line": "info ramblock"})
    with open(os.path.join(wd, "src-ramblock.txt"), "w") as f:
        f.write(blocks)
    m = re.search(r"^\s*pc\.ram\s+\S+ \S+\s+0x[0-9a-f]+\s+0x([0-9a-f]+)", blocks, re.M)
    if a.accel == "tcg" and m and int(m.group(1), 16) % (256 << 10) == 0:
        log("warning: guest RAM is a multiple of 256 KiB: QEMU < 9.0 may lose guest writes "
            "in the migration (see ram_size() in this script)")
    wait_until("the guest's first record on the source", a.boot_timeout,
               lambda: src.console.records >= 1, [src])
    boot_s = src.console.first_rec_time - src.start_time
    log("guest booted: first record %.2f s after QEMU started" % boot_s)
    wait_until("%d records on the source" % a.min_records, a.boot_timeout,
               lambda: src.console.records >= a.min_records, [src])
    result["boot_s"] = round(boot_s, 3)
    result["records_on_source_before_migration"] = src.console.records
    log("%d records written on the source (last: record %d of epoch %d)"
        % ((src.console.records,) + src.console.last_rec))

    # 2. The destination.
    if a.before_destination_cmd:
        rc, secs = run_hook(a, "before-destination", a.before_destination_cmd, a.hook_timeout,
                            env)
        if rc != 0:
            raise Failure("--before-destination-cmd exited %d: %s"
                          % (rc, hook_output(a, "before-destination")))
        log("before-destination hook done in %.3f s" % secs)
    log("starting the destination QEMU on %s" % a.dst_disk)
    incoming = a.incoming or "unix:" + mig_sock
    env["P2PVBD_MIG_URI"] = incoming
    dst.start(qemu_cmd(a, dst, a.dst_disk, ctl, incoming=incoming,
                       extra_qmp=a.dst_extra_qmp, ctl_device=a.dst_fault != "incompatible"))
    dst.qmp.connect(30, dst.alive)
    st = dst.qmp.execute("query-status")
    if st.get("status") != "inmigrate":
        raise Failure("destination QEMU is %r, not inmigrate" % st.get("status"))

    # 3.-4. The disk sync and the switchover: this script's, or --switchover-cmd's.
    if a.switchover_cmd:
        t_mig = time.monotonic()
        info = hooked_switchover(a, src, env, result)
        if info is None:
            return rollback(a, src, dst, ctl, result, result_path)
    else:
        info, t_mig = own_switchover(a, src, dst, env, result, incoming)
    t_done = time.monotonic()
    result["migration_wall_s"] = round(t_done - t_mig, 3)
    for k in ("total-time", "downtime", "setup-time"):
        if k in info:
            result[k.replace("-", "_") + "_ms"] = info[k]
    ram = info.get("ram", {})
    result["ram"] = {k: ram[k] for k in ("transferred", "total", "duplicate", "normal",
                                         "dirty-sync-count", "mbps") if k in ram}
    log("migration completed: total %s ms, downtime %s ms (query-migrate), setup %s ms, "
        "%.1f MiB sent, %s dirty syncs"
        % (info.get("total-time"), info.get("downtime"), info.get("setup-time"),
           ram.get("transferred", 0) / 1048576.0, ram.get("dirty-sync-count")))

    # 5. The guest goes on on the destination.
    wait_until("the destination guest to run", 30,
               lambda: dst.qmp.execute("query-status").get("status") == "running", [dst])
    src_status = src.qmp.execute("query-status").get("status")
    if src_status != "postmigrate":
        raise Failure("source QEMU is %r after the migration, not postmigrate" % src_status)
    src.console.poll()
    result["records_on_source"] = src.console.records
    base = 0
    if a.after_switchover_cmd:
        rc, secs = run_hook(a, "after-switchover", a.after_switchover_cmd, a.hook_timeout, env)
        if rc != 0:
            raise Failure("--after-switchover-cmd exited %d: %s"
                          % (rc, hook_output(a, "after-switchover")))
        dst.console.poll()
        base = dst.console.records
        result["records_at_after_switchover"] = base
        log("after-switchover hook done in %.3f s (%d records on the destination by then)"
            % (secs, base))
    wait_until("%d records on the destination" % a.after_records, a.verify_timeout,
               lambda: dst.console.records >= base + a.after_records, [dst])
    log("guest runs on the destination: %d records written there (last: record %d of epoch %d)"
        % ((dst.console.records,) + dst.console.last_rec))
    src.console.poll()
    if src.console.records != result["records_on_source"]:
        raise Failure("the source guest went on writing after the migration")
    src.stop()
    log("source QEMU stopped (status %s)" % src.proc.returncode)

    verdict, line, stop = stop_and_verify(a, dst, ctl, result, result_path, "on the destination",
                                          "records_on_destination")
    if verdict != "OK":
        bad = dst.console.bad
        more = "\n(%d more)" % (len(bad) - 10) if len(bad) > 10 else ""
        raise Failure("the guest's check failed on the destination: %s\n%s%s"
                      % (line, "\n".join(bad[:10]), more))
    if not stop:
        raise Failure("no P2PVBD-STOP line on the destination console")
    log("guest verified its records: %s (epoch %d, next %d, records %d, seed %d)"
        % (line, stop["epoch"], stop["next"], stop["records"], stop["seed"]))
    log("summary: boot %.2f s, migration %.2f s wall / %s ms total, downtime %s ms%s; result in %s"
        % (boot_s, result["migration_wall_s"], info.get("total-time"), info.get("downtime"),
           ", freeze hook %.3f s" % result["freeze_hook_s"] if "freeze_hook_s" in result else "",
           result_path))
    print("P2PVBD-MIGRATE OK", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
