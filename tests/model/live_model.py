#!/usr/bin/python3
# SPDX-License-Identifier: ISC
"""Model-based randomized live-migration test of p2pvbd.

Each seed (random.Random(seed)) draws one migration and checks it against a model, a
bytearray copy of the volume:

  1. a volume of 1..--max-mib MiB (sometimes not a multiple of the 64 KiB chunk size) with
     random, zero and patterned chunks;
  2. `p2pvbd seed -e unix:SOCK --ctl CTL` on it, sometimes with a small --rate-limit so that
     transfers are still in progress while the source VM writes;
  3. 1..3 `p2pvbd fetch -e` destinations, some joining only through another destination
     (its `-l` address replaces the URI's peer=, so that chunks and generations are relayed);
  4. random writes, zeroes, reads and flushes at the source's NBD export (the model follows;
     every read must equal the model), with sleeps so that some land on chunks in transfer;
  5. the freeze (`p2pvbd ctl CTL freeze`), sometimes racing with writes still in flight;
     the source's image must then equal the model, and the source export must refuse writes
     (an error, never a silently lost write); when the binary has `ctl thaw`, sometimes a
     rollback: thaw (every destination stops being final), more writes, a second freeze;
  6. at each destination: reads issued before the freeze must wait for it and then return
     the final contents; after it, random reads and writes (each destination has its own
     model: the source's at the freeze plus its own writes); a late destination may join
     after the freeze;
  7. every destination reports complete and final (`p2pvbd status --json`), stops on
     SIGTERM with exit 0, and its OUT equals its model byte for byte.

A destination that relays for others gets no VM writes until everything is complete (it
never serves what its VM wrote, so one that knows only it would wait forever).

Until `p2pvbd --help` lists the `ctl` command (the freeze), --mode auto runs "prefreeze":
steps 1-4, then checks what holds before live writes are published: the source image equals
the model, the seed reports the dirty chunks, destinations serve the source's original bytes
of every chunk the source never wrote, and every chunk a destination holds is the original.

usage: live_model.py --bin PATH [--seed N | --first N --count K | --seconds S] [options]

A failure prints the seed, the step, the exact command that reproduces it and the tails of
the processes' logs. Exit status: 0 all seeds passed, 1 a seed failed, 2 usage error.
"""

import argparse
import ctypes
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import nbd

CHUNK = 64 * 1024  # --chunk-size 64K: many chunks in a small volume
MIB = 1024 * 1024
# A single NBD command (or connect) that takes longer than this has hung.
NBD_TIMEOUT_S = 60.0
# How long a process may take to print its URI / "exporting on" / "listening on".
START_TIMEOUT_S = 30.0
# How long a process may take to exit after SIGTERM.
STOP_TIMEOUT_S = 20.0
# How long a fetch may wait for chunks nobody can serve before giving up (default 300).
GIVE_UP_S = 120
# A hot-set writer must not starve the rest of the volume for longer than this (a bound on a
# hang: at the smallest upload cap, 2 MiB/s, one 64 KiB chunk takes 31 ms).
HOT_PROGRESS_S = 20


class Failure(Exception):
    """A check failed: the message says what, the run knows at which step."""


class SeedTimeout(Failure):
    pass


_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1


def _die_with_us():
    """In a child before exec: get SIGTERM if this script dies, even by SIGKILL, so that no
    seed or fetch outlives the test."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _terminated(signum, frame):
    # SystemExit unwinds through every finally: the processes are stopped, temp dirs removed.
    sys.exit(128 + signum)


def _alarm(signum, frame):
    raise SeedTimeout("the seed did not finish within its time limit (--seed-timeout)")


def hexdump_diff(a, b, off, width=16):
    """A short description of what differs around offset off."""
    lo = max(0, off - off % width)
    return "got %s, want %s" % (bytes(a[lo:lo + width]).hex(), bytes(b[lo:lo + width]).hex())


def first_diff(got, want):
    """First offset at which got and want differ (or where the shorter one ends), None if equal."""
    if got == want:
        return None
    n = min(len(got), len(want))
    # Compare in blocks first: fast on a few MiB.
    step = 4096
    for lo in range(0, n, step):
        if got[lo:lo + step] != want[lo:lo + step]:
            for i in range(lo, min(lo + step, n)):
                if got[i] != want[i]:
                    return i
    return n


# ---- processes -----------------------------------------------------------------------------


class Proc:
    """A process we started, with stdout in DIR/NAME.out and stderr in DIR/NAME.err."""

    def __init__(self, run, name, argv):
        self.name = name
        self.argv = argv
        self.out_path = os.path.join(run.dir, name + ".out")
        self.err_path = os.path.join(run.dir, name + ".err")
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.p = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                      env=run.env, preexec_fn=_die_with_us)
        run.procs.append(self)
        run.log("started %s (pid %d): %s" % (name, self.p.pid, " ".join(argv)))

    def stdout(self):
        with open(self.out_path, "r", errors="replace") as f:
            return f.read()

    def alive(self):
        return self.p.poll() is None

    def wait_line(self, regex, timeout=START_TIMEOUT_S):
        """Wait until stdout has a line matching regex; return the match."""
        deadline = time.monotonic() + timeout
        rx = re.compile(regex, re.M)
        while True:
            m = rx.search(self.stdout())
            if m:
                return m
            if not self.alive():
                raise Failure("%s exited (status %s) before printing /%s/"
                              % (self.name, self.p.returncode, regex))
            if time.monotonic() > deadline:
                raise Failure("%s did not print /%s/ within %.0f s" % (self.name, regex, timeout))
            time.sleep(0.05)

    def stop(self, timeout=STOP_TIMEOUT_S):
        """SIGTERM, bounded wait, SIGKILL; return the exit status (negative: killed by signal)."""
        if self.alive():
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
                raise Failure("%s ignored SIGTERM for %.0f s (killed)" % (self.name, timeout))
        return self.p.returncode

    def kill(self):
        if self.alive():
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(5)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()


def tail(path, n=20):
    try:
        with open(path, "r", errors="replace") as f:
            lines = f.readlines()
    except OSError:
        return []
    return lines[-n:]


# ---- NBD, every command bounded in time ------------------------------------------------------


class Conn:
    """One NBD connection (libnbd handle) to a unix socket; every command is asynchronous and
    waited for with a deadline, so that a server that never answers fails the test instead of
    hanging it."""

    def __init__(self, name, sock, timeout=NBD_TIMEOUT_S):
        self.name = name
        self.h = nbd.NBD()
        self.h.aio_connect_unix(sock)
        deadline = time.monotonic() + timeout
        while not self.h.aio_is_ready():
            if self.h.aio_is_dead() or self.h.aio_is_closed():
                raise Failure("%s: NBD connection to %s died during the handshake" % (name, sock))
            if time.monotonic() > deadline:
                raise Failure("%s: NBD handshake with %s took over %.0f s" % (name, sock, timeout))
            self.h.poll(100)

    def size(self):
        return self.h.get_size()

    def wait(self, cookie, what, timeout=NBD_TIMEOUT_S):
        """Wait for one command; True on success, raise nbd.Error if the server failed it."""
        deadline = time.monotonic() + timeout
        while not self.h.aio_command_completed(cookie):
            left = deadline - time.monotonic()
            if left <= 0:
                raise Failure("%s: %s: no reply within %.0f s" % (self.name, what, timeout))
            self.h.poll(int(min(left, 0.2) * 1000) + 1)
        return True

    def done(self, cookie):
        """Non-blocking: has the command completed (raises nbd.Error if it failed)?"""
        self.h.poll(0)
        return self.h.aio_command_completed(cookie)

    def pread(self, n, off, timeout=NBD_TIMEOUT_S):
        buf = nbd.Buffer(n)
        self.wait(self.h.aio_pread(buf, off), "read %d@%d" % (n, off), timeout)
        return buf.to_bytearray()

    def pwrite(self, data, off, flags=0):
        buf = nbd.Buffer.from_bytearray(data)
        self.wait(self.h.aio_pwrite(buf, off, flags=flags), "write %d@%d" % (len(data), off))

    def zero(self, n, off, flags=0):
        self.wait(self.h.aio_zero(n, off, flags=flags), "zero %d@%d" % (n, off))

    def trim(self, n, off):
        self.wait(self.h.aio_trim(n, off), "trim %d@%d" % (n, off))

    def cache(self, n, off):
        self.wait(self.h.aio_cache(n, off), "cache %d@%d" % (n, off))

    def flush(self):
        self.wait(self.h.aio_flush(), "flush")


# ---- random choices ----------------------------------------------------------------------------


def make_volume(rng, size):
    """Random contents: per chunk all zero, random, or mixed (random with zero and patterned
    runs); about a third of the chunks are zero."""
    vol = bytearray(size)
    for lo in range(0, size, CHUNK):
        hi = min(lo + CHUNK, size)
        r = rng.random()
        if r < 0.3:
            continue
        vol[lo:hi] = rng.randbytes(hi - lo)
        if r > 0.85:
            for _ in range(rng.randint(1, 4)):
                a = rng.randrange(lo, hi)
                b = min(hi, a + rng.randint(1, CHUNK // 2))
                fill = 0 if rng.random() < 0.6 else rng.randrange(256)
                vol[a:b] = bytes([fill]) * (b - a)
    return vol


def pick_region(rng, size):
    """(offset, length) inside the volume: small unaligned, whole chunks, across a chunk
    boundary, large unaligned, or at the end of the volume (a short last chunk)."""
    nchunks = (size + CHUNK - 1) // CHUNK
    r = rng.random()
    if r < 0.3:
        off, n = rng.randrange(size), rng.randint(1, 8192)
    elif r < 0.5:
        c = rng.randrange(nchunks)
        off, n = c * CHUNK, CHUNK * rng.randint(1, 2)
    elif r < 0.75 and nchunks > 1:
        b = rng.randrange(1, nchunks) * CHUNK
        off = b - rng.randint(1, CHUNK + CHUNK // 2)
        n = (b - max(off, 0)) + rng.randint(1, CHUNK)
    elif r < 0.9:
        off, n = rng.randrange(size), rng.randint(CHUNK, 3 * CHUNK)
    else:
        off = size - rng.randint(1, min(size, 2 * CHUNK))
        n = size - off
    off = max(0, off)
    n = max(1, min(n, size - off))
    return off, n


def write_data(rng, n):
    if rng.random() < 0.8:
        return bytearray(rng.randbytes(n))
    return bytearray([rng.randrange(1, 256)]) * n


def chunks_of(off, n):
    return range(off // CHUNK, (off + n - 1) // CHUNK + 1)


# ---- one seed ------------------------------------------------------------------------------------


class Run:
    """Everything one seed started, for cleanup and for the failure report."""

    def __init__(self, args, seed):
        self.args = args
        self.seed = seed
        self.step = "setup"
        self.procs = []
        self.conns = []
        self.dir = tempfile.mkdtemp(prefix="p2pvbd-lm%d." % seed, dir=os.environ.get("TMPDIR"))
        # P2PVBD_CHECK: fetch verifies its page counts after every event and aborts on the
        # first mismatch, naming the event (a miscount otherwise shows only as a destination
        # that never completes).
        self.env = dict(os.environ, XDG_RUNTIME_DIR=self.dir, P2PVBD_CHECK="1")
        self.verbose = args.verbose
        self.t0 = time.monotonic()

    def log(self, msg):
        if self.verbose:
            print("  [%6.2f] %s" % (time.monotonic() - self.t0, msg), file=sys.stderr, flush=True)

    def at(self, step):
        self.step = step
        self.log("step: " + step)

    def path(self, name):
        return os.path.join(self.dir, name)

    def p2pvbd(self, *argv, timeout=60):
        """Run a p2pvbd command in the foreground; return (status, stdout, stderr)."""
        try:
            r = subprocess.run([self.args.bin] + list(argv), capture_output=True, text=True,
                               timeout=timeout, env=self.env, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise Failure("'p2pvbd %s' did not finish within %d s" % (" ".join(argv), timeout))
        return r.returncode, r.stdout, r.stderr

    def status(self, ctl):
        rc, out, err = self.p2pvbd("status", "--json", ctl, timeout=20)
        if rc != 0:
            raise Failure("p2pvbd status --json %s exited %d: %s" % (ctl, rc, err.strip()))
        try:
            return json.loads(out)
        except ValueError:
            raise Failure("p2pvbd status --json %s: not JSON: %r" % (ctl, out[:300]))

    def report(self):
        print("--- seed %d failed at step: %s; logs in %s ---" % (self.seed, self.step, self.dir),
              file=sys.stderr)
        for p in self.procs:
            for path in (p.out_path, p.err_path):
                lines = tail(path)
                if lines:
                    print("--- last lines of %s (%s) ---" % (os.path.basename(path),
                          "running" if p.alive() else "exit %s" % p.p.returncode),
                          file=sys.stderr)
                    sys.stderr.write("".join(lines))

    def cleanup(self, keep):
        self.conns.clear()  # libnbd closes a handle when its last reference goes
        for p in self.procs:
            p.kill()
        if keep:
            print("keeping %s" % self.dir, file=sys.stderr)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


class Dest:
    """One destination: its fetch process, NBD connections and model."""

    def __init__(self, i):
        self.i = i
        self.name = "fetch%d" % i
        self.via = None  # index of the destination it joins through, None: the source
        self.listen = False
        self.late = False  # starts after the freeze
        self.proc = None
        self.sock = None
        self.ctl = None
        self.out = None
        self.addr = None  # "127.0.0.1:PORT" when it listens
        self.conns = []
        self.model = None
        self.early = []  # (kind, conn, cookie, buf, off, n, data) issued before the freeze


def relay_uri(uri, addr):
    """The URI with every peer= replaced by addr (PROTOCOL.md §2): the destination then
    learns the volume, its generations and its chunks only through that peer."""
    base, _, query = uri.partition("?")
    params = [p for p in query.split("&") if p and not p.startswith("peer=")]
    params.append("peer=" + addr)
    return base + "?" + "&".join(params)


def capabilities(binpath):
    """What the binary offers: the freeze (`ctl` in --help) and its rollback (`thaw` in
    `ctl --help`)."""
    r = subprocess.run([binpath, "--help"], capture_output=True, text=True, timeout=20)
    freeze = re.search(r"^\s+ctl\b", r.stdout + r.stderr, re.M) is not None
    thaw = False
    if freeze:
        r = subprocess.run([binpath, "ctl", "--help"], capture_output=True, text=True, timeout=20)
        thaw = re.search(r"^\s+thaw\b", r.stdout + r.stderr, re.M) is not None
    # A seed that keeps a generation record (--state-dir) may be killed and restarted.
    r = subprocess.run([binpath, "seed", "--help"], capture_output=True, text=True, timeout=20)
    restart = "--state-dir" in r.stdout + r.stderr
    return {"freeze": freeze, "thaw": thaw, "restart": restart}


def state_records(out_path, nchunks):
    """Chunk states from OUT.p2pvbd-state (PROTOCOL.md §12): the low byte of each u64."""
    with open(out_path + ".p2pvbd-state", "rb") as f:
        data = f.read()
    if len(data) != 64 + 24 * nchunks:
        raise Failure("%s.p2pvbd-state is %d bytes, expected %d"
                      % (out_path, len(data), 64 + 24 * nchunks))
    return [data[64 + 8 * c] for c in range(nchunks)]


def run_seed(args, seed, caps):
    rng = random.Random(seed)
    run = Run(args, seed)
    ok = False
    if args.seed_timeout:
        signal.signal(signal.SIGALRM, _alarm)
        signal.alarm(args.seed_timeout)
    try:
        body(run, rng, caps)
        ok = True
    except (Failure, nbd.Error, OSError, subprocess.SubprocessError) as e:
        print("FAIL seed %d (step: %s): %s: %s" % (seed, run.step, type(e).__name__, e),
              file=sys.stderr)
        run.report()
        print("FAIL seed %d (step: %s): %s" % (seed, run.step, e), file=sys.stderr)
        print("reproduce: %s" % repro(args, seed), file=sys.stderr)
    finally:
        signal.alarm(0)
        run.cleanup(keep=args.keep or (not ok and args.keep_failed))
    return ok, time.monotonic() - run.t0


def repro(args, seed):
    cmd = ["/usr/bin/python3", os.path.abspath(__file__), "--bin", args.bin,
           "--seed", str(seed)]
    if args.max_mib != DEFAULTS["max_mib"]:
        cmd += ["--max-mib", str(args.max_mib)]
    if args.mode != "auto":
        cmd += ["--mode", args.mode]
    if args.no_thaw:
        cmd += ["--no-thaw"]
    return " ".join(cmd) + " -v"


def body(run, rng, caps):
    freeze = caps["freeze"]
    size = rng.randint(1, run.args.max_mib) * MIB
    r = rng.random()
    if r < 0.25:
        size += rng.randint(1, CHUNK - 1)  # short last chunk
    elif r < 0.4:
        size -= rng.randint(1, CHUNK // 2)
    nchunks = (size + CHUNK - 1) // CHUNK
    orig = make_volume(rng, size)
    model = bytearray(orig)
    rate = rng.choice([None, 2, 3, 4, 6, 8]) if rng.random() < 0.75 else None
    ndest = rng.randint(1, 3)
    dests = [Dest(i) for i in range(ndest)]
    for d in dests[1:]:
        if rng.random() < 0.45:
            d.via = rng.randrange(d.i)
            dests[d.via].listen = True
    if freeze and ndest < 3 and rng.random() < 0.25:
        late = Dest(ndest)
        late.late = True
        dests.append(late)
    nops = rng.randint(0, 30)
    race = freeze and rng.random() < 0.3
    thaw = caps["thaw"] and rng.random() < 0.2
    # Seed crashes draw from their own generator, so that every other choice of a seed stays
    # what it was before they existed (the regression seeds below).
    crng = random.Random("seed crashes %d" % run.seed)
    crashes = crng.choice([0, 1, 1, 2]) if caps.get("restart") and freeze and nops > 0 else 0
    crash_at = set(crng.sample(range(nops), min(crashes, nops)))
    crashes = len(crash_at)
    # A writer whose hot set the link cannot keep up with (the writable working set): with an
    # upload cap, a burst of writes into 1-3 chunks, as fast as the export takes them, until
    # every destination that still lacked data outside the hot set got some of it. Its own
    # generator too.
    hrng = random.Random("hot set %d" % run.seed)
    hot = None
    if caps.get("restart") and freeze and rate and hrng.random() < 0.6:
        hot_chunks = hrng.randint(1, min(3, nchunks))
        hot_first = hrng.randrange(0, nchunks - hot_chunks + 1)
        hot = (hot_first * CHUNK, min(size, (hot_first + hot_chunks) * CHUNK))
    print("seed %d: %d bytes (%d chunks), rate %s, %d destinations%s, %d source ops%s%s, %s"
          % (run.seed, size, nchunks, "%dM" % rate if rate else "unlimited", ndest,
             "".join(" (%d via %d)" % (d.i, d.via) for d in dests if d.via is not None),
             nops, ", writes racing the freeze" if race else "",
             ", a late destination" if any(d.late for d in dests) else "",
             ("freeze, thaw, more writes, freeze" if thaw else "freeze") if freeze
             else "prefreeze (no ctl freeze in this binary)")
          + (", %d seed crash%s (kill -9, restart)" % (crashes, "es" if crashes > 1 else "")
             if crashes else "")
          + (", a hot set of %d KiB written faster than the link" % ((hot[1] - hot[0]) // 1024)
             if hot else ""),
          flush=True)
    if run.args.describe:
        return

    # ---- the source ----
    run.at("seed start")
    img = run.path("src.img")
    with open(img, "wb") as f:
        for lo in range(0, size, CHUNK):
            piece = orig[lo:lo + CHUNK]
            if piece.count(0) != len(piece):
                f.seek(lo)
                f.write(piece)
        f.truncate(size)
    key = run.path("src.key")
    rc, out, err = run.p2pvbd("keygen", "-o", key)
    if rc != 0:
        raise Failure("keygen exited %d: %s" % (rc, err.strip()))
    src_sock, src_ctl, uri_file = run.path("src.sock"), run.path("seed.ctl"), run.path("vol.uri")
    argv = [run.args.bin, "seed", "-k", key, "-l", "127.0.0.1:0", "--uri-file", uri_file,
            "--ctl", src_ctl, "-e", "unix:" + src_sock, "--chunk-size", "64K"]
    if rate:
        argv += ["--rate-limit", "%dM" % rate]
    if run.args.debug:
        argv.append("-v")
    seed_proc = Proc(run, "seed", argv + [img])
    seed_proc.wait_line(r"^exporting on unix:%s$" % re.escape(src_sock))
    uri = seed_proc.wait_line(r"^(p2pvbd://\S+)$").group(1)
    deadline = time.monotonic() + START_TIMEOUT_S
    while not (os.path.exists(uri_file) and os.path.getsize(uri_file) > 0):
        if time.monotonic() > deadline:
            raise Failure("seed wrote no --uri-file within %.0f s" % START_TIMEOUT_S)
        time.sleep(0.05)
    with open(uri_file) as f:
        if f.readline().strip() != uri:
            raise Failure("--uri-file and stdout hold different URIs")
    src = Conn("source", src_sock)
    run.conns.append(src)
    if src.size() != size:
        raise Failure("the source export's size is %d, expected %d" % (src.size(), size))

    def seed_crash():
        """kill -9 the seed at a random moment of its rounds and restart it as the README
        says (same key, port, --volume-id and --secret): it must go on above every generation
        it published, and no destination may keep or serve what the VM overwrote."""
        nonlocal seed_proc
        m = re.match(r"^p2pvbd://([0-9a-f]{32})\?", uri)
        secret = re.search(r"[?&]secret=([0-9a-f]{64})", uri)
        port = re.search(r"[?&]peer=127\.0\.0\.1:(\d+)", uri)
        if not (m and secret and port):
            raise Failure("cannot take the volume id, secret and port from %s" % uri)
        time.sleep(crng.uniform(0, 0.25))
        run.at("seed crash")
        run.log("kill -9 the seed (pid %d)" % seed_proc.p.pid)
        seed_proc.p.kill()
        seed_proc.p.wait()
        n = sum(1 for p in run.procs if p.name.startswith("seed"))
        rargv = list(argv)
        rargv[rargv.index("-l") + 1] = "127.0.0.1:" + port.group(1)
        rargv += ["--volume-id", m.group(1), "--secret", secret.group(1)]
        seed_proc = Proc(run, "seed%d" % n, rargv + [img])
        seed_proc.wait_line(r"^exporting on unix:%s$" % re.escape(src_sock))
        if seed_proc.wait_line(r"^(p2pvbd://\S+)$").group(1) != uri:
            raise Failure("the restarted seed prints another URI")
        with open(seed_proc.err_path, errors="replace") as f:
            if "going on at generation" not in f.read():
                raise Failure("the restarted seed did not go on above its generations")
        src.__init__("source", src_sock)

    # ---- destinations ----
    def start_dest(d, uri):
        run.at("start %s" % d.name)
        d.sock, d.ctl = run.path("d%d.sock" % d.i), run.path("d%d.ctl" % d.i)
        d.out = run.path("d%d.img" % d.i)
        target = uri
        if d.via is not None:
            target = relay_uri(uri, dests[d.via].addr)
        argv = [run.args.bin, "fetch", "--no-progress", "-e", "unix:" + d.sock, "--ctl", d.ctl,
                "--give-up", str(GIVE_UP_S), "--stats", run.path("d%d.json" % d.i)]
        if run.args.debug:
            argv.append("-v")
        if d.listen:
            argv += ["-l", "127.0.0.1:0"]
        else:
            argv += ["--no-listen"]
        d.proc = Proc(run, d.name, argv + [target, d.out])
        if d.listen:
            d.addr = d.proc.wait_line(r"^listening on (127\.0\.0\.1:\d+)$").group(1)
        d.proc.wait_line(r"^exporting on unix:%s$" % re.escape(d.sock))
        for k in range(rng.randint(1, 2)):
            c = Conn("%s/conn%d" % (d.name, k), d.sock)
            run.conns.append(c)
            d.conns.append(c)
            if c.size() != size:
                raise Failure("%s exports %d bytes, expected %d" % (d.name, c.size(), size))

    def issue_early(d):
        """Reads (and, unless it relays for others, maybe a write) issued before the freeze:
        they must wait for it."""
        wr = None
        if not d.listen and rng.random() < 0.35:
            off, n = pick_region(rng, size)
            data = write_data(rng, n)
            c = rng.choice(d.conns)
            buf = nbd.Buffer.from_bytearray(data)
            d.early.append(("write", c, c.h.aio_pwrite(buf, off), buf, off, n, data))
            run.log("%s: early write %d@%d" % (c.name, n, off))
            wr = (off, n)
        for _ in range(rng.randint(0, 3)):
            off, n = pick_region(rng, size)
            if wr and off < wr[0] + wr[1] and wr[0] < off + n:
                continue  # keep reads apart from the write: their order is not defined
            c = rng.choice(d.conns)
            buf = nbd.Buffer(n)
            d.early.append(("read", c, c.h.aio_pread(buf, off), buf, off, n, None))
            run.log("%s: early read %d@%d" % (c.name, n, off))

    # Before the freeze, destination I/O waits (freeze) or is stale (prefreeze). Before a
    # freeze that is rolled back (thaw), a destination would answer it with a generation
    # that is not the last.
    early_ok = freeze and not thaw
    for d in dests:
        if d.late:
            continue
        if d.via is None and not d.listen and rng.random() < 0.3 and nops > 0:
            continue  # joins during the source's writes, below
        start_dest(d, uri)
        if early_ok and rng.random() < 0.6:
            issue_early(d)

    # ---- writes at the source ----
    touched = set()
    pending = [d for d in dests if d.proc is None and not d.late]

    def source_ops(nops, phase):
        """nops random writes, zeroes, reads and flushes at the source's export; the
        destinations not started yet join in between."""
        for k in range(nops):
            run.at("source op %d/%d%s" % (k + 1, nops, phase))
            r = rng.random()
            off, n = pick_region(rng, size)
            if r < 0.55:
                data = write_data(rng, n)
                flags = nbd.CMD_FLAG_FUA if rng.random() < 0.15 else 0
                run.log("source write %d@%d%s" % (n, off, " fua" if flags else ""))
                src.pwrite(data, off, flags)
                model[off:off + n] = data
                touched.update(chunks_of(off, n))
            elif r < 0.7:
                flags = nbd.CMD_FLAG_NO_HOLE if rng.random() < 0.5 else 0
                run.log("source zero %d@%d%s" % (n, off, " no-hole" if flags else ""))
                src.zero(n, off, flags)
                model[off:off + n] = bytes(n)
                touched.update(chunks_of(off, n))
            elif r < 0.9:
                run.log("source read %d@%d" % (n, off))
                got = src.pread(n, off)
                if got != model[off:off + n]:
                    i = first_diff(got, model[off:off + n])
                    raise Failure("source read %d@%d differs from the model at offset %d: %s"
                                  % (n, off, off + i, hexdump_diff(got, model[off:off + n], i)))
            else:
                run.log("source flush")
                src.flush()
            if not phase and k in crash_at:
                seed_crash()
            if pending and rng.random() < 0.2:
                d = pending.pop(0)
                start_dest(d, uri)
                if early_ok and rng.random() < 0.6:
                    issue_early(d)
            r = rng.random()
            if r < 0.3:
                time.sleep(rng.uniform(0.01, 0.1))
            elif r < 0.4:
                time.sleep(rng.uniform(0.1, 0.4))

    source_ops(nops, "")
    while pending:
        d = pending.pop(0)
        start_dest(d, uri)
        if early_ok and rng.random() < 0.6:
            issue_early(d)

    def hot_phase():
        """Write the hot set as fast as the source's export takes it, for 0.5-1.5 s at least;
        every destination that lacked data outside the hot set must get more of it meanwhile
        (cold first, hot last: PROTOCOL.md §7.2), within HOT_PROGRESS_S."""
        lo, hi = hot
        run.at("hot set %d..%d" % (lo, hi))
        lacking = {}
        for d in dests:
            if d.proc is None or not d.proc.alive():
                continue
            st = run.status(d.ctl)
            if st.get("volume_known") and st["image_size"] - st["bytes_done"] > (hi - lo) + CHUNK:
                lacking[d.name] = (d, st["bytes_done"])
        t0, n = time.monotonic(), 0
        least = hrng.uniform(0.5, 1.5)  # the VM writes at least this long, lacking or not
        while True:
            for _ in range(16):
                m = hrng.randrange(4096, 16385, 4096)
                off = hrng.randrange(lo, max(lo + 1, hi - m + 1))
                m = min(m, hi - off)
                data = write_data(hrng, m)
                src.pwrite(data, off)
                model[off:off + m] = data
                touched.update(chunks_of(off, m))
                n += 1
            for name in list(lacking):
                d, before = lacking[name]
                if run.status(d.ctl)["bytes_done"] > before:
                    del lacking[name]
            if not lacking and time.monotonic() - t0 >= least:
                break
            if time.monotonic() - t0 > HOT_PROGRESS_S:
                raise Failure("while the VM wrote its hot set (%d writes in %.1f s), %s got "
                              "nothing of the rest of the volume"
                              % (n, time.monotonic() - t0, ", ".join(sorted(lacking))))
        run.log("hot set: %d writes in %.2f s; the destinations kept getting the rest"
                % (n, time.monotonic() - t0))

    if hot:
        hot_phase()

    run.at("before the freeze: source image and status")
    time.sleep(rng.uniform(0, 0.5))
    if rng.random() < 0.5:
        src.flush()
    check_image(img, model, "the source image before the freeze")
    st = run.status(src_ctl)
    want_dirty = len(touched) * CHUNK
    if st.get("role") != "seed" or st.get("chunk_size") != CHUNK or st.get("chunks") != nchunks:
        raise Failure("seed status: %r" % st)
    if caps["freeze"]:
        # Deltas published before the freeze may already have cleaned some dirty chunks.
        if st.get("dirty_bytes", 0) > want_dirty:
            raise Failure("seed status: dirty_bytes %s, the source wrote %d chunks"
                          % (st.get("dirty_bytes"), len(touched)))
    elif st.get("dirty_bytes") != want_dirty:
        raise Failure("seed status: dirty_bytes %s, expected %d (%d chunks written)"
                      % (st.get("dirty_bytes"), want_dirty, len(touched)))

    if not caps["freeze"]:
        prefreeze_checks(run, rng, dests, orig, touched, size, nchunks, seed_proc)
        return

    def freeze_now(race):
        """Freeze (racing writes at the source if race); check the source image, that the
        export refuses writes, and the seed's status. Return the final generation."""
        for d in dests:
            for kind, c, cookie, buf, off, n, data in d.early:
                if c.done(cookie):
                    raise Failure("%s: a %s %d@%d issued before the freeze was answered "
                                  "before it" % (d.name, kind, n, off))
        racing = []
        if race:
            for _ in range(rng.randint(1, 4)):
                off, n = pick_region(rng, size)
                if any(off < o + m and o < off + n for o, m, *_ in racing):
                    continue  # disjoint, so that each can be judged on its own
                data = write_data(rng, n)
                buf = nbd.Buffer.from_bytearray(data)
                racing.append((off, n, data, buf, src.h.aio_pwrite(buf, off)))
                run.log("racing write %d@%d" % (n, off))
        run.at("freeze")
        t_freeze = time.monotonic()
        fr = subprocess.Popen([run.args.bin, "ctl", src_ctl, "freeze"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=run.env,
                              preexec_fn=_die_with_us)
        # The racing writes progress while the freeze runs.
        results = []
        for off, n, data, buf, cookie in racing:
            try:
                src.wait(cookie, "racing write %d@%d" % (n, off))
                results.append((off, n, data, True))
            except nbd.Error as e:
                run.log("racing write %d@%d refused: %s" % (n, off, e))
                results.append((off, n, data, False))
        try:
            fout, ferr = fr.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            fr.kill()
            fr.communicate()
            raise Failure("'p2pvbd ctl %s freeze' did not return within 60 s" % src_ctl)
        if fr.returncode != 0:
            raise Failure("'p2pvbd ctl freeze' exited %d: %s %s" % (fr.returncode, fout, ferr))
        m = re.search(r"frozen at generation (\d+)", fout + ferr)
        if not m:
            raise Failure("'p2pvbd ctl freeze' did not print 'frozen at generation G': %r"
                          % (fout + ferr))
        gen = int(m.group(1))
        run.log("frozen at generation %d after %.3f s" % (gen, time.monotonic() - t_freeze))

        # The source's image at the freeze: every acknowledged write is in it; a refused one
        # is not torn (entirely old or, if the server applied it before refusing, new).
        run.at("source image at the freeze")
        with open(img, "rb") as f:
            frozen = bytearray(f.read())
        for off, n, data, acked in results:
            if acked:
                model[off:off + n] = data
            elif frozen[off:off + n] == data:
                run.log("refused racing write %d@%d is in the image" % (n, off))
                model[off:off + n] = data
            elif frozen[off:off + n] != model[off:off + n]:
                raise Failure("a racing write %d@%d was refused, but the source image holds "
                              "part of it" % (n, off))
            touched.update(chunks_of(off, n))
        check_image(img, model, "the source image after the freeze")

        run.at("source export refuses writes after the freeze")
        off, n = pick_region(rng, size)
        for what in ("write", "zero"):
            try:
                if what == "write":
                    src.pwrite(write_data(rng, n), off)
                else:
                    src.zero(n, off)
            except nbd.Error as e:
                run.log("after the freeze, the source %s %d@%d failed as it must: %s"
                        % (what, n, off, e))
            else:
                raise Failure("the source export accepted a %s %d@%d after the freeze: it "
                              "would be lost" % (what, n, off))
        try:
            got = src.pread(n, off)
            if got != model[off:off + n]:
                raise Failure("after the freeze, a source read %d@%d differs from the model"
                              % (n, off))
        except nbd.Error as e:
            run.log("after the freeze, a source read fails: %s" % e)
        check_image(img, model, "the source image after refused writes")
        st = run.status(src_ctl)
        if st.get("generation") != gen:
            raise Failure("seed status says generation %s, the freeze said %d"
                          % (st.get("generation"), gen))
        if st.get("dirty_bytes", 0) != 0:
            raise Failure("seed status after the freeze: dirty_bytes %s" % st.get("dirty_bytes"))
        if "final" in st and st["final"] is not True:
            raise Failure("seed status after the freeze: final is %r" % st["final"])
        return gen

    # ---- the freeze (and, sometimes, a rollback and a second freeze) ----
    gen = freeze_now(race)
    if thaw:
        # A rolled-back migration: the VM at the source runs again, the destinations wait
        # for a new final generation (no destination I/O ran in between, none was pending).
        run.at("thaw")
        rc, out, err = run.p2pvbd("ctl", src_ctl, "thaw")
        if rc != 0:
            raise Failure("'p2pvbd ctl %s thaw' exited %d: %s %s" % (src_ctl, rc, out, err))
        st = run.status(src_ctl)
        thawed = st.get("generation")
        if not isinstance(thawed, int) or thawed <= gen or st.get("final", False) is not False:
            raise Failure("after the thaw, the seed should be at a new generation past %d that "
                          "is not final: %r" % (gen, st))
        # A destination may see the final generation before the one the thaw published: the
        # VM there starts only at the last freeze, so wait until each knows of the thaw.
        run.at("after the thaw, destinations hold generation %d, not final" % thawed)
        deadline = time.monotonic() + 30
        for d in dests:
            if d.proc is None:
                continue
            while True:
                st = run.status(d.ctl)
                if st.get("generation", -1) >= thawed:
                    break
                if time.monotonic() > deadline:
                    raise Failure("%s has not learnt of the thaw (generation %d) in 30 s: %r"
                                  % (d.name, thawed, st))
                time.sleep(0.05)
            if st.get("final") is not False:
                raise Failure("%s holds generation %s after the thaw, but says final: %r"
                              % (d.name, st.get("generation"), st))
        early_ok = True
        for d in dests:
            if d.proc is not None and rng.random() < 0.6:
                issue_early(d)
        source_ops(rng.randint(1, 15), " after the thaw")
        check_image(img, model, "the source image after the thaw")
        gen1 = gen
        gen = freeze_now(rng.random() < 0.3)
        if gen < gen1:
            raise Failure("the second freeze is at generation %d, the first was at %d"
                          % (gen, gen1))

    # ---- destinations after the freeze ----
    for d in dests:
        d.model = bytearray(model)
    for d in dests:
        if d.late:
            start_dest(d, uri)
    run.at("early requests complete after the freeze")
    for d in dests:
        for kind, c, cookie, buf, off, n, data in d.early:
            try:
                c.wait(cookie, "early %s %d@%d" % (kind, n, off))
            except nbd.Error as e:
                raise Failure("%s: the early %s %d@%d failed: %s" % (d.name, kind, n, off, e))
            if kind == "write":
                d.model[off:off + n] = data
        for kind, c, cookie, buf, off, n, data in d.early:
            if kind == "read":
                got = buf.to_bytearray()
                want = d.model[off:off + n]
                if got != want:
                    i = first_diff(got, want)
                    raise Failure("%s: a read %d@%d issued before the freeze returned other "
                                  "bytes than the final generation at offset %d (chunk %d): %s"
                                  % (d.name, n, off, off + i, (off + i) // CHUNK,
                                     hexdump_diff(got, want, i)))
        d.early = []

    # A destination that relays for others gets no VM writes until they are complete: it
    # never serves the chunks its VM wrote (nor pages once it lacks any, PROTOCOL.md §7.1),
    # so a destination that knows only it would wait for them forever.
    run.at("random I/O at the destinations")
    dest_io(run, rng, dests, size, [d for d in dests if not d.listen])
    order = list(dests)
    rng.shuffle(order)
    full_read_first = {d.i: rng.random() < 0.5 for d in dests}
    for d in order:
        if full_read_first[d.i]:
            run.at("%s: full read before completion" % d.name)
            full_read(d)
    run.at("wait until every destination is complete and final")
    total = size * len(dests)
    limit = 60 + (4 * total / (rate * MIB) if rate else 0)
    deadline = time.monotonic() + limit
    for d in dests:
        while True:
            st = run.status(d.ctl)
            if st.get("complete") is True and st.get("final") is True:
                break
            if not d.proc.alive():
                raise Failure("%s exited (status %s) before it was complete"
                              % (d.name, d.proc.p.returncode))
            if time.monotonic() > deadline:
                raise Failure("%s is not complete and final after %.0f s: %r" % (d.name, limit, st))
            time.sleep(0.1)
        if st.get("generation") != gen:
            raise Failure("%s holds generation %s, the source froze at %d"
                          % (d.name, st.get("generation"), gen))
    run.at("random I/O at the complete destinations")
    dest_io(run, rng, dests, size, dests)
    for d in order:
        if not full_read_first[d.i]:
            run.at("%s: full read after completion" % d.name)
            full_read(d)

    run.at("stop the destinations and compare their images")
    for d in dests:
        if rng.random() < 0.5:
            rng.choice(d.conns).flush()
    for d in reversed(dests):  # relays last: nobody still needs them, but be kind
        for c in d.conns:
            run.conns.remove(c)
        d.conns = []
        rc = d.proc.stop()
        if rc != 0:
            raise Failure("%s exited %d on SIGTERM, expected 0 (complete)" % (d.name, rc))
        check_image(d.out, d.model, "%s's image" % d.name)
    run.at("stop the seed")
    run.conns.remove(src)
    rc = seed_proc.stop()
    if rc != 0:
        raise Failure("seed exited %d on SIGTERM" % rc)


def dest_io(run, rng, dests, size, writers):
    """Random reads, writes, zeroes, trims, caches and flushes at the destinations (writes only
    at those in writers); every read must equal that destination's model."""
    for k in range(rng.randint(0, 25)):
        d = rng.choice(dests)
        c = rng.choice(d.conns)
        off, n = pick_region(rng, size)
        op = rng.choices(["read", "write", "zero", "trim", "cache", "flush"],
                         weights=[45, 30, 8, 5, 4, 8])[0]
        if d not in writers and op in ("write", "zero", "trim"):
            op = "read"
        run.log("%s: %s %d@%d" % (c.name, op, n, off))
        if op == "read":
            got = c.pread(n, off)
            want = d.model[off:off + n]
            if got != want:
                i = first_diff(got, want)
                raise Failure("%s: read %d@%d differs from its model at offset %d (chunk %d): %s"
                              % (d.name, n, off, off + i, (off + i) // CHUNK,
                                 hexdump_diff(got, want, i)))
        elif op == "write":
            data = write_data(rng, n)
            c.pwrite(data, off, nbd.CMD_FLAG_FUA if rng.random() < 0.2 else 0)
            d.model[off:off + n] = data
        elif op == "zero":
            c.zero(n, off, nbd.CMD_FLAG_NO_HOLE if rng.random() < 0.5 else 0)
            d.model[off:off + n] = bytes(n)
        elif op == "trim":
            c.trim(n, off)  # punches a hole (NBD.md): zeroes
            d.model[off:off + n] = bytes(n)
        elif op == "cache":
            c.cache(n, off)
        else:
            c.flush()


def full_read(d):
    """Read the whole export (in pieces of random size) and compare with the model."""
    size = len(d.model)
    off = 0
    piece = random.Random(size).choice([CHUNK // 2, CHUNK, MIB, 4 * MIB])
    while off < size:
        n = min(piece, size - off)
        c = d.conns[(off // piece) % len(d.conns)]
        got = c.pread(n, off)
        want = d.model[off:off + n]
        if got != want:
            i = first_diff(got, want)
            raise Failure("%s: full read: offset %d (chunk %d) differs from its model: %s"
                          % (d.name, off + i, (off + i) // CHUNK, hexdump_diff(got, want, i)))
        off += n


def check_image(path, model, what):
    with open(path, "rb") as f:
        got = f.read()
    i = first_diff(got, model)
    if i is None:
        return
    if len(got) != len(model):
        raise Failure("%s is %d bytes, expected %d" % (what, len(got), len(model)))
    raise Failure("%s differs from its model first at offset %d (chunk %d): %s"
                  % (what, i, i // CHUNK, hexdump_diff(got, model, i)))


def prefreeze_checks(run, rng, dests, orig, touched, size, nchunks, seed_proc):
    """Without the freeze: destinations serve, as the source hashed them, the chunks the
    source never wrote; whatever chunk a destination holds is the original."""
    untouched = [c for c in range(nchunks) if c not in touched]
    run.at("prefreeze: destinations fetch every chunk the source never wrote")
    deadline = time.monotonic() + 60 + 4 * size * len(dests) / MIB
    for d in dests:
        if d.via is not None and touched:
            # Pages come only from the source or from a destination that holds the whole
            # volume (PROTOCOL.md §7.1); before the freeze, a relay whose source dirtied chunks
            # never does, so a destination that knows only the relay cannot start.
            continue
        while True:
            states = state_records(d.out, nchunks)
            if all(states[c] in (1, 2) for c in untouched):
                break
            if not d.proc.alive():
                raise Failure("%s exited (status %s)" % (d.name, d.proc.p.returncode))
            if time.monotonic() > deadline:
                missing = [c for c in untouched if states[c] not in (1, 2)]
                raise Failure("%s still lacks %d unwritten chunks (first: %d)"
                              % (d.name, len(missing), missing[0]))
            time.sleep(0.1)
        st = run.status(d.ctl)
        if st.get("role") != "fetch" or st.get("chunks") != nchunks:
            raise Failure("%s status: %r" % (d.name, st))
    run.at("prefreeze: reads of unwritten chunks at the destinations")
    readers = [d for d in dests if d.via is None or not touched]
    for _ in range(rng.randint(1, 12)):
        if not untouched:
            break
        d = rng.choice(readers)
        c = rng.choice(untouched)
        lo = c * CHUNK
        hi = min(lo + CHUNK, size)
        while hi < size and hi // CHUNK not in touched and rng.random() < 0.5:
            hi = min(hi + CHUNK, size)
        a = rng.randrange(lo, hi)
        b = rng.randint(a + 1, hi)
        got = rng.choice(d.conns).pread(b - a, a)
        if got != orig[a:b]:
            i = first_diff(got, orig[a:b])
            raise Failure("%s: read %d@%d of unwritten chunks differs from the source at %d: %s"
                          % (d.name, b - a, a, a + i, hexdump_diff(got, orig[a:b], i)))
    run.at("prefreeze: stop the destinations, check what they hold")
    for d in reversed(dests):
        for c in d.conns:
            run.conns.remove(c)
        d.conns = []
        d.proc.stop()
        states = state_records(d.out, nchunks)
        with open(d.out, "rb") as f:
            out = f.read()
        if len(out) != size:
            raise Failure("%s's image is %d bytes, expected %d" % (d.name, len(out), size))
        for c in range(nchunks):
            lo, hi = c * CHUNK, min((c + 1) * CHUNK, size)
            if states[c] in (1, 2) and out[lo:hi] != orig[lo:hi]:
                i = first_diff(out[lo:hi], orig[lo:hi])
                raise Failure("%s holds chunk %d (state %d) but not the source's original bytes "
                              "(offset %d): %s" % (d.name, c, states[c], lo + i,
                                                   hexdump_diff(out[lo:hi], orig[lo:hi], i)))
            if states[c] == 2 and orig[lo:hi].count(0) != hi - lo:
                raise Failure("%s marks chunk %d zero, but it is not" % (d.name, c))
            if states[c] == 3:
                raise Failure("%s marks chunk %d local, but nobody wrote there" % (d.name, c))
    run.at("prefreeze: stop the seed")
    run.conns.clear()
    rc = seed_proc.stop()
    if rc != 0:
        raise Failure("seed exited %d on SIGTERM" % rc)


DEFAULTS = {"max_mib": 6}


def main():
    ap = argparse.ArgumentParser(
        description="Model-based randomized live-migration test of p2pvbd (see the docstring).")
    ap.add_argument("--bin", required=True, help="the p2pvbd binary")
    ap.add_argument("--seed", type=int, help="run this one seed")
    ap.add_argument("--first", type=int, default=None,
                    help="first seed of a run of --count seeds (default: random)")
    ap.add_argument("--count", type=int, default=None,
                    help="number of seeds (default 1, or unbounded with --seconds)")
    ap.add_argument("--seconds", type=float, default=0,
                    help="start no new seed after this long (with --count: whichever ends first)")
    ap.add_argument("--max-mib", type=int, default=DEFAULTS["max_mib"],
                    help="largest volume in MiB (default %d)" % DEFAULTS["max_mib"])
    ap.add_argument("--mode", choices=["auto", "freeze", "prefreeze"], default="auto",
                    help="freeze: require `p2pvbd ctl freeze`; prefreeze: what a binary "
                    "without it must do (not valid for one that publishes deltas); auto "
                    "(default): freeze if `p2pvbd --help` lists ctl")
    ap.add_argument("--no-thaw", action="store_true",
                    help="never roll a freeze back (`ctl thaw`, used when the binary has it)")
    ap.add_argument("--seed-timeout", type=int, default=300,
                    help="fail a seed that runs longer than this (s, default 300; 0: none)")
    ap.add_argument("--describe", action="store_true",
                    help="only print what each seed would do (no processes are started)")
    ap.add_argument("-x", "--stop-on-failure", action="store_true", help="stop at the first failure")
    ap.add_argument("--keep", action="store_true", help="keep every seed's temporary directory")
    ap.add_argument("--keep-failed", action="store_true", help="keep failed seeds' directories")
    ap.add_argument("-v", "--verbose", action="store_true", help="log every step and operation")
    ap.add_argument("--debug", action="store_true", help="run seed and fetch with -v (debug log)")
    args = ap.parse_args()
    if not os.access(args.bin, os.X_OK):
        ap.error("not an executable: %s" % args.bin)
    args.bin = os.path.abspath(args.bin)
    if args.max_mib < 1:
        ap.error("--max-mib must be at least 1")

    signal.signal(signal.SIGTERM, _terminated)
    caps = capabilities(args.bin)
    if args.mode == "freeze":
        caps["freeze"] = True
    elif args.mode == "prefreeze":
        caps = {"freeze": False, "thaw": False}
    if args.no_thaw:
        caps["thaw"] = False
    freeze = caps["freeze"]
    if args.mode == "auto" and not freeze:
        print("live_model: %s has no 'ctl' command (the freeze): running in prefreeze mode"
              % args.bin, flush=True)

    if args.seed is not None:
        seeds = iter([args.seed])
    else:
        first = args.first if args.first is not None else random.SystemRandom().randrange(10**6)
        if args.count is None:
            count = 10**9 if args.seconds else 1
        else:
            count = args.count
        print("live_model: seeds from %d" % first, flush=True)
        seeds = iter(range(first, first + count))
    t0 = time.monotonic()
    passed, failed = 0, []
    for seed in seeds:
        if args.seconds and passed + len(failed) > 0 and time.monotonic() - t0 > args.seconds:
            break
        ok, secs = run_seed(args, seed, caps)
        if args.describe:
            continue
        if ok:
            passed += 1
            print("seed %d: ok (%.1f s)" % (seed, secs), flush=True)
        else:
            failed.append(seed)
            if args.stop_on_failure:
                break
    if args.describe:
        return 0
    print("live_model: %d passed, %d failed in %.0f s (%s mode)"
          % (passed, len(failed), time.monotonic() - t0,
             ("freeze and thaw" if caps["thaw"] else "freeze") if freeze else "prefreeze"))
    for seed in failed:
        print("failed: %s" % repro(args, seed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
