#!/bin/bash
# SPDX-License-Identifier: ISC
# Checks: FLUSH holds across connections and survives a crash. One qemu-io connection (kept
# open, so its own close-time flush never happens) writes into chunks that have not arrived (a
# whole chunk, a partial chunk, the short last chunk) and into one that has; a second qemu-io
# connection sends FLUSH; then fetch is killed with SIGKILL. The image file must hold the writes
# and the state file must mark those chunks local; a resumed fetch (exporting on TCP, checked with
# qemu-img compare over nbd://) must complete without overwriting them: the image equals the
# source with the writes applied. (SIGKILL keeps the page cache: this checks that FLUSH replies
# after data and chunk state reached the files, not that fdatasync ran.)
# fast
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh" "$@"

command -v qemu-io >/dev/null || fail "qemu-io not installed (tools/install-deps.sh)"

MIB=12
TAIL=12345
SIZE=$((MIB * 1048576 + TAIL))
CH=$((256 * 1024))
NCHUNKS=$(((SIZE + CH - 1) / CH))
make_image "$T/src.img" "$MIB" "$TAIL"
cp --sparse=always "$T/src.img" "$T/model.img"
keygen "$T/key"
# ~8 MiB of data at 1 MiB/s, in order: the last chunks arrive after several seconds.
start_seed -k "$T/key" --rate-limit 1M "$T/src.img"

SOCK=$T/crash.sock
start_export "$SOCK"
# The socket and the image are the VM's disk: for their owner only.
[[ $(stat -c %a "$SOCK") == 600 ]] || fail "the NBD socket is mode $(stat -c %a "$SOCK"), not 600"
[[ $(stat -c %a "$T/out.img") == 600 ]] || fail "the image is mode $(stat -c %a "$T/out.img"), not 600"

# same_range OFF LEN: the image file and the model agree on [OFF, OFF+LEN).
same_range() {
	cmp -s <(tail -c +$(($1 + 1)) "$T/out.img" | head -c "$2") \
		<(tail -c +$(($1 + 1)) "$T/model.img" | head -c "$2")
}

WRITES=(
	"$((44 * CH)) $CH 0xc1"          # a whole chunk that has not arrived
	"$((47 * CH + 5000)) 10000 0xc2" # part of a chunk that has not arrived
	"$((SIZE - 4000)) 4000 0xc3"     # the end of the short last chunk, not arrived
	"$((0 * CH + 100)) 3000 0xc4"    # a chunk that has arrived (or is about to)
)
for c in 44 47 $((NCHUNKS - 1)); do
	[[ $(chunk_state "$c") == 0 ]] || fail "chunk $c arrived before the writes (rate limit not applied?)"
done

# Connection A: an interactive qemu-io fed through a FIFO, left open until after the crash.
mkfifo "$T/writer.fifo"
exec 7<>"$T/writer.fifo"
# (Not bg_start: a background command inside a function gets /dev/null as stdin.)
qemu-io -f raw "$NBD_URI" <"$T/writer.fifo" >"$T/writer.log" 2>&1 &
WRITER_PID=$!
PIDS+=("$WRITER_PID")
# qemu-io reads a piped stdin with fgets() only when poll() says it is readable: two commands
# that arrive together leave the second in stdio's buffer, never run. So each write is sent
# only once the one before it is done.
nwrote() { grep -c '^\(qemu-io> \)*wrote ' "$T/writer.log"; }
n=0
for w in "${WRITES[@]}"; do
	read -r off len byte <<<"$w"
	echo "write -P $byte $off $len" >&7
	model_write "$off" "$len" "$byte"
	n=$((n + 1))
	for ((i = 0; i < 600; i++)); do
		(($(nwrote) >= n)) && break
		kill -0 "$WRITER_PID" 2>/dev/null || fail "the writing qemu-io exited: $(cat "$T/writer.log")"
		sleep 0.1
	done
	(($(nwrote) >= n)) || fail "write $n ($byte at $off+$len) did not complete within 60 s: $(cat "$T/writer.log")"
done
grep -Eqi 'fail|error' "$T/writer.log" && fail "qemu-io write failed: $(cat "$T/writer.log")"

# Connection B: FLUSH. It must cover A's completed writes (NBD_FLAG_CAN_MULTI_CONN).
run_cmd flush qemu-io -f raw -c flush "$NBD_URI"
((RC == 0)) || fail "qemu-io flush exited $RC: $(cat "$T/flush.out" "$T/flush.err")"
grep -q 'volume complete and verified' "$T/fetch.log" && note "the volume completed before the crash (weaker test)"
kill -KILL "$FETCH_PID"
{ wait_exit "$FETCH_PID" 10; } 2>/dev/null || fail "fetch survived SIGKILL"
exec 7>&- # the writer sees EOF and quits
stop_pid "$WRITER_PID"

for w in "${WRITES[@]}"; do
	read -r off len byte <<<"$w"
	same_range "$off" "$len" || fail "after kill -9: the flushed write of $byte at $off+$len is not in the image file"
	c=$((off / CH))
	[[ $(chunk_state "$c") == 3 ]] || fail "after kill -9: chunk $c (written, flushed) is not marked local in the state file (state $(chunk_state "$c"))"
done
note "after kill -9 the image holds every flushed write"

# Resume, exporting over TCP this time: the fetch completes without overwriting the local
# writes, and a client on TCP sees the model.
bg_start "$T/resume.log" "$P2PVBD" fetch --no-progress -e 127.0.0.1:0 --tls=off "$URI" "$T/out.img"
FETCH_PID=$BG_PID
wait_for_line "$T/resume.log" 'volume complete and verified' 120 "$FETCH_PID" "the resumed fetch exited before completing" "the resumed fetch did not complete within 120 s"
addr=$(sed -n 's/^exporting on \(127\.0\.0\.1:[0-9][0-9]*\)$/\1/p' "$T/resume.log")
[[ -n $addr && $addr != 127.0.0.1:0 ]] || fail "the resumed fetch did not print 'exporting on 127.0.0.1:PORT'"
run_cmd compare_tcp qemu-img compare -f raw -F raw "nbd://$addr" "$T/model.img"
((RC == 0)) || fail "qemu-img compare over TCP ($addr) exited $RC: $(cat "$T/compare_tcp.out" "$T/compare_tcp.err")"
kill -TERM "$FETCH_PID"
wait_exit "$FETCH_PID" 30 || fail "the resumed fetch did not exit within 30 s of SIGTERM"
((EXIT_STATUS == 0)) || fail "the resumed fetch exited $EXIT_STATUS after SIGTERM"
cmp "$T/out.img" "$T/model.img" || fail "after the resumed fetch the image is not the source with the writes applied"
