#!/bin/bash
# SPDX-License-Identifier: ISC
# Checks: the progress display and log lines. Percent and totals count the bytes that must travel
# (not zero chunks); on a terminal the bar fits the width, log lines never land behind it, and
# the end says "done"; without a terminal the status lines stop once complete (a mirror used to
# print one every 5 s forever); log lines carry ISO 8601 timestamps when stderr is not a
# terminal, and syslog priority prefixes when systemd's JOURNAL_STREAM names stderr.
# fast
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh" "$@"

command -v script >/dev/null || fail "script(1) (bsdutils) is needed for a terminal"
# 64 MiB of which 8 MiB are data: a progress that counted zero chunks would say 64 MiB.
truncate -s 64M "$T/src.img"
dd if=/dev/urandom of="$T/src.img" bs=1M seek=20 count=8 conv=notrunc status=none
keygen "$T/key"
start_seed -k "$T/key" --rate-limit 4M "$T/src.img"

# Without a terminal, as a mirror: status lines until complete, one saying done, then none.
bg_start "$T/mirror.log" "$P2PVBD" fetch --mirror "$URI" "$T/mirror.img"
MIRROR=$BG_PID
wait_for_line "$T/mirror.log" 'volume complete and verified' 60 "$MIRROR" "the mirror exited" "the mirror did not complete in 60 s"
sleep 6 # more than the 5 s between status lines
stop_pid "$MIRROR"
grep '^progress:' "$T/mirror.log" >"$T/lines" || fail "no status lines without a terminal"
last=$(tail -n 1 "$T/lines")
[[ $last == *"100.0%  8.0 MiB / 8.0 MiB"*"done" ]] || fail "last status line: '$last'"
(($(grep -c 'done$' "$T/lines") == 1)) || fail "status lines went on after completion: $(cat "$T/lines")"
grep -q ' of 64.0 MiB\| / 64.0 MiB' "$T/lines" && fail "the progress counted the zero chunks: $(cat "$T/lines")"

# Log lines without a terminal: ISO 8601 UTC timestamps.
grep 'p2pvbd fetch: info:' "$T/mirror.log" | head -n 3 >"$T/loglines"
[[ -s $T/loglines ]] || fail "no log lines"
if grep -Evq '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z p2pvbd fetch: info: ' "$T/loglines"; then
	fail "log lines without an ISO 8601 timestamp: $(cat "$T/loglines")"
fi

# Under systemd (JOURNAL_STREAM names stderr): priority prefixes, no timestamps.
: >"$T/journal.err"
dev_ino=$(stat -c '%d:%i' "$T/journal.err")
JOURNAL_STREAM=$dev_ino "$P2PVBD" fetch --no-progress "$URI" "$T/j.img" >/dev/null 2>>"$T/journal.err" ||
	fail "fetch under JOURNAL_STREAM failed: $(tail -3 "$T/journal.err")"
grep -q '^<6>p2pvbd fetch: info: ' "$T/journal.err" || fail "no <6> prefixes: $(head -3 "$T/journal.err")"
grep -Evq '^<[3467]>p2pvbd fetch: ' "$T/journal.err" && fail "a journal line without a priority: $(grep -Ev '^<[3467]>' "$T/journal.err" | head -3)"

# On a terminal 70 columns wide (a bar narrower than its 30 columns): every redraw fits, log lines start on a clean line, "done".
rm -f "$T/tty.img"
timeout 120 script -qec "stty cols 70 rows 20; '$P2PVBD' fetch '$URI' '$T/tty.img'" /dev/null >"$T/tty.raw" ||
	fail "fetch on a terminal failed: $(tail -c 500 "$T/tty.raw")"
/usr/bin/python3 - "$T/tty.raw" <<'PY' || fail "terminal output is wrong (above)"
import re, sys
raw = open(sys.argv[1], "rb").read().decode("utf-8", "replace").replace("\r\n", "\n")
bad = 0
bars = 0
for line in raw.split("\n"):
    segs = line.split("\r")
    for seg in segs:
        vis = seg.replace("\x1b[K", "")
        if vis.startswith("[") and "%" in vis:
            bars += 1
        if "%" in vis and "ETA" in vis or vis.endswith("done"):
            if len(vis) > 69:
                print("a redraw is %d columns wide: %r" % (len(vis), vis)); bad = 1
    # A log line must start at the left edge of a cleared line, not behind the bar.
    last = segs[-1].replace("\x1b[K", "")
    if "p2pvbd fetch: " in last and not last.startswith("p2pvbd fetch: ") and not re.match(r"^\d{4}-", last):
        print("a log line behind the bar: %r" % last); bad = 1
if bars == 0:
    print("no progress bar drawn"); bad = 1
ends = [l for l in raw.split("\n") if "%" in l]
if not ends or not ends[-1].rstrip().endswith("done"):
    print("the last bar does not say done: %r" % (ends[-1] if ends else None)); bad = 1
sys.exit(bad)
PY
