#!/bin/bash
# SPDX-License-Identifier: ISC
# Checks: mistakes are caught before any work and leave no files: an output that is a directory,
# a peer or tracker name that does not resolve, an unwritable --stats, a --listen address in use
# (before hashing); usage errors are one line and a pointer to --help; a URI cut at '&' says
# "quote"; sizes and rates share one syntax; a fetch that fails leaves no key files; --state-dir
# moves the sidecar files; @FILE reads the URI; SIGHUP shuts down cleanly.
# fast
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh" "$@"

make_image "$T/src.img" 4
keygen "$T/key"
start_seed -k "$T/key" --ctl "$T/seed.ctl" "$T/src.img"
port=${URI##*peer=127.0.0.1:}
port=${port%%&*}

# no_files_left NAME: nothing named out.img* (image, state, key, pages) exists in $T.
no_files_left() {
	local left
	left=$(cd "$T" && ls -d out.img* 2>/dev/null || true)
	[[ -z $left ]] || fail "$1 left files behind: $left"
}

mkdir "$T/dir.img"
expect_rc 1 out_dir "$P2PVBD" fetch --no-progress "$URI" "$T/dir.img"
err_mentions out_dir "is a directory"
[[ -z $(ls -A "$T/dir.img") ]] || fail "a fetch into a directory wrote into it"
[[ ! -e $T/dir.img.p2pvbd-key ]] || fail "a refused fetch made a key"

badpeer=${URI/peer=127.0.0.1:$port/peer=no-such-host.invalid:$port}
expect_rc 1 peer_name "$P2PVBD" fetch --no-progress "$badpeer" "$T/out.img"
err_mentions peer_name "cannot resolve no-such-host.invalid"
no_files_left peer_name

expect_rc 1 tracker_name "$P2PVBD" fetch --no-progress "$URI&tracker=http%3A%2F%2Fno-such-host.invalid%2Fannounce" "$T/out.img"
err_mentions tracker_name "cannot resolve no-such-host.invalid"
no_files_left tracker_name

expect_rc 1 stats_dir "$P2PVBD" fetch --no-progress --stats "$T/no/such/dir/stats.json" "$URI" "$T/out.img"
err_mentions stats_dir "--stats"
no_files_left stats_dir

expect_rc 1 listen_busy "$P2PVBD" fetch --no-progress -l "127.0.0.1:$port" "$URI" "$T/out.img"
err_mentions listen_busy "cannot listen there"
no_files_left listen_busy

# A seed checks its listen address and trackers before it hashes.
expect_rc 1 seed_busy "$P2PVBD" seed -k "$T/key" -l "127.0.0.1:$port" "$T/src.img"
err_mentions seed_busy "cannot listen there"
! grep -q 'hashed in' "$T/seed_busy.err" || fail "the seed hashed the image before finding its port in use"
expect_rc 1 seed_tracker "$P2PVBD" seed -k "$T/key" -l 127.0.0.1:0 -t http://no-such-host.invalid/announce "$T/src.img"
err_mentions seed_tracker "cannot resolve no-such-host.invalid"

# Usage errors: one line saying what, one pointing at the help; not the whole help text.
expect_rc 2 usage "$P2PVBD" fetch "$URI"
(($(wc -l <"$T/usage.err") == 2)) || fail "a usage error printed $(wc -l <"$T/usage.err") lines"
err_mentions usage "^see 'p2pvbd fetch --help'$"
expect_rc 2 usage_seed "$P2PVBD" seed --rate-limit 10Mb -k "$T/key" "$T/src.img"
err_mentions usage_seed "bad --rate-limit 10Mb"

# A URI cut at '&' by the shell (only the part before the first '&' arrives).
expect_rc 2 cut "$P2PVBD" fetch "${URI%%&*}"
err_mentions cut "quote"
expect_rc 2 cut2 "$P2PVBD" fetch "${URI%%&*}" "$T/out.img"
err_mentions cut2 "quote"
no_files_left cut

# A fetch that fails after starting (nobody answers at the peer address) leaves no key behind.
closed=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
deadpeer=${URI/peer=127.0.0.1:$port/peer=127.0.0.1:$closed}
expect_rc 1 dead "$P2PVBD" fetch --no-progress --give-up 2 "$deadpeer" "$T/out.img"
no_files_left dead

# Rates in bits and the URI from a file; --state-dir holds the sidecar files.
head -n1 "$T/vol.uri" >"$T/uri.txt"
chmod 600 "$T/uri.txt"
mkdir "$T/state"
expect_rc 0 statedir "$P2PVBD" fetch --no-progress --state-dir "$T/state" --stats "$T/stats.json" "@$T/uri.txt" "$T/out.img"
cmp "$T/src.img" "$T/out.img" || fail "the copy differs"
[[ -e $T/state/out.img.p2pvbd-key ]] || fail "no key in the state directory: $(ls "$T/state")"
left=$(cd "$T" && ls -d out.img.* 2>/dev/null || true)
[[ -z $left ]] || fail "sidecar files beside OUT despite --state-dir: $left"
expect_rc 0 again "$P2PVBD" fetch --no-progress --state-dir "$T/state" --stats "$T/stats2.json" "@$T/uri.txt" "$T/out.img"
(($(stat_get "$T/stats2.json" bytes_fetched) == 0)) || fail "the second run fetched again: $(cat "$T/stats2.json")"

# SIGHUP is a clean shutdown: exit 0, control socket removed.
stop_pid "$SEED_PID"
start_seed -k "$T/key" --rate-limit 100Mbit --ctl "$T/seed2.ctl" "$T/src.img"
[[ -S $T/seed2.ctl ]] || fail "no control socket"
kill -HUP "$SEED_PID"
wait_exit "$SEED_PID" 20 || fail "the seed ignored SIGHUP"
((EXIT_STATUS == 0)) || fail "SIGHUP: the seed exited $EXIT_STATUS"
[[ ! -e $T/seed2.ctl ]] || fail "SIGHUP left the control socket behind"
grep -q 'shutting down' "$T/seed.log" || fail "no clean shutdown logged"

# A control socket or export in a directory that does not exist: refused before hashing or
# joining (the seed used to hash, print its URI and only then fail on the control socket).
expect_rc 1 ctl_nodir "$P2PVBD" seed -k "$T/key" -l 127.0.0.1:0 --ctl "$T/no/such/dir/ctl" "$T/src.img"
err_mentions ctl_nodir "control socket .*cannot create it"
! grep -q 'hashed in' "$T/ctl_nodir.err" || fail "the seed hashed before finding its --ctl directory missing"
expect_rc 1 export_nodir "$P2PVBD" fetch --no-progress -e "unix:$T/no/such/dir/nbd.sock" "$URI" "$T/out3.img"
err_mentions export_nodir "export .*cannot create it"
