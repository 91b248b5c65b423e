#!/usr/bin/env python3
# SPDX-License-Identifier: ISC
"""Run QMP commands against a QEMU and print each answer as one JSON line.

usage: qmp-call.py SOCKET CMD [JSON-ARGS] [CMD [JSON-ARGS] ...]

e.g. qmp-call.py dst.qmp query-named-block-nodes
     qmp-call.py dst.qmp human-monitor-command '{"command-line": "info block"}'

Exit status: 0 every command succeeded; 1 one failed (its error on stderr; the
commands after it are not run); 2 bad usage. Connects within 10 s, waits 30 s
for each answer. Uses tools/vm/migrate.py's QMP client (standard library only).
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from migrate import Failure, Qmp  # noqa: E402


def main():
    args = sys.argv[1:]
    if len(args) < 2 or args[0] in ("-h", "--help"):
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    sock, cmds = args[0], []
    rest = args[1:]
    while rest:
        cmd, rest = rest[0], rest[1:]
        arg = None
        if rest and rest[0].startswith("{"):
            try:
                arg = json.loads(rest[0])
            except ValueError as e:
                print("qmp-call: bad JSON arguments for %s: %s" % (cmd, e), file=sys.stderr)
                return 2
            rest = rest[1:]
        cmds.append((cmd, arg))
    q = Qmp(sock, "qmp-call")
    try:
        q.connect(10, lambda: True)
        for cmd, arg in cmds:
            print(json.dumps(q.execute(cmd, arg, timeout=30)), flush=True)
    except Failure as e:
        print("qmp-call: %s" % e, file=sys.stderr)
        return 1
    finally:
        q.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
