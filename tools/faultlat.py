#!/usr/bin/python3
# SPDX-License-Identifier: ISC
"""Fault latency of an NBD export: time single 4 KiB reads, one at a time.

usage: faultlat.py URI --offsets-from N --count K [--seed S] [--warm OFF ...]

Reads K blocks of 4 KiB at random 4 KiB-aligned offsets, each in a different
chunk, drawn from the chunks at and after byte N of the export (chunks that
have not arrived yet when the caller picks N well). Each read is issued alone
and timed from request to reply, with libnbd (python3-libnbd), a client
nobody here wrote. --warm offsets are read first and not timed (to load the
chunk table pages). Prints one JSON object: p50, p90, p99 and max in
milliseconds, and every sample.
"""
import argparse
import json
import random
import sys
import time

import nbd  # python3-libnbd


def percentile(sorted_ms, p):
    """Nearest-rank percentile of an ascending list."""
    if not sorted_ms:
        return None
    k = max(0, min(len(sorted_ms) - 1, int(round(p / 100.0 * len(sorted_ms) + 0.5)) - 1))
    return sorted_ms[k]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("uri")
    ap.add_argument("--offsets-from", type=int, required=True)
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--chunk-size", type=int, default=256 * 1024)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--gap-ms", type=float, default=20.0, help="pause between reads")
    ap.add_argument("--warm", type=int, nargs="*", default=[])
    a = ap.parse_args()

    h = nbd.NBD()
    h.connect_uri(a.uri)
    size = h.get_size()
    first = a.offsets_from // a.chunk_size
    last = (size - 4096) // a.chunk_size
    if last - first + 1 < a.count:
        sys.exit("faultlat: only %d chunks after offset %d" % (last - first + 1, a.offsets_from))
    for off in a.warm:
        h.pread(4096, off)
    rng = random.Random(a.seed)
    chunks = rng.sample(range(first, last + 1), a.count)
    samples = []
    for c in chunks:
        within = rng.randrange(0, a.chunk_size // 4096) * 4096
        off = min(c * a.chunk_size + within, size - 4096)
        t0 = time.perf_counter()
        h.pread(4096, off)
        samples.append((time.perf_counter() - t0) * 1000.0)
        time.sleep(a.gap_ms / 1000.0)
    h.shutdown()
    s = sorted(samples)
    print(json.dumps({"count": len(s), "p50_ms": round(percentile(s, 50), 3),
                      "p90_ms": round(percentile(s, 90), 3),
                      "p99_ms": round(percentile(s, 99), 3), "max_ms": round(s[-1], 3),
                      "samples_ms": [round(x, 3) for x in samples]}))


if __name__ == "__main__":
    main()
