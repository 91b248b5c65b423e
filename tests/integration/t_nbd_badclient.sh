#!/bin/bash
# SPDX-License-Identifier: ISC
# Checks: the NBD export of `fetch -e` survives the protocol's bad inputs from a raw-socket client
# (tests/tools/nbd_badclient.py): garbage handshakes, options out of order (SET_META_CONTEXT before
# STRUCTURED_REPLY -> NBD_REP_ERR_INVALID), unknown options (NBD_REP_ERR_UNSUP), malformed and
# oversized options, reads/writes beyond the end (EINVAL / ENOSPC), length 0, unknown commands and
# flags (EINVAL), oversized lengths, clients that vanish mid-header, mid-payload and with parked
# reads. Meanwhile chunks are still arriving (rate-limited seed). Afterwards fetch is alive, a new
# client (nbdinfo) is served, and after SIGTERM the image equals the source (no rejected or
# half-received write reached it).
# fast
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh" "$@"

BADCLIENT=$(cd "$(dirname "$0")/../tools" && pwd)/nbd_badclient.py
command -v nbdinfo >/dev/null || fail "nbdinfo not installed (tools/install-deps.sh)"

MIB=12
TAIL=12345
make_image "$T/src.img" "$MIB" "$TAIL"
keygen "$T/key"
# ~8 MiB of data at 1 MiB/s: chunks are still arriving while the bad client runs.
start_seed -k "$T/key" --rate-limit 1M "$T/src.img"

SOCK=$T/bad.sock
start_export "$SOCK"

run_cmd badclient /usr/bin/python3 "$BADCLIENT" "$SOCK" "$T/src.img"
note "bad client: $(grep -c '^ok:' "$T/badclient.out") checks passed"
grep '^FAIL' "$T/badclient.out" >&2 || true
((RC == 0)) || fail "nbd_badclient.py exited $RC: $(grep '^FAIL' "$T/badclient.out" | head -5) $(tail -3 "$T/badclient.err")"
grep -q '^0 failed$' "$T/badclient.out" || fail "nbd_badclient.py did not finish its checks"

kill -0 "$FETCH_PID" 2>/dev/null || fail "fetch died under the bad client"
run_cmd nbdinfo nbdinfo "$NBD_URI"
((RC == 0)) || fail "nbdinfo after the bad client exited $RC: $(cat "$T/nbdinfo.err")"
grep -q "export-size: $((MIB * 1048576 + TAIL))" "$T/nbdinfo.out" || fail "nbdinfo: wrong or no export-size"

# Wait for the volume to complete, then stop fetch: the image must equal the source.
wait_for_line "$T/fetch.log" 'volume complete and verified' 120 "$FETCH_PID" "fetch exited before completing" "volume not complete within 120 s"
kill -TERM "$FETCH_PID"
wait_exit "$FETCH_PID" 30 || fail "fetch did not exit within 30 s of SIGTERM"
((EXIT_STATUS == 0)) || fail "fetch exited $EXIT_STATUS after SIGTERM on a complete volume"
[[ ! -e $SOCK ]] || fail "fetch left its socket $SOCK behind"
cmp "$T/src.img" "$T/out.img" || fail "image differs from the source: a rejected or partial write reached it"
