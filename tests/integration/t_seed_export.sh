#!/bin/bash
# SPDX-License-Identifier: ISC
# Checks: seed -e exports the source image over NBD for a VM running at the source: reads return
# the image, writes (qemu-io) land in the image and survive a FLUSH, the chunks they touch are
# dirty (`p2pvbd status` reports them) and then published as new generations; a destination
# fetching meanwhile completes each generation but ends only after `p2pvbd ctl … freeze`
# published the final one, with the source's image byte for byte and a receipt for it. After
# the freeze the VM's writes are refused; `ctl … thaw` takes them again.
# fast
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh" "$@"
command -v qemu-io >/dev/null || fail "qemu-io missing (tools/install-deps.sh installs qemu-utils)"
CHUNK=$((256 * 1024))

make_image "$T/src.img" 8
cp "$T/src.img" "$T/orig.img"
keygen "$T/src.key"
SOCK=$T/src.sock
CTL=$T/seed.ctl
start_seed -k "$T/src.key" -e "unix:$SOCK" --ctl "$CTL" "$T/src.img"
for ((i = 0; i < 100; i++)); do
	grep -qx "exporting on unix:$SOCK" "$T/seed.log" && break
	sleep 0.1
done
grep -qx "exporting on unix:$SOCK" "$T/seed.log" || fail "seed -e did not print 'exporting on unix:$SOCK'"
[[ $(stat -c %a "$SOCK") == 600 ]] || fail "the export socket is not mode 0600"
NBD="nbd+unix:///?socket=$SOCK"

# Reads through the export are the image.
run_cmd read qemu-img compare -f raw -F raw "$T/orig.img" "$NBD"
((RC == 0)) || fail "qemu-img compare of the export and the image failed: $(cat "$T/read.out" "$T/read.err")"

# Writes: 4 KiB into chunk 2, and 8 KiB across the boundary of chunks 9 and 10.
run_cmd write qemu-io -f raw "$NBD" -c "write -P 0xab $((2 * CHUNK + 4096)) 4k" \
	-c "write -P 0xcd $((10 * CHUNK - 4096)) 8k" -c flush \
	-c "read -P 0xab $((2 * CHUNK + 4096)) 4k" -c "read -P 0xcd $((10 * CHUNK - 4096)) 8k"
((RC == 0)) || fail "qemu-io writes through seed -e failed: $(cat "$T/write.out" "$T/write.err")"
grep -q 'Pattern verification failed' "$T/write.out" && fail "read back other bytes than written"
# The image file itself holds them.
python3 - "$T/src.img" $((2 * CHUNK + 4096)) $((10 * CHUNK - 4096)) <<'PY' || fail "the image does not hold the writes"
import sys
with open(sys.argv[1], "rb") as f:
    f.seek(int(sys.argv[2])); assert f.read(4096) == b"\xab" * 4096
    f.seek(int(sys.argv[3])); assert f.read(8192) == b"\xcd" * 8192
PY

# The control socket: 3 dirty chunks.
[[ $(stat -c %a "$CTL") == 700 || $(stat -c %a "$CTL") == 600 ]] || fail "the control socket is open to others"
run_cmd st "$P2PVBD" status --json "$CTL"
((RC == 0)) || fail "p2pvbd status --json failed: $(cat "$T/st.err")"
# Dirty chunks, or (a round is 100 ms) already published: the 3 chunks are one or the other.
python3 - "$T/st.out" $((3 * CHUNK)) <<'PY' || fail "status --json: $(cat "$T/st.out")"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["role"] == "seed" and not d["final"], d
cs = 262144
assert d["dirty_bytes"] % cs == 0 and d["dirty_bytes"] <= int(sys.argv[2]), d
assert d["dirty_bytes"] == int(sys.argv[2]) or d["generation"] >= 1, d
assert d["chunks"] == 32 and d["chunk_size"] == 262144, d
PY
run_cmd st2 "$P2PVBD" status "$CTL"
grep -Eq '^dirty: ([0-9.]+ KiB|0 B) ' "$T/st2.out" || fail "status text: $(cat "$T/st2.out")"
run_cmd st3 "$P2PVBD" status "$T/no-such.ctl"
((RC == 1)) || fail "status of a missing socket: rc $RC"
grep -q 'cannot connect' "$T/st3.err" || fail "status of a missing socket: $(cat "$T/st3.err")"
run_cmd st4 "$P2PVBD" status
((RC == 2)) || fail "status without a path: rc $RC, expected 2"

# A destination fetches while the VM writes. Within a round (100 ms) the seed has published the
# written chunks as generation 1: nothing is dirty any more.
for ((i = 0; i < 50; i++)); do
	"$P2PVBD" status --json "$CTL" >"$T/st5.out" 2>/dev/null || true
	grep -q '"dirty_bytes":0,' "$T/st5.out" && break
	sleep 0.1
done
python3 - "$T/st5.out" <<'PY' || fail "the writes were not published: $(cat "$T/st5.out")"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["dirty_bytes"] == 0 and d["generation"] >= 1 and not d["final"], d
PY
bg_start "$T/fetch.log" "$P2PVBD" fetch --no-progress --ctl "$T/fetch.ctl" --stats "$T/fetch.json" \
	"$URI" "$T/out.img"
FETCH_PID=$BG_PID
for ((i = 0; i < 300; i++)); do
	"$P2PVBD" status --json "$T/fetch.ctl" 2>/dev/null | grep -q '"volume_known":true' && break
	sleep 0.1
done
# More writes while it fetches: chunk 5, and zeroes over all of chunk 7 (a zero chunk now).
run_cmd write2 qemu-io -f raw "$NBD" -c "write -P 0x5e $((5 * CHUNK + 100)) 1000" \
	-c "write -z $((7 * CHUNK)) $CHUNK" -c flush
((RC == 0)) || fail "second writes failed: $(cat "$T/write2.out" "$T/write2.err")"
# Published (nothing dirty), the source is at generation GEN >= 2.
for ((i = 0; i < 50; i++)); do
	"$P2PVBD" status --json "$CTL" >"$T/st7.out" 2>/dev/null || true
	grep -q '"dirty_bytes":0,' "$T/st7.out" && break
	sleep 0.1
done
GEN=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["dirty_bytes"] == 0, d; print(d["generation"])' "$T/st7.out") ||
	fail "the second writes were not published: $(cat "$T/st7.out")"
((GEN >= 2)) || fail "source at generation $GEN after two rounds of writes"
# The destination completes that generation but does not end: no generation is final.
for ((i = 0; i < 300; i++)); do
	"$P2PVBD" status --json "$T/fetch.ctl" >"$T/fst.out" 2>/dev/null || true
	grep -q '"complete":true' "$T/fst.out" && grep -q "\"generation\":$GEN," "$T/fst.out" && break
	sleep 0.1
done
grep -q '"complete":true,"final":false' "$T/fst.out" || fail "fetch status: $(cat "$T/fst.out")"
sleep 0.5
kill -0 "$FETCH_PID" 2>/dev/null || fail "fetch ended before the source froze"

# The freeze: the final generation; the fetch then sends its receipt and ends.
run_cmd freeze "$P2PVBD" ctl "$CTL" freeze
((RC == 0)) && grep -q '^frozen at generation ' "$T/freeze.out" || fail "ctl freeze: rc $RC: $(cat "$T/freeze.out" "$T/freeze.err")"
wait_exit "$FETCH_PID" 30 || fail "fetch did not end after the freeze"
((EXIT_STATUS == 0)) || fail "fetch exited $EXIT_STATUS: $(tail -n 5 "$T/fetch.log")"
cmp "$T/src.img" "$T/out.img" || fail "the destination differs from the source at the freeze"
(($(stat_get "$T/fetch.json" deltas) >= 2)) || fail "fetch applied fewer than 2 deltas"
grep -q "holds generation $((GEN + 1)) complete" "$T/seed.log" ||
	fail "no receipt for the final generation $((GEN + 1)): $(tail -n 3 "$T/seed.log")"

# Frozen: the VM's writes are refused (an error, never a lost write), reads still work.
run_cmd write3 qemu-io -f raw "$NBD" -c "write -P 0x11 0 4k"
grep -q 'write failed' "$T/write3.out" "$T/write3.err" || fail "a write after the freeze was not refused: $(cat "$T/write3.out")"
cmp "$T/src.img" "$T/out.img" || fail "a refused write changed the image"
# Thawed (a migration rolled back): writes again, a generation that is not final.
run_cmd thaw "$P2PVBD" ctl "$CTL" thaw
grep -qx thawed "$T/thaw.out" || fail "ctl thaw: $(cat "$T/thaw.out" "$T/thaw.err")"
run_cmd write4 qemu-io -f raw "$NBD" -c "write -P 0x22 0 4k"
((RC == 0)) && ! grep -q 'write failed' "$T/write4.out" || fail "a write after thaw failed"
run_cmd st6 "$P2PVBD" status --json "$CTL"
grep -q '"final":false' "$T/st6.out" || fail "thawed but still final: $(cat "$T/st6.out")"
run_cmd ctlbad "$P2PVBD" ctl "$CTL" explode
((RC == 2)) || fail "ctl with an unknown command: rc $RC"

stop_pid "$SEED_PID"
[[ ! -e $CTL ]] || fail "the control socket was not removed at exit"
note "PASS"
