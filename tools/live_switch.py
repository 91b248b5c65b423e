#!/usr/bin/python3
# SPDX-License-Identifier: ISC
"""Drive one live migration for tools/bench_live.sh: writer, catch-up, freeze.

usage: live_switch.py MODE --p2pvbd BIN --src-sock S --src-image IMG --seed-ctl C
                      --dst-ctl C --go FILE [--dst-sock S] [options]

MODE downtime: the switchover time, seen by a client of the destination.
MODE total:    the time from the start of the fetch until the destination is
               complete after the freeze.

Both start a writer on the source's NBD export (seed -e): random writes of
4 KiB to 64 KiB at --rate bytes/s inside [--span-off, --span-off + --span-len),
as a VM with a hot working set would. Once it has run --warm seconds, the GO
file is made (tools/bench_live.sh starts the fetch when it appears). Then the
driver polls both control sockets until the destination has caught up: it
lacks no more than what the seed has not published yet (image_size -
bytes_done <= seed dirty_bytes + --slack) while the seed's dirty_bytes is at
most --dirty-limit ("strict"). If the first condition has held for
--catchup-timeout s without the second, it alone suffices ("loose"), so that
a writer that dirties faster than the seed publishes cannot hang the run.

Then, as QEMU does when it stops the VM, the writer stops and flushes, and

  downtime: two reads are issued on the destination's export (--dst-sock),
            one in the chunk the writer wrote last and one in a chunk it never
            wrote (--clean-off); the destination holds both until it has the
            final generation. t0 = now; `p2pvbd ctl SEED-CTL freeze` runs; the
            driver records when each read is answered, when the freeze command
            returns and when the destination's status says "final", all on
            time.monotonic() of this one process. Both answers are compared with
            the source image (--src-image) at the moment of the freeze.
  total:    `p2pvbd ctl SEED-CTL freeze`, then wait until the destination's
            status says complete.

Prints one JSON object. Exit status 1 (with a reason on stderr) if a step
fails or times out.
"""
import argparse
import json
import os
import random
import socket
import struct
import subprocess
import sys
import threading
import time

import nbd  # python3-libnbd

MIB = 1 << 20
# How often the status of both ends is polled while waiting for catch-up.
CATCHUP_POLL_S = 0.1
# The destination must have fetched everything published within this long.
CATCHUP_MAX_S = 300.0
# After the freeze: how often the destination's status is asked for "final"
# (often enough for ms resolution, rarely enough not to load the destination).
FINAL_POLL_S = 0.005
# How long the held reads may stay unanswered after the freeze.
ANSWER_TIMEOUT_S = 30.0
# How long the reads are left pending before the freeze, so that they are
# surely held at the destination (and not merely in flight).
PENDING_S = 0.3


def die(msg):
    sys.stderr.write("live_switch: %s\n" % msg)
    sys.exit(1)


def status(path, p2pvbd):
    """The JSON status of a seed or fetch: straight from its control socket
    (what `p2pvbd status --json` sends), else through the command."""
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(2.0)
        s.connect(path)
        s.sendall(b"status json\n")
        data = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            data += b
        s.close()
        return json.loads(data)
    except (OSError, ValueError):
        pass
    r = subprocess.run([p2pvbd, "status", "--json", path], capture_output=True, timeout=10)
    if r.returncode != 0:
        return None
    try:
        return json.loads(r.stdout)
    except ValueError:
        return None


def wait_path(path, timeout_s, what):
    deadline = time.monotonic() + timeout_s
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            die("%s (%s) did not appear within %d s" % (what, path, timeout_s))
        time.sleep(0.05)


class Writer(threading.Thread):
    """Random writes at a fixed byte rate into the source's export."""

    def __init__(self, sock, rate, span_off, span_len, seed):
        super().__init__(daemon=True)
        self.h = nbd.NBD()
        self.h.connect_unix(sock)
        self.rate = rate
        self.span_off = span_off
        self.span_len = span_len
        self.rng = random.Random(seed)
        self.pool = os.urandom(MIB)
        self.stop_ev = threading.Event()
        self.writes = 0
        self.bytes = 0
        self.last = None  # (offset, length) of the last write
        self.error = None

    def run(self):
        try:
            t_next = time.monotonic()
            while not self.stop_ev.is_set():
                n = self.rng.randrange(1, 17) * 4096  # 4 KiB .. 64 KiB
                off = self.span_off + self.rng.randrange(0, (self.span_len - n) // 4096 + 1) * 4096
                k = self.rng.randrange(0, len(self.pool) - n)
                # A unique stamp in front, so that no two writes carry the same bytes.
                buf = struct.pack("<QQ", self.writes, off) + self.pool[k + 16:k + n]
                self.h.pwrite(buf, off)
                self.writes += 1
                self.bytes += n
                self.last = (off, n)
                t_next += n / self.rate
                delay = t_next - time.monotonic()
                if delay > 0:
                    self.stop_ev.wait(delay)
                elif delay < -1.0:
                    t_next = time.monotonic()  # far behind: do not burst to catch up
        except Exception as e:  # reported by stop()
            self.error = e

    def stop(self):
        """Stop writing and flush, as QEMU drains and flushes when the VM stops."""
        self.stop_ev.set()
        self.join(10)
        if self.is_alive():
            die("the writer did not stop")
        if self.error is not None:
            die("writer: %s" % self.error)
        self.h.flush()
        self.h.shutdown()


def catch_up(a, t_go, throttle):
    """Wait until the destination has caught up; returns (kind, seed, dst status).
    throttle (a dict) gets what auto-converge did meanwhile: the lowest write cap the
    seed's status showed (bytes/s; 0 = never capped) and the seconds spent capped."""
    t_end = t_go + CATCHUP_MAX_S
    t_prev = t_go
    t_loose = None  # when the destination first lacked only unpublished chunks
    wait_path(a.dst_ctl, 60, "the destination's control socket")
    while True:
        now = time.monotonic()
        s = status(a.seed_ctl, a.p2pvbd)
        d = status(a.dst_ctl, a.p2pvbd)
        if s is None:
            die("the seed's control socket does not answer")
        cap = s.get("auto_converge_rate", 0) or 0
        if cap > 0:
            lo = throttle["min_rate"]
            throttle["min_rate"] = cap if lo == 0 else min(lo, cap)
            throttle["capped_s"] += now - t_prev
        t_prev = now
        if d is not None and d.get("volume_known") and now - t_go >= a.min_write:
            missing = d["image_size"] - d["bytes_done"]
            dirty = s.get("dirty_bytes", 0)
            if missing <= dirty + a.slack:
                if dirty <= a.dirty_limit:
                    return "strict", s, d
                if t_loose is None:
                    t_loose = now
                if now - t_loose >= a.catchup_timeout:
                    return "loose", s, d
        if now > t_end:
            die("the destination did not catch up within %.0f s (seed: %s; destination: %s)"
                % (CATCHUP_MAX_S, s, d))
        time.sleep(CATCHUP_POLL_S)


def freeze_start(a):
    return subprocess.Popen([a.p2pvbd, "ctl", a.seed_ctl, "freeze"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def freeze_finish(p, t0, t_exit):
    out, err = p.communicate(timeout=30)
    text = (out + err).decode(errors="replace").strip()
    gen = None
    for word in zip(text.split(), text.split()[1:]):
        if word[0] == "generation":
            try:
                gen = int(word[1])
            except ValueError:
                pass
    if p.returncode != 0:
        die("`p2pvbd ctl ... freeze` exited %d: %s" % (p.returncode, text[-300:]))
    return {"freeze_ms": round((t_exit - t0) * 1000, 3), "freeze_output": text[-200:],
            "final_generation": gen}


def downtime(a, w, s, d):
    chunk = d["chunk_size"]
    dirty_off = w.last[0] // 4096 * 4096
    reads = {"dirty": dirty_off, "clean": a.clean_off}
    if a.clean_off // chunk == dirty_off // chunk:
        die("the clean offset lies in the chunk written last")
    wait_path(a.dst_sock, 30, "the destination's NBD socket")
    h = nbd.NBD()
    h.connect_unix(a.dst_sock)
    bufs, cookies, done = {}, {}, {}

    def answered(name):
        def cb(*_):
            done[name] = time.monotonic()
            return 0
        return cb

    for name, off in reads.items():
        bufs[name] = nbd.Buffer(4096)
        cookies[name] = h.aio_pread(bufs[name], off, completion=answered(name))
    t_pend = time.monotonic() + PENDING_S
    while time.monotonic() < t_pend:
        h.poll(10)
    held = not done  # both still pending: the destination holds them
    early = sorted(done)

    t0 = time.monotonic()
    p = freeze_start(a)
    t_exit = t_final = None
    t_last_status = 0.0
    final_status = None
    while True:
        now = time.monotonic()
        if now - t0 > ANSWER_TIMEOUT_S:
            die("after the freeze: reads answered %s, freeze returned %s, final %s within %.0f s"
                % (sorted(done), t_exit is not None, t_final is not None, ANSWER_TIMEOUT_S))
        if t_exit is None and p.poll() is not None:
            t_exit = now
            if p.returncode != 0:
                freeze_finish(p, t0, t_exit)  # says why and exits
        if t_final is None and now - t_last_status >= FINAL_POLL_S:
            t_last_status = now
            st = status(a.dst_ctl, a.p2pvbd)
            if st is not None and st.get("final") is True:
                t_final = time.monotonic()
                final_status = st
        if len(done) == 2 and t_exit is not None and t_final is not None:
            break
        if h.aio_in_flight() > 0:
            h.poll(1)
        else:
            time.sleep(0.001)
    for name in reads:
        if not h.aio_command_completed(cookies[name]):
            die("read %s completed without success" % name)
    res = freeze_finish(p, t0, t_exit)
    # The answers must equal the source at the freeze (the writer stopped before).
    ok = {}
    with open(a.src_image, "rb") as f:
        for name, off in reads.items():
            ok[name] = os.pread(f.fileno(), 4096, off) == bufs[name].to_bytearray()
    h.shutdown()
    ms = lambda t: round((t - t0) * 1000, 3) if t is not None and t >= t0 else 0.0
    t_first = min(done.values())
    res.update({
        "held_before_freeze": held, "answered_early": early,
        "first_read_ms": ms(t_first), "dirty_read_ms": ms(done["dirty"]),
        "clean_read_ms": ms(done["clean"]), "all_reads_ms": ms(max(done.values())),
        "final_status_ms": ms(t_final),
        "dirty_read_matches_source": ok["dirty"], "clean_read_matches_source": ok["clean"],
        "dst_generation": final_status.get("generation") if final_status else None,
    })
    return res


def total(a, s, d):
    t0 = time.monotonic()
    p = freeze_start(a)
    t_exit = None
    while True:
        now = time.monotonic()
        if now - t0 > ANSWER_TIMEOUT_S:
            die("the destination is not complete %.0f s after the freeze: %s"
                % (ANSWER_TIMEOUT_S, status(a.dst_ctl, a.p2pvbd)))
        if t_exit is None and p.poll() is not None:
            t_exit = now
            if p.returncode != 0:
                freeze_finish(p, t0, t_exit)  # says why and exits
        st = status(a.dst_ctl, a.p2pvbd)
        if t_exit is not None and st is not None and st.get("complete") is True \
                and st.get("final", True) is not False:
            t_done = time.monotonic()
            break
        time.sleep(0.02)
    res = freeze_finish(p, t0, t_exit)
    res["complete_after_freeze_s"] = round(t_done - t0, 3)
    res["t_done"] = t_done
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=("downtime", "total"))
    ap.add_argument("--p2pvbd", required=True)
    ap.add_argument("--src-sock", required=True)
    ap.add_argument("--src-image", required=True)
    ap.add_argument("--seed-ctl", required=True)
    ap.add_argument("--dst-ctl", required=True)
    ap.add_argument("--dst-sock")
    ap.add_argument("--go", required=True, help="file to make when the fetch may start")
    ap.add_argument("--rate", type=float, default=10e6, help="writer bytes/s")
    ap.add_argument("--span-off", type=int, required=True)
    ap.add_argument("--span-len", type=int, required=True)
    ap.add_argument("--clean-off", type=int, default=0, help="a never-written offset")
    ap.add_argument("--warm", type=float, default=1.0, help="writer seconds before GO")
    ap.add_argument("--min-write", type=float, default=3.0,
                    help="writer seconds after GO before a freeze")
    ap.add_argument("--slack", type=int, default=MIB)
    ap.add_argument("--dirty-limit", type=int, default=4 * MIB)
    ap.add_argument("--catchup-timeout", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    if a.mode == "downtime" and a.dst_sock is None:
        die("downtime needs --dst-sock")
    if a.span_len < 64 * 1024:
        die("--span-len must be at least 64 KiB")

    wait_path(a.src_sock, 60, "the source's NBD socket")
    w = Writer(a.src_sock, a.rate, a.span_off, a.span_len, a.seed)
    w.start()
    time.sleep(a.warm)
    t_go = time.monotonic()
    with open(a.go, "w"):
        pass
    throttle = {"min_rate": 0, "capped_s": 0.0}
    kind, s, d = catch_up(a, t_go, throttle)
    t_caught = time.monotonic()
    w.stop()
    res = {"mode": a.mode, "caught_up": kind, "catchup_s": round(t_caught - t_go, 3),
           "dirty_at_freeze": s.get("dirty_bytes"), "seed_generation": s.get("generation"),
           "missing_at_freeze": d["image_size"] - d["bytes_done"],
           "image_size": d["image_size"], "writes": w.writes, "write_bytes": w.bytes,
           "write_rate": round(w.bytes / max(1e-9, t_caught - t_go + a.warm)),
           "throttle_min_rate": round(throttle["min_rate"]),
           "throttle_capped_s": round(throttle["capped_s"], 1)}
    if a.mode == "downtime":
        res.update(downtime(a, w, s, d))
    else:
        r = total(a, s, d)
        res["total_s"] = round(r.pop("t_done") - t_go, 3)
        res.update(r)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
