#!/bin/bash
# SPDX-License-Identifier: ISC
# Checks: socket paths we are given are never destroyed: -e unix:PATH and --ctl PATH refuse a
# file that is not a socket (and leave it as it was) and a socket another process still accepts
# on ("in use"); a stale socket (its process was killed) is taken over; at exit a process removes
# only the socket it made, not one that replaced it.
# fast
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh" "$@"

make_image "$T/src.img" 4
keygen "$T/key"
start_seed -k "$T/key" --ctl "$T/seed.ctl" "$T/src.img"
SEED1=$SEED_PID

# A regular file given as the export socket or the control socket is refused and kept.
echo precious >"$T/f"
expect_rc 1 fetch_file "$P2PVBD" fetch --no-progress -e "unix:$T/f" "$URI" "$T/out.img"
err_mentions fetch_file "not a socket"
[[ $(cat "$T/f") == precious ]] || fail "fetch -e unix:FILE destroyed the file"
expect_rc 1 fetch_ctlfile "$P2PVBD" fetch --no-progress --ctl "$T/f" "$URI" "$T/out2.img"
err_mentions fetch_ctlfile "not a socket"
[[ $(cat "$T/f") == precious ]] || fail "fetch --ctl FILE destroyed the file"
expect_rc 1 seed_ctlfile "$P2PVBD" seed -k "$T/key" -l 127.0.0.1:0 --ctl "$T/f" "$T/src.img"
err_mentions seed_ctlfile "not a socket"
[[ $(cat "$T/f") == precious ]] || fail "seed --ctl FILE destroyed the file"
[[ ! -e $T/out.img && ! -e $T/out2.img ]] || fail "a refused fetch left an output behind"

# A socket another process listens on is in use: a second seed does not take it.
expect_rc 1 seed_inuse "$P2PVBD" seed -k "$T/key" -l 127.0.0.1:0 --ctl "$T/seed.ctl" "$T/src.img"
err_mentions seed_inuse "in use"
expect_rc 0 status1 "$P2PVBD" status "$T/seed.ctl"
grep -q '^seed of a' "$T/status1.out" || fail "the first seed lost its control socket"

# The same for an NBD export: a fetch exporting on a socket keeps it against a second fetch.
start_export "$T/nbd.sock"
expect_rc 1 export_inuse "$P2PVBD" fetch --no-progress -e "unix:$T/nbd.sock" "$URI" "$T/other.img"
err_mentions export_inuse "in use"
nbdinfo --size "$NBD_URI" >"$T/nbdinfo.out" 2>&1 || fail "the first fetch's export is gone: $(cat "$T/nbdinfo.out")"

# A stale socket (its seed was killed) is taken over.
kill -KILL "$SEED1"
wait "$SEED1" 2>/dev/null || true
[[ -S $T/seed.ctl ]] || fail "expected the killed seed's socket to stay behind"
start_seed -k "$T/key" --ctl "$T/seed.ctl" "$T/src.img"
SEED2=$SEED_PID
expect_rc 0 status2 "$P2PVBD" status "$T/seed.ctl"

# At exit a process removes only its own socket: SEED2's path is taken over by SEED3 (after
# someone removed it); SEED2's exit must leave SEED3's socket alone.
rm "$T/seed.ctl"
start_seed -k "$T/key" --ctl "$T/seed.ctl" "$T/src.img"
SEED3=$SEED_PID
stop_pid "$SEED2"
[[ -S $T/seed.ctl ]] || fail "a seed removed the control socket of another one at exit"
expect_rc 0 status3 "$P2PVBD" status "$T/seed.ctl"
stop_pid "$SEED3"
[[ ! -e $T/seed.ctl ]] || fail "a seed left its own control socket behind at exit"
