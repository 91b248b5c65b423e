#!/bin/bash
# SPDX-License-Identifier: ISC
# Checks: p2pvbd-tracker holds against the attacks of issue 14 (DESIGN.md rule 9), with its file
# descriptor limit lowered to 256 so that exhaustion is quick, all on loopback (127.0.0.x):
#  1. 300 idle connections from one address: a real announce (curl) from another address is still
#     answered, and the tracker's log stays small (the old tracker spun on "Error from accept()").
#  2. slow-loris connections that send a byte every second are closed by the per-connection
#     deadline (evhttp's own timeout restarts on every byte).
#  3. junk swarms and fake peers from one address are capped, while another address still gets in.
#  4. a p2pvbd volume's swarm admits only members (the key derived from the join secret): an
#     announce without it is refused, one with another token is never handed to members nor
#     handed them; a fetch that knows only the tracker still finds the seed.
#  5. with more connections allowed than descriptors (EMFILE), accept pauses instead of spinning;
#     at --max-connections it pauses until connections close; either way a real announce gets
#     through once the deadline frees slots. The soft RLIMIT_NOFILE is raised to what it needs.
# fast
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh" "$@"

TRACKER=$(dirname "$P2PVBD")/p2pvbd-tracker
[[ -x $TRACKER ]] || fail "tracker binary not found: $TRACKER"
PY=/usr/bin/python3
FDS=256         # the tracker's descriptor limit (soft and hard) in these tests
MAX_LOG_LINES=200 # a tracker's whole log in one part; the old one wrote millions
# TL_PARTS="3 4" runs only those parts (to show each one failing on an older tracker).
PARTS=" ${TL_PARTS:-1 2 3 4 5} "
part() { [[ $PARTS == *" $1 "* ]]; }

# start_tracker NAME [ARGS...]: start a tracker with `ulimit -n $FDS` on 127.0.0.1:0; sets TURL,
# TPORT and TPID; its log is $T/NAME.log.
start_tracker() {
	local name=$1 i
	shift
	TPORT=
	bg_start "$T/$name.log" bash -c 'ulimit -n '"$FDS"' && exec "$@"' sh "$TRACKER" -l 127.0.0.1:0 "$@"
	TPID=$BG_PID
	for ((i = 0; i < 100; i++)); do
		TPORT=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$T/$name.log")
		[[ -n $TPORT ]] && break
		kill -0 "$TPID" 2>/dev/null || fail "$name exited at start: $(tail -n 3 "$T/$name.log")"
		sleep 0.1
	done
	[[ -n $TPORT ]] || fail "$name printed no 'listening on' line"
	TURL=http://127.0.0.1:$TPORT
}

# log_small NAME: fail unless the tracker's log has at most MAX_LOG_LINES lines.
log_small() {
	local n
	n=$(wc -l <"$T/$1.log")
	((n <= MAX_LOG_LINES)) || fail "$1 wrote $n log lines (at most $MAX_LOG_LINES expected): $(sort "$T/$1.log" | cut -c 26- | uniq -c | sort -rn | head -3)"
	note "$1: $n log lines"
}

# Attackers, in Python. Every loop is bounded in count and time.
cat >"$T/attack.py" <<'EOF'
import os, socket, sys, time

def conns(port, sources, n, timeout=2.0):
    """Open n connections spread over the source addresses; return those that connected."""
    out = []
    for i in range(n):
        s = socket.socket()
        s.settimeout(timeout)
        try:
            s.bind((sources[i % len(sources)], 0))
            s.connect(("127.0.0.1", port))
            out.append(s)
        except OSError:
            s.close()
    return out

mode, port, ready = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if mode == "idle":            # idle N SRC... : hold N silent connections for 60 s at most
    n, sources = int(sys.argv[4]), sys.argv[5:]
    held = conns(port, sources, n)
    open(ready, "w").write("%d\n" % len(held))
    time.sleep(60)
elif mode == "slowloris":     # slowloris N SECONDS: N connections, one byte per second each
    n, limit = int(sys.argv[4]), float(sys.argv[5])
    held = conns(port, ["127.0.0.5", "127.0.0.6"], n)
    req = b"GET /announce?info_hash=" + b"a" * 4000
    start, closed, sent = time.time(), set(), 0
    while len(closed) < len(held) and time.time() - start < limit and sent < len(req):
        for i, s in enumerate(held):
            if i in closed:
                continue
            try:
                s.send(req[sent:sent + 1])
                s.settimeout(0.01)
                if s.recv(1) == b"":
                    closed.add(i)
            except socket.timeout:
                pass
            except OSError:
                closed.add(i)
        sent += 1
        time.sleep(1)
    open(ready, "w").write("%d %d %.1f\n" % (len(held), len(closed), time.time() - start))
    open(ready, "w").write("%d %d %.1f\n" % (len(held), len(closed), time.time() - start))
EOF

# get_from SRC URL: GET URL from source address SRC into $T/get.body (curl, CURL_MAX or 5 s at
# most); prints the HTTP code (000 if no answer).
get_from() {
	curl -s -m "${CURL_MAX:-5}" --interface "$1" -o "$T/get.body" -w '%{http_code}' "$2" || true
}

IH=$(printf '%%%02x' $(seq 100 119) | tr -d '\n')
real_announce() { # real_announce SRC [PEER_ID]: a valid announce; prints the HTTP code
	get_from "$1" "$TURL/announce?info_hash=$IH&peer_id=${2:--RL0001-realrealreal}&port=6881&left=5&compact=1"
}

# ---- 1. idle connections from one address ----------------------------------------------------
if part 1; then
start_tracker t1
bg_start "$T/idle.log" "$PY" "$T/attack.py" idle "$TPORT" "$T/idle.ready" 300 127.0.0.1
ATT=$BG_PID
wait_for_file "$T/idle.ready" 60 "$ATT" || fail "the idle attacker did not start"
note "idle attacker: $(cat "$T/idle.ready") of 300 connections made from 127.0.0.1"
code=$(real_announce 127.0.0.2)
[[ $code == 200 ]] || fail "a real announce from 127.0.0.2 got '$code' while 127.0.0.1 held 300 idle connections"
grep -q 'd8:completei' "$T/get.body" || fail "the real announce got no peer list: $(head -c 200 "$T/get.body")"
kill -0 "$TPID" 2>/dev/null || fail "the tracker died under 300 idle connections"
stop_pid "$ATT"
log_small t1
grep -q 'max-connections-per-address' "$T/t1.log" || fail "t1 did not log why it refused connections"
note "1: 300 idle connections from one address; a real announce from another still answered"

fi

# ---- 2. slow loris -------------------------------------------------------------------------
if part 2; then
part 1 || start_tracker t1
run_cmd slowloris "$PY" "$T/attack.py" slowloris "$TPORT" "$T/slow.result" 20 40
((RC == 0)) || fail "the slow-loris attacker failed: $(tail -n 3 "$T/slowloris.err")"
read -r held closed secs <"$T/slow.result"
((held >= 20)) || fail "slow loris: only $held of 20 connections made"
((closed == held)) || fail "slow loris: $closed of $held connections sending a byte per second were closed within ${secs} s"
note "2: $held slow-loris connections all closed by the deadline (${secs} s)"
code=$(real_announce 127.0.0.5)
[[ $code == 200 ]] || fail "a real announce after the slow loris got '$code'"
log_small t1
stop_pid "$TPID"

fi

# ---- 3. junk swarms and fake peers from one address ---------------------------------------
if part 3; then
start_tracker t3
cat >"$T/junk.py" <<'EOF'
import http.client, sys

port, src, what, n = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
ok = refused = 0
reason = ""
for i in range(n):
    ih = "".join("%%%02x" % b for b in (i.to_bytes(4, "big") * 5)) if what == "swarms" else "%77" * 20
    q = "/announce?info_hash=%s&peer_id=-JK0001-%012d&port=%d&left=1" % (ih, i, 1000 + i)
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5, source_address=(src, 0))
    c.request("GET", q)
    body = c.getresponse().read()
    c.close()
    if b"failure reason" in body:
        refused += 1
        reason = body.decode("latin-1").replace(" ", "_")
    else:
        ok += 1
print(ok, refused, reason)
EOF
run_cmd junk_swarms "$PY" "$T/junk.py" "$TPORT" 127.0.0.1 swarms 300
((RC == 0)) || fail "the junk-swarm client failed: $(tail -n 3 "$T/junk_swarms.err")"
read -r ok refused reason <"$T/junk_swarms.out"
note "300 junk swarms from 127.0.0.1: $ok created, $refused refused ($reason)"
((ok <= 256 && refused >= 44)) || fail "junk swarms from one address were not capped: $ok of 300 created"
[[ $reason == *max-swarms-per-address* ]] || fail "the refusal does not name the cap: $reason"
# From a fresh address (127.0.0.1 may create no more swarms).
run_cmd junk_peers "$PY" "$T/junk.py" "$TPORT" 127.0.0.7 peers 60
((RC == 0)) || fail "the fake-peer client failed: $(tail -n 3 "$T/junk_peers.err")"
read -r ok refused reason <"$T/junk_peers.out"
note "60 fake peers in one swarm from 127.0.0.7: $ok admitted, $refused refused"
((ok <= 32 && refused >= 28)) || fail "fake peers from one address were not capped: $ok of 60 admitted"
[[ $reason == *max-peers-per-address* ]] || fail "the refusal does not name the cap: $reason"
# Another address still creates a swarm and joins the one 127.0.0.7 filled.
code=$(real_announce 127.0.0.2)
[[ $code == 200 ]] && ! grep -q 'failure reason' "$T/get.body" ||
	fail "127.0.0.2 could not create a swarm: $code $(cat "$T/get.body")"
code=$(get_from 127.0.0.2 "$TURL/announce?info_hash=$(printf '%%77%.0s' $(seq 20))&peer_id=-RL0001-otherother01&port=7000&left=1")
[[ $code == 200 ]] && ! grep -q 'failure reason' "$T/get.body" ||
	fail "127.0.0.2 could not join the swarm 127.0.0.7 filled: $code $(cat "$T/get.body")"
log_small t3
stop_pid "$TPID"
note "3: swarms and peers per address capped; another address gets in"

fi

# ---- 4. a p2pvbd volume's swarm: members only --------------------------------------------
if part 4; then
start_tracker t4
make_image "$T/src.img" 2 777
keygen "$T/src.key"
start_seed -k "$T/src.key" -t "$TURL/announce" "$T/src.img"
SEED_PORT=$(sed -E 's/.*[?&]peer=127\.0\.0\.1:([0-9]+).*/\1/' <<<"$URI")
[[ $SEED_PORT =~ ^[0-9]+$ ]] || fail "no seed port in $URI"
cat >"$T/member.py" <<'EOF'
import hashlib, http.client, ipaddress, os, re, sys

uri, port, src, who, peer_port = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
vol = bytes.fromhex(re.match(r"p2pvbd://([0-9a-f]{32})", uri).group(1))
secret = bytes.fromhex(re.search(r"[?&]secret=([0-9a-f]{64})", uri).group(1))
ih = hashlib.blake2b(b"p2pvbd-infohash-v1" + vol, digest_size=32).digest()[:20]
if who == "scrape":           # prints the swarm's peer count (complete + incomplete)
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5, source_address=(src, 0))
    c.request("GET", "/scrape?info_hash=" + "".join("%%%02x" % b for b in ih))
    body = c.getresponse().read()
    n = [int(x) for x in re.findall(rb"(?:8:complete|10:incomplete)i(\d+)e", body)]
    print(sum(n))
    sys.exit(0)
if who == "member":
    token = hashlib.blake2b(b"p2pvbd-announce-v1" + secret + vol, digest_size=32).digest()[:16]
    key = "&key=" + vol.hex() + token.hex()
elif who == "outsider":       # knows the volume id, not the join secret
    key = "&key=" + vol.hex() + os.urandom(16).hex() + "&ip=127.0.0.9"
else:                          # knows only the info_hash (from a scrape), sends no key
    key = "&ip=127.0.0.9"
q = "/announce?info_hash=%s&peer_id=-%s-%s&port=%d&left=1&compact=1%s" % (
    "".join("%%%02x" % b for b in ih), who[:6].upper().ljust(6, "X"), os.urandom(6).hex(), peer_port, key)
c = http.client.HTTPConnection("127.0.0.1", port, timeout=5, source_address=(src, 0))
c.request("GET", q)
body = c.getresponse().read()
if b"failure reason" in body:
    print("REFUSED", body.decode("latin-1"))
    sys.exit(0)
m = re.search(rb"5:peers(\d+):", body)
raw = body[m.end():m.end() + int(m.group(1))] if m else b""
print("OK", " ".join("%s:%d" % (ipaddress.ip_address(raw[i:i + 4]), int.from_bytes(raw[i + 4:i + 6], "big"))
                      for i in range(0, len(raw), 6)))
EOF
for ((i = 0; i < 100; i++)); do # the seed announces at start
	run_cmd sc "$PY" "$T/member.py" "$URI" "$TPORT" 127.0.0.4 scrape 0
	[[ $(cat "$T/sc.out") == 1 ]] && break
	sleep 0.1
done
((i < 100)) || fail "the seed's announce never showed in a scrape: $(cat "$T/sc.out" "$T/sc.err")"
run_cmd nokey "$PY" "$T/member.py" "$URI" "$TPORT" 127.0.0.3 nokey 9
grep -q '^REFUSED.*p2pvbd volume' "$T/nokey.out" ||
	fail "an announce without the key was not refused: $(cat "$T/nokey.out" "$T/nokey.err")"
run_cmd m0 "$PY" "$T/member.py" "$URI" "$TPORT" 127.0.0.4 member 7777
grep -q "127.0.0.1:$SEED_PORT" "$T/m0.out" || fail "a member did not get the seed from the tracker: $(cat "$T/m0.out" "$T/m0.err")"
for k in 1 2 3; do
	run_cmd outsider$k "$PY" "$T/member.py" "$URI" "$TPORT" 127.0.0.3 outsider 9
	grep -q '^OK' "$T/outsider$k.out" || fail "outsider announce: $(cat "$T/outsider$k.out" "$T/outsider$k.err")"
	! grep -q "127.0.0.1:$SEED_PORT" "$T/outsider$k.out" ||
		fail "an outsider (no join secret) was handed the seed: $(cat "$T/outsider$k.out")"
done
run_cmd m1 "$PY" "$T/member.py" "$URI" "$TPORT" 127.0.0.4 member 7778
grep -q "127.0.0.1:$SEED_PORT" "$T/m1.out" || fail "a member lost the seed: $(cat "$T/m1.out")"
! grep -q '127.0.0.9' "$T/m1.out" || fail "a member was handed an outsider's address: $(cat "$T/m1.out")"
note "4: without the key refused; with another token kept apart; members get the seed only"
# A fetch that knows only the tracker finds the seed through it.
URI_T=$(sed -E 's/&peer=[^&]*//g' <<<"$URI")
[[ $URI_T != *peer=* && $URI_T == *tracker=* ]] || fail "could not strip the peers from $URI"
run_cmd fetch "$P2PVBD" fetch -v --no-progress "$URI_T" "$T/out.img"
((RC == 0)) || fail "a fetch through the tracker failed (rc $RC): $(tail -n 5 "$T/fetch.err")"
cmp -s "$T/src.img" "$T/out.img" || fail "the fetch through the tracker differs from the source"
! grep -q '127\.0\.0\.9' "$T/fetch.err" || fail "the fetch was handed an outsider's address: $(grep 127.0.0.9 "$T/fetch.err" | head -3)"
stop_pid "$SEED_PID"
log_small t4
stop_pid "$TPID"
note "4: a fetch with only the tracker found the seed and completed"

fi

# ---- 5. descriptors run out; the connection cap ------------------------------------------
if part 5; then
# More connections allowed than descriptors: accept() fails with EMFILE and must pause.
start_tracker t5 --max-connections 1000 --max-connections-per-address 1000 --request-timeout 2
grep -q 'more than the file descriptor limit allows' "$T/t5.log" ||
	fail "t5 did not warn that --max-connections exceeds the descriptor limit"
rm -f "$T/idle.ready"
bg_start "$T/idle5.log" "$PY" "$T/attack.py" idle "$TPORT" "$T/idle.ready" 300 127.0.0.1
ATT=$BG_PID
wait_for_file "$T/idle.ready" 60 "$ATT" || fail "the idle attacker did not start"
code=$(CURL_MAX=20 real_announce 127.0.0.2)
[[ $code == 200 ]] || fail "a real announce got '$code' while descriptors were exhausted"
grep -q 'cannot accept connections' "$T/t5.log" || fail "t5 never ran out of descriptors (EMFILE was not tested)"
kill -0 "$TPID" 2>/dev/null || fail "the tracker died when descriptors ran out"
stop_pid "$ATT"
log_small t5
stop_pid "$TPID"
note "5: EMFILE pauses accept; a real announce got through"
# At --max-connections: accept pauses until connections close (by the deadline here).
start_tracker t6 --max-connections 64 --request-timeout 2
rm -f "$T/idle.ready"
bg_start "$T/idle6.log" "$PY" "$T/attack.py" idle "$TPORT" "$T/idle.ready" 160 \
	127.0.0.10 127.0.0.11 127.0.0.12 127.0.0.13 127.0.0.14 127.0.0.15 127.0.0.16 127.0.0.17
ATT=$BG_PID
wait_for_file "$T/idle.ready" 60 "$ATT" || fail "the idle attacker did not start"
code=$(CURL_MAX=20 real_announce 127.0.0.2)
[[ $code == 200 ]] || fail "a real announce got '$code' while 160 connections from 8 addresses competed for 64"
! grep -q 'cannot accept' "$T/t6.log" || fail "t6 ran out of descriptors although capped at 64 connections"
stop_pid "$ATT"
log_small t6
stop_pid "$TPID"
note "5: at --max-connections accept pauses; a real announce got through"

# The soft descriptor limit is raised towards the hard one, as far as the connections need.
hard=$(ulimit -H -n)
if [[ $hard == unlimited ]] || ((hard >= 16384 + 32)); then
	bg_start "$T/t7.log" bash -c 'ulimit -S -n 256 && exec "$@"' sh "$TRACKER" -l 127.0.0.1:0
	TPID=$BG_PID
	wait_for_line "$T/t7.log" '^listening on' 10 "$TPID" "t7 exited at start" "t7 did not start"
	soft=$(awk '/^Max open files/ { print $4 }' "/proc/$TPID/limits")
	((soft >= 16384 + 32)) || fail "the tracker did not raise its soft descriptor limit from 256 (now $soft)"
	grep -q '16384 connections' "$T/t7.log" || fail "t7 does not allow its default 16384 connections: $(grep listening "$T/t7.log")"
	stop_pid "$TPID"
	note "the soft descriptor limit was raised from 256 to $soft"
else
	note "the hard descriptor limit ($hard) is too low to check raising the soft one"
fi
fi
