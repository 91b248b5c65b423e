#!/usr/bin/env python3
# SPDX-License-Identifier: ISC
"""Run one QMP command and print its return value as JSON.

usage: qmp-cmd.py SOCKET COMMAND [ARGUMENTS-AS-JSON]

SOCKET is a QEMU QMP unix socket (-qmp unix:SOCKET,server=on,wait=off); the
connection is opened, capabilities negotiated, the command run, and the
connection closed. Events are skipped. Exit status: 0 with the "return" value
on stdout, 1 with QEMU's error on stderr, 2 usage or connection errors.
Python 3 standard library only.
"""

import json
import socket
import sys


def main():
    if len(sys.argv) not in (3, 4):
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    path, cmd = sys.argv[1], sys.argv[2]
    req = {"execute": cmd}
    if len(sys.argv) == 4:
        req["arguments"] = json.loads(sys.argv[3])
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    try:
        s.connect(path)
    except OSError as e:
        print("qmp-cmd: %s: %s" % (path, e), file=sys.stderr)
        return 2
    f = s.makefile("rwb")

    def reply():
        while True:
            line = f.readline()
            if not line:
                raise EOFError("QEMU closed the connection")
            msg = json.loads(line)
            if "return" in msg or "error" in msg:
                return msg

    try:
        if "QMP" not in json.loads(f.readline() or b"{}"):
            print("qmp-cmd: %s: no QMP greeting" % path, file=sys.stderr)
            return 2
        f.write(b'{"execute": "qmp_capabilities"}\n')
        f.flush()
        reply()
        f.write(json.dumps(req).encode() + b"\n")
        f.flush()
        msg = reply()
    except (OSError, EOFError, ValueError) as e:
        print("qmp-cmd: %s: %s" % (path, e), file=sys.stderr)
        return 2
    if "error" in msg:
        print("qmp-cmd: %s: %s" % (cmd, msg["error"].get("desc", msg["error"])), file=sys.stderr)
        return 1
    print(json.dumps(msg["return"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
