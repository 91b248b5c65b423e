#!/usr/bin/env python3
# SPDX-License-Identifier: ISC
"""Check, from the host, the records the p2pvbd test guest wrote to its disk.

usage: check-records.py IMAGE SEED --records N --epoch E [--next J] [-v]

IMAGE is the raw disk image (or a block device) the guest wrote; SEED, N, E
and J are the values of the guest's "P2PVBD-STOP epoch=E next=J records=N
seed=S" line: records 0..J-1 must hold epoch E, records J..N-1 epoch E-1
(records of epoch 0 were never written and are not checked). The record
format is written down at the top of tools/vm/guest-init.

Exit status: 0 all records intact, 1 some are not (each is reported), 2 usage
or I/O error. Python 3 standard library only.
"""

import argparse
import hashlib
import math
import os
import re
import sys

BLOCK = 4096
HEADER = 256
PAYLOAD = BLOCK - HEADER
HEADER_RE = re.compile(
    rb"P2PVBD-RECORD v1 i=(\d+) epoch=(\d+) seed=(\d+) len=(\d+) sha256=([0-9a-f]{64})"
)


def golden(m):
    s = max(1, m * 618034 // 1000000)
    while math.gcd(s, m) != 1:
        s += 1
    return s


class Layout:
    """Where each record lives on a disk of nb 4 KiB blocks."""

    def __init__(self, nb):
        self.nb = nb
        self.edge = nb >= 1024
        if self.edge:
            self.mid = nb - 512
            self.stride = golden(self.mid)
            self.capacity = 8 + self.mid
        else:
            self.stride = golden(nb)
            self.capacity = nb

    def block(self, i):
        if not self.edge:
            return i * self.stride % self.nb
        if i < 4:
            return 65 * i
        if i < 8:
            return self.nb - 1 - 65 * (i - 4)
        return 256 + (i - 8) * self.stride % self.mid


def payload(seed, i, epoch):
    m = 1 << 32
    x = seed % m
    x = (x * 69069 + i + 1) % m
    x = (x * 69069 + epoch + 1) % m
    for _ in range(8):
        x = (x * 69069 + 12345) % m
    out = []
    for _ in range(PAYLOAD // 4):
        x = (x * 69069 + 12345) % m
        out.append("%04x" % (x >> 16))
    return "".join(out).encode("ascii")


def record(seed, i, epoch):
    p = payload(seed, i, epoch)
    h = hashlib.sha256(p).hexdigest()
    line = "P2PVBD-RECORD v1 i=%d epoch=%d seed=%d len=%d sha256=%s" % (
        i, epoch, seed, PAYLOAD, h)
    return line.ljust(HEADER - 1).encode("ascii") + b"\n" + p


def describe(got, seed, i):
    """What a bad record holds, in words."""
    if got == bytes(len(got)):
        return "all zero (never written, or lost)"
    m = HEADER_RE.match(got)
    if not m:
        return "no record header (garbage or torn): %r" % got[:48]
    gi, ge, gs, gl = (int(m.group(k)) for k in range(1, 5))
    if gi != i or gs != seed or gl != PAYLOAD:
        return "header of another record: i=%d epoch=%d seed=%d len=%d" % (gi, ge, gs, gl)
    body = got[HEADER:]
    if hashlib.sha256(body).hexdigest().encode() != m.group(5):
        return "epoch %d header but the payload does not match its checksum (torn write?)" % ge
    if body != payload(seed, i, ge):
        return "epoch %d header and checksum but an unexpected payload" % ge
    return "an intact record of epoch %d" % ge


def main():
    ap = argparse.ArgumentParser(
        description="Verify the p2pvbd test guest's records in a disk image.")
    ap.add_argument("image")
    ap.add_argument("seed", type=int)
    ap.add_argument("--records", "-n", type=int, required=True, help="records per epoch (N)")
    ap.add_argument("--epoch", "-e", type=int, required=True, help="last epoch written (E)")
    ap.add_argument("--next", "-j", type=int, default=None,
                    help="records of epoch E (J; default N)")
    ap.add_argument("-v", "--verbose", action="store_true", help="list every record checked")
    a = ap.parse_args()
    nxt = a.records if a.next is None else a.next
    if not 0 <= a.seed < 1 << 32 or a.records < 1 or a.epoch < 0 or not 0 <= nxt <= a.records:
        ap.error("need 0 <= SEED < 2^32, N >= 1, E >= 0, 0 <= J <= N")
    try:
        fd = os.open(a.image, os.O_RDONLY)
    except OSError as e:
        print("check-records: %s" % e, file=sys.stderr)
        return 2
    try:
        size = os.lseek(fd, 0, os.SEEK_END)
        layout = Layout(size // BLOCK)
        if a.records > layout.capacity:
            print("check-records: %s holds at most %d records, not %d"
                  % (a.image, layout.capacity, a.records), file=sys.stderr)
            return 2
        checked = bad = 0
        for i in range(a.records):
            epoch = a.epoch if i < nxt else a.epoch - 1
            if epoch < 1:
                continue
            b = layout.block(i)
            got = os.pread(fd, BLOCK, b * BLOCK)
            checked += 1
            if got == record(a.seed, i, epoch):
                if a.verbose:
                    print("ok  i=%d epoch=%d offset=%d" % (i, epoch, b * BLOCK))
                continue
            bad += 1
            print("BAD i=%d offset=%d (256 KiB chunk %d): expected epoch %d, found %s"
                  % (i, b * BLOCK, b * BLOCK // 262144, epoch, describe(got, a.seed, i)))
    except BrokenPipeError:
        raise
    except OSError as e:
        print("check-records: %s: %s" % (a.image, e), file=sys.stderr)
        return 2
    finally:
        os.close(fd)
    if bad:
        print("check-records: FAIL: %d of %d records bad in %s" % (bad, checked, a.image))
        return 1
    print("check-records: OK: %d records (seed %d, epoch %d, next %d) intact in %s"
          % (checked, a.seed, a.epoch, nxt, a.image))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # e.g. piped into head
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
