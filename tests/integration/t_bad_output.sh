#!/bin/bash
# SPDX-License-Identifier: ISC
# Checks: bad output paths, malformed URIs and bad command lines give clear errors and the documented exit codes.
# fast
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh" "$@"

make_image "$T/src.img" 2
keygen "$T/key"
start_seed -k "$T/key" "$T/src.img"

expect_rc 1 fetch-nodir "$P2PVBD" fetch "$URI" /nonexistent-dir/x.img
err_mentions fetch-nodir '/nonexistent-dir/x\.img'

for bad in 'p2pvbd://xyz' 'http://example.invalid/' 'p2pvbd://0123?key=zz&secret=zz' ''; do
	expect_rc 2 fetch-baduri "$P2PVBD" fetch "$bad" "$T/out.img"
	[[ -s $T/fetch-baduri.err ]] || fail "malformed URI '$bad': exit 2 without a message"
	[[ ! -e $T/out.img ]] || fail "malformed URI '$bad' created the output"
done

expect_rc 0 fetch-help "$P2PVBD" fetch --help
cat "$T/fetch-help.out" "$T/fetch-help.err" >"$T/fetch-help.all"
for opt in -k --stats --timeout --force -q -v --help; do
	grep -q -e "$opt" "$T/fetch-help.all" || fail "fetch --help does not mention $opt"
done
for cmd in seed keygen; do
	expect_rc 0 "$cmd-help" "$P2PVBD" "$cmd" --help
done

expect_rc 2 noargs "$P2PVBD"
expect_rc 2 badcmd "$P2PVBD" no-such-command
expect_rc 2 fetch-noargs "$P2PVBD" fetch
expect_rc 2 fetch-badopt "$P2PVBD" fetch --no-such-option "$URI" "$T/out.img"
[[ ! -e $T/out.img ]] || fail "a usage error created the output"
