#!/bin/bash
# SPDX-License-Identifier: ISC
# Checks: the test lab (tools/lab.sh) makes 3 connected, shaped hosts, a seed in h1 migrates a 16 MiB image to h2 and h3 across it, and the lab is torn down (also on failure).
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh" "$@"
LABSH=$(cd "$(dirname "$0")/../../tools" && pwd)/lab.sh
# shellcheck source=tools/lab.sh
. "$LABSH"

if ((EUID != 0)); then
	note "SKIP: needs root for network namespaces"
	exit 0
fi
command -v ping >/dev/null || fail "ping missing (tools/install-deps.sh installs iputils-ping)"
command -v tc >/dev/null || fail "tc missing (tools/install-deps.sh installs iproute2)"

# Unique per run; lab_trap before lab_up, so that the lab goes away whatever happens.
LAB=tlab$$
lab_trap "$LAB"

MIB=16
SEED_UP=40 # Mbit/s, the seed's upload
UP=100     # Mbit/s, every other direction
DOWN=200

lab_up "$LAB" 3 --up-mbit "$UP" --down-mbit "$DOWN" || fail "lab_up $LAB 3 failed"
labs=$("$LABSH" list) || fail "tools/lab.sh list failed"
grep -qxF "$LAB" <<<"$labs" || fail "tools/lab.sh list does not show $LAB: $labs"
# The seed's host: upload slower, download unshaped (through the command line form).
"$LABSH" shape "$LAB" h1 "$SEED_UP" 0 || fail "tools/lab.sh shape $LAB h1 failed"

declare -A ADDR
for h in h1 h2 h3; do
	ADDR[$h]=$(lab_addr "$LAB" "$h") || fail "lab_addr $LAB $h failed"
	[[ ${ADDR[$h]} =~ ^10\.[0-9]+\.0\.${h#h}$ ]] || fail "$h has address ${ADDR[$h]}, expected 10.X.0.${h#h}"
	[[ $("$LABSH" addr "$LAB" "$h") == "${ADDR[$h]}" ]] || fail "tools/lab.sh addr $LAB $h differs from lab_addr"
done
note "lab $LAB: h1=${ADDR[h1]} h2=${ADDR[h2]} h3=${ADDR[h3]}"

for h in h2 h3; do
	lab_exec "$LAB" h1 ping -c 1 -W 2 "${ADDR[$h]}" >"$T/ping-$h.out" 2>&1 ||
		fail "h1 cannot ping $h (${ADDR[$h]})"
done
rc=0
"$LABSH" exec "$LAB" h2 sh -c 'exit 7' || rc=$?
((rc == 7)) || fail "tools/lab.sh exec did not pass exit status 7 through (got $rc)"

# shaped NS DEV MBIT: the HTB class on DEV in NS has rate = ceil = MBIT.
shaped() {
	tc -n "$1" -s class show dev "$2" >"$T/tc-$1-$2.txt" 2>&1 ||
		fail "tc class show dev $2 in $1 failed: $(cat "$T/tc-$1-$2.txt")"
	grep -Eq "^class htb 1:1 .*rate $3Mbit ceil $3Mbit" "$T/tc-$1-$2.txt" ||
		fail "$1 dev $2 is not shaped to $3 Mbit/s: $(cat "$T/tc-$1-$2.txt")"
}
shaped "$LAB-h1" eth0 "$SEED_UP"
qd=$(tc -n "$LAB-br" qdisc show dev h1) || fail "tc qdisc show dev h1 in $LAB-br failed"
if grep -q htb <<<"$qd"; then
	fail "download of h1 is still shaped after 'shape ... 0'"
fi
for h in h2 h3; do
	shaped "$LAB-$h" eth0 "$UP"
	shaped "$LAB-br" "$h" "$DOWN"
done

# A migration across the lab: seed in h1, fetches in h2 and h3 at the same time.
make_image "$T/src.img" "$MIB"
keygen "$T/key"
bg_start "$T/seed.log" ip netns exec "$LAB-h1" "$P2PVBD" seed -k "$T/key" \
	-l "${ADDR[h1]}:7001" --uri-file "$T/vol.uri" "$T/src.img"
SEED_PID=$BG_PID
wait_for_file "$T/vol.uri" 60 "$SEED_PID" || fail "seed in h1 wrote no URI"
URI=$(head -n 1 "$T/vol.uri")
[[ $URI == *"peer=${ADDR[h1]}:7001"* ]] || fail "URI does not name the seed's lab address: $URI"

declare -A FETCH_PID
for h in h2 h3; do
	bg_start "$T/fetch-$h.log" timeout 120 ip netns exec "$LAB-$h" "$P2PVBD" fetch \
		--no-progress --stats "$T/stats-$h.json" "$URI" "$T/out-$h.img"
	FETCH_PID[$h]=$BG_PID
done
for h in h2 h3; do
	wait_exit "${FETCH_PID[$h]}" 150 || fail "fetch in $h still running after 150 s"
	((EXIT_STATUS == 0)) || fail "fetch in $h exited $EXIT_STATUS"
	cmp "$T/src.img" "$T/out-$h.img" || fail "the copy in $h differs from the source"
	check_stats "$T/stats-$h.json"
	note "$h: $(cat "$T/stats-$h.json")"
done
kill -0 "$SEED_PID" 2>/dev/null || fail "seed died during the fetches"

# Both copies left h1 through its shaped class (no timing asserted, only bytes).
nonzero=$(nonzero_bytes "$MIB" 0 $((256 * 1024)))
sent=$(tc -n "$LAB-h1" -s class show dev eth0 | awk '$1 == "Sent" { print $2; exit }')
note "h1 upload class sent $sent bytes for 2 x $nonzero bytes of data"
((sent >= 2 * nonzero)) || fail "h1's shaped class sent $sent bytes, less than 2 x $nonzero"

# Teardown, checked here (the trap's lab_down is then a no-op).
stop_pid "$SEED_PID"
lab_down "$LAB" || fail "lab_down $LAB failed"
left=$(ip netns list | awk -v p="$LAB-" 'index($1, p) == 1 { print $1 }')
[[ -z $left ]] || fail "namespaces left after lab_down: $left"
labs=$("$LABSH" list) || fail "tools/lab.sh list failed"
if grep -qxF "$LAB" <<<"$labs"; then
	fail "tools/lab.sh list still shows $LAB"
fi
"$LABSH" down "$LAB" || fail "a second down of $LAB is not a no-op"
note "lab $LAB gone"
