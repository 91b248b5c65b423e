#!/bin/bash
# SPDX-License-Identifier: ISC
# Checks: the NBD export of `fetch -e` against real clients while the volume arrives (rate-limited
# seed) and after: nbdinfo (export listed, structured replies, base:allocation, --map hole,zero),
# qemu-io write/read patterns with -P verification (partial writes into chunks not yet arrived,
# across a chunk boundary, at the very end of a short last chunk, a whole aligned chunk, write
# zeroes with and without unmap, discard, flush, FUA), qemu-img compare while arriving and after,
# nbdcopy (one and four connections), fio --ioengine=nbd random writes with --verify=crc32c and
# random reads. Every write is applied to a model (a copy of the source, written with dd); after
# SIGTERM the image file must equal the model byte for byte.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh" "$@"

for tool in nbdinfo nbdcopy qemu-io qemu-img fio; do
	command -v "$tool" >/dev/null || fail "$tool not installed (tools/install-deps.sh)"
done

MIB=24
TAIL=12345 # the last chunk is short (12345 bytes) and the size is not a multiple of 4096
SIZE=$((MIB * 1048576 + TAIL))
CH=$((256 * 1024)) # the seed's default chunk size
NCHUNKS=$(((SIZE + CH - 1) / CH))

make_image "$T/src.img" "$MIB" "$TAIL"
cp --sparse=always "$T/src.img" "$T/model.img"
keygen "$T/key"
# ~16 MiB of data at 1 MiB/s: chunks keep arriving, in order, for ~16 s.
start_seed -k "$T/key" --rate-limit 1M "$T/src.img"

SOCK=$T/clients.sock
start_export "$SOCK"

# chunks_missing: chunks not yet in the image.
chunks_missing() {
	state_records "$T/out.img" | awk '$1 == 0 { n++ } END { print n + 0 }'
}
complete() { grep -q 'volume complete and verified' "$T/fetch.log"; }

# qio NAME CMD...: run qemu-io on a fresh connection with each CMD (-c); fail on any error or
# pattern mismatch.
qio() {
	local name=$1 c args=()
	shift
	for c in "$@"; do
		args+=(-c "$c")
	done
	run_cmd "$name" qemu-io -f raw "${args[@]}" "$NBD_URI"
	if ((RC != 0)) || grep -Eqi 'fail|error|mismatch' "$T/$name.out" "$T/$name.err"; then
		fail "$name: qemu-io ${*} exited $RC: $(cat "$T/$name.out" "$T/$name.err" | head -c 1500)"
	fi
}

# pattern_write NAME OFF LEN BYTE [WRITE-FLAGS]: write BYTE (qemu-io -P), read it back on the
# same and on a new connection, and apply it to the model.
pattern_write() {
	local name=$1 off=$2 len=$3 byte=$4 flags=${5:-}
	qio "$name" "write $flags -P $byte $off $len" "read -P $byte $off $len"
	qio "$name-verify" "read -P $byte $off $len"
	model_write "$off" "$len" "$byte"
}

# ---- nbdinfo ---------------------------------------------------------------
run_cmd nbdinfo nbdinfo "$NBD_URI"
((RC == 0)) || fail "nbdinfo exited $RC: $(cat "$T/nbdinfo.err")"
grep -q 'using structured packets' "$T/nbdinfo.out" || fail "nbdinfo: no structured replies: $(cat "$T/nbdinfo.out")"
grep -Eq '^[[:space:]]+base:allocation$' "$T/nbdinfo.out" || fail "nbdinfo: base:allocation not among the contexts"
grep -q "export-size: $SIZE\$" "$T/nbdinfo.out" || fail "nbdinfo: export-size is not $SIZE"
grep -q 'can_multi_conn: true' "$T/nbdinfo.out" || fail "nbdinfo: no multi-conn"
run_cmd nbdinfo_list nbdinfo --list "$NBD_URI"
((RC == 0)) || fail "nbdinfo --list exited $RC: $(cat "$T/nbdinfo_list.err")"
grep -q '^export="":' "$T/nbdinfo_list.out" || fail "nbdinfo --list does not list the export: $(cat "$T/nbdinfo_list.out")"

# MiB 1 of the image is zero (make_image): a hole reading as zeroes; MiB 0 is data.
check_map() {
	run_cmd "$1" nbdinfo --map "$NBD_URI"
	((RC == 0)) || fail "$1: nbdinfo --map exited $RC: $(cat "$T/$1.err")"
	awk '$1 == 1048576 && $2 == 1048576 && $3 == 3 && $4 == "hole,zero" { ok = 1 } END { exit !ok }' \
		"$T/$1.out" || fail "$1: MiB 1 is not 'hole,zero': $(head -5 "$T/$1.out")"
	awk '$1 == 0 && $3 == 0 && $4 == "data" { ok = 1 } END { exit !ok }' "$T/$1.out" ||
		fail "$1: MiB 0 is not data: $(head -5 "$T/$1.out")"
}
check_map map1

# ---- qemu-io patterns, mostly into chunks at the end (they arrive last) ------
# Preconditions: the chunks the "not arrived yet" writes go to are still missing.
complete && fail "the volume completed before any write (rate limit not applied?)"
for c in 84 85 86 92 93 94 $((NCHUNKS - 1)); do
	[[ $(chunk_state "$c") == 0 ]] || fail "chunk $c already arrived before the writes (rate limit not applied?)"
done
note "$(chunks_missing) of $NCHUNKS chunks missing before the writes"

# Partial write into a chunk that has not arrived (the chunk is fetched first, then written).
pattern_write partial $((92 * CH + 1000)) 5000 0x11
# Across the boundary of chunks 84 and 85, neither arrived yet.
pattern_write boundary $((85 * CH - 3000)) 7000 0x22
# The last 777 bytes of the image (the short last chunk, not arrived yet).
pattern_write end $((SIZE - 777)) 777 0x33
# A whole aligned chunk (no fetch needed).
pattern_write whole $((94 * CH)) "$CH" 0x44
# Write zeroes inside a missing chunk: with NO_HOLE (write -z) and allowing unmap (write -z -u).
qio zeroes "write -z $((93 * CH + 4096)) 65536" "read -P 0 $((93 * CH + 4096)) 65536"
model_write $((93 * CH + 4096)) 65536 0
qio zeroes_unmap "write -z -u $((93 * CH + 131072)) 8192" "read -P 0 $((93 * CH + 131072)) 8192"
model_write $((93 * CH + 131072)) 8192 0
qio zeroes_verify "read -P 0 $((93 * CH + 4096)) 65536" "read -P 0 $((93 * CH + 131072)) 8192"
# Discard a whole chunk of random data (this server zeroes discarded ranges; checked and modelled).
qio discard "discard $((86 * CH)) $CH" "read -P 0 $((86 * CH)) $CH"
model_write $((86 * CH)) "$CH" 0
# FUA write (qemu-io write -f) across chunks 80 and 81, then an explicit flush.
pattern_write fua $((80 * CH + 100)) 300000 0x55 -f
qio flush "flush"
# Into a zero region (MiB 4): the chunk becomes data.
pattern_write zero_region $((4 * 1048576 + 12345)) 4096 0x66
# Two overlapping writes on one connection: the later wins.
qio overlap "write -P 0x77 $((2 * 1048576)) 65536" "write -P 0x78 $((2 * 1048576 + 4096)) 4096" \
	"read -P 0x77 $((2 * 1048576)) 4096" "read -P 0x78 $((2 * 1048576 + 4096)) 4096" \
	"read -P 0x77 $((2 * 1048576 + 8192)) 57344"
model_write $((2 * 1048576)) 65536 0x77
model_write $((2 * 1048576 + 4096)) 4096 0x78

# ---- qemu-img compare while chunks are still arriving --------------------------
missing=$(chunks_missing)
complete && fail "the volume completed before the first compare (rate limit not applied?)"
((missing > 0)) || fail "no chunk missing before the first compare"
note "qemu-img compare with $missing chunks missing"
run_cmd compare1 qemu-img compare -f raw -F raw "$NBD_URI" "$T/model.img"
((RC == 0)) || fail "qemu-img compare (while arriving) exited $RC: $(cat "$T/compare1.out" "$T/compare1.err")"
# A compare must be able to fail: the source differs from the export now.
run_cmd compare_neg qemu-img compare -f raw -F raw "$NBD_URI" "$T/src.img"
((RC == 1)) || fail "qemu-img compare of the export with the unmodified source exited $RC, expected 1"

# ---- after completion --------------------------------------------------------
for ((i = 0; i < 1200; i++)); do
	complete && break
	kill -0 "$FETCH_PID" 2>/dev/null || fail "fetch exited before completing"
	sleep 0.1
done
complete || fail "volume not complete within 120 s"
kill -0 "$FETCH_PID" 2>/dev/null || fail "fetch exited after completion (it must keep serving)"
run_cmd compare2 qemu-img compare -f raw -F raw "$NBD_URI" "$T/model.img"
((RC == 0)) || fail "qemu-img compare (complete) exited $RC: $(cat "$T/compare2.out" "$T/compare2.err")"
check_map map2

# nbdcopy of the whole export, with one and with four connections.
run_cmd nbdcopy1 nbdcopy "$NBD_URI" "$T/copy1.img"
((RC == 0)) || fail "nbdcopy exited $RC: $(cat "$T/nbdcopy1.err")"
cmp "$T/copy1.img" "$T/model.img" || fail "nbdcopy of the export differs from the model"
run_cmd nbdcopy4 nbdcopy --connections=4 --requests=16 "$NBD_URI" "$T/copy4.img"
((RC == 0)) || fail "nbdcopy --connections=4 exited $RC: $(cat "$T/nbdcopy4.err")"
cmp "$T/copy4.img" "$T/model.img" || fail "nbdcopy --connections=4 of the export differs from the model"
run_cmd nbdcopy_null nbdcopy --connections=4 "$NBD_URI" null:
((RC == 0)) || fail "nbdcopy --connections=4 to null: exited $RC: $(cat "$T/nbdcopy_null.err")"
rm -f "$T/copy1.img" "$T/copy4.img"

# ---- fio --ioengine=nbd ------------------------------------------------------
# Random 4 KiB writes over MiB 8..11 with crc32c verification (read back by fio), then a
# verify-only pass (random reads checking every block), then random reads over the export.
# fio's data is not reproducible here, so afterwards the region is copied from the export into
# the model (fio's own verification vouches for it) and the rest of the image is still compared.
FIO_OFF=$((8 * 1048576))
FIO_LEN=$((4 * 1048576))
fio_common=(--ioengine=nbd "--uri=$NBD_URI" --bs=4k --offset="$FIO_OFF" --size="$FIO_LEN"
	--verify=crc32c --verify_state_save=0 --randrepeat=1 --randseed=4242 --group_reporting)
run_cmd fio_write fio --name=randwrite --rw=randwrite --iodepth=16 --do_verify=1 \
	--verify_fatal=1 "${fio_common[@]}"
((RC == 0)) || fail "fio random writes with verify exited $RC: $(tail -20 "$T/fio_write.out") $(cat "$T/fio_write.err")"
grep -q 'err= 0' "$T/fio_write.out" || fail "fio random writes: errors: $(grep err= "$T/fio_write.out")"
run_cmd fio_verify fio --name=randwrite --rw=randwrite --iodepth=16 --verify_only \
	--verify_fatal=1 "${fio_common[@]}"
((RC == 0)) || fail "fio verify-only pass exited $RC: $(tail -20 "$T/fio_verify.out") $(cat "$T/fio_verify.err")"
grep -Eq 'verify.*(mismatch|bad)' "$T/fio_verify.out" "$T/fio_verify.err" && fail "fio verify-only pass: $(grep -Ei verify "$T/fio_verify.err" | head -5)"
run_cmd fio_read fio --name=randread --ioengine=nbd "--uri=$NBD_URI" --rw=randread --bs=4k \
	--iodepth=32 --size=$((MIB * 1048576)) --io_size=32m --numjobs=2 --group_reporting
((RC == 0)) || fail "fio random reads exited $RC: $(tail -20 "$T/fio_read.out") $(cat "$T/fio_read.err")"
grep -q 'err= 0' "$T/fio_read.out" || fail "fio random reads: errors: $(grep err= "$T/fio_read.out")"
run_cmd nbdcopy_fio nbdcopy "$NBD_URI" "$T/copy_fio.img"
((RC == 0)) || fail "nbdcopy after fio exited $RC: $(cat "$T/nbdcopy_fio.err")"
cmp -s "$T/copy_fio.img" "$T/model.img" && fail "fio's writes changed nothing in the export"
dd if="$T/copy_fio.img" of="$T/model.img" bs=1M skip=8 seek=8 count=4 conv=notrunc status=none
cmp "$T/copy_fio.img" "$T/model.img" || fail "after fio, the export differs from the model outside fio's region"
rm -f "$T/copy_fio.img"

# ---- stop: the image file must be the model ---------------------------------------
kill -0 "$FETCH_PID" 2>/dev/null || fail "fetch died"
kill -TERM "$FETCH_PID"
wait_exit "$FETCH_PID" 30 || fail "fetch did not exit within 30 s of SIGTERM"
((EXIT_STATUS == 0)) || fail "fetch exited $EXIT_STATUS after SIGTERM on a complete volume"
cmp "$T/out.img" "$T/model.img" || fail "the image file differs from the source with the writes applied"
cmp -s "$T/out.img" "$T/src.img" && fail "the image file equals the source: no write reached it"
note "image file equals the model ($(chunks_missing) chunks missing in the state file)"
