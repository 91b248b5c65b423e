#!/usr/bin/env python3
# SPDX-License-Identifier: ISC
"""halfopen: connections that never authenticate, against a p2pvbd peer port.

For tests/integration/t_preauth_limits.sh (DESIGN.md rule 9). Loopback only.

  halfopen.py MODE --port P (--src ADDR | --spread PREFIX) --count N --seconds S
              [--interval I] [--reopen] [--until-closed K] --state FILE

MODE idle:  open N connections and send nothing.
MODE loris: open N connections, send a HELLO's magic ("P2PVBD1\\n") at once and then one
            more byte of a HELLO every I seconds, never finishing it before 96 s x I.

--src ADDR:     every connection comes from ADDR (a loopback address).
--spread PREFIX: connection i comes from PREFIX + str(i + 1), e.g. 127.0.1. -> 127.0.1.1 ...
--reopen:       a connection the peer closes is opened again (from the same address).
--until-closed K: stop once K connections were closed by the peer (without --reopen).

Every turn (0.2 s; and at the end) FILE is rewritten (atomically) with a JSON object:
  opened  connections opened so far (reopens count)
  open    connections open now
  closed  connections the peer closed (EOF, reset, or a REFUSAL followed by EOF)
  closed_idx  indices of the connections closed at least once, in order of closing
  max_bytes_before_close  most bytes any connection had sent when the peer closed it
  done    true once the run is over
Runs at most --seconds; exits 0 (the test judges the state file).
"""
import argparse
import json
import os
import select
import socket
import time

MAGIC = b"P2PVBD1\n"
HELLO_LEN = 96
TURN_S = 0.2


class Conn:
    def __init__(self, idx, src, port):
        self.idx = idx
        self.src = src
        self.port = port
        self.sock = None
        self.sent = 0
        self.next_send = 0.0

    def open(self, mode, now):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((self.src, 0))
        s.settimeout(5)
        s.connect(("127.0.0.1", self.port))
        s.setblocking(False)
        self.sock = s
        self.sent = 0
        if mode == "loris":
            s.send(MAGIC)
            self.sent = len(MAGIC)
        self.next_send = now

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def write_state(path, st):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(st, f)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["idle", "loris"])
    ap.add_argument("--port", type=int, required=True)
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--src")
    g.add_argument("--spread")
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--reopen", action="store_true")
    ap.add_argument("--until-closed", type=int, default=0)
    ap.add_argument("--state", required=True)
    a = ap.parse_args()
    if a.spread and a.count > 254:
        ap.error("--spread gives at most 254 addresses")

    start = time.monotonic()
    conns = []
    st = {"opened": 0, "open": 0, "closed": 0, "closed_idx": [],
          "max_bytes_before_close": 0, "done": False}
    for i in range(a.count):
        src = a.src if a.src else a.spread + str(i + 1)
        c = Conn(i, src, a.port)
        c.open(a.mode, time.monotonic())
        st["opened"] += 1
        conns.append(c)

    while time.monotonic() - start < a.seconds:
        now = time.monotonic()
        live = [c for c in conns if c.sock is not None]
        if live:
            readable, _, _ = select.select([c.sock for c in live], [], [], TURN_S)
        else:
            time.sleep(TURN_S)
            readable = []
        for c in live:
            gone = False
            if c.sock in readable:
                try:
                    data = c.sock.recv(4096)
                    gone = not data  # a REFUSAL is read; EOF follows
                except (ConnectionResetError, BrokenPipeError):
                    gone = True
                except BlockingIOError:
                    pass
            if not gone and a.mode == "loris" and now >= c.next_send and c.sent < HELLO_LEN - 1:
                try:
                    c.sock.send(b"\0")
                    c.sent += 1
                    c.next_send = now + a.interval
                except (ConnectionResetError, BrokenPipeError):
                    gone = True
                except BlockingIOError:
                    pass
            if gone:
                st["closed"] += 1
                if c.idx not in st["closed_idx"]:
                    st["closed_idx"].append(c.idx)
                st["max_bytes_before_close"] = max(st["max_bytes_before_close"], c.sent)
                c.close()
                if a.reopen:
                    try:
                        c.open(a.mode, now)
                        st["opened"] += 1
                    except OSError:
                        pass  # tried again on the next turn
        for c in conns:
            if a.reopen and c.sock is None:
                try:
                    c.open(a.mode, now)
                    st["opened"] += 1
                except OSError:
                    pass
        st["open"] = sum(c.sock is not None for c in conns)
        write_state(a.state, st)
        if a.until_closed and st["closed"] >= a.until_closed:
            break
        if not a.reopen and st["open"] == 0:
            break
        # At most one turn per TURN_S: a connection is reopened at most that often.
        time.sleep(max(0.0, TURN_S - (time.monotonic() - now)))
    st["open"] = sum(c.sock is not None for c in conns)
    st["done"] = True
    write_state(a.state, st)
    for c in conns:
        c.close()


if __name__ == "__main__":
    main()
