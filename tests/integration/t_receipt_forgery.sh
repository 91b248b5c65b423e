#!/bin/bash
# SPDX-License-Identifier: ISC
# Checks (issue 14, part 2): a receipt counts only if its signer proved the volume's join secret.
# A seed with --exit-after-receipts 3 and a tracker; one real destination completes. An attacker
# who knows the volume id takes the genuine receipt from GET /receipts, re-signs it with two fresh
# Ed25519 keys and posts both to the tracker, which keeps them (it cannot check the MAC). The seed
# refuses them, says so in its log, and keeps serving; a receipt in the retired format (no MAC) is
# refused by the tracker with a reason. GET /status shows no peer addresses, volume ids or
# receipts. Two more real destinations then make the seed exit 0.
# fast
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh" "$@"

PY=/usr/bin/python3

start_tracker --interval 60 -v

make_image "$T/src.img" 4 321
keygen "$T/key"
start_seed -k "$T/key" -v --exit-after-receipts 3 -t "$TURL/announce" "$T/src.img"
VOL=${URI#p2pvbd://}
VOL=${VOL%%\?*}

# One real destination.
keygen "$T/peer1"
expect_rc 0 fetch1 "$P2PVBD" fetch -q --no-progress -k "$T/peer1" "$URI" "$T/out1.img"
cmp -s "$T/src.img" "$T/out1.img" || fail "fetch 1 differs from the source"
PK1=$(sed -n 's/^p2pvbd-public-key-v1 //p' "$T/peer1.pub")

# Wait until the tracker holds its receipt (the fetch posted it before exiting, or will retry).
for ((i = 0; i < 100; i++)); do
	curl -s -m 10 -o "$T/receipts.bin" "$TURL/receipts?volume=$VOL" || fail "GET /receipts failed"
	(($(stat -c %s "$T/receipts.bin") > 100)) && break
	sleep 0.1
done
((i < 100)) || fail "the tracker never got the destination's receipt: $(head -c 200 "$T/receipts.bin")"

# The attacker: re-sign every receipt the tracker hands out with two fresh keys and post them.
# Ed25519 from libsodium (already a dependency) through ctypes; the receipt layout is PROTOCOL.md
# §10 (signer at 72..103, signature at 104..167 over "p2pvbd-receipt-vN" NUL bytes 0..103; a v2
# receipt keeps its MAC at 168..199, which the attacker cannot recompute).
cat >"$T/forge.py" <<'EOF'
import ctypes, ctypes.util, sys, urllib.error, urllib.request

turl, vol, mode = sys.argv[1], sys.argv[2], sys.argv[3]
na = ctypes.CDLL(ctypes.util.find_library("sodium") or "libsodium.so.23")
if na.sodium_init() < 0:
    sys.exit("sodium_init failed")

def keypair():
    pk, sk = ctypes.create_string_buffer(32), ctypes.create_string_buffer(64)
    na.crypto_sign_keypair(pk, sk)
    return pk.raw, sk.raw

def sign(sk, msg):
    sig = ctypes.create_string_buffer(64)
    na.crypto_sign_detached(sig, None, msg, ctypes.c_ulonglong(len(msg)), sk)
    return sig.raw

def post(blob):
    req = urllib.request.Request(turl + "/receipt", data=blob, method="POST",
                                 headers={"Content-Type": "application/octet-stream"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()

LAYOUT = {b"P2PVRCP1": (168, b"p2pvbd-receipt-v1"), b"P2PVRCP2": (200, b"p2pvbd-receipt-v2")}
if mode == "resign":
    body = urllib.request.urlopen("%s/receipts?volume=%s" % (turl, vol), timeout=10).read()
    k = body.index(b"8:receipts") + len(b"8:receipts")
    colon = body.index(b":", k)
    n = int(body[k:colon])
    blobs = body[colon + 1:colon + 1 + n]
    if n == 0 or blobs[:8] not in LAYOUT:
        sys.exit("no receipt to forge from: %r" % body[:80])
    size, domain = LAYOUT[blobs[:8]]
    genuine = [blobs[i:i + size] for i in range(0, n, size)]
    for j in range(2):
        pk, sk = keypair()
        head = genuine[0][:72] + pk
        forged = head + sign(sk, domain + b"\0" + head) + genuine[0][168:size]
        code, text = post(forged)
        print("forged %d (signer %s): HTTP %d %s" % (j, pk.hex(), code, text.decode(errors="replace")))
elif mode == "v1":
    # A receipt in the retired format, made from scratch for the volume.
    pk, sk = keypair()
    head = b"P2PVRCP1" + bytes.fromhex(vol) + bytes(8) + bytes(32) + bytes(8) + pk
    code, text = post(head + sign(sk, b"p2pvbd-receipt-v1\0" + head))
    print("v1: HTTP %d %s" % (code, text.decode(errors="replace")))
EOF
run_cmd forge "$PY" "$T/forge.py" "$TURL" "$VOL" resign
((RC == 0)) || fail "the forging script failed: $(cat "$T/forge.err")"
note "$(cat "$T/forge.out")"
# The tracker cannot tell (it has no join secret): it keeps them and hands them to the seed.
(($(grep -c 'HTTP 200' "$T/forge.out") == 2)) ||
	fail "the tracker did not take the re-signed receipts, so this test proves nothing: $(cat "$T/forge.out")"

# The seed asks the tracker every 2 s; it must refuse both, say so, and keep serving.
for ((i = 0; i < 300; i++)); do
	(($(grep -c 'receipt relayed by a tracker refused' "$T/seed.log") >= 2)) && break
	if ! kill -0 "$SEED_PID" 2>/dev/null || grep -q 'no longer needed' "$T/seed.log"; then
		fail "the seed counted receipts re-signed by keys that never joined the volume"
	fi
	sleep 0.1
done
((i < 300)) || fail "the seed did not log within 30 s that it refused the re-signed receipts"
grep 'receipt relayed by a tracker refused' "$T/seed.log" | grep -q 'join secret' ||
	fail "the seed's refusal does not say the MAC (join secret) failed: $(grep refused "$T/seed.log")"
! grep -q 'no longer needed' "$T/seed.log" || fail "the seed exited its run after forged receipts"
kill -0 "$SEED_PID" 2>/dev/null || fail "the seed exited after forged receipts"
note "the seed refused both re-signed receipts and keeps serving"

# The retired format (no MAC) is refused at the tracker, saying why.
run_cmd forge_v1 "$PY" "$T/forge.py" "$TURL" "$VOL" v1
((RC == 0)) || fail "the forging script (v1) failed: $(cat "$T/forge_v1.err")"
grep -q '^v1: HTTP 400 .*P2PVRCP1' "$T/forge_v1.out" ||
	fail "a receipt in the retired format was not refused with a reason: $(cat "$T/forge_v1.out")"

# GET /status needs no secret: it shows counts only, like a scrape.
curl -s -m 10 -o "$T/status.json" "$TURL/status" || fail "GET /status failed"
"$PY" - "$T/status.json" <<'EOF' || fail "/status reveals more than a scrape: $(head -c 1500 "$T/status.json")"
import json, sys
d = json.load(open(sys.argv[1]))
bad = [k for k in d if k not in ("interval", "max_swarms", "max_peers", "swarm_count", "peer_count",
                                  "receipt_count", "swarms")]
for s in d["swarms"]:
    bad += [k for k in s if k not in ("info_hash", "complete", "incomplete", "downloaded",
                                      "receipt_count")]
if bad:
    sys.exit("unexpected fields: %s" % bad)
if d["receipt_count"] < 3 or d["peer_count"] < 1:
    sys.exit("counts are wrong")
EOF
for secret in 127.0.0.1 "$VOL" "$PK1"; do
	! grep -qi -- "$secret" "$T/status.json" || fail "/status shows $secret: $(head -c 1500 "$T/status.json")"
done
note "/status shows counts only: no addresses, volume id or signer keys"

# Two more real destinations: now there are three, and the seed is done.
for n in 2 3; do
	keygen "$T/peer$n"
	expect_rc 0 "fetch$n" "$P2PVBD" fetch -q --no-progress -k "$T/peer$n" "$URI" "$T/out$n.img"
	cmp -s "$T/src.img" "$T/out$n.img" || fail "fetch $n differs from the source"
done
wait_exit "$SEED_PID" 60 || fail "the seed still runs 60 s after the third real receipt"
((EXIT_STATUS == 0)) || fail "the seed exited $EXIT_STATUS after three real receipts"
grep -q '3 receipts received: the source.s data is no longer needed' "$T/seed.log" ||
	fail "the seed did not say it had three receipts: $(grep -i receipt "$T/seed.log" | tail -n 5)"
note "three real destinations: the seed exits 0"
