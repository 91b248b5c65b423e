#!/bin/bash
# SPDX-License-Identifier: ISC
# Checks (DESIGN.md rule 9, PROTOCOL.md §4.6): connections that never authenticate can neither
# lock real peers out of a seed nor hold it without end (tests/tools/halfopen.py attacks).
#   (a) 70 idle connections from 70 addresses (127.0.1.1-70), each reopened when closed: a real
#       fetch still completes, because a new handshake takes the place of the oldest one (the old
#       code let 64 idle connections take every place until --timeout);
#   (b) 24 slow-loris connections from 24 addresses, each sending a HELLO a byte a second, are
#       all dropped by the handshake's deadline (seed --timeout 3: 3 s) long before their HELLO
#       is in, while a real fetch completes (the old code restarted its timeout at every byte);
#   (c) 10 idle connections from one address (127.0.0.3): the last 6 are refused at once
#       (PREAUTH_PER_ADDR is 4) while the first 4 stay, status --json counts 6 refused, and a
#       real fetch from 127.0.0.1 completes meanwhile.
#   (d) the same against a fetch's own listener (a --mirror fetch with -l): 10 idle connections
#       from 127.0.0.4, the last 6 refused, while another fetch gets chunks from the mirror.
# fast
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh" "$@"

HALFOPEN=$(cd "$(dirname "$0")/../tools" && pwd)/halfopen.py

make_image "$T/src.img" 8
cp "$T/src.img" "$T/src2.img"
keygen "$T/key"

# seed_up NAME IMAGE ARGS...: start a seed (log $T/NAME.log, control socket $T/NAME.ctl) and
# wait for its URI; sets S_URI and S_PORT.
seed_up() {
	local name=$1 img=$2
	shift 2
	bg_start "$T/$name.log" "$P2PVBD" seed -l 127.0.0.1:0 --uri-file "$T/$name.uri" \
		--ctl "$T/$name.ctl" "$@" -k "$T/key" "$img"
	wait_for_file "$T/$name.uri" 60 "$BG_PID" || fail "$name wrote no URI file"
	S_URI=$(head -n 1 "$T/$name.uri")
	[[ $S_URI =~ peer=127\.0\.0\.1:([0-9]+) ]] || fail "no peer=127.0.0.1:PORT in $S_URI"
	S_PORT=${BASH_REMATCH[1]}
}

# jget FILE EXPR: evaluate a Python expression over the JSON object d in FILE.
jget() {
	python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' \
		"$1" "$2"
}

# status NAME: `status --json` of seed NAME into $T/NAME.st.
status() {
	"$P2PVBD" status --json "$T/$1.ctl" >"$T/$1.st" 2>"$T/$1.st.err" ||
		fail "status --json of $1: $(cat "$T/$1.st.err")"
}

# wait_state FILE EXPR SECS: wait until FILE (halfopen.py's state) makes EXPR true.
wait_state() {
	local i
	for ((i = 0; i < $3 * 10; i++)); do
		[[ -s $1 && $(jget "$1" "$2" 2>/dev/null) == True ]] && return 0
		sleep 0.1
	done
	return 1
}

seed_up s1 "$T/src.img"
URI1=$S_URI
PORT1=$S_PORT

# (a) Idle connections from 70 addresses, reopened as soon as they are closed.
note "(a) 70 idle connections, reopened when closed; then a fetch"
bg_start "$T/idle.log" python3 "$HALFOPEN" idle --port "$PORT1" --spread 127.0.1. --count 70 \
	--reopen --seconds 60 --state "$T/idle.json"
IDLE_PID=$BG_PID
wait_state "$T/idle.json" 'd["opened"] >= 70' 20 || fail "(a) the 70 connections did not open"
expect_rc 0 fetch-a "$P2PVBD" fetch -q --give-up 15 "$URI1" "$T/out-a.img"
cmp "$T/src.img" "$T/out-a.img" || fail "(a) the fetched image differs"
status s1
dropped=$(jget "$T/s1.st" 'd["handshakes_dropped"]')
note "(a) fetch done; $(jget "$T/idle.json" 'd["opened"]') connections opened, $dropped dropped for room"
((dropped > 0)) || fail "(a) no handshake was dropped for room: $(cat "$T/s1.st")"
stop_pid "$IDLE_PID"

# (c) Ten idle connections from one address: four may wait, six are refused at once.
note "(c) 10 idle connections from 127.0.0.3; a fetch meanwhile"
bg_start "$T/peraddr.log" python3 "$HALFOPEN" idle --port "$PORT1" --src 127.0.0.3 --count 10 \
	--seconds 8 --state "$T/peraddr.json"
PERADDR_PID=$BG_PID
wait_state "$T/peraddr.json" 'd["closed"] >= 6' 6 ||
	fail "(c) of 10 connections from one address, $(jget "$T/peraddr.json" 'd["closed"]') were refused, not 6"
expect_rc 0 fetch-c "$P2PVBD" fetch -q --give-up 15 "$URI1" "$T/out-c.img"
cmp "$T/src.img" "$T/out-c.img" || fail "(c) the fetched image differs"
[[ $(jget "$T/peraddr.json" 'sorted(d["closed_idx"])') == "[4, 5, 6, 7, 8, 9]" ]] ||
	fail "(c) closed were not the last 6 of 10: $(cat "$T/peraddr.json")"
status s1
refused=$(jget "$T/s1.st" 'd["handshakes_refused"]')
((refused == 6)) || fail "(c) status counts $refused handshakes refused, not 6: $(cat "$T/s1.st")"
stop_pid "$PERADDR_PID"

# (d) A fetch's own listener (-l) is guarded alike: a mirror of s1, then (c) against it.
note "(d) 10 idle connections from 127.0.0.4 to a mirror fetch's listener; a fetch from it"
bg_start "$T/mirror.log" "$P2PVBD" fetch --no-progress --mirror -l 127.0.0.1:0 \
	--ctl "$T/mirror.ctl" "$URI1" "$T/mirror.img"
MIRROR_PID=$BG_PID
wait_for_line "$T/mirror.log" '^listening on 127\.0\.0\.1:[0-9]+$' 30 "$MIRROR_PID" \
	"(d) the mirror fetch exited" "(d) the mirror fetch did not listen within 30 s"
MPORT=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$T/mirror.log" | head -n 1)
bg_start "$T/peraddr-m.log" python3 "$HALFOPEN" idle --port "$MPORT" --src 127.0.0.4 --count 10 \
	--seconds 8 --state "$T/peraddr-m.json"
PERADDR_PID=$BG_PID
wait_state "$T/peraddr-m.json" 'd["closed"] >= 6' 6 ||
	fail "(d) of 10 connections to the mirror, $(jget "$T/peraddr-m.json" 'd["closed"]') were refused, not 6"
# A fetch that knows the mirror and the seed: destinations are asked before the source, so the
# mirror serves through its listener (its receipt still goes to the seed, which answers at once).
expect_rc 0 fetch-d "$P2PVBD" fetch -q --give-up 15 --stats "$T/d.stats" \
	"$URI1&peer=127.0.0.1:$MPORT" "$T/out-d.img"
cmp "$T/src.img" "$T/out-d.img" || fail "(d) the fetched image differs"
from_mirror=$(stat_get "$T/d.stats" bytes_from_peers)
((from_mirror > 0)) || fail "(d) the mirror served nothing through its listener: $(cat "$T/d.stats")"
[[ $(jget "$T/peraddr-m.json" 'sorted(d["closed_idx"])') == "[4, 5, 6, 7, 8, 9]" ]] ||
	fail "(d) closed were not the last 6 of 10: $(cat "$T/peraddr-m.json")"
status mirror
refused=$(jget "$T/mirror.st" 'd["handshakes_refused"]')
((refused == 6)) || fail "(d) the mirror counts $refused handshakes refused, not 6: $(cat "$T/mirror.st")"
stop_pid "$PERADDR_PID"
stop_pid "$MIRROR_PID"

# (b) Slow loris: a HELLO a byte a second, from 24 addresses, against a 3 s deadline.
seed_up s2 "$T/src2.img" --timeout 3
note "(b) 24 connections trickling a HELLO; a fetch meanwhile"
bg_start "$T/loris.log" python3 "$HALFOPEN" loris --port "$S_PORT" --spread 127.0.2. --count 24 \
	--interval 1 --seconds 20 --state "$T/loris.json"
LORIS_PID=$BG_PID
expect_rc 0 fetch-b "$P2PVBD" fetch -q --give-up 15 "$S_URI" "$T/out-b.img"
cmp "$T/src2.img" "$T/out-b.img" || fail "(b) the fetched image differs"
wait_exit "$LORIS_PID" 30 || fail "(b) halfopen.py did not end"
[[ $(jget "$T/loris.json" 'd["closed"] == 24 and d["open"] == 0') == True ]] ||
	fail "(b) slow connections were not all dropped within 20 s: $(cat "$T/loris.json")"
note "(b) every slow HELLO dropped after $(jget "$T/loris.json" 'd["max_bytes_before_close"]') bytes at most (of 96)"
status s2
late=$(jget "$T/s2.st" 'd["handshakes_late"]')
((late >= 24)) || fail "(b) status counts $late handshakes late, not 24: $(cat "$T/s2.st")"
