#!/bin/bash
# SPDX-License-Identifier: ISC
# Checks: seed and fetch --metrics 127.0.0.1:0 serve Prometheus text that python3-prometheus-client's
# parser reads; after a complete fetch the counters are right (bytes fetched = the image's non-zero
# bytes, served >= that, complete 1, a receipt at the seed, per-peer samples labelled with peer and
# role, histograms whose +Inf bucket equals their count); other paths are 404, other methods 405.
# `status --json` of a running fetch names the volume, the output and the source among its peers.
# A VM read through `fetch -e --lazy` (qemu-io) of a chunk not yet there is counted in the fault
# latency histogram, and no fault is left waiting afterwards.
# fast
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh" "$@"
for tool in curl qemu-io; do
	command -v "$tool" >/dev/null || fail "$tool not installed (tools/install-deps.sh)"
done
/usr/bin/python3 -c 'import prometheus_client.parser' 2>/dev/null ||
	fail "python3-prometheus-client not installed (tools/install-deps.sh)"
CH=$((256 * 1024))

# metrics_url LOG PID: the URL a process logged ("metrics on http://…/metrics"), waiting 30 s at most.
metrics_url() {
	local log=$1 pid=$2 i url
	for ((i = 0; i < 300; i++)); do
		url=$(grep -o 'metrics on http://127\.0\.0\.1:[0-9]*/metrics' "$log" | head -n 1 || true)
		if [[ -n $url ]]; then
			echo "${url#metrics on }"
			return 0
		fi
		kill -0 "$pid" 2>/dev/null || fail "$(basename "$log" .log) exited before serving metrics"
		sleep 0.1
	done
	fail "$(basename "$log" .log) logged no 'metrics on http://…' line within 30 s"
}

# scrape NAME URL: GET URL with curl into $T/NAME.prom (headers in $T/NAME.hdr).
scrape() {
	curl -sS --max-time 10 -D "$T/$1.hdr" -o "$T/$1.prom" "$2" 2>"$T/$1.curl.err" ||
		fail "curl $2: $(cat "$T/$1.curl.err")"
	grep -qi '^content-type: text/plain; version=0\.0\.4' "$T/$1.hdr" ||
		fail "$2: Content-Type is not the text format 0.0.4: $(cat "$T/$1.hdr")"
}

# check_prom FILE PYTHON-ASSERTIONS: parse FILE with prometheus_client; the assertions see
# v(name, **labels) (the one sample's value), samples(name) (every sample) and fams (by name).
check_prom() {
	/usr/bin/python3 - "$1" "$2" <<'PY'
import sys
from prometheus_client.parser import text_string_to_metric_families

text = open(sys.argv[1]).read()
fams = {}
for f in text_string_to_metric_families(text):
    assert f.name not in fams, "family %s twice" % f.name
    fams[f.name] = f

def samples(name):
    return [s for f in fams.values() for s in f.samples if s.name == name]

def v(name, **labels):
    got = [s for s in samples(name) if all(s.labels.get(k) == w for k, w in labels.items())]
    assert len(got) == 1, "%d samples %s %r" % (len(got), name, labels)
    return got[0].value

# Every histogram: buckets cumulative, the last one +Inf and equal to _count.
for f in fams.values():
    if f.type != "histogram":
        continue
    b = [s for s in f.samples if s.name == f.name + "_bucket"]
    assert b and b[-1].labels["le"] == "+Inf", "%s: no +Inf bucket last" % f.name
    assert all(x.value <= y.value for x, y in zip(b, b[1:])), "%s: not cumulative" % f.name
    assert b[-1].value == v(f.name + "_count"), "%s: +Inf != _count" % f.name
exec(sys.argv[2])
PY
}

# 8 MiB, random but for MiB 1, 4 and 7 (zero): 32 chunks, 20 of data. At 1 MiB/s the fetch takes
# some seconds, long enough to see a fetch still running.
make_image "$T/src.img" 8
NONZERO=$(nonzero_bytes 8 0 "$CH")
keygen "$T/key"
start_seed -k "$T/key" --rate-limit 1M --metrics 127.0.0.1:0 --ctl "$T/seed.ctl" "$T/src.img"
SEED_URL=$(metrics_url "$T/seed.log" "$SEED_PID")
VOLID=$(sed -n 's|^p2pvbd://\([0-9a-f]*\)?.*|\1|p' "$T/vol.uri")
[[ ${#VOLID} == 32 ]] || fail "no volume id in the URI $URI"

# Before any peer: the seed's page parses, with no peer samples yet; the info labels.
scrape seed0 "$SEED_URL"
/usr/bin/python3 - "$T/seed0.prom" "$VOLID" "$T/src.img" <<'PY' || fail "seed page before peers: $(cat "$T/seed0.prom")"
import sys
from prometheus_client.parser import text_string_to_metric_families
info = [s for f in text_string_to_metric_families(open(sys.argv[1]).read()) for s in f.samples
        if s.name == "p2pvbd_info"]
assert len(info) == 1 and info[0].labels == {"role": "seed", "volume_id": sys.argv[2],
                                              "output": sys.argv[3]}, info
PY
check_prom "$T/seed0.prom" '
assert v("p2pvbd_complete") == 1 and v("p2pvbd_final") == 1
assert v("p2pvbd_peers_connected") == 0
assert v("p2pvbd_image_size_bytes") == 8 * 1048576
assert samples("p2pvbd_peer_send_bytes_per_second") == []
' || fail "seed page before peers: $(cat "$T/seed0.prom")"

# Other paths and methods.
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "${SEED_URL%/metrics}/")
[[ $code == 404 ]] || fail "GET / answered $code, expected 404"
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "${SEED_URL}x")
[[ $code == 404 ]] || fail "GET /metricsx answered $code, expected 404"
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -X POST -d x "$SEED_URL")
[[ $code == 405 ]] || fail "POST /metrics answered $code, expected 405"

# A malformed address is a usage error; an address in use fails with the reason.
expect_rc 2 badspec "$P2PVBD" seed -k "$T/key" -l 127.0.0.1:0 --metrics 127.0.0.1 "$T/src.img"
err_mentions badspec 'bad --metrics'
SEED_MPORT=${SEED_URL##*:}
SEED_MPORT=${SEED_MPORT%/metrics}
expect_rc 1 inuse "$P2PVBD" seed -k "$T/key" -l 127.0.0.1:0 --metrics "127.0.0.1:$SEED_MPORT" \
	"$T/src.img"
err_mentions inuse "metrics.*127\\.0\\.0\\.1.*$SEED_MPORT.*address already in use"

# A mirror fetch: it stays up after completion, so its status and metrics can be read then.
bg_start "$T/fetch.log" "$P2PVBD" fetch --no-progress --mirror --metrics 127.0.0.1:0 \
	--ctl "$T/fetch.ctl" "$URI" "$T/out.img"
FETCH_PID=$BG_PID
FETCH_URL=$(metrics_url "$T/fetch.log" "$FETCH_PID")

# status --json while it runs (or once complete: the mirror stays): the volume, OUT, the source.
ok=
for ((i = 0; i < 300; i++)); do
	"$P2PVBD" status --json "$T/fetch.ctl" >"$T/st.json" 2>"$T/st.err" || true
	if /usr/bin/python3 - "$T/st.json" "$VOLID" "$T/out.img" 2>"$T/st.py.err" <<'PY'; then
import json, sys
d = json.load(open(sys.argv[1]))
assert d["volume_id"] == sys.argv[2], d["volume_id"]
assert d["output"] == sys.argv[3], d["output"]
assert d["role"] == "fetch"
eta = d["eta_s"]
assert eta is None or (isinstance(eta, (int, float)) and eta >= 0), eta
assert "receipts" not in d, "receipts only at a seed"
peers = d["peers"]
assert isinstance(peers, list) and peers, "no peer yet"
src = [p for p in peers if p["role"] == "source"]
assert len(src) == 1, peers
p = src[0]
assert p["address"].startswith("127.0.0.1:")
for k in ("fetch_rate", "serve_rate"):
    assert isinstance(p[k], (int, float)) and p[k] >= 0, p
assert p["chunks"] is None or p["chunks"] >= 0, p
assert d["peers_connected"] == len(peers)
# the keys there before
for k in ("volume_known", "complete", "final", "generation", "image_size", "chunk_size", "chunks",
          "bytes_done", "fetch_rate", "serve_rate", "write_rate", "dirty_bytes",
          "switchover_cost_s"):
    assert k in d, k
PY
		ok=1
		break
	fi
	kill -0 "$FETCH_PID" 2>/dev/null || fail "fetch exited: $(tail -n 5 "$T/fetch.log")"
	sleep 0.1
done
[[ -n $ok ]] || fail "status --json of the fetch: $(cat "$T/st.py.err") in $(cat "$T/st.json")"

# Complete, and the source took the receipt.
for ((i = 0; i < 600; i++)); do
	grep -q 'the source accepted our completion receipt' "$T/fetch.log" && break
	kill -0 "$FETCH_PID" 2>/dev/null || fail "fetch exited: $(tail -n 5 "$T/fetch.log")"
	sleep 0.1
done
grep -q 'the source accepted our completion receipt' "$T/fetch.log" ||
	fail "the fetch did not complete (with its receipt taken) within 60 s"
cmp "$T/src.img" "$T/out.img" || fail "the image differs from the source"

scrape fetch1 "$FETCH_URL"
check_prom "$T/fetch1.prom" "
assert v('p2pvbd_fetched_bytes_total') == $NONZERO, v('p2pvbd_fetched_bytes_total')
assert v('p2pvbd_fetched_chunks_total') == $NONZERO // $CH
assert v('p2pvbd_complete') == 1 and v('p2pvbd_final') == 1
assert v('p2pvbd_image_done_bytes') == v('p2pvbd_image_size_bytes') == 8 * 1048576
assert v('p2pvbd_image_left_bytes') == 0
assert v('p2pvbd_bad_pieces_total') == 0
assert v('p2pvbd_faults_waiting') == 0
assert v('p2pvbd_peers_connected') >= 1
for name in ('p2pvbd_peer_receive_bytes_per_second', 'p2pvbd_peer_send_bytes_per_second'):
    s = samples(name)
    assert s and all(x.labels.get('peer', '').startswith('127.0.0.1:') and x.labels.get('role')
                     for x in s), s
src = [x for x in samples('p2pvbd_peer_received_bytes_total') if x.labels['role'] == 'source']
assert len(src) == 1 and src[0].value == $NONZERO, src
" || fail "fetch metrics after completion: $(cat "$T/fetch1.prom")"

scrape seed1 "$SEED_URL"
check_prom "$T/seed1.prom" "
assert v('p2pvbd_served_bytes_total') >= $NONZERO, v('p2pvbd_served_bytes_total')
assert v('p2pvbd_served_chunks_total') >= $NONZERO // $CH
assert v('p2pvbd_receipts_total') == 1
assert v('p2pvbd_fetched_bytes_total') == 0
s = samples('p2pvbd_peer_sent_bytes_total')
assert len(s) == 1 and s[0].labels['role'] == 'peer' and s[0].value >= $NONZERO, s
" || fail "seed metrics after the fetch: $(cat "$T/seed1.prom")"

# The seed's status: receipts counted, the fetch in its peer table.
run_cmd sst "$P2PVBD" status --json "$T/seed.ctl"
/usr/bin/python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert d["receipts"] == 1 and d["output"] == sys.argv[2] and d["eta_s"] is None, d
assert [p["role"] for p in d["peers"]] == ["peer"], d["peers"]
' "$T/sst.out" "$T/src.img" || fail "seed status --json: $(cat "$T/sst.out")"
run_cmd stt "$P2PVBD" status "$T/fetch.ctl"
grep -Eq '^  127\.0\.0\.1:[0-9]+ +source ' "$T/stt.out" ||
	fail "status (text) shows no peer table with the source: $(cat "$T/stt.out")"
stop_pid "$FETCH_PID"

# A VM's read of a chunk not there yet: fetch -e --lazy fetches nothing else, so chunk 9 (data)
# is surely missing when qemu-io reads it.
SOCK=$T/nbd.sock
bg_start "$T/lazy.log" "$P2PVBD" fetch --no-progress --lazy -e "unix:$SOCK" \
	--metrics 127.0.0.1:0 --ctl "$T/lazy.ctl" "$URI" "$T/lazy.img"
LAZY_PID=$BG_PID
LAZY_URL=$(metrics_url "$T/lazy.log" "$LAZY_PID")
wait_for_line "$T/lazy.log" "^exporting on unix:$SOCK" 30 "$LAZY_PID" "the lazy fetch exited before exporting" "the lazy fetch did not export within 30 s"
scrape lazy0 "$LAZY_URL"
check_prom "$T/lazy0.prom" "
assert v('p2pvbd_fault_latency_seconds_count') == 0
assert v('p2pvbd_complete') == 0
" || fail "lazy fetch before a read: $(cat "$T/lazy0.prom")"
run_cmd read qemu-io -f raw -r "nbd+unix:///?socket=$SOCK" -c "read $((9 * CH + 4096)) 4096"
((RC == 0)) || fail "qemu-io read through the export: $(cat "$T/read.err" "$T/read.out")"
scrape lazy1 "$LAZY_URL"
check_prom "$T/lazy1.prom" "
n = v('p2pvbd_fault_latency_seconds_count')
assert n >= 1, n
assert v('p2pvbd_fault_latency_seconds_sum') > 0
assert v('p2pvbd_fault_latency_seconds_bucket', le='+Inf') == n
assert v('p2pvbd_faults_waiting') == 0
assert v('p2pvbd_fetched_chunks_total') >= 1
" || fail "fault latency after a read of a missing chunk: $(cat "$T/lazy1.prom")"
stop_pid "$LAZY_PID"
note "PASS"
