#!/bin/bash
# Checks: seed -e exports the source image over NBD for a VM running at the source: reads return
# the image, writes (qemu-io) land in the image and survive a FLUSH, and every chunk they touch is
# dirty: never served to a destination at its old hash (the seed's have-map leaves them out, a
# request for one gets E_GENERATION; the fetch holds no byte of them, old or new), while every
# other chunk arrives verified. `p2pvbd status` on the control socket reports the dirty bytes.
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
python3 - "$T/st.out" $((3 * CHUNK)) <<'PY' || fail "status --json: $(cat "$T/st.out")"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["role"] == "seed", d
assert d["dirty_bytes"] == int(sys.argv[2]), d
assert d["chunks"] == 32 and d["chunk_size"] == 262144 and d["generation"] == 0, d
PY
run_cmd st2 "$P2PVBD" status "$CTL"
grep -q '^dirty: 768.0 KiB' "$T/st2.out" || fail "status text: $(cat "$T/st2.out")"
run_cmd st3 "$P2PVBD" status "$T/no-such.ctl"
((RC == 1)) || fail "status of a missing socket: rc $RC"
grep -q 'cannot connect' "$T/st3.err" || fail "status of a missing socket: $(cat "$T/st3.err")"
run_cmd st4 "$P2PVBD" status
((RC == 2)) || fail "status without a path: rc $RC, expected 2"

# A destination gets every other chunk, and none of the dirty ones (2, 9, 10).
run_cmd fetch "$P2PVBD" fetch --no-progress --give-up 5 --stats "$T/fetch.json" "$URI" "$T/out.img"
((RC == 1)) || fail "fetch should fail (3 chunks can never arrive at their signed hash), rc $RC"
for c in 2 9 10; do
	[[ $(chunk_state "$c") == 0 ]] || fail "dirty chunk $c is marked held at the destination"
	cmp -s <(dd if="$T/out.img" bs=$CHUNK skip="$c" count=1 status=none) <(head -c $CHUNK /dev/zero) ||
		fail "the destination holds bytes of dirty chunk $c"
done
total=$(stat_get "$T/fetch.json" chunks_total)
got=$(($(stat_get "$T/fetch.json" chunks_fetched) + $(stat_get "$T/fetch.json" chunks_zero)))
((got == total - 3)) || fail "fetched or zero: $got of $total chunks, expected all but the 3 dirty ones"
for ((c = 0; c < total; c++)); do
	case $c in 2 | 9 | 10) continue ;; esac
	cmp -s <(dd if="$T/out.img" bs=$CHUNK skip="$c" count=1 status=none) \
		<(dd if="$T/orig.img" bs=$CHUNK skip="$c" count=1 status=none) ||
		fail "chunk $c differs from the source"
done
stop_pid "$SEED_PID"
[[ ! -e $CTL ]] || fail "the control socket was not removed at exit"
grep -q 'the VM wrote 12.0 KiB into 3 chunks' "$T/seed.log" || fail "the seed did not report the VM's writes: $(tail -n 3 "$T/seed.log")"
note "PASS"
