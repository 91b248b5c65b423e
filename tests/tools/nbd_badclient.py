#!/usr/bin/python3
# SPDX-License-Identifier: ISC
"""A raw-socket NBD client that sends what well-behaved clients never do.

Used by tests/integration/t_nbd_badclient.sh against `p2pvbd fetch -e unix:SOCK`.
Written from the NBD protocol specification (doc/proto.md of
github.com/NetworkBlockDevice/nbd), independently of proto/nbd_wire.c.

usage: nbd_badclient.py SOCKET REFERENCE_IMAGE [CHUNK_BYTES]

REFERENCE_IMAGE holds what the export must contain (this client makes no
successful write). Every check prints "ok: ..." or "FAIL: ..."; the exit
status is 1 if any check failed, 0 otherwise.
"""

import os
import socket
import struct
import sys

NBDMAGIC = 0x4E42444D41474943
IHAVEOPT = 0x49484156454F5054
REP_MAGIC = 0x0003E889045565A9
REQ_MAGIC = 0x25609513
SIMPLE_MAGIC = 0x67446698
STRUCT_MAGIC = 0x668E33EF

OPT_EXPORT_NAME, OPT_ABORT, OPT_LIST, OPT_INFO, OPT_GO = 1, 2, 3, 6, 7
OPT_STRUCTURED_REPLY, OPT_LIST_META, OPT_SET_META = 8, 9, 10

REP_ACK, REP_SERVER, REP_INFO, REP_META_CONTEXT = 1, 2, 3, 4
REP_ERR_UNSUP = 0x80000001
REP_ERR_INVALID = 0x80000003
REP_ERR_TOO_BIG = 0x80000009

CMD_READ, CMD_WRITE, CMD_DISC, CMD_FLUSH = 0, 1, 2, 3
CMD_TRIM, CMD_CACHE, CMD_WRITE_ZEROES, CMD_BLOCK_STATUS = 4, 5, 6, 7
FLAG_FUA, FLAG_NO_HOLE, FLAG_DF, FLAG_REQ_ONE = 1, 2, 4, 8

REPLY_FLAG_DONE = 1
REPLY_TYPE_NONE, REPLY_TYPE_OFFSET_DATA, REPLY_TYPE_OFFSET_HOLE = 0, 1, 2
REPLY_TYPE_BLOCK_STATUS = 5

EINVAL, ENOSPC = 22, 28

TIMEOUT = 20.0  # seconds for any single reply (reads of missing chunks wait for a fetch)

failures = 0


def ok(msg):
    print("ok: " + msg, flush=True)


def bad(msg):
    global failures
    failures += 1
    print("FAIL: " + msg, flush=True)


def check(cond, msg):
    if cond:
        ok(msg)
    else:
        bad(msg)
    return cond


class Closed(Exception):
    pass


class Conn:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(TIMEOUT)
        self.s.connect(path)
        self.cookie = 1000

    def close(self):
        self.s.close()

    def send(self, b):
        self.s.sendall(b)

    def recv_exact(self, n):
        buf = b""
        while len(buf) < n:
            part = self.s.recv(n - len(buf))
            if not part:
                raise Closed("server closed after %d of %d bytes" % (len(buf), n))
            buf += part
        return buf

    def wait_closed(self):
        """True if the server closes the connection (EOF or reset) within TIMEOUT."""
        try:
            while True:
                if not self.s.recv(65536):
                    return True
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False

    # ---- handshake ----

    def greeting(self):
        magic, opt, hflags = struct.unpack(">QQH", self.recv_exact(18))
        if magic != NBDMAGIC or opt != IHAVEOPT:
            raise Closed("bad greeting %x %x" % (magic, opt))
        return hflags

    def client_flags(self, flags=3):
        self.send(struct.pack(">I", flags))

    def send_opt(self, opt, data=b""):
        self.send(struct.pack(">QII", IHAVEOPT, opt, len(data)) + data)

    def read_rep(self):
        magic, opt, rtype, ln = struct.unpack(">QIII", self.recv_exact(20))
        if magic != REP_MAGIC:
            raise Closed("bad option reply magic %x" % magic)
        return opt, rtype, self.recv_exact(ln)

    def opt(self, opt, data=b""):
        """Send an option; return its replies up to and including the final one."""
        self.send_opt(opt, data)
        reps = []
        while True:
            o, rtype, d = self.read_rep()
            if o != opt:
                raise Closed("reply for option %d to option %d" % (o, opt))
            reps.append((rtype, d))
            if rtype == REP_ACK or rtype & 0x80000000:
                return reps

    def handshake(self, structured, meta):
        self.greeting()
        self.client_flags()
        if structured:
            reps = self.opt(OPT_STRUCTURED_REPLY)
            assert reps[-1][0] == REP_ACK, reps
        if meta:
            reps = self.opt(OPT_SET_META, meta_data(["base:allocation"]))
            assert reps[-1][0] == REP_ACK, reps
            ctx = [struct.unpack(">I", d[:4])[0] for t, d in reps if t == REP_META_CONTEXT]
            assert len(ctx) == 1, reps
            self.meta_id = ctx[0]
        reps = self.opt(OPT_GO, go_data())
        assert reps[-1][0] == REP_ACK, reps
        self.structured = structured
        for t, d in reps:
            if t == REP_INFO and struct.unpack(">H", d[:2])[0] == 0:
                self.size = struct.unpack(">Q", d[2:10])[0]
        return self

    # ---- transmission ----

    def request(self, cmd, offset, length, flags=0, payload=b""):
        self.cookie += 1
        self.send(struct.pack(">IHHQQI", REQ_MAGIC, flags, cmd, self.cookie, offset, length) +
                  payload)
        return self.cookie

    def reply(self, expect_len=0):
        """One whole reply: (cookie, error, data). Structured chunks are gathered until DONE."""
        magic = struct.unpack(">I", self.recv_exact(4))[0]
        if magic == SIMPLE_MAGIC:
            err, cookie = struct.unpack(">IQ", self.recv_exact(12))
            data = self.recv_exact(expect_len) if err == 0 and expect_len else b""
            return cookie, err, data
        if magic != STRUCT_MAGIC:
            raise Closed("bad reply magic %x" % magic)
        err = 0
        data = {}
        while True:
            flags, rtype, cookie, ln = struct.unpack(">HHQI", self.recv_exact(16))
            payload = self.recv_exact(ln)
            if rtype & 0x8000:
                err = struct.unpack(">I", payload[:4])[0]
            elif rtype == REPLY_TYPE_OFFSET_DATA:
                data[struct.unpack(">Q", payload[:8])[0]] = payload[8:]
            elif rtype == REPLY_TYPE_OFFSET_HOLE:
                off, n = struct.unpack(">QI", payload[:12])
                data[off] = bytes(n)
            elif rtype == REPLY_TYPE_BLOCK_STATUS:
                data["bs"] = payload
            if flags & REPLY_FLAG_DONE:
                break
            magic = struct.unpack(">I", self.recv_exact(4))[0]
            if magic != STRUCT_MAGIC:
                raise Closed("bad chunk magic %x" % magic)
        return cookie, err, data

    def call(self, cmd, offset, length, flags=0, payload=b"", expect_len=0):
        c = self.request(cmd, offset, length, flags, payload)
        cookie, err, data = self.reply(expect_len)
        if cookie != c:
            raise Closed("reply cookie %d for request %d" % (cookie, c))
        return err, data

    def read(self, offset, length):
        err, data = self.call(CMD_READ, offset, length, expect_len=length)
        if err:
            return err, None
        if isinstance(data, bytes):
            return 0, data
        buf = bytearray(length)
        for off, d in data.items():
            if off == "bs":
                continue
            buf[off - offset:off - offset + len(d)] = d
        return 0, bytes(buf)


def nbd_str(s):
    b = s.encode()
    return struct.pack(">I", len(b)) + b


def go_data(name="", infos=(3,)):
    return nbd_str(name) + struct.pack(">H", len(infos)) + b"".join(struct.pack(">H", i) for i in infos)


def meta_data(queries, name=""):
    return nbd_str(name) + struct.pack(">I", len(queries)) + b"".join(nbd_str(q) for q in queries)


def expect_closed(c, what):
    check(c.wait_closed(), "%s: server closes the connection" % what)
    c.close()


def expect_err(c, what, want, cmd, offset, length, flags=0, payload=b""):
    err, _ = c.call(cmd, offset, length, flags, payload)
    if isinstance(want, int):
        want = (want,)
    check(err in want, "%s: error %d (want %s)" % (what, err, "/".join(map(str, want))))


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    sock, ref_path = sys.argv[1], sys.argv[2]
    chunk = int(sys.argv[3]) if len(sys.argv) == 4 else 256 * 1024
    with open(ref_path, "rb") as f:
        ref = f.read()
    size = len(ref)

    # 1. Garbage instead of a handshake, in several shapes.
    c = Conn(sock)
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + os.urandom(200))
    expect_closed(c, "garbage before the greeting")

    c = Conn(sock)
    c.greeting()
    c.send(b"\xff\xff\xff\xff" + os.urandom(60))
    expect_closed(c, "unknown client flags")

    c = Conn(sock)
    c.greeting()
    c.client_flags()
    c.send(os.urandom(16) + b"x" * 100)
    expect_closed(c, "option with a bad magic")

    c = Conn(sock)
    c.greeting()
    c.client_flags()
    c.send(struct.pack(">QI", IHAVEOPT, OPT_GO))  # half an option header, then gone
    c.close()

    # 2. Options: out of order, unknown, malformed, too big; the session survives each.
    c = Conn(sock)
    c.greeting()
    c.client_flags()
    reps = c.opt(OPT_SET_META, meta_data(["base:allocation"]))
    check(reps[-1][0] == REP_ERR_INVALID,
          "SET_META_CONTEXT before STRUCTURED_REPLY: %#x (want NBD_REP_ERR_INVALID)" % reps[-1][0])
    reps = c.opt(OPT_LIST_META, meta_data([]))
    check(reps[-1][0] == REP_ERR_INVALID,
          "LIST_META_CONTEXT before STRUCTURED_REPLY: %#x (want NBD_REP_ERR_INVALID)" % reps[-1][0])
    reps = c.opt(0x4321, b"hello")
    check(reps[-1][0] == REP_ERR_UNSUP, "unknown option: %#x (want NBD_REP_ERR_UNSUP)" % reps[-1][0])
    reps = c.opt(OPT_STRUCTURED_REPLY, b"xxxx")
    check(reps[-1][0] == REP_ERR_INVALID,
          "STRUCTURED_REPLY with data: %#x (want NBD_REP_ERR_INVALID)" % reps[-1][0])
    reps = c.opt(OPT_GO, b"\x00\x00\x00\x09ab")  # name length beyond the data
    check(reps[-1][0] == REP_ERR_INVALID, "malformed GO: %#x (want NBD_REP_ERR_INVALID)" % reps[-1][0])
    reps = c.opt(OPT_INFO, go_data() + b"\x00" * 70000)
    check(reps[-1][0] in (REP_ERR_TOO_BIG, REP_ERR_INVALID),
          "70000-byte INFO: %#x (want NBD_REP_ERR_TOO_BIG or _INVALID)" % reps[-1][0])
    reps = c.opt(OPT_LIST)
    check([t for t, _ in reps] == [REP_SERVER, REP_ACK], "LIST: one export then ACK: %r" % reps)
    reps = c.opt(OPT_INFO, go_data())
    sizes = [struct.unpack(">Q", d[2:10])[0] for t, d in reps
             if t == REP_INFO and struct.unpack(">H", d[:2])[0] == 0]
    check(reps[-1][0] == REP_ACK and sizes == [size], "INFO gives the export size %d: %r" % (size, sizes))
    reps = c.opt(OPT_STRUCTURED_REPLY)
    check(reps[-1][0] == REP_ACK, "STRUCTURED_REPLY after the errors: ACK")
    reps = c.opt(OPT_LIST_META, meta_data([]))
    names = [d[4:] for t, d in reps if t == REP_META_CONTEXT]
    check(reps[-1][0] == REP_ACK and b"base:allocation" in names, "LIST_META_CONTEXT: %r" % names)
    reps = c.opt(OPT_ABORT)
    check(reps[-1][0] == REP_ACK, "ABORT: ACK")
    expect_closed(c, "after ABORT")

    # 3. NBD_OPT_EXPORT_NAME without NO_ZEROES: size, flags and 124 zero bytes.
    c = Conn(sock)
    c.greeting()
    c.client_flags(1)
    c.send_opt(OPT_EXPORT_NAME, b"")
    reply = c.recv_exact(134)
    check(struct.unpack(">Q", reply[:8])[0] == size and reply[10:] == bytes(124),
          "EXPORT_NAME reply: size and 124 zeroes")
    c.structured = False
    err, data = c.read(0, 4096)
    check(err == 0 and data == ref[:4096], "read after EXPORT_NAME")
    c.request(CMD_DISC, 0, 0)
    expect_closed(c, "after DISC")

    # 4. Requests a server must refuse, on a simple and on a structured connection.
    for structured in (False, True):
        kind = "structured" if structured else "simple"
        c = Conn(sock).handshake(structured, meta=structured)
        check(c.size == size, "%s: GO gives the export size" % kind)
        expect_err(c, kind + ": read beyond the end", EINVAL, CMD_READ, size - 100, 200)
        expect_err(c, kind + ": read at the end", EINVAL, CMD_READ, size, 1)
        expect_err(c, kind + ": read at 2^64-512 (wraps)", EINVAL, CMD_READ, 2**64 - 512, 1024)
        expect_err(c, kind + ": write beyond the end", (ENOSPC, EINVAL), CMD_WRITE, size - 10, 20,
                   payload=b"\xee" * 20)
        expect_err(c, kind + ": write zeroes beyond the end", (ENOSPC, EINVAL), CMD_WRITE_ZEROES,
                   size - 10, 20)
        expect_err(c, kind + ": trim beyond the end", (ENOSPC, EINVAL), CMD_TRIM, size, 4096)
        expect_err(c, kind + ": read of length 0", EINVAL, CMD_READ, 0, 0)
        expect_err(c, kind + ": write of length 0", EINVAL, CMD_WRITE, 0, 0)
        expect_err(c, kind + ": read of 64 MiB", EINVAL, CMD_READ, 0, 64 << 20)
        expect_err(c, kind + ": unknown command 99", EINVAL, 99, 0, 4096)
        expect_err(c, kind + ": unknown command 0xffff", EINVAL, 0xFFFF, 0, 0)
        expect_err(c, kind + ": read with unknown flag bit 9", EINVAL, CMD_READ, 0, 4096, flags=1 << 9)
        expect_err(c, kind + ": write with unknown flag bit 15", EINVAL, CMD_WRITE, 0, 16,
                   flags=1 << 15, payload=b"\xee" * 16)
        expect_err(c, kind + ": write with NO_HOLE (a WRITE_ZEROES flag)", EINVAL, CMD_WRITE, 0, 16,
                   flags=FLAG_NO_HOLE, payload=b"\xee" * 16)
        expect_err(c, kind + ": flush with an offset", EINVAL, CMD_FLUSH, 4096, 0)
        expect_err(c, kind + ": flush with a length", EINVAL, CMD_FLUSH, 0, 4096)
        if not structured:
            expect_err(c, kind + ": BLOCK_STATUS without a meta context", EINVAL,
                       CMD_BLOCK_STATUS, 0, 4096)
            expect_err(c, kind + ": READ with DF without structured replies", EINVAL,
                       CMD_READ, 0, 4096, flags=FLAG_DF)
        else:
            err, data = c.call(CMD_BLOCK_STATUS, 0, min(size, 4 << 20))
            desc = data.get("bs", b"") if isinstance(data, dict) else b""
            ctx = struct.unpack(">I", desc[:4])[0] if len(desc) >= 4 else None
            ext = [struct.unpack(">II", desc[i:i + 8]) for i in range(4, len(desc) - 7, 8)]
            check(err == 0 and ctx == c.meta_id and ext and sum(n for n, _ in ext) <= 4 << 20,
                  "structured: BLOCK_STATUS of 4 MiB: context %r, extents %r" % (ctx, ext))
        # Still in sync: pipelined reads answered with the right cookies and data.
        want = {}
        for off in (0, chunk - 100, size - 5000):
            want[c.request(CMD_READ, off, 5000)] = off
        for _ in range(len(want)):
            cookie, err, data = c.reply(5000)
            off = want.pop(cookie, None)
            if off is None:
                bad("%s: reply for unknown cookie %d" % (kind, cookie))
                break
            if not isinstance(data, bytes):
                data = data.get(off, b"")
            check(err == 0 and data == ref[off:off + 5000],
                  "%s: pipelined read at %d after the bad requests" % (kind, off))
        # A write length above the 32 MiB maximum: the spec allows a hard disconnect;
        # otherwise the server must answer EINVAL after the payload.
        c.request(CMD_WRITE, 0, 40 << 20)
        try:
            c.send(b"\0" * 4096)
            cookie, err, _ = c.reply()
            check(err == EINVAL, "%s: 40 MiB write: error %d (or a disconnect)" % (kind, err))
        except (Closed, ConnectionError):
            ok("%s: 40 MiB write: server disconnected (allowed)" % kind)
        except socket.timeout:
            ok("%s: 40 MiB write: server waits for the payload (allowed)" % kind)
        c.close()

    # 5. Clients that vanish mid-request.
    c = Conn(sock).handshake(True, meta=False)
    c.send(struct.pack(">IHHQQI", REQ_MAGIC, 0, CMD_WRITE, 7, 0, 65536) + b"\x5a" * 1000)
    c.close()
    ok("disconnected in the middle of a 64 KiB write payload at offset 0")

    c = Conn(sock).handshake(False, meta=False)
    c.send(struct.pack(">IHHQQI", REQ_MAGIC, 0, CMD_WRITE, 8, chunk, 4096)[:17])
    c.close()
    ok("disconnected in the middle of a request header")

    c = Conn(sock).handshake(True, meta=False)
    for i in range(8):  # reads (of chunks that may not have arrived) parked, then gone
        c.request(CMD_READ, (size // 8) * i, 65536)
    c.close()
    ok("disconnected with 8 reads in flight")

    # FLUSH and FUA writes still being made durable when the client goes. The write puts back
    # the reference bytes, so the image keeps the reference content.
    for i in range(20):
        c = Conn(sock).handshake(i % 2 == 0, meta=False)
        off = (i * 4096) % (size - 4096)
        c.request(CMD_WRITE, off, 4096, flags=FLAG_FUA, payload=ref[off:off + 4096])
        c.request(CMD_FLUSH, 0, 0)
        c.close()
    ok("disconnected with FLUSH and FUA writes in flight (20 times)")

    c = Conn(sock).handshake(False, meta=False)
    c.send(struct.pack(">IHHQQI", 0xDEADBEEF, 0, CMD_READ, 9, 0, 512))
    expect_closed(c, "request with a bad magic")

    # 6. A well-behaved client still gets the right data everywhere.
    c = Conn(sock).handshake(True, meta=True)
    step = max(chunk, size // 16)
    for off in list(range(0, size, step)) + [size - 1]:
        n = min(4096, size - off)
        err, data = c.read(off, n)
        if err != 0 or data != ref[off:off + n]:
            bad("final read at %d: error %d or wrong data" % (off, err))
            break
    else:
        ok("final reads across the export return the reference data")
    c.request(CMD_DISC, 0, 0)
    expect_closed(c, "final DISC")

    print("%d failed" % failures, flush=True)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    try:
        main()
    except (Closed, OSError, AssertionError) as e:
        print("FAIL: protocol error: %r" % (e,), flush=True)
        sys.exit(1)
