#!/bin/bash
# SPDX-License-Identifier: ISC
# Checks: p2pvbd-tracker --version and -V; GET /metrics is Prometheus' text format 0.0.4 as
# python3-prometheus-client's parser reads it, and its values follow what happens: announces by
# event and result (a malformed one only as an HTTP 400), scrapes, a peer dropped at once when it
# announces event=stopped (in /metrics and /status), HTTP replies by path and code. With a real
# seed and fetch: /status has one entry per volume with counts only (no addresses, volume ids or
# receipts); the fetch announces event=stopped as it exits, so the tracker has dropped it by then; a
# fetch whose second tracker never answers still exits, having given up on that tracker's stop
# (logged); the seed's stop removes the volume's swarm.
# fast
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh" "$@"

PY=/usr/bin/python3
"$PY" -c 'import prometheus_client.parser' 2>/dev/null ||
	fail "python3-prometheus-client is missing (tools/install-deps.sh)"

# ---- --version ---------------------------------------------------------------
for opt in --version -V; do
	run_cmd version "$TRACKER" "$opt"
	((RC == 0)) || fail "p2pvbd-tracker $opt exited $RC"
	[[ $(cat "$T/version.out") =~ ^p2pvbd-tracker\ ([0-9]+\.[0-9]+\.[0-9]+)$ ]] ||
		fail "p2pvbd-tracker $opt printed '$(cat "$T/version.out")'"
	tv=${BASH_REMATCH[1]}
	[[ $("$P2PVBD" --version) == "p2pvbd $tv "* ]] ||
		fail "p2pvbd-tracker $opt says $tv, p2pvbd --version says '$("$P2PVBD" --version)'"
done
note "--version and -V: $tv, as p2pvbd's"

# ---- helpers -----------------------------------------------------------------
# scrape_metrics: GET URL, check status and Content-Type, parse the body with prometheus_client,
# and print {"samples": {"name{k="v",...}": value}, "types": {family: type}} (labels sorted).
cat >"$T/prom.py" <<'EOF'
import json, sys, urllib.request
from prometheus_client.parser import text_string_to_metric_families

url, keep = sys.argv[1], sys.argv[2]
with urllib.request.urlopen(url, timeout=10) as r:
    if r.status != 200:
        sys.exit("HTTP %d" % r.status)
    ctype = r.headers.get("Content-Type", "")
    body = r.read().decode("utf-8")
open(keep, "w").write(body)
if not ctype.startswith("text/plain; version=0.0.4"):
    sys.exit("Content-Type is %r" % ctype)
samples, types = {}, {}
for fam in text_string_to_metric_families(body):
    if fam.name in types:
        sys.exit("family %s twice" % fam.name)
    if not fam.documentation:
        sys.exit("family %s has no HELP text" % fam.name)
    if fam.type not in ("counter", "gauge"):
        sys.exit("family %s has type %s" % (fam.name, fam.type))
    types[fam.name] = fam.type
    for s in fam.samples:
        if fam.type == "counter" and s.name != fam.name + "_total":
            sys.exit("counter sample %s is not %s_total" % (s.name, fam.name))
        key = s.name
        if s.labels:
            key += "{" + ",".join('%s="%s"' % kv for kv in sorted(s.labels.items())) + "}"
        if key in samples:
            sys.exit("sample %s twice" % key)
        samples[key] = s.value
print(json.dumps({"samples": samples, "types": types}))
EOF

# metrics NAME: scrape the tracker's /metrics into $T/NAME.json (and the raw text into NAME.prom).
metrics() {
	"$PY" "$T/prom.py" "$TURL/metrics" "$T/$1.prom" >"$T/$1.json" 2>"$T/$1.err" ||
		fail "/metrics ($1) does not parse: $(tail -n 3 "$T/$1.err")"
}

# m NAME SERIES: a sample's value as an integer, or "absent".
m() {
	"$PY" -c '
import json, sys
d = json.load(open(sys.argv[1]))["samples"]
v = d.get(sys.argv[2])
print("absent" if v is None else int(v))' "$T/$1.json" "$2"
}

# expect NAME SERIES WANT: fail unless the sample has the value WANT.
expect() {
	local got
	got=$(m "$1" "$2")
	[[ $got == "$3" ]] || fail "$1: $2 is $got, expected $3"
}

# status NAME: GET /status into $T/NAME.status.
status() {
	curl -s -m 10 -o "$T/$1.status" "$TURL/status" || fail "GET /status failed"
}

# js FILE EXPR: a Python expression on the JSON in FILE (as d).
js() {
	"$PY" -c 'import json, sys; d = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"
}

# ann PEER_ID PORT LEFT [EXTRA]: an announce URL for the swarm IH.
IH=$(printf '%%%02x' $(seq 0 19) | tr -d '\n')
IH_HEX=000102030405060708090a0b0c0d0e0f10111213
ann() {
	echo "$TURL/announce?info_hash=$IH&peer_id=$1&port=$2&uploaded=0&downloaded=0&left=$3&compact=1${4:-}"
}
get() { # get URL: HTTP status code
	curl -s -m 10 -o /dev/null -w '%{http_code}' "$1"
}

# ---- the tracker, with curl --------------------------------------------------
# A long interval: nothing expires during the test, so whatever leaves does so by event=stopped.
start_tracker --interval 60 -v

metrics m0
for ev in none started completed stopped; do
	for res in ok refused; do
		expect m0 "p2pvbd_tracker_announces_total{event=\"$ev\",result=\"$res\"}" 0
	done
done
expect m0 p2pvbd_tracker_swarms 0
expect m0 'p2pvbd_tracker_peers{state="seeding"}' 0
expect m0 'p2pvbd_tracker_peers{state="leeching"}' 0
expect m0 p2pvbd_tracker_interval_seconds 60
expect m0 "p2pvbd_tracker_build_info{version=\"$tv\"}" 1
[[ $(js "$T/m0.json" 'd["types"]["p2pvbd_tracker_announces"]') == counter ]] ||
	fail "announces is not a counter: $(js "$T/m0.json" 'd["types"]')"
[[ $(js "$T/m0.json" 'd["types"]["p2pvbd_tracker_peers"]') == gauge ]] || fail "peers is not a gauge"
now=$(date +%s)
start=$(m m0 p2pvbd_tracker_start_time_seconds)
((start <= now && start > now - 3600)) || fail "start time $start is not a recent Unix time (now $now)"

A=-TT0001-aaaaaaaaaaaa
B=-TT0001-bbbbbbbbbbbb
[[ $(get "$(ann $A 7001 100 '&event=started&key=k1')") == 200 ]] || fail "announce A failed"
[[ $(get "$(ann $B 7002 0 '&event=started')") == 200 ]] || fail "announce B failed"
[[ $(get "$(ann $A 7001 100 '&key=k1')") == 200 ]] || fail "re-announce A failed"
[[ $(get "$TURL/scrape?info_hash=$IH") == 200 ]] || fail "scrape failed"
[[ $(get "$TURL/announce?info_hash=short&peer_id=$A&port=1&left=0") == 400 ]] ||
	fail "a malformed announce was not refused"
[[ $(get "$TURL/nothing/here") == 404 ]] || fail "an unknown path was not a 404"
metrics m1
expect m1 'p2pvbd_tracker_announces_total{event="started",result="ok"}' 2
expect m1 'p2pvbd_tracker_announces_total{event="none",result="ok"}' 1
expect m1 p2pvbd_tracker_scrapes_total 1
expect m1 'p2pvbd_tracker_http_requests_total{code="200",path="/announce"}' 3
expect m1 'p2pvbd_tracker_http_requests_total{code="400",path="/announce"}' 1
expect m1 'p2pvbd_tracker_http_requests_total{code="404",path="other"}' 1
expect m1 'p2pvbd_tracker_http_requests_total{code="200",path="/scrape"}' 1
expect m1 'p2pvbd_tracker_http_requests_total{code="200",path="/metrics"}' 1
expect m1 p2pvbd_tracker_swarms 1
expect m1 'p2pvbd_tracker_peers{state="seeding"}' 1
expect m1 'p2pvbd_tracker_peers{state="leeching"}' 1
expect m1 "p2pvbd_tracker_swarm_peers{info_hash=\"$IH_HEX\",state=\"seeding\"}" 1
expect m1 "p2pvbd_tracker_swarm_peers{info_hash=\"$IH_HEX\",state=\"leeching\"}" 1
note "/metrics counts announces, scrapes and HTTP replies; peers by state"

# A stop under another key is refused (A stays); A's own stop and B's drop them at once.
[[ $(get "$(ann $A 7001 100 '&event=stopped&key=k2')") == 200 ]] || fail "stopped (wrong key): HTTP error"
metrics m2
expect m2 'p2pvbd_tracker_announces_total{event="stopped",result="refused"}' 1
expect m2 'p2pvbd_tracker_peers{state="leeching"}' 1
expect m2 p2pvbd_tracker_peers_stopped_total 0
[[ $(get "$(ann $B 7002 0 '&event=stopped')") == 200 ]] || fail "stopped B failed"
metrics m3
status s3
expect m3 'p2pvbd_tracker_announces_total{event="stopped",result="ok"}' 1
expect m3 p2pvbd_tracker_peers_stopped_total 1
expect m3 'p2pvbd_tracker_peers{state="seeding"}' 0
expect m3 'p2pvbd_tracker_peers{state="leeching"}' 1
expect m3 "p2pvbd_tracker_swarm_peers{info_hash=\"$IH_HEX\",state=\"seeding\"}" 0
expect m3 p2pvbd_tracker_peers_expired_total 0
[[ $(js "$T/s3.status" "[(s['complete'], s['incomplete']) for s in d['swarms'] if s['info_hash'] == '$IH_HEX']") == "[(0, 1)]" ]] ||
	fail "/status after B stopped: $(cat "$T/s3.status")"
[[ $(get "$(ann $A 7001 100 '&event=stopped&key=k1')") == 200 ]] || fail "stopped A failed"
metrics m4
expect m4 p2pvbd_tracker_swarms 0
expect m4 p2pvbd_tracker_peers_stopped_total 2
expect m4 "p2pvbd_tracker_swarm_peers{info_hash=\"$IH_HEX\",state=\"leeching\"}" absent
note "event=stopped drops a peer at once; a stop under another key is refused"

# ---- a real seed and fetch ---------------------------------------------------
make_image "$T/src.img" 4 1234
keygen "$T/src.key"
start_seed -k "$T/src.key" -t "$TURL/announce" "$T/src.img"
VOL=${URI#p2pvbd://}
VOL=${VOL%%\?*}
VOL_IH=$("$PY" -c 'import hashlib, sys
print(hashlib.blake2b(b"p2pvbd-infohash-v1" + bytes.fromhex(sys.argv[1]), digest_size=32).hexdigest()[:40])' "$VOL")
for ((i = 0; i < 100; i++)); do # the seed announces at start; wait for it
	metrics m5
	[[ $(m m5 "p2pvbd_tracker_swarm_peers{info_hash=\"$VOL_IH\",state=\"seeding\"}") == 1 ]] && break
	sleep 0.1
done
((i < 100)) || fail "the seed's announce never showed in /metrics: $(grep swarm_peers "$T/m5.prom")"
started0=$(m m5 'p2pvbd_tracker_announces_total{event="started",result="ok"}')
stopped0=$(m m5 'p2pvbd_tracker_announces_total{event="stopped",result="ok"}')
status s5
[[ $(js "$T/s5.status" "[(s['complete'], s['receipt_count']) for s in d['swarms'] if s['info_hash'] == '$VOL_IH']") == "[(1, 0)]" ]] ||
	fail "/status before any receipt: $(cat "$T/s5.status")"

run_cmd f1 "$P2PVBD" fetch -v --no-progress "$URI" "$T/f1.img"
((RC == 0)) || fail "fetch f1 failed (rc $RC): $(tail -n 5 "$T/f1.err")"
cmp -s "$T/src.img" "$T/f1.img" || fail "f1 differs from the source"
grep -q "tracker $TURL/announce: event=stopped sent" "$T/f1.err" ||
	fail "f1 did not log that it sent event=stopped: $(grep -i tracker "$T/f1.err" | tail -n 5)"
# The fetch has exited: its stop was answered before, so the tracker dropped it already.
metrics m6
status s6
expect m6 'p2pvbd_tracker_announces_total{event="started",result="ok"}' $((started0 + 1))
expect m6 'p2pvbd_tracker_announces_total{event="stopped",result="ok"}' $((stopped0 + 1))
expect m6 p2pvbd_tracker_peers_stopped_total 3
(($(m m6 'p2pvbd_tracker_announces_total{event="completed",result="ok"}') >= 1)) ||
	fail "the fetch's event=completed was not counted"
expect m6 "p2pvbd_tracker_swarm_peers{info_hash=\"$VOL_IH\",state=\"seeding\"}" 1
expect m6 "p2pvbd_tracker_swarm_peers{info_hash=\"$VOL_IH\",state=\"leeching\"}" 0
expect m6 p2pvbd_tracker_peers_expired_total 0
(($(m m6 p2pvbd_tracker_receipts_accepted_total) >= 1)) || fail "the fetch's receipt was not counted"
(($(m m6 p2pvbd_tracker_receipts_received_total) >= $(m m6 p2pvbd_tracker_receipts_accepted_total))) ||
	fail "more receipts accepted than received"
expect m6 p2pvbd_tracker_receipts 1
# /status: the volume's entry counts the seed and the receipt, as a scrape would, and needing no
# secret it shows no addresses, peer ids, volume id or receipts (issue 14).
[[ $(js "$T/s6.status" "[(s['receipt_count'], s['complete'], s['incomplete']) for s in d['swarms'] if s['info_hash'] == '$VOL_IH']") == "[(1, 1, 0)]" ]] ||
	fail "/status after the fetch exited: $(cat "$T/s6.status")"
[[ $(js "$T/s6.status" "sorted(set(d) | set(k for s in d['swarms'] for k in s))") == "['complete', 'downloaded', 'incomplete', 'info_hash', 'interval', 'max_peers', 'max_swarms', 'peer_count', 'receipt_count', 'swarm_count', 'swarms']" ]] ||
	fail "/status shows more than counts: $(cat "$T/s6.status")"
for secret in 127.0.0.1 "$VOL"; do
	! grep -qi -- "$secret" "$T/s6.status" || fail "/status shows $secret: $(cat "$T/s6.status")"
done
note "the fetch's event=stopped arrived before it exited; /status shows counts only"

# A second tracker that accepts connections but never answers: the fetch still completes and
# exits, giving up on that tracker's stop at its deadline (logged), the real tracker's answered.
cat >"$T/blackhole.py" <<'EOF'
import socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(64)
open(sys.argv[1], "w").write("%d\n" % s.getsockname()[1])
time.sleep(600)
EOF
bg_start "$T/blackhole.log" "$PY" "$T/blackhole.py" "$T/blackhole.port"
BH_PID=$BG_PID
wait_for_file "$T/blackhole.port" 10 "$BH_PID" || fail "the blackhole did not start"
BH_URL=http://127.0.0.1:$(cat "$T/blackhole.port")/announce
run_cmd f2 "$P2PVBD" fetch -v --no-progress "$URI&tracker=$BH_URL" "$T/f2.img"
((RC == 0)) || fail "fetch f2 (one tracker silent) failed (rc $RC): $(tail -n 5 "$T/f2.err")"
cmp -s "$T/src.img" "$T/f2.img" || fail "f2 differs from the source"
grep -q "tracker $BH_URL: event=stopped failed: no answer within" "$T/f2.err" ||
	fail "f2 did not give up on the silent tracker's stop: $(grep -i stopped "$T/f2.err")"
grep -q "tracker $TURL/announce: event=stopped sent" "$T/f2.err" ||
	fail "f2 did not stop at the real tracker: $(grep -i stopped "$T/f2.err")"
metrics m7
expect m7 'p2pvbd_tracker_announces_total{event="stopped",result="ok"}' $((stopped0 + 2))
expect m7 "p2pvbd_tracker_swarm_peers{info_hash=\"$VOL_IH\",state=\"leeching\"}" 0
stop_pid "$BH_PID"
note "a silent tracker does not keep a fetch from exiting"

# The seed stops too (SIGTERM): the volume's swarm is gone at once.
stop_pid "$SEED_PID"
((EXIT_STATUS == 0)) || fail "the seed exited $EXIT_STATUS on SIGTERM"
metrics m8
status s8
expect m8 p2pvbd_tracker_swarms 0
expect m8 "p2pvbd_tracker_swarm_peers{info_hash=\"$VOL_IH\",state=\"seeding\"}" absent
expect m8 'p2pvbd_tracker_announces_total{event="stopped",result="ok"}' $((stopped0 + 3))
[[ $(js "$T/s8.status" 'd["swarms"]') == "[]" ]] || fail "/status after the seed stopped: $(cat "$T/s8.status")"
expect m8 p2pvbd_tracker_peers_expired_total 0
note "the seed's event=stopped removes the volume's swarm"

stop_pid "$TPID"
((EXIT_STATUS == 0)) || fail "the tracker exited $EXIT_STATUS on SIGTERM"
