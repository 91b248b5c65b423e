#!/bin/bash
# SPDX-License-Identifier: ISC
# Checks: the installed systemd units run under a real systemd with all their hardening. A
# container (systemd-nspawn, private network) boots this system's systemd over this system's
# /usr with `make install DESTDIR=… PREFIX=/usr` laid over it, and inside it:
# - p2pvbd-tracker.service starts (Type=notify: `systemctl start` returns once READY=1 came),
#   runs as a dynamic user, not root, shows its address as status and answers GET /status;
# - p2pvbd-mirror@m1 and @m2 (m2 with a LISTEN= in m2.env), given a seed's URI in
#   /etc/p2pvbd/mirror/NAME.uri (0600, root's), start, run as the shared dynamic user, keep the
#   secret off their command line, fetch the volume into /var/lib/p2pvbd/mirror/NAME.img
#   (compared with the source), answer `p2pvbd status` on /run/p2pvbd/mirror-NAME/ctl;
# - every unit stops with result "success" (SIGTERM, STOPPING=1, exit 0).
# Needs root and systemd-nspawn (systemd-container); skipped when they are missing or when no
# container can boot here. The mirror part needs `fetch @PATH`; skipped with a note without it.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh" "$@"

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN_DIR=$(dirname "$P2PVBD")
if [[ $(id -u) != 0 ]] || ! command -v systemd-nspawn >/dev/null; then
	note "SKIP: needs root and systemd-nspawn (tools/install-deps.sh installs systemd-container)"
	exit 0
fi

SAN_ARG=()
if ldd "$P2PVBD" 2>/dev/null | grep -q libasan; then
	SAN_ARG=(SAN=1)
fi
D=$T/dest
env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make --no-print-directory -C "$ROOT" BUILD="$BIN_DIR" \
	"${SAN_ARG[@]}" install DESTDIR="$D" PREFIX=/usr >"$T/install.out" 2>&1 ||
	fail "make install failed: $(tail -n 20 "$T/install.out")"

# Does this p2pvbd read the URI from a file (fetch @PATH)? An older one takes @PATH for a URI.
MIRROR=1
"$P2PVBD" fetch "@$T/no-such-file" "$T/probe.img" >"$T/probe.out" 2>&1 || true
if grep -q 'does not start with p2pvbd://' "$T/probe.out"; then
	MIRROR=0
	note "SKIP the mirror unit: this p2pvbd has no 'fetch @PATH' yet"
fi

mkdir -p "$T/out" "$T/etc-upper"
# The script the container runs (as a oneshot unit); it writes "ok ..." and "FAIL ..." lines.
cat >"$T/out/inside.sh" <<'EOF'
#!/bin/bash
set -u
exec >/out/inside.txt 2>&1
touch /out/started
ok() { echo "ok $*" >>/out/result; }
bad() { echo "FAIL $*" >>/out/result; }
prop() { systemctl show -p "$2" --value "$1"; }

# expect_running UNIT STATUS-TEXT USER: active, status text, and its main process is not root.
expect_running() {
	local unit=$1 status=$2 user=$3 pid uid
	[[ $(prop "$unit" ActiveState) == active ]] || { bad "$unit is $(prop "$unit" ActiveState)"; return; }
	[[ $(prop "$unit" StatusText) == "$status" ]] || bad "$unit status text: $(prop "$unit" StatusText)"
	[[ $(prop "$unit" User) == "$user" ]] || bad "$unit User=$(prop "$unit" User)"
	pid=$(prop "$unit" MainPID)
	uid=$(ps -o uid= -p "$pid" | tr -d ' ')
	[[ -n $uid && $uid != 0 ]] || bad "$unit runs as uid '$uid'"
	ok "$unit running as uid $uid: $status"
}

# expect_stopped UNIT: stop it; it must end with result success (exit 0 after SIGTERM).
expect_stopped() {
	systemctl stop "$1"
	[[ $(prop "$1" Result) == success ]] || bad "$1 stopped with result $(prop "$1" Result)"
	[[ $(prop "$1" ExecMainStatus) == 0 ]] || bad "$1 exited $(prop "$1" ExecMainStatus)"
	ok "$1 stopped cleanly"
}

if systemctl start p2pvbd-tracker.service; then
	expect_running p2pvbd-tracker.service "listening on 0.0.0.0:6969" p2pvbd-tracker
	curl -fsS --max-time 10 http://127.0.0.1:6969/status >/dev/null && ok "tracker answers" ||
		bad "the tracker does not answer GET /status"
else
	bad "systemctl start p2pvbd-tracker failed"
fi

if [[ $MIRROR == 1 ]]; then
	cd /tmp
	p2pvbd keygen -o /tmp/src.key >/dev/null
	head -c 8M /dev/urandom >/tmp/src.img
	truncate -s 12M /tmp/src.img
	p2pvbd seed -k /tmp/src.key -l 127.0.0.1:7001 -t http://127.0.0.1:6969/announce \
		--uri-file /tmp/vol.uri /tmp/src.img >/tmp/seed.log 2>&1 &
	for ((i = 0; i < 300; i++)); do [[ -s /tmp/vol.uri ]] && break; sleep 0.1; done
	[[ -s /tmp/vol.uri ]] || bad "the seed wrote no URI"
	install -D -m 0600 /tmp/vol.uri /etc/p2pvbd/mirror/m1.uri
	install -D -m 0600 /tmp/vol.uri /etc/p2pvbd/mirror/m2.uri
	echo "LISTEN=127.0.0.1:7302" >/etc/p2pvbd/mirror/m2.env
	for n in m1 m2; do
		unit=p2pvbd-mirror@$n.service
		if ! systemctl start "$unit"; then
			bad "systemctl start $unit failed"
			continue
		fi
		expect_running "$unit" "fetching into /var/lib/p2pvbd/mirror/$n.img" p2pvbd-mirror
		if grep -q 'secret=' "/proc/$(prop "$unit" MainPID)/cmdline"; then
			bad "$unit has the URI on its command line"
		fi
		for ((i = 0; i < 600; i++)); do
			p2pvbd status --json "/run/p2pvbd/mirror-$n/ctl" 2>/dev/null | grep -q '"complete":true' && break
			sleep 0.1
		done
		cmp /tmp/src.img "/var/lib/p2pvbd/mirror/$n.img" && ok "$unit holds the volume" ||
			bad "$unit: /var/lib/p2pvbd/mirror/$n.img differs from the source"
	done
	journalctl -u p2pvbd-mirror@m2.service --no-pager | grep -q 'listening on 127.0.0.1:7302' &&
		ok "m2.env's LISTEN is used" || bad "p2pvbd-mirror@m2 does not listen on m2.env's LISTEN"
	for n in m1 m2; do
		expect_stopped "p2pvbd-mirror@$n.service"
		[[ ! -e /run/p2pvbd/mirror-$n ]] || bad "/run/p2pvbd/mirror-$n left after stop"
	done
fi
expect_stopped p2pvbd-tracker.service
journalctl --no-pager -u 'p2pvbd-*' >/out/journal.txt 2>&1
touch /out/done
EOF
sed -i "s/^set -u$/set -u\nMIRROR=$MIRROR/" "$T/out/inside.sh"
chmod 755 "$T/out/inside.sh"
cat >"$T/p2pvbd-test.service" <<'EOF'
[Unit]
Description=t_systemd.sh: run the checks, then power off
After=multi-user.target
[Service]
Type=oneshot
ExecStart=/out/inside.sh
ExecStopPost=/bin/systemctl poweroff --no-block
EOF

# This system's /usr (read-only) with the install over it; /etc writable in an overlay; the
# rest a tmpfs. Kept in the test's process group: no machined, no scope unit needed.
bg_start "$T/container.log" systemd-nspawn -q -D / --volatile=yes -M "p2pvbd-t$$" \
	--keep-unit --register=no --link-journal=no --private-network \
	--overlay-ro=/usr:"$D/usr":/usr --overlay=/etc:"$T/etc-upper":/etc \
	--bind="$T/out":/out --bind-ro="$T/p2pvbd-test.service":/etc/systemd/system/p2pvbd-test.service \
	-b systemd.unit=p2pvbd-test.service
NSPAWN_PID=$BG_PID
wait_exit "$NSPAWN_PID" 240 || fail "the container did not power off within 240 s"
if [[ ! -e $T/out/started ]]; then
	note "SKIP: no container could boot here (systemd-nspawn exited $EXIT_STATUS):"
	tail -n 5 "$T/container.log" >&2
	exit 0
fi
cat "$T/out/result" >&2 || true
[[ -e $T/out/done ]] || fail "the checks in the container did not finish: $(tail -n 30 "$T/out/inside.txt")"
if grep -q '^FAIL' "$T/out/result"; then
	tail -n 40 "$T/out/journal.txt" >&2 || true
	fail "$(grep '^FAIL' "$T/out/result" | head -n 5)"
fi
want=3
((MIRROR)) && want=$((want + 7))
(($(grep -c '^ok' "$T/out/result") == want)) || fail "expected $want checks to pass: $(cat "$T/out/result")"
note "the units run under systemd $(systemd-analyze --version | head -n 1 | cut -d' ' -f2)"
