# SPDX-License-Identifier: ISC
# shellcheck shell=bash disable=SC2034
# Shared helpers for the integration tests (tests/integration/t_*.sh).
#
# Source it first thing in a test:   . "$(dirname "$0")/lib.sh" "$@"
#
# It sets:
#   P2PVBD   absolute path of the binary under test ($1, else the environment)
#   T        a private temporary directory, removed when the test exits
#   T_NAME   the test's name (its file name without .sh)
# and installs a trap that stops every background process the test started
# (see bg_start), even when the test fails or is interrupted.

set -euo pipefail

T_NAME=$(basename "$0" .sh)

P2PVBD=${1:-${P2PVBD:-}}
if [[ -z $P2PVBD ]]; then
	echo "usage: $0 PATH-TO-p2pvbd (or set P2PVBD)" >&2
	exit 2
fi
if [[ $P2PVBD != /* ]]; then
	P2PVBD=$PWD/$P2PVBD
fi
if [[ ! -x $P2PVBD ]]; then
	echo "$T_NAME: binary not found or not executable: $P2PVBD" >&2
	exit 1
fi
export P2PVBD

T=$(mktemp -d "${TMPDIR:-/tmp}/p2pvbd-${T_NAME}.XXXXXX")
# Default control sockets (seed/fetch --ctl) go into $T, so that a process the test kills with
# SIGKILL leaves nothing behind.
export XDG_RUNTIME_DIR=$T

# PIDs of background processes this test started; cleanup stops them all.
PIDS=()
# Set by start_seed.
SEED_PID=
URI=

# How long cleanup waits for a process after SIGTERM before SIGKILL.
CLEANUP_GRACE_S=${CLEANUP_GRACE_S:-5}

_cleanup_done=
cleanup() {
	[[ -n $_cleanup_done ]] && return 0
	_cleanup_done=1
	local pid i
	for pid in "${PIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${PIDS[@]}"; do
		for ((i = 0; i < CLEANUP_GRACE_S * 10; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			echo "$T_NAME: pid $pid ignored SIGTERM; sending SIGKILL" >&2
			kill -KILL "$pid" 2>/dev/null || true
		fi
		wait "$pid" 2>/dev/null || true
	done
	PIDS=()
	if [[ -n ${KEEP_TMP:-} ]]; then
		echo "$T_NAME: keeping $T" >&2
	else
		rm -rf "$T"
	fi
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM

# fail MSG...: report a failure (with the tail of every log in $T) and exit 1.
# The reason comes last, so that a runner showing the tail of the output shows it.
fail() {
	local f
	for f in "$T"/*.log "$T"/*.err; do
		[[ -s $f ]] || continue
		echo "--- last lines of $(basename "$f") ---" >&2
		tail -n 15 "$f" >&2
	done
	echo "FAIL: $T_NAME: $*" >&2
	# A benchmark case (tools/bench_lib.sh) reports this reason in its JSON failure line.
	[[ -z ${BENCH_FAIL_FILE:-} ]] || echo "$*" >"$BENCH_FAIL_FILE"
	exit 1
}

# note MSG...: progress message on stderr.
note() {
	echo "$T_NAME: $*" >&2
}

# bg_start LOG CMD ARGS...: run CMD in the background with stdout and stderr
# in LOG; remember its PID for cleanup and put it in BG_PID.
BG_PID=
bg_start() {
	local log=$1
	shift
	"$@" >"$log" 2>&1 &
	BG_PID=$!
	PIDS+=("$BG_PID")
}

# wait_for_file PATH TIMEOUT_S [PID]: wait until PATH exists and is not
# empty. Returns 1 on timeout, or at once if PID (when given) has exited.
wait_for_file() {
	local path=$1 timeout_s=$2 pid=${3:-} i
	for ((i = 0; i < timeout_s * 10; i++)); do
		[[ -s $path ]] && return 0
		if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
			[[ -s $path ]] && return 0
			return 1
		fi
		sleep 0.1
	done
	return 1
}

# wait_exit PID TIMEOUT_S: wait for a background process to exit; sets
# EXIT_STATUS to its exit status. Returns 1 if it is still running.
EXIT_STATUS=
wait_exit() {
	local pid=$1 timeout_s=$2 i
	for ((i = 0; i < timeout_s * 10; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -0 "$pid" 2>/dev/null && return 1
	EXIT_STATUS=0
	wait "$pid" || EXIT_STATUS=$?
	return 0
}

# wait_for_line LOG REGEX TIMEOUT_S PID GONE_MSG LATE_MSG: wait until LOG has a line matching
# REGEX (grep -E); fail with GONE_MSG if PID exits first, with LATE_MSG after TIMEOUT_S.
wait_for_line() {
	local log=$1 re=$2 timeout_s=$3 pid=$4 i
	for ((i = 0; i < timeout_s * 10; i++)); do
		grep -Eq -- "$re" "$log" && return 0
		kill -0 "$pid" 2>/dev/null || { grep -Eq -- "$re" "$log" && return 0; fail "$5"; }
		sleep 0.1
	done
	grep -Eq -- "$re" "$log" || fail "$6"
}

# stop_pid PID: stop one background process now (TERM, bounded wait, KILL).
stop_pid() {
	local pid=$1
	kill -TERM "$pid" 2>/dev/null || true
	if ! wait_exit "$pid" "$CLEANUP_GRACE_S"; then
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	fi
}

# Deterministic layout of test images: MiB number i holds random bytes when
# i % 3 != 1 and zeros otherwise; an optional tail (random) follows.
mib_is_random() { (($1 % 3 != 1)); }

# make_image PATH SIZE_MIB [TAIL_BYTES]: write a test image with the layout
# above. Zero regions are holes in PATH (the seed must not care).
make_image() {
	local path=$1 mib=$2 tail=${3:-0} i start
	rm -f "$path"
	truncate -s $((mib * 1048576 + tail)) "$path"
	i=0
	while ((i < mib)); do
		if mib_is_random "$i"; then
			start=$i
			while ((i < mib)) && mib_is_random "$i"; do
				i=$((i + 1))
			done
			dd if=/dev/urandom of="$path" bs=1M seek="$start" count=$((i - start)) \
				conv=notrunc iflag=fullblock status=none
		else
			i=$((i + 1))
		fi
	done
	if ((tail > 0)); then
		dd if=/dev/urandom of="$path" bs=1M seek="$mib" count="$tail" \
			conv=notrunc iflag=fullblock,count_bytes status=none
	fi
}

# nonzero_bytes SIZE_MIB TAIL_BYTES CHUNK_BYTES: bytes in the chunks of a
# make_image image that hold any non-zero byte (what a fetch must transfer).
nonzero_bytes() {
	local mib=$1 tail=$2 chunk=$3 size c nchunks off end m total=0 hit
	size=$((mib * 1048576 + tail))
	nchunks=$(((size + chunk - 1) / chunk))
	for ((c = 0; c < nchunks; c++)); do
		off=$((c * chunk))
		end=$((off + chunk))
		((end > size)) && end=$size
		hit=0
		if ((end > mib * 1048576)); then
			hit=1 # reaches into the random tail
		else
			for ((m = off / 1048576; m * 1048576 < end; m++)); do
				if mib_is_random "$m"; then
					hit=1
					break
				fi
			done
		fi
		((hit)) && total=$((total + end - off))
	done
	echo "$total"
}

# parse_size 64K|4M|1G|123: bytes.
parse_size() {
	local s=$1
	case $s in
	*K | *k) echo $((${s%?} * 1024)) ;;
	*M | *m) echo $((${s%?} * 1048576)) ;;
	*G | *g) echo $((${s%?} * 1073741824)) ;;
	*) echo $((s)) ;;
	esac
}

# keygen PATH: make an identity key (fails the test if keygen fails).
keygen() {
	"$P2PVBD" keygen -o "$1" >"$T/keygen.out" 2>&1 ||
		fail "keygen -o $1 failed: $(cat "$T/keygen.out")"
}

# start_seed ARGS...: start "p2pvbd seed ARGS" in the background on a free
# loopback port, log to $T/seed.log, wait (60 s at most) until it has
# written its URI, and set URI and SEED_PID. ARGS end with the image.
start_seed() {
	rm -f "$T/vol.uri"
	bg_start "$T/seed.log" "$P2PVBD" seed -l 127.0.0.1:0 --uri-file "$T/vol.uri" "$@"
	SEED_PID=$BG_PID
	if ! wait_for_file "$T/vol.uri" 60 "$SEED_PID"; then
		if kill -0 "$SEED_PID" 2>/dev/null; then
			fail "seed wrote no URI file within 60 s"
		fi
		fail "seed exited before writing its URI file"
	fi
	URI=$(head -n 1 "$T/vol.uri")
	[[ $URI == p2pvbd://* ]] || fail "URI file does not hold a p2pvbd:// URI: $URI"
}

# run_cmd NAME CMD ARGS...: run a command in the foreground with stdout in
# $T/NAME.out and stderr in $T/NAME.err (bounded by 120 s); sets RC.
RC=
run_cmd() {
	local name=$1
	shift
	RC=0
	timeout 120 "$@" >"$T/$name.out" 2>"$T/$name.err" || RC=$?
	if ((RC == 124)); then
		fail "$name: '$*' did not finish within 120 s"
	fi
}

# expect_rc WANT NAME CMD ARGS...: run_cmd and fail unless it exits WANT.
expect_rc() {
	local want=$1 name=$2
	shift 2
	run_cmd "$name" "$@"
	((RC == want)) || fail "$name: '$*' exited $RC, expected $want"
}

# err_mentions NAME REGEX: fail unless $T/NAME.err matches REGEX (ignoring case).
err_mentions() {
	grep -Eqi -- "$2" "$T/$1.err" ||
		fail "$1: stderr does not mention /$2/: $(head -c 2000 "$T/$1.err")"
}

# stat_get FILE KEY: one value from a fetch --stats JSON file.
stat_get() {
	python3 - "$1" "$2" <<'EOF'
import json, sys
with open(sys.argv[1]) as f:
    d = json.load(f)
v = d[sys.argv[2]]
if isinstance(v, bool) or not isinstance(v, (int, float)):
    sys.exit("%s is not a number: %r" % (sys.argv[2], v))
print(v)
EOF
}

# check_stats FILE: fail unless FILE is a --stats JSON object with every field.
check_stats() {
	local k
	[[ -s $1 ]] || fail "stats file $1 missing or empty"
	for k in chunks_total chunks_zero chunks_resumed chunks_fetched bytes_fetched bad_pieces seconds; do
		stat_get "$1" "$k" >/dev/null || fail "stats file $1: bad or missing $k: $(cat "$1")"
	done
}

# state_records PATH: the records of PATH's state file, one line per chunk, its state first
# (PROTOCOL.md §12: a 64-byte header, one little-endian u64 per chunk with the state in the low
# byte, then a 16-byte content id per chunk).
state_records() {
	local sf=$1.p2pvbd-state n
	n=$((($(stat -c %s "$sf") - 64) / 24))
	od -An -v -tu1 -j64 -N$((8 * n)) -w8 "$sf"
}

# state_present PATH: number of chunks marked present in PATH's state file.
state_present() {
	[[ -f $1.p2pvbd-state ]] || {
		echo 0
		return
	}
	state_records "$1" | awk '$1 == 1 { n++ } END { print n + 0 }'
}

# apparent and allocated sizes of a file, in KiB.
apparent_kib() { echo $(($(stat -c %s "$1") / 1024)); }
allocated_kib() { du -k "$1" | cut -f1; }

# start_export SOCK [FETCH-OPTIONS...]: start "p2pvbd fetch --no-progress -e unix:SOCK
# OPTIONS $URI $T/out.img" in the background (log in $T/fetch.log) and wait (30 s at most)
# until it exports. Sets FETCH_PID and NBD_URI.
FETCH_PID=
NBD_URI=
start_export() {
	local sock=$1 i
	shift
	NBD_URI="nbd+unix:///?socket=$sock"
	bg_start "$T/fetch.log" "$P2PVBD" fetch --no-progress -e "unix:$sock" "$@" "$URI" "$T/out.img"
	FETCH_PID=$BG_PID
	for ((i = 0; i < 300; i++)); do
		grep -q '^exporting on ' "$T/fetch.log" && break
		kill -0 "$FETCH_PID" 2>/dev/null || fail "fetch exited before exporting"
		sleep 0.1
	done
	grep -qx "exporting on unix:$sock" "$T/fetch.log" ||
		fail "fetch did not print 'exporting on unix:$sock' within 30 s"
}

# chunk_state N: the state byte of chunk N in $T/out.img's state file (0 missing, 1 present,
# 2 zero, 3 local).
chunk_state() {
	od -An -v -tu1 -j$((64 + $1 * 8)) -N1 "$T/out.img.p2pvbd-state" | tr -d ' '
}

# model_write OFF LEN BYTE: apply a write of LEN bytes of BYTE at OFF to the model $T/model.img
# (BYTE 0 for zeroes and discards).
model_write() {
	python3 - "$T/model.img" "$1" "$2" "$3" <<'PY'
import sys
path, off, n, b = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4], 0)
with open(path, "r+b") as f:
    f.seek(off)
    f.write(bytes([b]) * n)
PY
}

# need_badpeer: the misbehaving peer (tests/tools/badpeer.c) built next to $P2PVBD, as $BADPEER.
BADPEER=
need_badpeer() {
	BADPEER=$(dirname "$P2PVBD")/badpeer
	[[ -x $BADPEER ]] || fail "badpeer not built next to $P2PVBD"
}

# start_bad MODE [IMAGE]: start a misbehaving peer (build/badpeer, $BADPEER) for the seed's
# volume, serving IMAGE (default $T/src.img; live modes change IMAGE, so give them a copy); sets
# BAD (host:port) and BAD_PID. Its log is $T/bad-MODE.log.
start_bad() {
	local img=${2:-$T/src.img}
	rm -f "$T/bad.port"
	bg_start "$T/bad-$1.log" "$BADPEER" --mode "$1" --uri "$URI" -k "$T/key" \
		--port-file "$T/bad.port" "$img"
	wait_for_file "$T/bad.port" 30 "$BG_PID" || fail "badpeer $1 did not start"
	BAD=127.0.0.1:$(cat "$T/bad.port")
	BAD_PID=$BG_PID
}

# uri_with PEER...: the seed's URI with its peer list replaced.
uri_with() {
	local u=${URI%%&peer=*} p
	for p in "$@"; do
		u="$u&peer=$p"
	done
	echo "$u"
}

# need_qemu_system: make sure qemu-system-x86_64 is there, installing qemu-system-x86 as root
# if it is not; exits the test with 0 ("SKIP") only when it cannot be had.
need_qemu_system() {
	command -v qemu-system-x86_64 >/dev/null && return 0
	note "qemu-system-x86_64 missing: installing qemu-system-x86"
	if ((EUID == 0)); then
		{ apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
			--no-install-recommends qemu-system-x86; } >"$T/apt.out" 2>&1 || true
	fi
	if ! command -v qemu-system-x86_64 >/dev/null; then
		note "SKIP: qemu-system-x86_64 is not installed and cannot be installed here"
		exit 0
	fi
}

# start_tracker [ARGS...]: start "p2pvbd-tracker -l 127.0.0.1:0 ARGS" (the tracker beside
# $P2PVBD) in the background, log in $T/tracker.log, and wait (10 s at most) until it says its
# port. Sets TRACKER, TPID, TPORT and TURL (http://127.0.0.1:TPORT).
TRACKER=$(dirname "$P2PVBD")/p2pvbd-tracker
TPID=
TPORT=
TURL=
start_tracker() {
	local i
	[[ -x $TRACKER ]] || fail "tracker binary not found: $TRACKER"
	bg_start "$T/tracker.log" "$TRACKER" -l 127.0.0.1:0 "$@"
	TPID=$BG_PID
	TPORT=
	for ((i = 0; i < 100; i++)); do
		TPORT=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$T/tracker.log")
		[[ -n $TPORT ]] && break
		kill -0 "$TPID" 2>/dev/null || fail "the tracker exited at start: $(tail -3 "$T/tracker.log")"
		sleep 0.1
	done
	[[ -n $TPORT ]] || fail "the tracker printed no 'listening on' line"
	TURL=http://127.0.0.1:$TPORT
}
