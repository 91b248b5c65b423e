#!/bin/bash
# SPDX-License-Identifier: ISC
# Checks: a swarm across the lab. h1 runs p2pvbd-tracker, h2 the seed (upload shaped slower than
# everyone), h3..h6 four fetchers (mirrors) that know only the tracker and the seed: they find each
# other through the tracker, all finish with the source's bytes, and most of the bytes came from each
# other (their own counters). One fetcher is killed and the tracker is killed midway: the others
# finish. The tracker restarts and a fifth fetcher whose URI names only the tracker joins and finishes.
# Then the seed stops for good, and a sixth fetcher gets the whole volume (root, chunk table and
# chunks) from the mirrors alone.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh" "$@"
# shellcheck source=tools/lab.sh
. "$(dirname "$0")/../../tools/lab.sh"

if ((EUID != 0)); then
	note "SKIP: needs root for network namespaces"
	exit 0
fi
TRACKER=$(dirname "$P2PVBD")/p2pvbd-tracker
[[ -x $TRACKER ]] || fail "tracker binary not found: $TRACKER"

LAB=tsw$$
lab_trap "$LAB"
MIB=16
SEED_UP=10  # Mbit/s: the seed alone could serve the four in ~4 x 13 s
PEER_RATE=40 # Mbit/s up and down for everyone else
lab_up "$LAB" 7 --up-mbit "$PEER_RATE" --down-mbit "$PEER_RATE" || fail "lab_up failed"
lab_shape "$LAB" h2 "$SEED_UP" 0 || fail "lab_shape h2 failed"
declare -A ADDR NS
for i in 1 2 3 4 5 6 7; do
	ADDR[h$i]=$(lab_addr "$LAB" "h$i")
	NS[h$i]=$(lab_ns "$LAB" "h$i")
done
ANNOUNCE="http://${ADDR[h1]}:6969/announce"

make_image "$T/src.img" "$MIB" 12345
keygen "$T/src.key"

start_tracker() {
	bg_start "$T/tracker$1.log" ip netns exec "${NS[h1]}" "$TRACKER" -l "${ADDR[h1]}:6969" --interval 2
	TRACKER_PID=$BG_PID
	local i
	for ((i = 0; i < 100; i++)); do
		ip netns exec "${NS[h1]}" curl -s -o /dev/null "http://${ADDR[h1]}:6969/status" && return 0
		sleep 0.1
	done
	fail "the tracker did not come up"
}
start_tracker 1

bg_start "$T/seed.log" ip netns exec "${NS[h2]}" "$P2PVBD" seed -k "$T/src.key" \
	-l "${ADDR[h2]}:7001" -t "$ANNOUNCE" --uri-file "$T/vol.uri" "$T/src.img"
SEED_PID=$BG_PID
wait_for_file "$T/vol.uri" 60 "$SEED_PID" || fail "the seed wrote no URI"
URI=$(head -n 1 "$T/vol.uri")
[[ $URI == *"tracker=$ANNOUNCE"* ]] || fail "the URI does not name the tracker: $URI"
[[ $URI == *"peer=${ADDR[h2]}:7001"* ]] || fail "the URI does not name the seed: $URI"

# fetcher N HOST URI [PORT]: start a mirror in HOST (keeps serving once complete).
declare -A FPID
fetcher() {
	bg_start "$T/f$1.log" ip netns exec "${NS[$2]}" "$P2PVBD" fetch --no-progress --mirror \
		-l "${ADDR[$2]}:${4:-7002}" --stats "$T/f$1.json" --progress-log "$T/f$1.prog" "$3" "$T/out$1"
	FPID[$1]=$BG_PID
}
# fraction N: how much fetcher N has, in percent (0 until known).
fraction() {
	awk '$3 > 0 { p = int(100 * $2 / $3) } END { print p + 0 }' "$T/f$1.prog" 2>/dev/null || echo 0
}
complete() { [[ $(fraction "$1") -ge 100 ]]; }
# wait_until SECS CMD...: poll CMD every 0.2 s for at most SECS.
wait_until() {
	local secs=$1 i
	shift
	for ((i = 0; i < secs * 5; i++)); do
		"$@" && return 0
		sleep 0.2
	done
	return 1
}

for n in 1 2 3 4; do
	fetcher "$n" "h$((n + 2))" "$URI"
done
# Once all four are under way, kill fetcher 4 and the tracker.
all_started() { local n; for n in 1 2 3 4; do (($(fraction "$n") >= 20)) || return 1; done; }
wait_until 120 all_started || fail "the fetchers did not get to 20% (at $(fraction 1) $(fraction 2) $(fraction 3) $(fraction 4)%)"
for n in 1 2 3 4; do
	complete "$n" && fail "fetcher $n finished before the kill: make the image larger or the links slower"
done
kill -KILL "${FPID[4]}" "$TRACKER_PID"
wait "${FPID[4]}" "$TRACKER_PID" 2>/dev/null || true
note "killed fetcher 4 at $(fraction 4)% and the tracker"
three_done() { complete 1 && complete 2 && complete 3; }
wait_until 240 three_done || fail "fetchers 1-3 did not finish after the kills ($(fraction 1) $(fraction 2) $(fraction 3)%)"
for n in 1 2 3; do
	cmp -s "$T/src.img" "$T/out$n" || fail "fetcher $n's image differs from the source"
done
grep -q 'tracker .*failed' "$T/f1.log" "$T/f2.log" "$T/f3.log" ||
	fail "no fetcher noticed that the tracker went away"

# The tracker restarts; a fifth fetcher knows only the tracker.
start_tracker 2
URI5=$(sed -E 's/&peer=[^&]*//g' <<<"$URI")
[[ $URI5 != *peer=* && $URI5 == *tracker=* ]] || fail "could not strip the peers from $URI"
fetcher 5 h7 "$URI5"
wait_until 240 complete 5 || fail "fetcher 5 did not finish through the restarted tracker ($(fraction 5)%)"
cmp -s "$T/src.img" "$T/out5" || fail "fetcher 5's image differs from the source"

# The source goes away; the mirrors serve a newcomer everything, the chunk table included.
stop_pid "$SEED_PID"
fetcher 6 h6 "$URI5" 7003
wait_until 240 complete 6 || fail "fetcher 6 did not finish from the mirrors alone ($(fraction 6)%)"
cmp -s "$T/src.img" "$T/out6" || fail "fetcher 6's image differs from the source"
grep -q 'volume: .* (from ' "$T/f6.log" || fail "fetcher 6 did not log where its root came from"

# Counters, written at exit.
for n in 1 2 3 5 6; do
	stop_pid "${FPID[$n]}"
	check_stats "$T/f$n.json"
done
fetched=0 from_peers=0
for n in 1 2 3; do
	fetched=$((fetched + $(stat_get "$T/f$n.json" bytes_fetched)))
	from_peers=$((from_peers + $(stat_get "$T/f$n.json" bytes_from_peers)))
done
pct=$((100 * from_peers / fetched))
note "fetchers 1-3 got $pct% of their bytes from other destinations"
# The seed's 10 Mbit/s alone would give each of the 4 only a quarter in the time they took;
# a working swarm takes most bytes from the destinations.
((pct >= 40)) || fail "only $pct% of the bytes came from other destinations"
f5_peers=$(stat_get "$T/f5.json" bytes_from_peers)
((f5_peers > 0)) || fail "fetcher 5 got nothing from the other destinations"
grep -q 'trackers: .* new peer address' "$T/f5.log" || fail "fetcher 5 learned no peers from the tracker"
f6_all=$(stat_get "$T/f6.json" bytes_fetched)
f6_peers=$(stat_get "$T/f6.json" bytes_from_peers)
((f6_all > 0 && f6_peers == f6_all)) || fail "fetcher 6 got $f6_peers of $f6_all bytes from the mirrors; expected all"
note "PASS"
