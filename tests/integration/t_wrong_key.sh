#!/bin/bash
# SPDX-License-Identifier: ISC
# Checks: a URI with the wrong source key or a wrong secret makes fetch fail (exit 1, clear message) without creating the output.
# fast
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh" "$@"

make_image "$T/src.img" 4
keygen "$T/a"
keygen "$T/b"
start_seed -k "$T/a" "$T/src.img"

read -r magic bhex <"$T/b.pub" || true
[[ $magic == p2pvbd-public-key-v1 && $bhex =~ ^[0-9a-f]{64}$ ]] || fail "bad public key file: $(cat "$T/b.pub")"
[[ $URI =~ [?\&]key=([0-9a-fA-F]{64}) ]] || fail "URI has no key=: $URI"
ahex=${BASH_REMATCH[1]}
[[ $ahex != "$bhex" ]] || fail "two keygens gave the same key"
bad_key_uri=${URI/key=$ahex/key=$bhex}
[[ $bad_key_uri != "$URI" ]] || fail "could not replace the key in $URI"

expect_rc 1 fetch-key "$P2PVBD" fetch "$bad_key_uri" "$T/out1.img"
err_mentions fetch-key 'key'
[[ ! -e $T/out1.img ]] || fail "fetch with the wrong key created its output"

[[ $URI =~ [?\&]secret=([0-9a-fA-F]{64}) ]] || fail "URI has no secret=: $URI"
sec=${BASH_REMATCH[1]}
first=${sec:0:1}
if [[ $first == 0 ]]; then flipped=1; else flipped=0; fi
bad_secret_uri=${URI/secret=$sec/secret=$flipped${sec:1}}
[[ $bad_secret_uri != "$URI" ]] || fail "could not replace the secret in $URI"

expect_rc 1 fetch-secret "$P2PVBD" fetch "$bad_secret_uri" "$T/out2.img"
err_mentions fetch-secret 'secret'
[[ ! -e $T/out2.img ]] || fail "fetch with the wrong secret created its output"

kill -0 "$SEED_PID" 2>/dev/null || fail "seed died after peers with wrong credentials"
# The seed still serves the right URI afterwards.
expect_rc 0 fetch-ok "$P2PVBD" fetch -q "$URI" "$T/out3.img"
cmp "$T/src.img" "$T/out3.img" || fail "fetch with the right URI differs from the source"
