#!/bin/bash
# SPDX-License-Identifier: ISC
# Checks: TLS on the NBD export (NBD_OPT_STARTTLS, FORCEDTLS), with real clients.
# - PSK (psktool's file): qemu-io (tls-creds-psk) writes and reads through seed -e on TCP;
#   nbdcopy (nbds://) reads the whole export and writes a new one; the image equals the model
#   byte for byte; nbdinfo nbds:// sees the export.
# - Refused: a wrong key, an unknown username (qemu-io and nbdinfo), a plaintext client
#   (nbdinfo nbd://, qemu-io without TLS), a raw client that skips STARTTLS (NBD_OPT_GO and
#   NBD_OPT_LIST get NBD_REP_ERR_TLS_REQD, NBD_OPT_EXPORT_NAME closes with no data); no data
#   reaches any of them.
# - X.509 (certtool CA, server and client certificates) with --tls-verify-peer: qemu-io with a
#   client certificate writes and reads; without one it is refused.
# - fetch -e unix:SOCK --tls-psk: nbdcopy over nbds+unix:// reads the arrived volume.
# - At start: a TCP export without TLS or --tls=off is refused (exit 2, naming --tls=off);
#   --tls=on, a malformed PSK file, a missing certificate are refused; --tls=off on a
#   non-loopback address warns.
# fast
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh" "$@"
for tool in qemu-io qemu-img nbdinfo nbdcopy psktool certtool; do
	command -v "$tool" >/dev/null || fail "$tool missing (tools/install-deps.sh)"
done

# stop_clean NAME PID LOG: SIGTERM; it must exit 0 (under the sanitizers: no leak, no error at
# exit); its log is kept as NAME.log.
stop_clean() {
	kill -TERM "$2" 2>/dev/null || true
	wait_exit "$2" 30 || fail "$1 did not stop within 30 s of SIGTERM"
	cp "$3" "$T/$1.log"
	((EXIT_STATUS == 0)) || fail "$1 exited $EXIT_STATUS after SIGTERM: $(tail -5 "$3")"
	! grep -q 'Sanitizer\|runtime error' "$3" || fail "$1: the sanitizers reported: $(grep -m3 'Sanitizer\|runtime error' "$3")"
}

MIB=8
make_image "$T/src.img" "$MIB"
cp "$T/src.img" "$T/model.img"
keygen "$T/src.key"

# PSK: the server's file and a client's copy (QEMU reads DIR/keys.psk), a wrong key for alice.
# bob has a key of his own, but the server does not know him.
mkdir -p "$T/psk" "$T/pskwrong" "$T/pskbob"
psktool -u alice -p "$T/psk/keys.psk" >/dev/null 2>&1 || fail "psktool failed"
psktool -u alice -p "$T/pskwrong/keys.psk" >/dev/null 2>&1 || fail "psktool failed (wrong key)"
psktool -u bob -p "$T/pskbob/keys.psk" >/dev/null 2>&1 || fail "psktool failed (bob)"
chmod 600 "$T"/psk*/keys.psk

# ---- refused at start ---------------------------------------------------------------------
expect_rc 2 notls "$P2PVBD" seed -k "$T/src.key" -l 127.0.0.1:0 -e 127.0.0.1:0 "$T/src.img"
err_mentions notls '--tls=off'
expect_rc 2 tlson "$P2PVBD" seed -k "$T/src.key" -e 127.0.0.1:0 --tls=on "$T/src.img"
err_mentions tlson 'tls=require'
expect_rc 2 tlsnoe "$P2PVBD" seed -k "$T/src.key" --tls-psk "$T/psk/keys.psk" "$T/src.img"
err_mentions tlsnoe 'need -e'
printf 'alice:1234\n' >"$T/short.psk"
expect_rc 1 badpsk "$P2PVBD" seed -k "$T/src.key" -l 127.0.0.1:0 -e 127.0.0.1:0 \
	--tls-psk "$T/short.psk" "$T/src.img"
err_mentions badpsk 'short.psk: line 1: the key must be'
mkdir -p "$T/emptycreds"
expect_rc 1 nocert "$P2PVBD" seed -k "$T/src.key" -l 127.0.0.1:0 -e 127.0.0.1:0 \
	--tls-creds "$T/emptycreds" "$T/src.img"
err_mentions nocert 'server-cert.pem'

# --tls=off on a wildcard address: served, with a warning (no client connects).
bg_start "$T/wild.log" "$P2PVBD" seed -k "$T/src.key" -l 127.0.0.1:0 -e 0.0.0.0:0 --tls=off \
	"$T/src.img"
WILD_PID=$BG_PID
wait_for_line "$T/wild.log" '^exporting on 0\.0\.0\.0:[0-9]+$' 60 "$WILD_PID" \
	"seed -e 0.0.0.0:0 --tls=off exited" "seed -e 0.0.0.0:0 --tls=off did not export"
grep -q 'plaintext NBD on an address other hosts can reach' "$T/wild.log" ||
	fail "no warning for a plaintext export on 0.0.0.0"
stop_clean seed-wild "$WILD_PID" "$T/wild.log"

# ---- PSK on TCP: seed -e --tls-psk --------------------------------------------------------
# start_tls_seed NAME TLS-OPTIONS...: seed -e 127.0.0.1:0 with them; sets PORT.
start_tls_seed() {
	local name=$1
	shift
	start_seed -k "$T/src.key" -e 127.0.0.1:0 "$@" "$T/src.img"
	wait_for_line "$T/seed.log" '^exporting on 127\.0\.0\.1:[0-9]+$' 30 "$SEED_PID" \
		"$name: seed exited before exporting" "$name: seed did not export within 30 s"
	PORT=$(sed -n 's/^exporting on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$T/seed.log")
	grep -q 'NBD export: TLS required' "$T/seed.log" || fail "$name: the seed does not say TLS is required"
}
start_tls_seed psk --tls-psk "$T/psk/keys.psk"

# qio NAME CREDS-OBJECT CMD...: qemu-io over TCP with the TLS object (or none if empty).
qio() {
	local name=$1 obj=$2 c args=()
	shift 2
	for c in "$@"; do
		args+=(-c "$c")
	done
	if [[ -n $obj ]]; then
		run_cmd "$name" qemu-io --object "$obj" --image-opts \
			"driver=nbd,server.type=inet,server.host=127.0.0.1,server.port=$PORT,tls-creds=tls0" \
			"${args[@]}"
	else
		run_cmd "$name" qemu-io --image-opts \
			"driver=nbd,server.type=inet,server.host=127.0.0.1,server.port=$PORT" "${args[@]}"
	fi
}
qio_ok() {
	qio "$@"
	if ((RC != 0)) || grep -Eqi 'fail|error|mismatch' "$T/$1.out" "$T/$1.err"; then
		fail "$1: qemu-io exited $RC: $(cat "$T/$1.out" "$T/$1.err" | head -c 1500)"
	fi
}
# qio_refused NAME CREDS-OBJECT: qemu-io cannot even open the export (and reads nothing).
qio_refused() {
	qio "$1" "$2" "read 0 4k"
	((RC != 0)) || fail "$1: qemu-io was served: $(cat "$T/$1.out")"
	grep -q 'read 4096/4096' "$T/$1.out" && fail "$1: qemu-io read data"
	return 0
}

PSK_OBJ="tls-creds-psk,id=tls0,endpoint=client,dir=$T/psk,username=alice"
qio_ok psk_write "$PSK_OBJ" "write -P 0x5a 1048576 65536" "write -P 0xa5 $((3 * 1048576 - 4096)) 8192" \
	flush "read -P 0x5a 1048576 65536" "read -P 0xa5 $((3 * 1048576 - 4096)) 8192"
model_write 1048576 65536 90
model_write $((3 * 1048576 - 4096)) 8192 165
grep -q 'TLS established:.*PSK user alice' "$T/seed.log" || fail "the seed did not log alice's TLS session"

# nbdcopy reads the whole export over TLS: the model, byte for byte.
NBDS="nbds://alice@127.0.0.1:$PORT/?tls-psk-file=$T/psk/keys.psk"
run_cmd copy_read nbdcopy "$NBDS" "$T/copy.img"
((RC == 0)) || fail "nbdcopy from nbds:// failed: $(cat "$T/copy_read.err")"
cmp "$T/copy.img" "$T/model.img" || fail "nbdcopy over TLS read other bytes than the model"
cmp "$T/src.img" "$T/model.img" || fail "the image is not the model after qemu-io's TLS writes"

# nbdcopy writes a whole new image over TLS (four connections); the image is then that.
head -c $((MIB * 1048576)) /dev/urandom >"$T/new.img"
run_cmd copy_write nbdcopy --connections=4 "$T/new.img" "$NBDS"
((RC == 0)) || fail "nbdcopy to nbds:// failed: $(cat "$T/copy_write.err")"
cmp "$T/src.img" "$T/new.img" || fail "the image is not what nbdcopy wrote over TLS"
cp "$T/new.img" "$T/model.img"

run_cmd info nbdinfo "$NBDS"
((RC == 0)) || fail "nbdinfo nbds:// failed: $(cat "$T/info.err")"
grep -Eq "export-size: $((MIB * 1048576))( |\$)" "$T/info.out" || fail "nbdinfo nbds://: $(cat "$T/info.out")"

# Refused: a wrong key, an unknown user, plaintext clients.
qio_refused psk_wrongkey "tls-creds-psk,id=tls0,endpoint=client,dir=$T/pskwrong,username=alice"
expect_rc 1 info_wrongkey nbdinfo "nbds://alice@127.0.0.1:$PORT/?tls-psk-file=$T/pskwrong/keys.psk"
grep -q 'TLS handshake failed' "$T/seed.log" || fail "the seed did not log the failed handshake"
expect_rc 1 info_bob nbdinfo "nbds://bob@127.0.0.1:$PORT/?tls-psk-file=$T/pskbob/keys.psk"
grep -q 'unknown PSK username "bob"' "$T/seed.log" || fail "the seed did not log the unknown user bob"
qio_refused psk_plain ""
# (libnbd 1.14 says only "Operation not supported" for NBD_REP_ERR_TLS_REQD; the log says why.)
expect_rc 1 info_plain nbdinfo "nbd://127.0.0.1:$PORT"
grep -q 'before TLS: refused' "$T/seed.log" || fail "the seed did not log an option refused before TLS"

# A raw client that skips STARTTLS: NBD_REP_ERR_TLS_REQD, and no export (no size, no data).
python3 - "$PORT" <<'PY' || fail "raw client without STARTTLS: see above"
import socket, struct, sys

IHAVEOPT = b"IHAVEOPT"
REP_MAGIC = 0x3E889045565A9
ERR_TLS_REQD = (1 << 31) + 5
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=20)

def recvn(n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            sys.exit("connection closed after %d of %d bytes" % (len(b), n))
        b += c
    return b

g = recvn(18)
assert g[:16] == b"NBDMAGIC" + IHAVEOPT, g
s.sendall(struct.pack(">I", 3))  # FIXED_NEWSTYLE | NO_ZEROES
for opt, data in ((7, struct.pack(">IH", 0, 0)), (3, b""), (8, b"")):  # GO, LIST, STRUCTURED
    s.sendall(IHAVEOPT + struct.pack(">II", opt, len(data)) + data)
    magic, ropt, typ, ln = struct.unpack(">QIII", recvn(20))
    msg = recvn(ln)
    assert magic == REP_MAGIC and ropt == opt, (hex(magic), ropt)
    assert typ == ERR_TLS_REQD, "option %d got reply type %#x (%r), not ERR_TLS_REQD" % (opt, typ, msg)
# EXPORT_NAME cannot be refused: the server must close, sending nothing (no size, no flags).
s.sendall(IHAVEOPT + struct.pack(">II", 1, 0))
rest = b""
while True:
    c = s.recv(4096)
    if not c:
        break
    rest += c
assert rest == b"", "the server sent %r after NBD_OPT_EXPORT_NAME without TLS" % rest
PY
grep -q 'NBD_OPT_EXPORT_NAME before TLS' "$T/seed.log" || fail "the seed did not log closing EXPORT_NAME before TLS"
stop_clean seed-psk "$SEED_PID" "$T/seed.log"
cmp "$T/src.img" "$T/model.img" || fail "the refused clients changed the image"

# ---- X.509 with client certificates -------------------------------------------------------
mkdir -p "$T/x509srv" "$T/x509cli" "$T/x509anon"
cat >"$T/ca.info" <<'EOF'
cn = p2pvbd test CA
ca
cert_signing_key
expiration_days = 2
EOF
cat >"$T/server.info" <<'EOF'
cn = 127.0.0.1
ip_address = 127.0.0.1
dns_name = localhost
tls_www_server
encryption_key
signing_key
expiration_days = 2
EOF
cat >"$T/client.info" <<'EOF'
cn = test client
tls_www_client
encryption_key
signing_key
expiration_days = 2
EOF
certtool() { command certtool "$@" >>"$T/certtool.out" 2>&1 || fail "certtool $*: $(tail -5 "$T/certtool.out")"; }
certtool --generate-privkey --outfile "$T/ca-key.pem"
certtool --generate-self-signed --load-privkey "$T/ca-key.pem" --template "$T/ca.info" \
	--outfile "$T/x509srv/ca-cert.pem"
certtool --generate-privkey --outfile "$T/x509srv/server-key.pem"
certtool --generate-certificate --load-privkey "$T/x509srv/server-key.pem" \
	--load-ca-certificate "$T/x509srv/ca-cert.pem" --load-ca-privkey "$T/ca-key.pem" \
	--template "$T/server.info" --outfile "$T/x509srv/server-cert.pem"
certtool --generate-privkey --outfile "$T/x509cli/client-key.pem"
certtool --generate-certificate --load-privkey "$T/x509cli/client-key.pem" \
	--load-ca-certificate "$T/x509srv/ca-cert.pem" --load-ca-privkey "$T/ca-key.pem" \
	--template "$T/client.info" --outfile "$T/x509cli/client-cert.pem"
chmod 600 "$T/x509srv/server-key.pem" "$T/x509cli/client-key.pem"
cp "$T/x509srv/ca-cert.pem" "$T/x509cli/ca-cert.pem"
cp "$T/x509srv/ca-cert.pem" "$T/x509anon/ca-cert.pem"

start_tls_seed x509 --tls-creds "$T/x509srv" --tls-verify-peer
X509_OBJ="tls-creds-x509,id=tls0,endpoint=client,dir=$T/x509cli"
qio_ok x509_write "$X509_OBJ" "write -P 0x3c 5242880 131072" flush "read -P 0x3c 5242880 131072"
model_write 5242880 131072 60
grep -q 'TLS established:.*client .*CN=test client' "$T/seed.log" ||
	fail "the seed did not log the client certificate"
run_cmd x509_compare qemu-img compare --object "$X509_OBJ" --image-opts \
	"driver=file,filename=$T/model.img" \
	"driver=nbd,server.type=inet,server.host=127.0.0.1,server.port=$PORT,tls-creds=tls0"
((RC == 0)) || fail "qemu-img compare over X.509 TLS: $(cat "$T/x509_compare.out" "$T/x509_compare.err")"
qio_refused x509_nocert "tls-creds-x509,id=tls0,endpoint=client,dir=$T/x509anon"
qio_refused x509_plain ""
stop_clean seed-x509 "$SEED_PID" "$T/seed.log"
cmp "$T/src.img" "$T/model.img" || fail "the image is not the model after the X.509 writes"

# ---- fetch -e unix:SOCK with TLS ----------------------------------------------------------
start_seed -k "$T/src.key" "$T/src.img"
expect_rc 2 fetch_notls "$P2PVBD" fetch --no-progress -e 127.0.0.1:0 "$URI" "$T/out.img"
err_mentions fetch_notls '--tls=off'
SOCK=$T/fetch.sock
start_export "$SOCK" --tls-psk "$T/psk/keys.psk"
wait_for_line "$T/fetch.log" 'volume complete and verified' 60 "$FETCH_PID" \
	"fetch exited before completing" "fetch did not complete within 60 s"
run_cmd fetch_copy nbdcopy "nbds+unix://alice@/?socket=$SOCK&tls-psk-file=$T/psk/keys.psk" \
	"$T/copy2.img"
((RC == 0)) || fail "nbdcopy from nbds+unix:// failed: $(cat "$T/fetch_copy.err")"
cmp "$T/copy2.img" "$T/model.img" || fail "nbdcopy over TLS from fetch -e read other bytes"
expect_rc 1 fetch_plain nbdinfo "nbd+unix:///?socket=$SOCK"
grep -q 'NBD_OPT_GO before TLS: refused' "$T/fetch.log" || fail "fetch -e did not refuse a plaintext client"
stop_clean fetch-psk "$FETCH_PID" "$T/fetch.log"
stop_clean seed-plain "$SEED_PID" "$T/seed.log"
note "ok"
