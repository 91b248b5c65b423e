#!/bin/bash
# SPDX-License-Identifier: ISC
# Checks: p2pvbd-tracker answers announce/scrape per BEP 3/23/48 (compact peers, stopped, caps,
# expiry, 400 + failure reason for malformed requests, /status with counts only, /receipt), and a stock BitTorrent
# client (python3-libtorrent) gets peers from it and completes a download through it.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh" "$@"

TRACKER=$(dirname "$P2PVBD")/p2pvbd-tracker
[[ -x $TRACKER ]] || fail "tracker binary not found: $TRACKER"
PY=/usr/bin/python3
INTERVAL=2 # short, so that expiry (2 x interval + 5 s) is quick to observe

# start_tracker NAME ARGS...: start a tracker on a free loopback port; sets TURL and TPID.
TURL=
TPID=
start_tracker() {
	local name=$1 i port=
	shift
	bg_start "$T/$name.log" "$TRACKER" -l 127.0.0.1:0 "$@"
	TPID=$BG_PID
	for ((i = 0; i < 100; i++)); do
		port=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$T/$name.log")
		[[ -n $port ]] && break
		kill -0 "$TPID" 2>/dev/null || fail "$name exited at start"
		sleep 0.1
	done
	[[ -n $port ]] || fail "$name printed no 'listening on' line"
	TURL=http://127.0.0.1:$port
}

# A small bencode decoder: prints the reply as JSON, with byte strings as
# latin-1 text, except "peers" (compact) which becomes a list of "ip:port".
cat >"$T/bdec.py" <<'EOF'
import ipaddress, json, sys

def dec(b, i):
    c = b[i:i + 1]
    if c == b"i":
        e = b.index(b"e", i)
        return int(b[i + 1:e]), e + 1
    if c in (b"l", b"d"):
        i += 1
        out = [] if c == b"l" else {}
        while b[i:i + 1] != b"e":
            if c == b"l":
                v, i = dec(b, i)
                out.append(v)
            else:
                k, i = dec(b, i)
                v, i = dec(b, i)
                out[k] = v
        return out, i + 1
    colon = b.index(b":", i)
    n = int(b[i:colon])
    s = b[colon + 1:colon + 1 + n]
    if len(s) != n:
        raise ValueError("short string")
    return s, colon + 1 + n

def show(v, key=None):
    if isinstance(v, dict):
        return {k.hex() if len(k) == 20 else k.decode(): show(x, k) for k, x in v.items()}
    if isinstance(v, list):
        return [show(x) for x in v]
    if isinstance(v, bytes):
        if key == b"peers":
            return ["%s:%d" % (ipaddress.ip_address(v[j:j + 4]), int.from_bytes(v[j + 4:j + 6], "big"))
                    for j in range(0, len(v), 6)]
        if key == b"peers6":
            return ["[%s]:%d" % (ipaddress.ip_address(v[j:j + 16]), int.from_bytes(v[j + 16:j + 18], "big"))
                    for j in range(0, len(v), 18)]
        return v.decode("latin-1")
    return v

data = open(sys.argv[1], "rb").read()
v, end = dec(data, 0)
if end != len(data):
    raise SystemExit("trailing bytes after the bencoded value")
print(json.dumps(show(v)))
EOF

# jq_py FILE EXPR: evaluate a Python expression on the JSON in FILE (as `d`).
jq_py() {
	"$PY" -c 'import json, sys; d = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"
}

# get NAME URL: GET URL with curl into $T/NAME.body, the bencoded body decoded
# into $T/NAME.json; sets CODE to the HTTP status.
CODE=
get() {
	local name=$1 url=$2
	CODE=$(curl -s -m 10 -o "$T/$name.body" -w '%{http_code}' "$url") || fail "$name: curl failed on $url"
	"$PY" "$T/bdec.py" "$T/$name.body" >"$T/$name.json" 2>"$T/$name.err" ||
		fail "$name: reply is not bencode: $(head -c 300 "$T/$name.body" | od -c | head -5)"
}

# expect_failure NAME CODE REGEX PATH-AND-QUERY: a request the tracker must refuse.
expect_failure() {
	local name=$1 want=$2 re=$3 q=$4 reason
	get "$name" "$TURL$q"
	[[ $CODE == "$want" ]] || fail "$name: HTTP $CODE for $q, expected $want"
	reason=$(jq_py "$T/$name.json" 'd["failure reason"]') || fail "$name: no failure reason: $(cat "$T/$name.json")"
	grep -Eq -- "$re" <<<"$reason" || fail "$name: failure reason '$reason' does not match /$re/"
	note "$name: $CODE '$reason'"
}

IH=$(printf '%%%02x' $(seq 0 19) | tr -d '\n')  # bytes 00..13, percent-encoded
IH_HEX=000102030405060708090a0b0c0d0e0f10111213
PID_A=-TT0001-aaaaaaaaaaaa
PID_B=-TT0001-bbbbbbbbbbbb
ann() { # ann PEER_ID PORT LEFT [EXTRA]
	echo "/announce?info_hash=$IH&peer_id=$1&port=$2&uploaded=0&downloaded=0&left=$3&compact=1${4:-}"
}

start_tracker tracker --interval "$INTERVAL" -v
MAIN_TPID=$TPID
MAIN_TURL=$TURL
note "tracker at $TURL"

# Two peers: each gets the other and never itself.
get a1 "$TURL$(ann $PID_A 7001 100 '&event=started')"
[[ $CODE == 200 ]] || fail "a1: HTTP $CODE: $(cat "$T/a1.json")"
[[ $(jq_py "$T/a1.json" 'd["peers"]') == "[]" ]] || fail "a1: first peer got peers: $(cat "$T/a1.json")"
[[ $(jq_py "$T/a1.json" 'd["interval"]') == "$INTERVAL" ]] || fail "a1: interval is not $INTERVAL"
get b1 "$TURL$(ann $PID_B 7002 100 '&event=started&numwant=10')"
[[ $(jq_py "$T/b1.json" 'd["peers"]') == "['127.0.0.1:7001']" ]] || fail "b1: peers are not [A]: $(cat "$T/b1.json")"
[[ $(jq_py "$T/b1.json" 'd["incomplete"]') == 2 ]] || fail "b1: incomplete != 2: $(cat "$T/b1.json")"
get a2 "$TURL$(ann $PID_A 7001 100)"
[[ $(jq_py "$T/a2.json" 'd["peers"]') == "['127.0.0.1:7002']" ]] || fail "a2: peers are not [B]: $(cat "$T/a2.json")"
note "announce: A and B each got the other"

# compact=0 is answered in the compact form too (documented).
get a3 "$TURL/announce?info_hash=$IH&peer_id=$PID_A&port=7001&left=100&compact=0"
[[ $(jq_py "$T/a3.json" 'd["peers"]') == "['127.0.0.1:7002']" ]] || fail "a3 (compact=0): $(cat "$T/a3.json")"

# Scrape: one swarm, repeated info_hash, unknown one, and all swarms.
other=$(printf '%%ff%.0s' $(seq 20))
get s1 "$TURL/scrape?info_hash=$IH&info_hash=$IH&info_hash=$other"
[[ $(jq_py "$T/s1.json" "d['files']['$IH_HEX']['incomplete']") == 2 ]] || fail "scrape: $(cat "$T/s1.json")"
[[ $(jq_py "$T/s1.json" "d['files']['$IH_HEX']['complete']") == 0 ]] || fail "scrape: $(cat "$T/s1.json")"
[[ $(jq_py "$T/s1.json" "d['files']['ff'*20]['incomplete']") == 0 ]] || fail "scrape unknown: $(cat "$T/s1.json")"
get s2 "$TURL/scrape"
[[ $(jq_py "$T/s2.json" "sorted(d['files'])") == "['$IH_HEX']" ]] || fail "scrape all: $(cat "$T/s2.json")"

# B completes, then stops: it is gone from A's list and from the counts.
get b2 "$TURL$(ann $PID_B 7002 0 '&event=completed')"
get s3 "$TURL/scrape?info_hash=$IH"
[[ $(jq_py "$T/s3.json" "[d['files']['$IH_HEX'][k] for k in ('complete','incomplete','downloaded')]") == "[1, 1, 1]" ]] ||
	fail "scrape after completed: $(cat "$T/s3.json")"
get b3 "$TURL$(ann $PID_B 7002 0 '&event=stopped')"
[[ $CODE == 200 ]] || fail "stopped: HTTP $CODE"
get a4 "$TURL$(ann $PID_A 7001 100)"
[[ $(jq_py "$T/a4.json" 'd["peers"]') == "[]" ]] || fail "stopped peer still handed out: $(cat "$T/a4.json")"
[[ $(jq_py "$T/a4.json" '(d["complete"], d["incomplete"])') == "(0, 1)" ]] || fail "counts after stopped: $(cat "$T/a4.json")"
note "stopped removes the peer"

# ip= is honoured from loopback.
get c1 "$TURL$(ann -TT0001-cccccccccccc 7003 5 '&ip=10.9.8.7')"
get a5 "$TURL$(ann $PID_A 7001 100)"
[[ $(jq_py "$T/a5.json" 'd["peers"]') == "['10.9.8.7:7003']" ]] || fail "ip= from loopback: $(cat "$T/a5.json")"

# Malformed requests: 400 and a bencoded reason, and the tracker lives on.
expect_failure bad_noih 400 'missing info_hash' "/announce?peer_id=$PID_A&port=1&left=0"
expect_failure bad_ihlen 400 'info_hash must be 20 bytes' "/announce?info_hash=abc&peer_id=$PID_A&port=1&left=0"
expect_failure bad_pct 400 'percent-encoding' "/announce?info_hash=${IH:0:57}%zz&peer_id=$PID_A&port=1&left=0"
expect_failure bad_port 400 'bad port' "$(ann $PID_A 0 1)"
expect_failure bad_port2 400 'bad port' "$(ann $PID_A 99999 1)"
expect_failure bad_left 400 'bad number in left' "$(ann $PID_A 1 -1)"
expect_failure bad_dup 400 'duplicate parameter port' "$(ann $PID_A 1 1 '&port=2')"
expect_failure bad_event 400 'bad event' "$(ann $PID_A 1 1 '&event=exploded')"
long=$(head -c 5000 /dev/zero | tr '\0' a)
expect_failure bad_long 400 'too long' "$(ann $PID_A 1 1 "&key=$long")"
expect_failure bad_scrape 400 'info_hash must be 20 bytes' "/scrape?info_hash=%00"
expect_failure bad_path 404 'not found' "/nothing"
code=$(curl -s -m 10 -o "$T/rcpt.body" -w '%{http_code}' --data-binary 'not a receipt' "$TURL/receipt")
[[ $code == 400 ]] || fail "POST /receipt with garbage: HTTP $code"
{
	printf P2PVRCP2
	head -c 192 /dev/urandom
} >"$T/rcpt.bin"
code=$(curl -s -m 10 -o "$T/rcpt.body" -w '%{http_code}' --data-binary @"$T/rcpt.bin" "$TURL/receipt")
[[ $code == 400 ]] || fail "POST /receipt with a forged 200-byte receipt: HTTP $code"
grep -q 'signature' "$T/rcpt.body" || fail "forged receipt: reason does not mention the signature: $(cat "$T/rcpt.body")"
kill -0 "$MAIN_TPID" 2>/dev/null || fail "tracker died on malformed requests"

# Caps: a tracker allowing 1 swarm of 1 peer refuses more, saying why.
start_tracker tracker_caps --max-swarms 1 --max-peers 1
get cap1 "$TURL$(ann $PID_A 7001 1)"
[[ $CODE == 200 && $(jq_py "$T/cap1.json" '"failure reason" in d') == False ]] || fail "caps: first announce refused"
get cap2 "$TURL$(ann $PID_B 7002 1)"
[[ $(jq_py "$T/cap2.json" 'd["failure reason"]') == *max-peers* ]] || fail "caps: peer cap: $(cat "$T/cap2.json")"
get cap3 "$TURL/announce?info_hash=$other&peer_id=$PID_A&port=1&left=1"
[[ $(jq_py "$T/cap3.json" 'd["failure reason"]') == *max-swarms* ]] || fail "caps: swarm cap: $(cat "$T/cap3.json")"
stop_pid "$TPID"
note "caps enforced with a failure reason"
TURL=$MAIN_TURL

# A stock BitTorrent client: a v1 torrent of a 2 MiB file announcing to us, one
# libtorrent session seeding and one downloading, on 127.0.0.1 only.
mkdir -p "$T/seed" "$T/dl"
head -c $((2 * 1048576)) /dev/urandom >"$T/seed/payload.bin"
cat >"$T/lt.py" <<'EOF'
import json, os, sys, time, urllib.request
import libtorrent as lt

announce, status_url, root = sys.argv[1], sys.argv[2], sys.argv[3]
fs = lt.file_storage()
lt.add_files(fs, os.path.join(root, "seed", "payload.bin"))
ct = lt.create_torrent(fs, 65536, flags=lt.create_torrent.v1_only)
ct.add_tracker(announce)
lt.set_piece_hashes(ct, os.path.join(root, "seed"))
ti = lt.torrent_info(ct.generate())
ih = str(ti.info_hashes().v1)

def session():
    return lt.session({
        "listen_interfaces": "127.0.0.1:0",
        "outgoing_interfaces": "127.0.0.1",
        "enable_dht": False, "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False,
        "allow_multiple_connections_per_ip": True,
        "alert_mask": lt.alert.category_t.all_categories,
    })

seeder, leecher = session(), session()
hs = seeder.add_torrent({"ti": ti, "save_path": os.path.join(root, "seed")})
hl = leecher.add_torrent({"ti": lt.torrent_info(ti), "save_path": os.path.join(root, "dl")})
res = {"info_hash": ih, "tracker_peers": 0, "status_peers": 0, "done": False, "errors": []}
deadline = time.time() + 60
while time.time() < deadline:
    for s in (seeder, leecher):
        for a in s.pop_alerts():
            if isinstance(a, lt.tracker_reply_alert):
                res["tracker_peers"] = max(res["tracker_peers"], a.num_peers)
            elif isinstance(a, (lt.tracker_error_alert, lt.tracker_warning_alert)):
                res["errors"].append(a.message())
    try:
        st = json.load(urllib.request.urlopen(status_url, timeout=5))
        for sw in st["swarms"]:
            if sw["info_hash"] == ih:
                res["status_peers"] = max(res["status_peers"], sw["complete"] + sw["incomplete"])
    except Exception as e:
        res["errors"].append("status: %s" % e)
    if hl.status().is_seeding and res["status_peers"] >= 2 and res["tracker_peers"] >= 1:
        res["done"] = True
        break
    time.sleep(0.2)
res["progress"] = hl.status().progress
res["errors"] = res["errors"][-5:]
print(json.dumps(res))
EOF
run_cmd libtorrent "$PY" "$T/lt.py" "$TURL/announce" "$TURL/status" "$T"
((RC == 0)) || fail "libtorrent script failed: $(tail -5 "$T/libtorrent.err")"
note "libtorrent: $(cat "$T/libtorrent.out")"
((RC == 0)) || fail "libtorrent script exited $RC"
[[ $(jq_py "$T/libtorrent.out" 'd["tracker_peers"] >= 1') == True ]] || fail "libtorrent got no peers from the tracker"
[[ $(jq_py "$T/libtorrent.out" 'd["status_peers"]') == 2 ]] || fail "/status did not show both libtorrent peers"
[[ $(jq_py "$T/libtorrent.out" 'd["done"]') == True ]] || fail "libtorrent download did not complete within 60 s"
cmp "$T/seed/payload.bin" "$T/dl/payload.bin" || fail "libtorrent's download differs from the seed's file"

# /status is JSON with swarms and counts, as a scrape gives them: no peer addresses or ids.
curl -s -m 10 -o "$T/status.json" "$TURL/status" || fail "GET /status failed"
jq_py "$T/status.json" 'd["swarm_count"], d["peer_count"], d["receipt_count"], [(s["complete"], s["incomplete"]) for s in d["swarms"]]' >/dev/null ||
	fail "/status is not the expected JSON: $(head -c 500 "$T/status.json")"
! grep -q '127\.0\.0\.1\|peer_id\|"peers"' "$T/status.json" ||
	fail "/status shows peers: $(head -c 500 "$T/status.json")"

# Expiry: the curl peers (A, C) stopped announcing and are dropped after
# 2 x interval + 5 s (plus one sweep); the libtorrent swarm stays.
for ((i = 0; i < 200; i++)); do
	curl -s -m 10 -o "$T/status.json" "$TURL/status"
	[[ $(jq_py "$T/status.json" "[s['info_hash'] for s in d['swarms']].count('$IH_HEX')") == 0 ]] && break
	sleep 0.1
done
((i < 200)) || fail "silent peers did not expire within 20 s: $(cat "$T/status.json")"
grep -q 'expired' "$T/tracker.log" || fail "tracker did not log the expiry"
note "silent peers expired"

# SIGTERM: clean exit 0.
kill -TERM "$MAIN_TPID"
wait_exit "$MAIN_TPID" 10 || fail "tracker ignored SIGTERM"
((EXIT_STATUS == 0)) || fail "tracker exited $EXIT_STATUS on SIGTERM"
