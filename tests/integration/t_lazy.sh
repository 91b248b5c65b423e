#!/bin/bash
# SPDX-License-Identifier: ISC
# Checks: `fetch -e --lazy` (pure postcopy) fetches only the chunks the VM reads: reads through the
# export (qemu-io, nbdcopy) return the source's bytes; the state file then marks only the chunks
# read; an idle VM is not a stall (fetch stays up well past --give-up while nothing is asked);
# reading everything completes the volume, and SIGTERM ends fetch with 0 and an image equal to
# the source.
# fast
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh" "$@"
for tool in nbdcopy; do
	command -v "$tool" >/dev/null || fail "$tool not installed (tools/install-deps.sh)"
done
CH=$((256 * 1024))

# 8 MiB, random but for MiB 1, 4 and 7 (zero): 32 chunks, 20 of data.
make_image "$T/src.img" 8
keygen "$T/key"
start_seed -k "$T/key" "$T/src.img"
start_export "$T/nbd.sock" --lazy --give-up 2 --ctl "$T/fetch.ctl"

# Idle: nothing asked, so nothing is late. Three times --give-up later it is still serving,
# and has fetched nothing.
sleep 6
kill -0 "$FETCH_PID" 2>/dev/null || fail "an idle --lazy fetch exited: $(tail -n 5 "$T/fetch.log")"
present=$(state_present "$T/out.img")
((present == 0)) || fail "an idle --lazy fetch holds $present chunks"

# Two reads on fresh connections (no readahead): 4 KiB inside chunk 2, and 300 KiB across
# chunks 9 and 10. They return the source's bytes, and only those 3 chunks are fetched.
/usr/bin/python3 - "$T/nbd.sock" "$T/src.img" $((2 * CH + 4096)) 4096 $((9 * CH + 1000)) $((300 * 1024)) <<'PY' ||
import nbd, sys
sock, src = sys.argv[1], sys.argv[2]
args = [int(a) for a in sys.argv[3:]]
with open(src, "rb") as f:
    for off, n in zip(args[0::2], args[1::2]):
        h = nbd.NBD()
        h.connect_unix(sock)
        got = h.pread(n, off)
        h.shutdown()
        f.seek(off)
        if got != f.read(n):
            sys.exit("read %d@%d differs from the source" % (n, off))
PY
	fail "reads through the lazy export"
# (The state file marks them at the next commit, within a second.)
for ((i = 0; i < 50; i++)); do
	present=$(state_present "$T/out.img")
	((present >= 3)) && break
	sleep 0.1
done
((present == 3)) || fail "after reading chunks 2, 9 and 10, $present chunks are held (expected 3)"
run_cmd r2 nbdcopy "$NBD_URI" "$T/part.img"
((RC == 0)) || fail "nbdcopy failed: $(cat "$T/r2.err")"
cmp "$T/src.img" "$T/part.img" || fail "nbdcopy of the lazy export differs from the source"
# nbdcopy read everything: the volume completes.
for ((i = 0; i < 300; i++)); do
	grep -q 'volume complete and verified' "$T/fetch.log" && break
	sleep 0.1
done
grep -q 'volume complete and verified' "$T/fetch.log" ||
	fail "reading the whole export did not complete the volume: $(tail -n 5 "$T/fetch.log")"
run_cmd st "$P2PVBD" status --json "$T/fetch.ctl"
grep -q '"complete":true' "$T/st.out" || fail "status after a full read: $(cat "$T/st.out")"
stop_pid "$FETCH_PID"
((EXIT_STATUS == 0)) || fail "fetch exited $EXIT_STATUS on SIGTERM"
cmp "$T/src.img" "$T/out.img" || fail "the image differs from the source"
note "PASS"
