#!/bin/bash
# SPDX-License-Identifier: ISC
# Checks: keygen writes a 0600 key and its .pub, never overwrites a key, and seed refuses a key others can read.
# fast
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh" "$@"

expect_rc 0 keygen "$P2PVBD" keygen -o "$T/key"
[[ -f $T/key && -f $T/key.pub ]] || fail "keygen did not write key and key.pub"
mode=$(stat -c %a "$T/key")
[[ $mode == 600 ]] || fail "key has mode $mode, expected 600"
grep -Eqx 'p2pvbd-public-key-v1 [0-9a-f]{64}' "$T/key.pub" || fail "bad key.pub: $(cat "$T/key.pub")"
grep -Eqx 'p2pvbd-secret-key-v1 [0-9a-f]{64}' "$T/key" || fail "bad key file format"
before=$(sha256sum "$T/key" "$T/key.pub")

expect_rc 1 keygen-again "$P2PVBD" keygen -o "$T/key"
[[ -s $T/keygen-again.err ]] || fail "keygen refused to overwrite without a message"
[[ $(sha256sum "$T/key" "$T/key.pub") == "$before" ]] || fail "keygen changed an existing key"

make_image "$T/src.img" 1
chmod 644 "$T/key"
expect_rc 1 seed-perm "$P2PVBD" seed -l 127.0.0.1:0 -k "$T/key" "$T/src.img"
err_mentions seed-perm 'permission|chmod|mode|readable'
